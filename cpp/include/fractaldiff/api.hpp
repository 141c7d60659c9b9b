// fractaldiff C++ core: the interface between kernels, dispatch and bindings.
// Plain C++17, no Python. Sizes and strides are 64-bit everywhere.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace fractaldiff {

/// Element type of a snapshot matrix.
enum class DType : int { f32 = 0, f64 = 1 };

/// A read-only view of a (rows x cols) matrix with arbitrary strides, in elements (may be negative).
/// Rows are snapshots t, columns are parameters d.
struct StridedMatrix {
  const void* data = nullptr;
  DType dtype = DType::f64;
  int64_t n_rows = 0;
  int64_t n_cols = 0;
  int64_t row_stride = 0;
  int64_t col_stride = 0;
};

/// Status codes returned by the fold kernels.
enum Status : int {
  kOk = 0,
  kNonFinite = 1,   ///< the input holds NaN/Inf (or values whose squares overflow float64)
  kOutOfMemory = 2,  ///< a workspace allocation failed
  kOutOfRange = 3    ///< a quantized coordinate fell outside [0, 2^31) (box counting)
};

/// Largest number of small lags the all-lag kernel computes by an exact direct pass.
constexpr int64_t kMaxDirectLags = 16;

/// The digest of one chunk of a row (see digest_kernels.hpp).
struct DigestChunk {
  uint64_t hash;
  int64_t nonfinite;
  int64_t first;  ///< element index within the row, or -1
};

/// Arguments of the fused SGLD update (see sgld_kernels.hpp). All (C, D) arrays share one
/// dtype, with contiguous rows; strides are in elements between chains.
struct SgldArgs {
  DType dtype = DType::f32;
  int64_t n_chains = 0;
  int64_t n_params = 0;
  const void* w = nullptr;  ///< (C, D) current parameters
  int64_t w_stride = 0;
  const void* center = nullptr;  ///< (C, D) localization centres w*
  int64_t center_stride = 0;
  void* grad = nullptr;  ///< (C, D) in: gradient of the batch loss; out: the drift
  int64_t grad_stride = 0;
  void* w_out = nullptr;  ///< (C, D) out: the next parameters (may be w itself)
  int64_t out_stride = 0;
  const double* nbeta = nullptr;  ///< (C,)
  const double* gamma = nullptr;  ///< (C,)
  const double* eps = nullptr;    ///< (C,)
  double* virial = nullptr;       ///< (C,) out: sum_d (w - w*) . drift
  uint64_t seed = 0;
  uint64_t step = 0;
  int n_threads = 1;
};

/// One set of kernels compiled for one instruction-set level.
struct KernelTable {
  const char* simd_level;
  /// Fold a column block into the all-lag MSD accumulator (see msd_kernels.hpp).
  int (*msd_fft_fold)(const StridedMatrix& x, int64_t nfft, double* power, double* sqnorm,
                      int64_t n_direct, double* direct, int n_threads);
  /// Fold a column block into selected-lag sums: out[l] += sum_t sum_d (x[t+lag_l,d]-x[t,d])^2.
  int (*msd_lags_fold)(const StridedMatrix& x, const int64_t* lags, int64_t n_lags, double* out,
                       int n_threads);
  /// Fold a column block into squared displacements: out[t] += sum_d (x[t,d]-x[ref,d])^2.
  int (*displacement_fold)(const StridedMatrix& x, int64_t ref, double* out, int n_threads);
  /// Per-column min and max of a block (mins/maxs overwritten; see box_kernels.hpp).
  int (*box_minmax)(const StridedMatrix& x, double* mins, double* maxs, int n_threads);
  /// Fold a column block into box ids (T, n_scales, 2) uint64 (see box_kernels.hpp).
  int (*box_ids_fold)(const StridedMatrix& x, int64_t col_start, const double* origin,
                      double inv_eps0, int n_scales, uint64_t key_seed, uint64_t* ids,
                      int n_threads);
  /// Fold a column block into the lower triangle of the centred Gram matrix (T, T) float64
  /// (see pairwise_kernels.hpp).
  int (*gram_fold)(const StridedMatrix& x, double* gram, int n_threads);
  /// Hash n_chunks (<= 8) chunks of equal length n of a row and count their non-finite
  /// elements of elem_size bytes (2, 4, 8; 0: no count); see digest_kernels.hpp.
  void (*digest_group)(int elem_size, const unsigned char* const* chunks, int n_chunks,
                       int64_t n, const int64_t* elem_offset, DigestChunk* out);
  /// One fused SGLD step of all chains (see sgld_kernels.hpp); returns a status code.
  int (*sgld_step)(const SgldArgs& args);
};

/// The kernel table in use (the best level this CPU supports unless overridden).
const KernelTable& active_kernels();
/// Names of the SIMD levels compiled in and supported by this CPU, best first.
std::vector<std::string> available_simd_levels();
/// Select a SIMD level by name; throws std::invalid_argument for unknown/unsupported levels.
void set_simd_level(const std::string& level);

/// Threads the kernels use when the caller passes n_threads <= 0.
int default_threads();
/// Whether the kernels were compiled with OpenMP.
bool openmp_enabled();
/// Compiler name and version string.
std::string compiler_id();

/// Smallest power of two >= 2*n_rows - 1 (and >= 4): the FFT length of the all-lag MSD.
int64_t msd_fft_length(int64_t n_rows);

}  // namespace fractaldiff
