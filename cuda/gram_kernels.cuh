// fractaldiff CUDA kernels: centred Gram matrix (pairwise squared distances).
//
// The accumulator is that of the CPU kernel (cpp/include/fractaldiff/pairwise_kernels.hpp): for a
// column block, every column is centred by its mean over the T snapshots (float64), and
// G[i][j] += sum_d xc[i,d] xc[j,d] is accumulated in float64 for j <= i (lower triangle, diagonal
// included; the strict upper triangle is scratch). Centred Gram matrices of disjoint column
// blocks add up, so CPU and GPU partial results merge, and
// ||x_i - x_j||^2 = G_ii + G_jj - 2 G_ij.
//
// Why a kernel of our own rather than cuBLAS DSYRK/DGEMM. cuBLAS is not part of every CUDA
// toolkit install (the compile-only builds that keep these sources from rotting have none, and
// a module linked to it would not import where it is missing), and a cuBLAS call would need the float32 block converted and centred into a float64 copy in
// global memory first (12 extra bytes per element of traffic). Here the conversion and the
// centring happen while a tile is staged into shared memory, the arithmetic is float64 FMA, and
// only the lower triangle of tiles is computed (half a GEMM). On an H100/H200 the float64 FMA
// rate (64/clk/SM) is half the float32 rate, and symmetry halves the work, so this kernel at
// ~50 % of the FP64 peak matches a float32 GEMM at ~100 %: the target (>= 0.5x torch.matmul in
// float32 with TF32 off) needs ~25-35 %. FP64 tensor cores (DMMA) would double the ceiling and
// are the next step if the measurement falls short.
//
// Tiling (a classic register-blocked GEMM): a block of 256 threads computes one 128 x 128 tile
// (I, J), J <= I, of G; each thread holds an 8 x 8 float64 micro-tile (rows ty*2 + 32 m + {0,1},
// columns tx*2 + 32 n + {0,1}, so shared-memory reads are 16-byte, conflict-free and the
// A-operand reads are broadcasts). Columns (parameters) are staged kGramK at a time into two
// shared-memory buffers: the next stage's global loads are issued before the current stage's
// FMAs, so one barrier per stage suffices.
//
// Error bound: as on the CPU. Every entry is a float64 dot product accumulated in chunks of
// kGramFlush columns (a register sum per chunk, chunks added into G in order), so
// |fl(G_ij) - G_ij| <= (kGramFlush + D/kGramFlush) u |xc_i| |xc_j| (u = 2^-53, first order), plus
// the centring rounding. K-splits (for small T, to fill the GPU) add their partial tiles in a
// fixed order: results are deterministic.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace fractaldiff {
namespace cuda {
namespace kern {

constexpr int kGramTile = 128;      ///< rows/columns of G per block tile
constexpr int kGramK = 8;           ///< columns (parameters) per shared-memory stage
constexpr int kGramThreads = 256;   ///< 16 x 16 threads, 8 x 8 outputs each
constexpr int64_t kGramFlush = 2048;  ///< columns summed in registers before adding into G

/// Column means over the T rows, in float64 (thread per column, grid-stride); a non-finite sum
/// sets *status (the CPU kernel's kNonFinite).
template <class S>
__global__ void column_means_kernel(const S* __restrict__ x, int64_t T, int64_t B, int64_t rs,
                                    int64_t cs, double* __restrict__ mean, int* status) {
  for (int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; c < B;
       c += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const S* col = x + c * cs;
    double s0 = 0.0, s1 = 0.0;
    int64_t t = 0;
    for (; t + 2 <= T; t += 2) {
      s0 += static_cast<double>(__ldg(col + t * rs));
      s1 += static_cast<double>(__ldg(col + (t + 1) * rs));
    }
    if (t < T) s0 += static_cast<double>(__ldg(col + t * rs));
    const double s = s0 + s1;
    mean[c] = s / static_cast<double>(T);
    if (!isfinite(s)) atomicExch(status, 1);
  }
}

/// Arguments of gram_kernel (64-bit sizes, strides in elements).
struct GramArgs {
  const void* x = nullptr;
  int64_t T = 0, B = 0, rs = 0, cs = 0;
  const double* mean = nullptr;  ///< B column means
  double* out = nullptr;         ///< (T, T) row-major; split s adds into out + s * split_stride
  int64_t split_stride = 0;
  int64_t cols_per_split = 0;    ///< multiple of kGramK
};

/// Tile pair (I, J), J <= I, of linear index p in the lower triangle of tiles.
__device__ __forceinline__ void tri_index(int64_t p, int64_t& I, int64_t& J) {
  int64_t i = static_cast<int64_t>((sqrt(8.0 * static_cast<double>(p) + 1.0) - 1.0) * 0.5);
  while (i * (i + 1) / 2 > p) --i;
  while ((i + 1) * (i + 2) / 2 <= p) ++i;
  I = i;
  J = p - i * (i + 1) / 2;
}

template <class S>
__global__ void __launch_bounds__(kGramThreads, 1) gram_kernel(GramArgs a) {
  __shared__ __align__(16) double As[2][kGramK][kGramTile];
  __shared__ __align__(16) double Bs[2][kGramK][kGramTile];
  const S* __restrict__ x = static_cast<const S*>(a.x);
  const int tid = threadIdx.x;
  const int tx = tid & 15, ty = tid >> 4;
  int64_t I, J;
  tri_index(blockIdx.x, I, J);
  const int64_t i0 = I * kGramTile, j0 = J * kGramTile;
  const int64_t kb = static_cast<int64_t>(blockIdx.y) * a.cols_per_split;
  const int64_t ke = kb + a.cols_per_split < a.B ? kb + a.cols_per_split : a.B;
  double* __restrict__ out = a.out + static_cast<int64_t>(blockIdx.y) * a.split_stride;

  // staging: element e = tid + 256 l (l < 4) of a 128 x 8 stage is row e / 8, column e % 8
  // (a warp reads 4 rows x 8 adjacent columns: 32-byte segments)
  double ra[4], rb[4];
  auto load_stage = [&](int64_t k0) {
#pragma unroll
    for (int l = 0; l < 4; ++l) {
      const int e = tid + kGramThreads * l;
      const int r = e >> 3, kk = e & 7;
      const int64_t k = k0 + kk;
      double va = 0.0, vb = 0.0;
      if (k < ke) {
        const double m = __ldg(a.mean + k);
        if (i0 + r < a.T) va = static_cast<double>(__ldg(x + (i0 + r) * a.rs + k * a.cs)) - m;
        if (j0 + r < a.T) vb = static_cast<double>(__ldg(x + (j0 + r) * a.rs + k * a.cs)) - m;
      }
      ra[l] = va;
      rb[l] = vb;
    }
  };
  auto store_stage = [&](int buf) {
#pragma unroll
    for (int l = 0; l < 4; ++l) {
      const int e = tid + kGramThreads * l;
      As[buf][e & 7][e >> 3] = ra[l];
      Bs[buf][e & 7][e >> 3] = rb[l];
    }
  };

  double acc[8][8];
  for (int64_t f0 = kb; f0 < ke; f0 += kGramFlush) {
    const int64_t f1 = f0 + kGramFlush < ke ? f0 + kGramFlush : ke;
#pragma unroll
    for (int m = 0; m < 8; ++m)
#pragma unroll
      for (int n = 0; n < 8; ++n) acc[m][n] = 0.0;
    int buf = 0;
    __syncthreads();  // the previous chunk's last stage is no longer read
    load_stage(f0);
    store_stage(0);
    for (int64_t k0 = f0; k0 < f1; k0 += kGramK) {
      __syncthreads();  // stage `buf` is written; stage buf ^ 1 is no longer read
      const bool more = k0 + kGramK < f1;
      if (more) load_stage(k0 + kGramK);  // global loads in flight during the FMAs
#pragma unroll
      for (int kk = 0; kk < kGramK; ++kk) {
        double av[8], bv[8];
#pragma unroll
        for (int m = 0; m < 4; ++m) {
          const double2 p = *reinterpret_cast<const double2*>(&As[buf][kk][ty * 2 + 32 * m]);
          const double2 q = *reinterpret_cast<const double2*>(&Bs[buf][kk][tx * 2 + 32 * m]);
          av[2 * m] = p.x;
          av[2 * m + 1] = p.y;
          bv[2 * m] = q.x;
          bv[2 * m + 1] = q.y;
        }
#pragma unroll
        for (int m = 0; m < 8; ++m)
#pragma unroll
          for (int n = 0; n < 8; ++n) acc[m][n] = fma(av[m], bv[n], acc[m][n]);
      }
      if (more) store_stage(buf ^ 1);
      buf ^= 1;
    }
    // add the chunk into G (each (tile, split) belongs to one block: plain read-modify-write;
    // 16-byte accesses when rows start 16-byte aligned, i.e. T even)
    const bool pairs = (a.T & 1) == 0;
#pragma unroll
    for (int m = 0; m < 8; ++m) {
      const int64_t i = i0 + ty * 2 + 32 * (m >> 1) + (m & 1);
      if (i >= a.T) continue;
      double* row = out + i * a.T;
#pragma unroll
      for (int n = 0; n < 8; n += 2) {
        const int64_t j = j0 + tx * 2 + 32 * (n >> 1);
        if (pairs && j + 1 < a.T) {
          double2* p = reinterpret_cast<double2*>(row + j);
          double2 v = *p;
          v.x += acc[m][n];
          v.y += acc[m][n + 1];
          *p = v;
        } else {
          if (j < a.T) row[j] += acc[m][n];
          if (j + 1 < a.T) row[j + 1] += acc[m][n + 1];
        }
      }
    }
  }
}

/// G[i] += sum_{s < n_split} P[s][i], splits added in order (deterministic), i < n.
__global__ void add_splits_kernel(const double* __restrict__ part, int64_t stride, int n_split,
                                  int64_t n, double* __restrict__ G) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    double s = G[i];
    for (int k = 0; k < n_split; ++k) s += part[k * stride + i];
    G[i] = s;
  }
}

}  // namespace kern
}  // namespace cuda
}  // namespace fractaldiff
