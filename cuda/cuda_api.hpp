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

/// Device-side fold of column blocks into accumulators: the kind-agnostic part.
///
/// A GpuFold owns the device streamer (cuda/fold.cu: the compute and copy streams, their
/// events, the staging buffers, the status flag and the chunked read-back); one small subclass
/// per fold kind (MsdFftFold, LagsFold, DisplacementFold, BoxIdsFold, GramFold) owns its
/// accumulators, launches its kernels and finishes into the caller's host arrays. The
/// accumulators are exactly those of the CPU kernels (fractaldiff/api.hpp KernelTable), so CPU
/// and GPU partial results merge by addition.
///
/// fold_device reads a matrix already in device memory (any strides, 64-bit offsets);
/// fold_host streams a host matrix through two pinned staging buffers and two streams, the copy
/// of one column sub-block overlapping the kernel of the previous one. Each kind's finish()
/// waits, adds the device accumulators into the caller's host arrays (copied in chunks through
/// two small pinned buffers, no full-size host temporary), resets them and returns a Status.
/// Every kernel, copy and reset runs on the fold's own compute stream, so a reset is ordered
/// with the folds before and after it.
///
/// Memory: the device memory a fold allocates (staging, workspaces, partial sums, box-id sums,
/// origin and column-mean chunks, accumulators) stays within memory_limit bytes, and so does its
/// pinned host memory (staging, origin and read-back chunks). Launches on many columns run in
/// column chunks so that the per-column buffers (box origins, Gram column means) stay bounded
/// for any D. Not counted:
///  - the (T, T) float64 matrix of GramFold: it is the result itself (as large as the host
///    array it is added into); its allocation failing is reported with its size, T*T*8 bytes;
///  - what the CUDA runtime itself reserves on the device (context, kernel images, the staging
///    of pageable copies);
///  - memory the caller provides (fold_device's input, the host arrays).
///
/// Every method makes the fold's device current while it runs and restores the caller's current
/// device when it returns or throws.
class GpuFold {
 public:
  virtual ~GpuFold();
  GpuFold(const GpuFold&) = delete;
  GpuFold& operator=(const GpuFold&) = delete;

  void fold_device(const StridedMatrix& x);
  void fold_host(const StridedMatrix& x);
  /// Wait until every kernel and copy issued so far is done (device inputs may then be freed).
  void synchronize();
  /// Bytes of device memory this fold holds now.
  int64_t device_bytes() const;

  struct Streamer;  ///< streams, events, staging, status flag, read-back (cuda/fold.cu)

 protected:
  GpuFold(int device, int64_t n_rows, int64_t memory_limit);
  /// Launch the kernels folding x (device memory, T rows, n_cols >= 1), whose first column is
  /// column c_off of the block given to fold_device/fold_host.
  virtual void launch(const StridedMatrix& x, int64_t c_off) = 0;
  /// Checks before a block of n_cols columns is folded (throws on misuse).
  virtual void check_block(int64_t n_cols) const;
  /// Device bytes of this kind's buffers that count against memory_limit.
  virtual int64_t counted_bytes() const = 0;
  /// Device bytes held but not counted (the Gram matrix itself).
  virtual int64_t uncounted_bytes() const;
  /// Bytes of scratch buffers that launches size to the room left (partial sums, workspaces).
  virtual int64_t scratch_bytes() const;
  /// Free the scratch buffers (the next launch sizes them again).
  virtual void drop_scratch();
  /// Largest staging buffer, in bytes, before rounding (default min(memory_limit/4, 256 MiB)).
  virtual int64_t staging_cap() const;
  /// Staged sub-blocks hold a multiple of this many columns (when wider than one column).
  virtual int64_t column_multiple() const;
  /// Wait for the streams, make the device current and free `state` (kinds' destructors).
  template <class State>
  void release(std::unique_ptr<State>& state) noexcept;

  std::unique_ptr<Streamer> s_;

 private:
  void launch_checked(const StridedMatrix& x, int64_t c_off);
};

/// All-lag MSD: power spectrum (nfft), squared norms (T) and direct lags 1..n_direct, the
/// accumulators of KernelTable::msd_fft_fold.
class MsdFftFold final : public GpuFold {
 public:
  MsdFftFold(int device, int64_t n_rows, int64_t n_direct, int64_t memory_limit);
  ~MsdFftFold() override;
  /// Add into power (nfft), sqnorm (T) and direct (n_direct + 1; direct[0] untouched); returns
  /// kOk or kNonFinite.
  int finish(double* power, double* sqnorm, double* direct);
  struct State;

 private:
  void launch(const StridedMatrix& x, int64_t c_off) override;
  int64_t counted_bytes() const override;
  int64_t scratch_bytes() const override;
  void drop_scratch() override;
  int64_t column_multiple() const override;
  template <class S>
  void run(const StridedMatrix& x);
  std::unique_ptr<State> st_;
};

/// Selected lags: sums of squared lag differences, the accumulator of KernelTable::msd_lags_fold.
class LagsFold final : public GpuFold {
 public:
  LagsFold(int device, int64_t n_rows, const std::vector<int64_t>& lags, int64_t memory_limit);
  ~LagsFold() override;
  /// Add into sums (one per lag); returns kOk or kNonFinite.
  int finish(double* sums);
  struct State;

 private:
  void launch(const StridedMatrix& x, int64_t c_off) override;
  int64_t counted_bytes() const override;
  int64_t scratch_bytes() const override;
  void drop_scratch() override;
  template <class S>
  void run(const StridedMatrix& x);
  std::unique_ptr<State> st_;
};

/// Squared displacements from snapshot ref, the accumulator of KernelTable::displacement_fold.
class DisplacementFold final : public GpuFold {
 public:
  DisplacementFold(int device, int64_t n_rows, int64_t ref, int64_t memory_limit);
  ~DisplacementFold() override;
  /// Add into sq (T); returns kOk or kNonFinite.
  int finish(double* sq);
  struct State;

 private:
  void launch(const StridedMatrix& x, int64_t c_off) override;
  int64_t counted_bytes() const override;
  int64_t scratch_bytes() const override;
  void drop_scratch() override;
  template <class S>
  void run(const StridedMatrix& x);
  std::unique_ptr<State> st_;
};

/// Box ids (T, n_scales, 2) uint64 sums mod 2^64, bit for bit those of
/// KernelTable::box_ids_fold. Call set_block() before each fold_device/fold_host call.
class BoxIdsFold final : public GpuFold {
 public:
  /// inv_eps0 = 1/eps0, computed by the caller exactly as on the CPU.
  BoxIdsFold(int device, int64_t n_rows, int n_scales, uint64_t key_seed, double inv_eps0,
             int64_t memory_limit);
  ~BoxIdsFold() override;
  /// The next folded block starts at global column col_start; origin holds its n_cols
  /// per-column origins. They are not copied here: the following fold_device/fold_host calls
  /// read them (in column chunks, through pinned buffers), so `origin` must stay valid and
  /// unchanged until the next set_block() or finish().
  void set_block(int64_t col_start, const double* origin, int64_t n_cols);
  /// Wait, add the id sums into ids (T, n_scales, 2) mod 2^64, reset; returns kOk or
  /// kOutOfRange (a quantized coordinate fell outside [0, 2^31), or NaN).
  int finish(uint64_t* ids);
  struct State;

 private:
  void launch(const StridedMatrix& x, int64_t c_off) override;
  void check_block(int64_t n_cols) const override;
  int64_t counted_bytes() const override;
  int64_t staging_cap() const override;
  template <class S>
  void run(const StridedMatrix& x, int64_t c_off);
  std::unique_ptr<State> st_;
};

/// Centred Gram matrix (T, T): finish(G) adds it into the lower triangle (j <= i) of the host
/// array G (its strict upper triangle is not written), as KernelTable::gram_fold does.
class GramFold final : public GpuFold {
 public:
  GramFold(int device, int64_t n_rows, int64_t memory_limit);
  ~GramFold() override;
  /// Returns kOk, or kNonFinite when a diagonal entry is not finite.
  int finish(double* gram);
  struct State;

 private:
  void launch(const StridedMatrix& x, int64_t c_off) override;
  int64_t counted_bytes() const override;
  int64_t uncounted_bytes() const override;
  int64_t scratch_bytes() const override;
  void drop_scratch() override;
  template <class S>
  void run(const StridedMatrix& x);
  template <class S>
  void run_chunk(const StridedMatrix& x);
  std::unique_ptr<State> st_;
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
