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
enum class FoldKind : int { msd_fft = 0, msd_lags = 1, displacement = 2, box_ids = 3, gram = 4 };

/// Device-side fold of column blocks into float64 accumulators.
///
/// fold_device reads a matrix already in device memory (any strides, 64-bit offsets);
/// fold_host streams a host matrix through two pinned staging buffers and two streams, the copy
/// of one column sub-block overlapping the kernel of the previous one. finish() waits, adds the
/// device accumulators into the caller's host arrays (same layout as the CPU kernels; copied in
/// chunks through two small pinned buffers, no full-size host temporary), resets them and
/// returns a Status. Every kernel, copy and reset runs on the fold's own compute stream, so a
/// reset is ordered with the folds before and after it.
///
/// Memory: the device memory the fold allocates (staging, workspaces, partial sums, box-id sums,
/// origin and column-mean chunks, accumulators) stays within memory_limit bytes, and so does its
/// pinned host memory (staging, origin and read-back chunks). Launches on many columns run in
/// column chunks so that the per-column buffers (box origins, Gram column means) stay bounded
/// for any D. Not counted:
///  - the (T, T) float64 matrix of the gram kind: it is the result itself (as large as the host
///    array it is added into); its allocation failing is reported with its size, T*T*8 bytes;
///  - what the CUDA runtime itself reserves on the device (context, kernel images, the staging
///    of pageable copies);
///  - memory the caller provides (fold_device's input, the host arrays).
///
/// Every method makes the fold's device current while it runs and restores the caller's current
/// device when it returns or throws.
///
/// box_ids: call configure_box() once after construction and set_box_block() before each
/// fold_device/fold_host call (it names the global index of the block's first column and the
/// block's per-column origins); finish_ids() adds the (T, n_scales, 2) id sums (mod 2^64).
/// gram: finish(G) adds the centred Gram matrix of the folded columns into the lower triangle
/// (j <= i) of the host (T, T) array G (its strict upper triangle is not written).
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
  /// box_ids only: scales, key seed and 1/eps0 (computed by the caller as on the CPU).
  void configure_box(int n_scales, uint64_t key_seed, double inv_eps0);
  /// box_ids only: the next folded block starts at global column col_start; origin holds its
  /// n_cols per-column origins. They are not copied here: the following fold_device/fold_host
  /// calls read them (in column chunks, through pinned buffers), so `origin` must stay valid and
  /// unchanged until the next set_box_block() or finish_ids().
  void set_box_block(int64_t col_start, const double* origin, int64_t n_cols);
  /// box_ids only: wait, add the id sums into ids (T, n_scales, 2) mod 2^64, reset; returns kOk
  /// or kOutOfRange (a quantized coordinate fell outside [0, 2^31), or NaN).
  int finish_ids(uint64_t* ids);
  /// Wait until every kernel and copy issued so far is done (device inputs may then be freed).
  void synchronize();
  /// Bytes of device memory this fold holds now.
  int64_t device_bytes() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

/// Per-column minimum and maximum of a (T, B) matrix in device memory on `device` (any strides)
/// into the host arrays mins/maxs (B each), as the CPU box_minmax kernel computes them; at most
/// memory_limit bytes of device memory are used. Returns kOk or kNonFinite.
int box_minmax_device(int device, const StridedMatrix& x, double* mins, double* maxs,
                      int64_t memory_limit);

/// Copy columns c0..c0+w-1 of a host matrix (any strides) into a contiguous (T, w) buffer of the
/// same dtype, with OpenMP threads (cuda/host_pack.cpp; used to fill the pinned staging buffers).
void pack_columns(const StridedMatrix& x, int64_t c0, int64_t w, char* dst);

}  // namespace cuda
}  // namespace fractaldiff
