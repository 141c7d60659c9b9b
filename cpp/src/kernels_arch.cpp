// Compiled once per SIMD level with -DFD_ARCH_NS=<level> and that level's compiler flags.
#include "fractaldiff/msd_kernels.hpp"
#include "fractaldiff/box_kernels.hpp"
#include "fractaldiff/pairwise_kernels.hpp"
#include "fractaldiff/digest_kernels.hpp"
#include "fractaldiff/sgld_kernels.hpp"

#ifndef FD_ARCH_NAME
#define FD_ARCH_NAME "baseline"
#endif

namespace fractaldiff {
namespace FD_ARCH_NS {

static int msd_fft_fold(const StridedMatrix& m, int64_t nfft, double* power, double* sqnorm,
                        int64_t n_direct, double* direct, int n_threads) {
  return m.dtype == DType::f32
             ? msd_fft_fold_impl<float>(m, nfft, power, sqnorm, n_direct, direct, n_threads)
             : msd_fft_fold_impl<double>(m, nfft, power, sqnorm, n_direct, direct, n_threads);
}

static int msd_lags_fold(const StridedMatrix& m, const int64_t* lags, int64_t n_lags, double* out,
                         int n_threads) {
  return m.dtype == DType::f32 ? msd_lags_fold_impl<float>(m, lags, n_lags, out, n_threads)
                               : msd_lags_fold_impl<double>(m, lags, n_lags, out, n_threads);
}

static int displacement_fold(const StridedMatrix& m, int64_t ref, double* out, int n_threads) {
  return m.dtype == DType::f32 ? displacement_fold_impl<float>(m, ref, out, n_threads)
                               : displacement_fold_impl<double>(m, ref, out, n_threads);
}

static int box_minmax(const StridedMatrix& m, double* mins, double* maxs, int n_threads) {
  return m.dtype == DType::f32 ? box_minmax_impl<float>(m, mins, maxs, n_threads)
                               : box_minmax_impl<double>(m, mins, maxs, n_threads);
}

static int box_ids_fold(const StridedMatrix& m, int64_t col_start, const double* origin,
                        double inv_eps0, int n_scales, uint64_t key_seed, uint64_t* ids,
                        int n_threads) {
  return m.dtype == DType::f32
             ? box_ids_impl<float>(m, col_start, origin, inv_eps0, n_scales, key_seed, ids,
                                   n_threads)
             : box_ids_impl<double>(m, col_start, origin, inv_eps0, n_scales, key_seed, ids,
                                    n_threads);
}

static int gram_fold(const StridedMatrix& m, double* gram, int n_threads) {
  return m.dtype == DType::f32 ? gram_fold_impl<float>(m, gram, n_threads)
                               : gram_fold_impl<double>(m, gram, n_threads);
}

static void digest_group(int elem_size, const unsigned char* const* p, int n_chunks, int64_t n,
                         const int64_t* elem_offset, DigestChunk* out) {
  switch (elem_size) {
    case 2: return digest::group<2>(p, n_chunks, n, elem_offset, out);
    case 4: return digest::group<4>(p, n_chunks, n, elem_offset, out);
    case 8: return digest::group<8>(p, n_chunks, n, elem_offset, out);
    default: return digest::group<0>(p, n_chunks, n, elem_offset, out);
  }
}

static int sgld_step(const SgldArgs& a) {
  return a.dtype == DType::f32 ? sgld_step_impl<float>(a) : sgld_step_impl<double>(a);
}

/// The kernel table of this SIMD level.
const KernelTable& kernel_table() {
  static const KernelTable table = {FD_ARCH_NAME,      &msd_fft_fold, &msd_lags_fold,
                                    &displacement_fold, &box_minmax,   &box_ids_fold,
                                    &gram_fold,         &digest_group, &sgld_step};
  return table;
}

}  // namespace FD_ARCH_NS
}  // namespace fractaldiff
