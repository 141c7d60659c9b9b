// fractaldiff CUDA kernels: all-lag MSD (fused float64 FFT), selected lags, displacement.
//
// Accumulators are those of the CPU kernels (cpp/include/fractaldiff/msd_kernels.hpp), so that
// MSDAccumulator.result() finishes both and CPU and GPU partial sums merge:
//   power[k]  (nfft)   sum over packed column pairs z = a + i b of |FFT(z_centred)[k]|^2
//   sqnorm[t] (T)      sum over columns of the squared centred value
//   direct[tau]        exact sum of squared lag-tau differences of the raw values, 1<=tau<=n_direct
// Columns are centred as on the CPU: (x - x[0]) - mean_t(x - x[0]), in float64.
//
// Why a fused FFT of our own rather than cuFFT. cuFFT needs the zero-padded, centred, complex
// float64 signal in global memory (16 N bytes per column pair, N >= 2T) and writes as much back,
// and the power spectrum needs one more pass: about 16x the bytes of the float32 input per
// column pair, so it could not reach a useful fraction of the memory bandwidth. Here one thread
// block takes a column pair from the input (read once), centres it, runs the whole N-point
// float64 transform in shared memory (radix-16 passes in registers, the first pass fused with
// centring and the zero padding, the last with the power accumulation) and only the small
// per-block accumulators ever go back to global memory. Output order stays bit-reversed: only
// sum_k |Z_k|^2 is needed, and the permutation is undone once, on the accumulator. (cuFFT is also
// not part of every toolkit install, e.g. this project's CI image.)
//
// Shared memory per block: N complex doubles (XOR-swizzled to avoid bank conflicts), N power
// doubles and T sqnorm doubles: 28 N bytes at most, so N <= 8192 (T <= 4096) fits an H100's
// 227 KiB. Longer trajectories use the same code on a per-block workspace in global memory.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "fractaldiff/hd_common.hpp"

namespace fractaldiff {
namespace cuda {
namespace kern {

constexpr int kMsdThreads = 512;
constexpr int kMaxDirect = 16;

// ---- complex helpers ------------------------------------------------------------------------

__device__ __forceinline__ double2 cadd(double2 a, double2 b) {
  return make_double2(a.x + b.x, a.y + b.y);
}
__device__ __forceinline__ double2 csub(double2 a, double2 b) {
  return make_double2(a.x - b.x, a.y - b.y);
}
__device__ __forceinline__ double2 cmul(double2 a, double2 b) {
  return make_double2(fma(a.x, b.x, -a.y * b.y), fma(a.x, b.y, a.y * b.x));
}
__device__ __forceinline__ double cabs2(double2 a) { return fma(a.x, a.x, a.y * a.y); }

/// cos(2 pi k / 16) for k in [0, 16).
__host__ __device__ constexpr double cos16(int k) {
  constexpr double c1 = 0.92387953251128675613, c2 = 0.70710678118654752440,
                   c3 = 0.38268343236508977173;
  return k == 0    ? 1.0
         : k == 1  ? c1
         : k == 2  ? c2
         : k == 3  ? c3
         : k == 4  ? 0.0
         : k == 5  ? -c3
         : k == 6  ? -c2
         : k == 7  ? -c1
         : k == 8  ? -1.0
         : k == 9  ? -c1
         : k == 10 ? -c2
         : k == 11 ? -c3
         : k == 12 ? 0.0
         : k == 13 ? c3
         : k == 14 ? c2
                   : c1;
}
__host__ __device__ constexpr double sin16(int k) { return cos16((k + 12) & 15); }

/// a * W_16^k, W_16 = exp(-2 pi i / 16); k is a compile-time constant after unrolling, so the
/// branches fold away and multiplications by 1, -i, -1, i cost nothing.
__device__ __forceinline__ double2 mul_w16(double2 a, int k) {
  k &= 15;
  if (k == 0) return a;
  if (k == 4) return make_double2(a.y, -a.x);
  if (k == 8) return make_double2(-a.x, -a.y);
  if (k == 12) return make_double2(-a.y, a.x);
  return cmul(a, make_double2(cos16(k), -sin16(k)));
}

/// Reverse the low `bits` (<= 4) bits of i; loop free, so it folds to a constant when i is one.
__host__ __device__ constexpr int brev_small(int i, int bits) {
  return (((i & 1) << 3) | ((i & 2) << 1) | ((i & 4) >> 1) | ((i & 8) >> 3)) >> (4 - bits);
}

/// One radix-2 DIF stage of sub-block size SIZE over the R registers, then the smaller stages
/// (template recursion: every index is a compile-time constant, so v stays in registers).
template <int R, int SIZE>
struct DifStages {
  __device__ __forceinline__ static void run(double2 (&v)[R]) {
#pragma unroll
    for (int b = 0; b < R; b += SIZE) {
#pragma unroll
      for (int jj = 0; jj < SIZE / 2; ++jj) {
        const double2 u = v[b + jj], w = v[b + jj + SIZE / 2];
        v[b + jj] = cadd(u, w);
        v[b + jj + SIZE / 2] = mul_w16(csub(u, w), jj * (16 / SIZE));
      }
    }
    DifStages<R, SIZE / 2>::run(v);
  }
};
template <int R>
struct DifStages<R, 1> {
  __device__ __forceinline__ static void run(double2 (&)[R]) {}
};

/// In-register R-point DIF DFT; afterwards v[i] holds output bitrev(i).
template <int R>
__device__ __forceinline__ void dft_dif(double2 (&v)[R]) {
  DifStages<R, R>::run(v);
}

/// XOR swizzle of the complex buffer: rows of 8 slots (128 bytes) are permuted by bits 4..6 so
/// that the radix-16 passes' strided accesses hit distinct banks.
__device__ __forceinline__ int64_t sw(int64_t i) { return i ^ ((i >> 4) & 7); }

template <class S>
__device__ __forceinline__ double ld(const S* x, int64_t i) {
  return static_cast<double>(x[i]);
}

template <class T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int o = 16; o > 0; o /= 2) v += __shfl_down_sync(0xffffffffu, v, o);
  return v;
}

/// Sum of one double over the block (result valid in every thread). red: >= 32 doubles of
/// shared scratch. Contains two barriers.
__device__ __forceinline__ double block_sum(double v, double* red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
  v = warp_sum(v);
  if (lane == 0) red[warp] = v;
  __syncthreads();
  double s = 0.0;
  for (int w = 0; w < nw; ++w) s += red[w];  // same order in every thread: same value
  __syncthreads();
  return s;
}

/// One FFT pass of radix R = 2^r over sub-blocks of size m (M = m / R apart). The first pass
/// reads the raw pair, centres it, adds the squared norms and treats slots >= T as the zero
/// padding; the last pass (M == 1) adds |Z|^2 into pw instead of storing.
template <int R>
__device__ __forceinline__ void fft_pass(double2* buf, double* pw, double* sq, int64_t N,
                                         int64_t m, const double2* __restrict__ tw, bool first,
                                         bool last, int64_t T, double2 f, double2 mean) {
  constexpr int r = (R == 2) ? 1 : (R == 4) ? 2 : (R == 8) ? 3 : 4;
  const int64_t M = m / R;
  const int log_m_small = hd::ilog2(M);
  const int64_t n_groups = N / R;
  const int64_t scale = N / m;  // W_m^j = W_N^(j * scale)
  for (int64_t g = threadIdx.x; g < n_groups; g += blockDim.x) {
    const int64_t b = g >> log_m_small, j = g & (M - 1);
    const int64_t base = b * m + j;
    double2 v[R];
#pragma unroll
    for (int l = 0; l < R; ++l) {
      const int64_t idx = base + l * M;
      if (first) {
        double2 c = make_double2(0.0, 0.0);
        if (idx < T) {
          const double2 raw = buf[sw(idx)];
          c = make_double2((raw.x - f.x) - mean.x, (raw.y - f.y) - mean.y);
          sq[idx] += cabs2(c);
        }
        v[l] = c;
      } else {
        v[l] = buf[sw(idx)];
      }
    }
    dft_dif<R>(v);
    if (!last) {
      if (j != 0) {
        double2 p[R];
        p[1] = tw[j * scale];
#pragma unroll
        for (int k = 2; k < R; ++k)
          p[k] = (k & 1) ? cmul(p[k - 1], p[1]) : cmul(p[k / 2], p[k / 2]);
#pragma unroll
        for (int i = 1; i < R; ++i) v[i] = cmul(v[i], p[brev_small(i, r)]);
      }
#pragma unroll
      for (int i = 0; i < R; ++i) buf[sw(base + i * M)] = v[i];
    } else {
      // M == 1: slot g*R + i holds frequency bitrev(g*R + i); stored transposed (conflict free)
#pragma unroll
      for (int i = 0; i < R; ++i) pw[i * n_groups + g] += cabs2(v[i]);
    }
  }
}

struct MsdArgs {
  const void* x;
  int64_t T, D, rs, cs;  // rows, columns, strides in elements
  int64_t N;             // FFT length
  int log_n;
  int n_direct;
  const double2* tw;  // W_N^e, e < N/2
  double* part;       // per block: N (power, slot order) + T (sqnorm) + kMaxDirect + 1 (direct)
  int64_t part_stride;
  double2* gwork;  // global workspace when the buffers do not fit shared memory
  int64_t gwork_stride;  // bytes per block
  int* status;
};

/// Fused all-lag MSD fold; see the file comment. One block per column pair at a time (grid
/// stride over pairs); KD = window of the exact small-lag pass (>= n_direct).
template <class S, int KD, bool kSmem>
__global__ void __launch_bounds__(kMsdThreads, 1) msd_fft_kernel(MsdArgs a) {
  extern __shared__ double2 smem_raw[];
  __shared__ double red[2][32];
  const int64_t T = a.T, N = a.N;
  double2* buf;
  double* pw;
  double* sq;
  if (kSmem) {
    buf = reinterpret_cast<double2*>(smem_raw);
  } else {
    buf = reinterpret_cast<double2*>(reinterpret_cast<char*>(a.gwork) +
                                     blockIdx.x * a.gwork_stride);
  }
  pw = reinterpret_cast<double*>(buf + N);
  sq = pw + N;
  const S* x = static_cast<const S*>(a.x);
  for (int64_t i = threadIdx.x; i < N; i += blockDim.x) pw[i] = 0.0;
  for (int64_t i = threadIdx.x; i < T; i += blockDim.x) sq[i] = 0.0;
  double dacc[KD + 1];
#pragma unroll
  for (int k = 0; k <= KD; ++k) dacc[k] = 0.0;
  bool bad = false;
  const int64_t n_pairs = (a.D + 1) / 2;
  const int64_t chunk = (T + blockDim.x - 1) / blockDim.x;
  const int nd = a.n_direct;
  // the pass plan of hd::fft_plan, without a run-time indexed array (which would live in local
  // memory): the remainder radix 2^rem first, then radix-16 passes
  const int rem = a.log_n % 4, n_pass = (rem ? 1 : 0) + a.log_n / 4;

  for (int64_t p = blockIdx.x; p < n_pairs; p += gridDim.x) {
    const int64_t c0 = 2 * p, c1 = 2 * p + 1;
    const bool has1 = c1 < a.D;
    __syncthreads();  // the previous pair's last pass is done with buf
    // unrolled so that several rows' loads are in flight at once (the loads do not alias buf)
#pragma unroll 4
    for (int64_t t = threadIdx.x; t < T; t += blockDim.x) {
      const int64_t off = t * a.rs;
      const double re = ld(x, off + c0 * a.cs);
      const double im = has1 ? ld(x, off + c1 * a.cs) : 0.0;
      buf[sw(t)] = make_double2(re, im);
    }
    __syncthreads();
    const double2 f = buf[sw(0)];
    // offsets from the first row, and exact sums of squared small-lag differences (raw values)
    double sx = 0.0, sy = 0.0;
    {
      const int64_t t0 = threadIdx.x * chunk, t1 = min(T, t0 + chunk);
      if (t0 < t1) {
        double2 win[KD + 1];
#pragma unroll
        for (int i = 0; i <= KD; ++i)
          win[i] = (t0 + i < T) ? buf[sw(t0 + i)] : make_double2(0.0, 0.0);
        for (int64_t t = t0; t < t1; ++t) {
          const double2 v = win[0];
          sx += v.x - f.x;
          sy += v.y - f.y;
#pragma unroll
          for (int tau = 1; tau <= KD; ++tau) {
            if (tau <= nd && t + tau < T) {
              const double2 d = csub(win[tau], v);
              dacc[tau] += cabs2(d);
            }
          }
#pragma unroll
          for (int i = 0; i < KD; ++i) win[i] = win[i + 1];
          win[KD] = (t + KD + 1 < T) ? buf[sw(t + KD + 1)] : make_double2(0.0, 0.0);
        }
      }
    }
    sx = block_sum(sx, red[0]);
    sy = block_sum(sy, red[1]);
    if (!isfinite(sx + sy + f.x + f.y)) bad = true;
    const double2 mean = make_double2(sx / static_cast<double>(T), sy / static_cast<double>(T));
    // the block_sum barriers also separate the small-lag reads from the first pass's writes
    int64_t m = N;
    for (int ps = 0; ps < n_pass; ++ps) {
      const bool first = ps == 0, last = ps == n_pass - 1;
      if (!first) __syncthreads();
      switch ((ps == 0 && rem) ? rem : 4) {
        case 1: fft_pass<2>(buf, pw, sq, N, m, a.tw, first, last, T, f, mean); m /= 2; break;
        case 2: fft_pass<4>(buf, pw, sq, N, m, a.tw, first, last, T, f, mean); m /= 4; break;
        case 3: fft_pass<8>(buf, pw, sq, N, m, a.tw, first, last, T, f, mean); m /= 8; break;
        default: fft_pass<16>(buf, pw, sq, N, m, a.tw, first, last, T, f, mean); m /= 16; break;
      }
    }
  }
  __syncthreads();
  // per-block partials: power in slot order, sqnorm, direct sums
  double* out = a.part + blockIdx.x * a.part_stride;
  const int r_last = (n_pass == 1 && rem) ? rem : 4;
  const int64_t R = int64_t(1) << r_last, n_groups = N / R;
  for (int64_t s = threadIdx.x; s < N; s += blockDim.x) out[s] = pw[(s & (R - 1)) * n_groups + (s >> r_last)];
  for (int64_t t = threadIdx.x; t < T; t += blockDim.x) out[N + t] = sq[t];
  for (int k = 0; k <= kMaxDirect; ++k) {
    double v = 0.0;
#pragma unroll
    for (int kk = 1; kk <= KD; ++kk)
      if (kk == k) v = dacc[kk];
    v = block_sum(v, red[0]);
    if (threadIdx.x == 0) out[N + T + k] = v;
  }
  if (bad) atomicOr(a.status, 1);
}

/// acc[i] += sum over blocks b (in order) of part[b][src(i)], src = bit reversal for the power
/// entries (slot order -> natural frequency order), identity for the rest. Deterministic.
__global__ void reduce_partials_kernel(const double* __restrict__ part, int64_t stride,
                                       int n_blocks, int64_t n_bitrev, int log_n, int64_t n,
                                       double* acc) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t src = i < n_bitrev ? hd::bit_reverse(i, log_n) : i;
    double s = 0.0;
    for (int b = 0; b < n_blocks; ++b) s += part[b * stride + src];
    acc[i] += s;
  }
}

// ---- selected lags -----------------------------------------------------------------------------

constexpr int kLagThreads = 256;

/// part[l * gridDim.x + blockIdx.x] = sum over this block's columns and all t of
/// (x[t+lag_l] - x[t])^2. blockIdx.y = lag index. One column per thread (coalesced in row-major
/// data), grid-stride over column chunks. The first lag's blocks also read every row so that a
/// NaN/Inf anywhere is reported.
template <class S>
__global__ void __launch_bounds__(kLagThreads) lags_kernel(const S* __restrict__ x, int64_t T,
                                                           int64_t D, int64_t rs, int64_t cs,
                                                           const int64_t* __restrict__ lags,
                                                           double* part, int* status) {
  __shared__ double red[32];
  const int64_t lag = lags[blockIdx.y];
  double s = 0.0, chk = 0.0;
  for (int64_t d = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; d < D;
       d += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const S* col = x + d * cs;
    if (blockIdx.y == 0) {
      for (int64_t t = 0; t < T; ++t) chk += ld(col, t * rs);
      chk -= chk;  // NaN for NaN/Inf input, or overflow to Inf
    }
    double s0 = 0.0, s1 = 0.0;
    int64_t t = 0;
    for (; t + 1 < T - lag; t += 2) {
      const double a0 = ld(col, (t + lag) * rs) - ld(col, t * rs);
      const double a1 = ld(col, (t + 1 + lag) * rs) - ld(col, (t + 1) * rs);
      s0 = fma(a0, a0, s0);
      s1 = fma(a1, a1, s1);
    }
    if (t < T - lag) {
      const double a0 = ld(col, (t + lag) * rs) - ld(col, t * rs);
      s0 = fma(a0, a0, s0);
    }
    s += s0 + s1;
  }
  s = block_sum(s, red);
  if (threadIdx.x == 0) part[blockIdx.y * static_cast<int64_t>(gridDim.x) + blockIdx.x] = s;
  if (blockIdx.y == 0 && !(chk == 0.0)) atomicOr(status, 1);
}

/// acc[l] += sum_b part[l * nb + b] (in order).
__global__ void reduce_rows_kernel(const double* __restrict__ part, int64_t n_rows, int nb,
                                   double* acc) {
  for (int64_t l = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; l < n_rows;
       l += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    double s = 0.0;
    for (int b = 0; b < nb; ++b) s += part[l * nb + b];
    acc[l] += s;
  }
}

// ---- displacement ------------------------------------------------------------------------------

constexpr int kDispThreads = 256;
constexpr int kDispRows = 64;  ///< rows per block (blockIdx.y)

/// part[t * gridDim.x + blockIdx.x] = sum over this block's columns of (x[t] - x[ref])^2 for the
/// kDispRows rows of blockIdx.y. Per-warp row sums in shared memory, added in warp order.
template <class S>
__global__ void __launch_bounds__(kDispThreads) displacement_kernel(const S* __restrict__ x,
                                                                    int64_t T, int64_t D,
                                                                    int64_t rs, int64_t cs,
                                                                    int64_t ref, int64_t t_base,
                                                                    double* part) {
  __shared__ double wsum[kDispThreads / 32][kDispRows];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t t0 = t_base + blockIdx.y * static_cast<int64_t>(kDispRows);
  const int nr = static_cast<int>(T - t0 < kDispRows ? T - t0 : kDispRows);
  for (int i = lane; i < kDispRows; i += 32) wsum[warp][i] = 0.0;
  for (int64_t d0 = blockIdx.x * static_cast<int64_t>(blockDim.x);
       d0 < D; d0 += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t d = d0 + threadIdx.x;
    const bool ok = d < D;
    const S* col = x + (ok ? d : 0) * cs;
    const double r = ok ? ld(col, ref * rs) : 0.0;
    for (int i = 0; i < nr; ++i) {
      double v = 0.0;
      if (ok) {
        const double e = ld(col, (t0 + i) * rs) - r;
        v = e * e;
      }
      v = warp_sum(v);
      if (lane == 0) wsum[warp][i] += v;
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < nr; i += blockDim.x) {
    double s = 0.0;
    for (int w = 0; w < kDispThreads / 32; ++w) s += wsum[w][i];
    part[(t0 + i) * static_cast<int64_t>(gridDim.x) + blockIdx.x] = s;
  }
}

// ---- self-test ------------------------------------------------------------------------------

__global__ void poison_kernel(double* p, int64_t n, double v) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    p[i] = v;
}

}  // namespace kern
}  // namespace cuda
}  // namespace fractaldiff
