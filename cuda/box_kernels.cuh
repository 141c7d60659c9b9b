// fractaldiff CUDA kernels: box counting (per-column min/max, box-id sums).
//
// The box ids are those of the CPU kernel (cpp/include/fractaldiff/box_kernels.hpp), bit for bit:
//   q = trunc((x - o_d) * inv_eps0)   float64, in exactly this order (no contraction is possible:
//                                      it is a subtraction followed by a multiplication, and the
//                                      __dsub_rn/__dmul_rn intrinsics pin the rounding anyway),
//   ids[t, k, s] += sum_d key_s(col_start + d) * (q_{t,d} >> k)   (mod 2^64), s = 0, 1,
// with key_s the one definition in hd_common.hpp (hd::box_key). Sums mod 2^64 commute, so the
// order in which threads, blocks and column blocks add them does not matter: CPU and GPU partial
// ids add up to the same bits. A quantized value outside [0, 2^31) (or NaN) sets the status flag
// (the CPU kernel's kOutOfRange) and counts as 0.
//
// Layout of box_ids_kernel. A block owns kBoxRows snapshots (one thread each) and a range of
// columns. Per tile of kBoxTile columns the block loads the (rows x columns) values coalesced
// (a warp reads 32 adjacent columns of one row), quantizes each value once and stores q
// transposed in shared memory; then every thread walks the tile along its own row, keeping all
// n_scales x 2 sums in registers (no reduction between threads is needed: a row's sum over the
// block's columns lives in one thread). The keys of kBoxKeyChunk columns are computed once per
// block into shared memory and read as broadcasts. At the end of its column range a thread adds
// its sums into the global ids with 64-bit atomics (wrapping, as the sums are defined): with
// thousands of columns per block that is a few atomics per thousand elements.
//
// Cost per element and scale: one shift, and per key one 32x32->64-bit multiply-add into the
// 64-bit sum plus one 32-bit multiply-add into its high word (a = alo + 2^32 ahi, q < 2^31:
// a * q = alo * q + 2^32 (ahi * q mod 2^32) mod 2^64), i.e. 5 integer instructions. This kernel
// is integer-multiply bound, not DRAM bound: 16 scales are ~80 multiply-adds per element against
// 4 bytes of float32. See benchmarks/GPU_NOTES.md for the arithmetic against the target and the
// next step (bit-plane sums, which need ~1 multiply per element for all scales).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "fractaldiff/hd_common.hpp"

namespace fractaldiff {
namespace cuda {
namespace kern {

constexpr int kBoxRows = 128;       ///< snapshots per block (one thread each)
constexpr int kBoxTile = 32;        ///< columns per shared-memory tile
constexpr int kBoxKeyChunk = 256;   ///< columns whose keys are staged in shared memory at once
using hd::kBoxQLimit;  ///< 2^31, exclusive bound of q (hd_common.hpp, as on the CPU)

/// Arguments of box_ids_kernel (by value; 64-bit sizes and strides in elements).
struct BoxArgs {
  const void* x = nullptr;
  int64_t T = 0, B = 0, rs = 0, cs = 0;
  int64_t row_base = 0;         ///< first snapshot of this launch (launches loop over rows)
  const double* origin = nullptr;  ///< B origins o_d of this launch's columns
  int64_t col_start = 0;        ///< global index of column 0 (selects the keys)
  double inv_eps0 = 1.0;
  int n_scales = 1;
  uint64_t key_seed = 0;
  int64_t cols_per_block = 0;   ///< multiple of kBoxKeyChunk
  unsigned long long* ids = nullptr;  ///< (T, n_scales, 2), wrapping sums
  int* status = nullptr;        ///< set to 1 when a q left [0, 2^31)
};

template <class S>
__device__ __forceinline__ double load_as_double(const S* p) {
  return static_cast<double>(__ldg(p));
}

/// acc + a * u (mod 2^64) for a = lo + 2^32 hi and u < 2^32: one wide multiply-add and one
/// 32-bit multiply-add on the high word.
/// Written in PTX so that it is exactly mad.wide.u32 + mad.lo.u32 (IMAD.WIDE.U32 + IMAD), with
/// the high word updated in place (the register pair is split and re-joined for free).
__device__ __forceinline__ unsigned long long mac_key(unsigned long long acc, uint32_t lo,
                                                      uint32_t hi, uint32_t u) {
  asm("{\n\t"
      ".reg .u32 w0, w1;\n\t"
      "mad.wide.u32 %0, %1, %3, %0;\n\t"
      "mov.b64 {w0, w1}, %0;\n\t"
      "mad.lo.u32 w1, %2, %3, w1;\n\t"
      "mov.b64 %0, {w0, w1};\n\t"
      "}"
      : "+l"(acc)
      : "r"(lo), "r"(hi), "r"(u));
  return acc;
}

/// Box-id sums of one (rows x columns) range; NS >= n_scales sums per key are kept in
/// registers (the extra ones, for k >= n_scales, are computed and dropped).
template <class S, int NS>
__global__ void __launch_bounds__(kBoxRows) box_ids_kernel(BoxArgs a) {
  __shared__ uint32_t sq[kBoxTile][kBoxRows + 1];  // q transposed: [column][row], padded
  __shared__ uint4 skey[kBoxKeyChunk];             // (alo, ahi, blo, bhi) per column
  const S* __restrict__ x = static_cast<const S*>(a.x);
  const int tid = threadIdx.x;
  const int lane = tid & 31, warp = tid >> 5;
  constexpr int kWarps = kBoxRows / 32;
  const int64_t row0 = a.row_base + static_cast<int64_t>(blockIdx.y) * kBoxRows;
  const int64_t c_begin = static_cast<int64_t>(blockIdx.x) * a.cols_per_block;
  const int64_t c_end = c_begin + a.cols_per_block < a.B ? c_begin + a.cols_per_block : a.B;

  unsigned long long acc[2 * NS];
#pragma unroll
  for (int i = 0; i < 2 * NS; ++i) acc[i] = 0ULL;
  bool bad = false;

  for (int64_t k0 = c_begin; k0 < c_end; k0 += kBoxKeyChunk) {
    __syncthreads();  // the previous chunk's keys are no longer read
    for (int j = tid; j < kBoxKeyChunk; j += kBoxRows) {
      const int64_t d = a.col_start + k0 + j;
      const uint64_t ka = hd::box_key(a.key_seed, d, 0), kb = hd::box_key(a.key_seed, d, 1);
      skey[j] = make_uint4(static_cast<uint32_t>(ka), static_cast<uint32_t>(ka >> 32),
                           static_cast<uint32_t>(kb), static_cast<uint32_t>(kb >> 32));
    }
    const int64_t k1 = k0 + kBoxKeyChunk < c_end ? k0 + kBoxKeyChunk : c_end;
    for (int64_t c0 = k0; c0 < k1; c0 += kBoxTile) {
      __syncthreads();  // keys written; the previous tile of q is no longer read
      // load and quantize: lane = column, warps step over the rows
      {
        const int64_t c = c0 + lane;
        const bool col_ok = c < k1;
        const double o = col_ok ? a.origin[c] : 0.0;
        const S* colp = x + c * a.cs;
#pragma unroll 4
        for (int r = warp; r < kBoxRows; r += kWarps) {
          const int64_t t = row0 + r;
          uint32_t q = 0;
          if (col_ok && t < a.T) {
            const double y = __dmul_rn(__dsub_rn(load_as_double(colp + t * a.rs), o), a.inv_eps0);
            if (y >= 0.0 && y < kBoxQLimit) {
              q = static_cast<uint32_t>(__double2int_rz(y));
            } else {
              bad = true;  // also NaN
            }
          }
          sq[lane][r] = q;
        }
      }
      __syncthreads();
      // accumulate along this thread's row: all scales from one q
      const int n = static_cast<int>(k1 - c0 < kBoxTile ? k1 - c0 : kBoxTile);
      const int kofs = static_cast<int>(c0 - k0);
#pragma unroll 4
      for (int j = 0; j < n; ++j) {
        const uint32_t q = sq[j][tid];
        const uint4 kk = skey[kofs + j];
#pragma unroll
        for (int k = 0; k < NS; ++k) {
          const uint32_t u = q >> k;
          acc[2 * k] = mac_key(acc[2 * k], kk.x, kk.y, u);
          acc[2 * k + 1] = mac_key(acc[2 * k + 1], kk.z, kk.w, u);
        }
      }
    }
  }
  const int64_t t = row0 + tid;
  if (t < a.T && c_begin < c_end) {
    unsigned long long* out = a.ids + t * static_cast<int64_t>(a.n_scales) * 2;
#pragma unroll
    for (int k = 0; k < NS; ++k) {
      if (k < a.n_scales) {
        atomicAdd(out + 2 * k, acc[2 * k]);
        atomicAdd(out + 2 * k + 1, acc[2 * k + 1]);
      }
    }
  }
  if (bad) atomicExch(a.status, 1);
}

/// Per-column minimum and maximum over the T rows (thread per column, grid-stride); a column
/// holding NaN or +-Inf sets *status. Same comparisons as the CPU kernel.
template <class S>
__global__ void box_minmax_kernel(const S* __restrict__ x, int64_t T, int64_t B, int64_t rs,
                                  int64_t cs, double* __restrict__ mins,
                                  double* __restrict__ maxs, int* status) {
  for (int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; c < B;
       c += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const S* col = x + c * cs;
    double lo = load_as_double(col), hi = lo, ck = 0.0;
    int64_t t = 0;
    // four rows in flight per iteration
    for (; t + 4 <= T; t += 4) {
      const double v0 = load_as_double(col + t * rs), v1 = load_as_double(col + (t + 1) * rs),
                   v2 = load_as_double(col + (t + 2) * rs), v3 = load_as_double(col + (t + 3) * rs);
      lo = v0 < lo ? v0 : lo;
      hi = v0 > hi ? v0 : hi;
      lo = v1 < lo ? v1 : lo;
      hi = v1 > hi ? v1 : hi;
      lo = v2 < lo ? v2 : lo;
      hi = v2 > hi ? v2 : hi;
      lo = v3 < lo ? v3 : lo;
      hi = v3 > hi ? v3 : hi;
      ck += (v0 - v0) + (v1 - v1) + (v2 - v2) + (v3 - v3);
    }
    for (; t < T; ++t) {
      const double v = load_as_double(col + t * rs);
      lo = v < lo ? v : lo;
      hi = v > hi ? v : hi;
      ck += v - v;
    }
    mins[c] = lo;
    maxs[c] = hi;
    if (!(ck == 0.0)) atomicExch(status, 1);
  }
}

}  // namespace kern
}  // namespace cuda
}  // namespace fractaldiff
