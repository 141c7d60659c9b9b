// fractaldiff: centred Gram matrix of the snapshots (pairwise squared distances) for one
// instruction-set level. Same compilation rules as msd_kernels.hpp, whose helpers it reuses.
//
// What is computed. For a column block, every column is centred by its mean over the T snapshots
// (float64), and G[i][j] += sum_d xc[i,d] xc[j,d] is accumulated in float64 for j <= i (the lower
// triangle, diagonal included). Centred Gram matrices of disjoint column blocks add up, and
// ||x_i - x_j||^2 = G_ii + G_jj - 2 G_ij (the per-column means cancel exactly in the algebra).
//
// Error bound. Each G entry is a float64 dot product over D terms accumulated in chunks of kKC
// columns (one sum per chunk, chunks added in order), so |fl(G_ij) - G_ij| <= (kKC + D/kKC) u
// |xc_i| |xc_j| (u = 2^-53, first order), and the distance d2_ij = G_ii + G_jj - 2 G_ij obeys
//   |fl(d2_ij) - d2_ij| <= (kKC + D/kKC + 3) u (|xc_i| + |xc_j|)^2  (+ the centring rounding,
//   at most u |x| per element),
// a bound relative to the snapshots' spread about their mean, not to their raw magnitude: weight
// offsets (large |x|, tiny steps) do not hurt. Typical errors are the square root of the worst
// case; measured on the weight-like workload: see benchmarks/README_fractal.md.
//
// How. Like a GEMM (syrk): a chunk of kKC columns is centred and packed as float64 into row
// panels of kMR = 3 kW rows ([panel][d][row], zero rows past T); a register-blocked micro-kernel
// multiplies a kMR-row panel by kNR = kW rows of another panel (3 kW x kW vector accumulators:
// 24 zmm registers with AVX-512) over the chunk and adds the tile into G. Threads share the packed
// chunk and split the (panel, panel) tiles of the triangle statically; every tile of G is updated
// by one thread per chunk, in chunk order, so results do not depend on the number of threads.
#pragma once

#include "fractaldiff/msd_kernels.hpp"

namespace fractaldiff {
namespace FD_ARCH_NS {

constexpr int kMR = 3 * kW;        ///< rows of a packed panel (and of a micro-tile)
constexpr int kNR = kW;            ///< columns of a micro-tile (kMR / kNR = 3 per panel)
constexpr int64_t kKC = 256;       ///< columns (parameters) per packed chunk

/// acc[v][j] (rows v*kW.., column j) += sum_d A[d][v*kW + lane] * Bp[d][j], d < kc.
/// A and Bp point into packed panels of row stride kMR.
__attribute__((always_inline)) inline void gram_micro(const double* __restrict A,
                                                      const double* __restrict Bp, int64_t kc,
                                                      vd (&acc)[3][kNR]) {
  vd c0[kNR], c1[kNR], c2[kNR];
  for (int j = 0; j < kNR; ++j) c0[j] = c1[j] = c2[j] = splat(0.0);
  for (int64_t d = 0; d < kc; ++d) {
    vd a0, a1, a2;
    std::memcpy(&a0, A + d * kMR, sizeof(vd));
    std::memcpy(&a1, A + d * kMR + kW, sizeof(vd));
    std::memcpy(&a2, A + d * kMR + 2 * kW, sizeof(vd));
    const double* b = Bp + d * kMR;
    for (int j = 0; j < kNR; ++j) {
      const vd bj = splat(b[j]);
      c0[j] += a0 * bj;
      c1[j] += a1 * bj;
      c2[j] += a2 * bj;
    }
  }
  for (int j = 0; j < kNR; ++j) {
    acc[0][j] = c0[j];
    acc[1][j] = c1[j];
    acc[2][j] = c2[j];
  }
}

/// Fold a column block into the lower triangle of the centred Gram matrix G (T x T, row-major,
/// row stride T): G[i][j] += sum_d xc[i,d] xc[j,d] for j <= i. See the file comment.
template <class S>
int gram_fold_impl(const StridedMatrix& m, double* G, int n_threads) {
  const S* x = static_cast<const S*>(m.data);
  const int64_t T = m.n_rows, B = m.n_cols, rs = m.row_stride, cs = m.col_stride;
  const int64_t n_panels = (T + kMR - 1) / kMR;
  const int nth = resolve_threads(n_threads);

  // column means (parallel over columns: the same summation order for any n_threads)
  Scratch mean_mem(sizeof(double) * B);
  Scratch pack_mem(sizeof(double) * n_panels * kMR * kKC);
  const int64_t n_items = n_panels * (n_panels + 1) / 2;
  Scratch item_mem(sizeof(int64_t) * 2 * n_items);
  if (!mean_mem.ok() || !pack_mem.ok() || !item_mem.ok()) return kOutOfMemory;
  double* mean = mean_mem.as<double>();
  double* P = pack_mem.as<double>();
  int64_t* items = item_mem.as<int64_t>();
  {
    int64_t n = 0;
    for (int64_t I = 0; I < n_panels; ++I)
      for (int64_t J = I; J < n_panels; ++J) {
        items[2 * n] = I;
        items[2 * n + 1] = J;
        ++n;
      }
  }
  int status = kOk;

#pragma omp parallel num_threads(nth)
  {
    bool finite = true;
#pragma omp for schedule(static)
    for (int64_t c0 = 0; c0 < B; c0 += 64) {
      const int64_t nc = imin(64, B - c0);
      double s[64] = {0};
      for (int64_t t = 0; t < T; ++t) {
        const S* row = x + t * rs + c0 * cs;
        for (int64_t j = 0; j < nc; ++j) s[j] += static_cast<double>(row[j * cs]);
      }
      for (int64_t j = 0; j < nc; ++j) {
        mean[c0 + j] = s[j] / static_cast<double>(T);
        if (!__builtin_isfinite(s[j])) finite = false;
      }
    }
    if (!finite) {
#pragma omp atomic write
      status = kNonFinite;
    }
#pragma omp barrier
    if (status == kOk) {
      for (int64_t k0 = 0; k0 < B; k0 += kKC) {
        const int64_t kc = imin(kKC, B - k0);
        // pack: P[p][d][r] = x[p*kMR + r, k0 + d] - mean, zero past T
#pragma omp for schedule(static)
        for (int64_t p = 0; p < n_panels; ++p) {
          double* dst = P + p * kMR * kKC;
          for (int r = 0; r < kMR; ++r) {
            const int64_t t = p * kMR + r;
            if (t < T) {
              const S* row = x + t * rs + k0 * cs;
              if (cs == 1) {
                for (int64_t d = 0; d < kc; ++d)
                  dst[d * kMR + r] = static_cast<double>(row[d]) - mean[k0 + d];
              } else {
                for (int64_t d = 0; d < kc; ++d)
                  dst[d * kMR + r] = static_cast<double>(row[d * cs]) - mean[k0 + d];
              }
            } else {
              for (int64_t d = 0; d < kc; ++d) dst[d * kMR + r] = 0.0;
            }
          }
        }
        // tiles of the triangle: panel I (rows) x panel J >= I (columns), written to G[j][i]
#pragma omp for schedule(static)
        for (int64_t it = 0; it < n_items; ++it) {
          const int64_t I = items[2 * it], J = items[2 * it + 1];
          const double* A = P + I * kMR * kKC;
          for (int sub = 0; sub < kMR / kNR; ++sub) {
            const int64_t j0 = J * kMR + sub * kNR;
            if (j0 >= T) break;
            vd acc[3][kNR];
            gram_micro(A, P + J * kMR * kKC + sub * kNR, kc, acc);
            const int64_t i0 = I * kMR;
            for (int j = 0; j < kNR; ++j) {
              const int64_t jj = j0 + j;
              if (jj >= T) break;
              double* g = G + jj * T + i0;
              if (i0 + kMR <= T) {
                for (int v = 0; v < 3; ++v) {
                  vd cur;
                  std::memcpy(&cur, g + v * kW, sizeof(vd));
                  cur += acc[v][j];
                  std::memcpy(g + v * kW, &cur, sizeof(vd));
                }
              } else {
                for (int v = 0; v < 3; ++v)
                  for (int l = 0; l < kW; ++l)
                    if (i0 + v * kW + l < T) g[v * kW + l] += acc[v][j][l];
              }
            }
          }
        }
      }
    }
  }
  return status;
}

}  // namespace FD_ARCH_NS
}  // namespace fractaldiff
