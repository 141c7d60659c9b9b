// Host-side interface of the CUDA part; implemented by cuda/*.cu, or by cuda/no_cuda.cpp when the
// package is built without CUDA.
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "fractaldiff/api.hpp"

namespace fractaldiff {
namespace cuda {

/// Whether CUDA kernels were compiled into this build.
bool built();
/// Number of CUDA devices visible now; 0 without a driver or device (never throws).
int device_count();
/// CUDA runtime version the build was linked against ("" without CUDA).
std::string runtime_version();
/// Run the self-test kernel on device 0: returns "" on success, else the CUDA error text.
std::string self_test();
/// Name, compute capability and memory of a device ("" when unavailable).
std::string device_name(int device);

/// A CUDA call failed (the message names the call and the CUDA error).
class CudaError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
/// A device or pinned-host allocation failed, or memory_limit is too small.
class CudaOutOfMemory : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Which fold a GpuFold computes; the accumulators are exactly those of the CPU kernels
/// (fractaldiff/api.hpp KernelTable), so CPU and GPU partial results merge by addition.
enum class FoldKind : int { msd_fft = 0, msd_lags = 1, displacement = 2 };

/// Device-side fold of column blocks into float64 accumulators.
///
/// fold_device reads a matrix already in device memory (any strides, 64-bit offsets);
/// fold_host streams a host matrix through two pinned staging buffers and two streams, the copy
/// of one column sub-block overlapping the kernel of the previous one. finish() waits, adds the
/// device accumulators into the caller's host arrays (same layout as the CPU kernels), resets
/// them and returns a Status. Device memory used (staging, workspace, accumulators) stays within
/// memory_limit bytes; pinned host staging is bounded by the same number.
class GpuFold {
 public:
  GpuFold(FoldKind kind, int device, int64_t n_rows, int64_t n_direct,
          const std::vector<int64_t>& lags, int64_t ref, int64_t memory_limit);
  ~GpuFold();
  GpuFold(const GpuFold&) = delete;
  GpuFold& operator=(const GpuFold&) = delete;

  void fold_device(const StridedMatrix& x);
  void fold_host(const StridedMatrix& x);
  /// Add the accumulators into out0 (power | lag sums | squared displacements), out1 (sqnorm,
  /// msd_fft only) and out2 (direct, msd_fft only); returns kOk or kNonFinite.
  int finish(double* out0, double* out1, double* out2);
  /// Wait until every kernel and copy issued so far is done (device inputs may then be freed).
  void synchronize();
  /// Bytes of device memory this fold holds now.
  int64_t device_bytes() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

/// Copy columns c0..c0+w-1 of a host matrix (any strides) into a contiguous (T, w) buffer of the
/// same dtype, with OpenMP threads (cuda/host_pack.cpp; used to fill the pinned staging buffers).
void pack_columns(const StridedMatrix& x, int64_t c0, int64_t w, char* dst);

}  // namespace cuda
}  // namespace fractaldiff
