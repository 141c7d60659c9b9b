// fractaldiff: box-counting kernels for one instruction-set level.
//
// Compiled once per SIMD level inside namespace FD_ARCH_NS, like msd_kernels.hpp (whose generic
// helpers this header reuses); the same rules hold: no std:: templates, 64-bit sizes.
//
// Quantization. For column d with origin o_d (computed by the caller as min_d - u_d, u_d a
// random offset uniform over the coarsest box, see boxcount.py), every value is quantized once:
//   q = trunc((x - o_d) * inv_eps0)        (float64 arithmetic, in exactly this order),
// which is floor() because x - o_d >= 0. q must lie in [0, 2^31): the caller chooses eps0 so,
// and the kernel reports kOutOfRange otherwise. Coarser dyadic scales are q >> k (floor division
// by 2^k of a non-negative integer), so all n_scales scales come from one pass over the data.
//
// Box ids. The box of snapshot t at scale k is the vector (q_{t,d} >> k)_d. Its id is a pair of
// sums mod 2^64 over the columns,
//   id1 = sum_d a_d * (q_{t,d} >> k),   id2 = sum_d b_d * (q_{t,d} >> k)   (mod 2^64),
// with a_d, b_d independent uniformly random 64-bit keys (a SplitMix64 hash of the key seed and
// the global column index d). Sums commute, so ids computed over column blocks, threads or
// machines add up to the same value, bit for bit.
//
// Collision probability (why a linear hash is enough). Two different boxes differ by a non-zero
// integer vector delta with |delta_d| < 2^31. Their ids collide iff sum_d a_d delta_d == 0 and
// sum_d b_d delta_d == 0 (mod 2^64). Over the random keys, sum_d a_d delta_d is uniform over the
// multiples of 2^v, v = min over d of the 2-adic valuation of the non-zero delta_d (v <= 30), so
// one sum collides with probability 2^(v-64) and the pair of independent sums with 2^(2v-128):
// at most 2^-68 for any pair of distinct boxes, and exactly 2^-128 when the boxes differ by an odd
// number of boxes along some axis (the typical case). A union bound over all pairs and scales
// gives P(any collision) <= n_scales * T^2 / 2 * 2^-68, below 1e-9 for T = 10^5, 16 scales.
// This is a proven bound (the keys are the only randomness), unlike a bound that assumes a
// mixing function behaves as a random oracle, and it costs 4 32x32->64-bit multiplies per
// element and scale, which keeps the kernel near memory speed.
#pragma once

#include "fractaldiff/hd_common.hpp"
#include "fractaldiff/msd_kernels.hpp"

#if defined(__SSE2__) || defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace fractaldiff {
namespace FD_ARCH_NS {

typedef uint64_t vu __attribute__((vector_size(FD_VEC_BYTES)));         ///< kW uint64 lanes
typedef int64_t vl __attribute__((vector_size(FD_VEC_BYTES)));          ///< kW int64 lanes
typedef int32_t vih __attribute__((vector_size(FD_VEC_BYTES / 2)));     ///< kW int32 lanes
typedef uint32_t vuh __attribute__((vector_size(FD_VEC_BYTES / 2)));    ///< kW uint32 lanes

/// Columns per chunk of the box-id kernel: keys and quantized values of a chunk stay in L1.
constexpr int64_t kBoxChunk = 512;
/// Largest quantized coordinate (exclusive): the one definition in hd_common.hpp.
using hd::kBoxQLimit;

/// Key of global column d for sum `which` (0 or 1): the one definition shared with the CUDA
/// kernels (hd_common.hpp), so box ids agree bit for bit across devices.
using hd::box_key;

/// Products of the low 32 bits of each 64-bit lane (pmuludq).
__attribute__((always_inline)) inline vu mul_lo32(vu a, vu b) {
#if FD_VEC_BYTES == 64 && defined(__AVX512F__)
  return (vu)_mm512_mul_epu32((__m512i)a, (__m512i)b);
#elif FD_VEC_BYTES == 32 && defined(__AVX2__)
  return (vu)_mm256_mul_epu32((__m256i)a, (__m256i)b);
#elif FD_VEC_BYTES == 16 && defined(__SSE2__)
  return (vu)_mm_mul_epu32((__m128i)a, (__m128i)b);
#else
  const vu m = vu{} + 0xFFFFFFFFULL;
  return (a & m) * (b & m);
#endif
}

/// Threads in the current OpenMP team (1 outside a parallel region or without OpenMP).
inline int team_size() {
#ifdef _OPENMP
  return omp_get_num_threads();
#else
  return 1;
#endif
}

__attribute__((always_inline)) inline uint64_t hsum_u(vu v) {
  uint64_t s = 0;
  for (int i = 0; i < kW; ++i) s += v[i];
  return s;
}

/// Load kW values of row t from column c (n valid columns, the rest 0) as doubles.
template <class S>
__attribute__((always_inline)) inline vd load_lanes(const S* x, int64_t rs, int64_t cs, int64_t t,
                                                    int64_t c, int64_t n) {
  const S* p = x + t * rs + c * cs;
  vd out;
  if (n == kW && cs == 1) {
    if constexpr (sizeof(S) == 4) {
      vfh a;
      std::memcpy(&a, p, sizeof(a));
      out = __builtin_convertvector(a, vd);
    } else {
      std::memcpy(&out, p, sizeof(vd));
    }
  } else {
    alignas(FD_VEC_BYTES) double tmp[kW] = {0};
    for (int64_t i = 0; i < n; ++i) tmp[i] = static_cast<double>(p[i * cs]);
    std::memcpy(&out, tmp, sizeof(vd));
  }
  return out;
}

/// Per-column minimum and maximum over all rows of a block; mins/maxs (n_cols each) are
/// overwritten. Returns kNonFinite when the block holds NaN or +-Inf.
template <class S>
int box_minmax_impl(const StridedMatrix& m, double* mins, double* maxs, int n_threads) {
  const S* x = static_cast<const S*>(m.data);
  const int64_t T = m.n_rows, B = m.n_cols, rs = m.row_stride, cs = m.col_stride;
  const int nth = resolve_threads(n_threads);
  const int64_t n_chunks = (B + kBoxChunk - 1) / kBoxChunk;
  int status = kOk;
  // parallel over column chunks: every column is reduced in the same order whatever n_threads
#pragma omp parallel for schedule(static) num_threads(nth)
  for (int64_t ch = 0; ch < n_chunks; ++ch) {
    const int64_t c0 = ch * kBoxChunk, nc = imin(kBoxChunk, B - c0);
    double lo[kBoxChunk], hi[kBoxChunk], ck[kBoxChunk];
    for (int64_t j = 0; j < nc; ++j) ck[j] = 0.0;
    for (int64_t j = 0; j < nc; ++j) lo[j] = hi[j] = static_cast<double>(x[c0 * cs + j * cs]);
    for (int64_t t = 0; t < T; ++t) {
      const S* row = x + t * rs + c0 * cs;
      if (cs == 1) {  // contiguous rows: a loop the compiler vectorizes
        for (int64_t j = 0; j < nc; ++j) {
          const double v = static_cast<double>(row[j]);
          lo[j] = v < lo[j] ? v : lo[j];
          hi[j] = v > hi[j] ? v : hi[j];
          ck[j] += v - v;  // NaN for NaN/Inf (per column: vectorizable)
        }
      } else {
        for (int64_t j = 0; j < nc; ++j) {
          const double v = static_cast<double>(row[j * cs]);
          lo[j] = v < lo[j] ? v : lo[j];
          hi[j] = v > hi[j] ? v : hi[j];
          ck[j] += v - v;
        }
      }
    }
    bool finite = true;
    for (int64_t j = 0; j < nc; ++j) {
      mins[c0 + j] = lo[j];
      maxs[c0 + j] = hi[j];
      finite &= ck[j] == 0.0;
    }
    if (!finite) {
#pragma omp atomic write
      status = kNonFinite;
    }
  }
  return status;
}

/// Fold a column block into the box ids: ids[(t * n_scales + k) * 2 + s] += sum_d key_s(d) *
/// (q_{t,d} >> k) (mod 2^64); see the file comment. origin has n_cols entries; col_start is the
/// global index of the block's first column (it selects the keys).
template <class S>
int box_ids_impl(const StridedMatrix& m, int64_t col_start, const double* origin,
                 double inv_eps0, int n_scales, uint64_t key_seed, uint64_t* ids, int n_threads) {
  const S* x = static_cast<const S*>(m.data);
  const int64_t T = m.n_rows, B = m.n_cols, rs = m.row_stride, cs = m.col_stride;
  const int64_t Bp = (B + kW - 1) / kW * kW;
  // keys split into 32-bit halves (a = alo + 2^32 ahi), origins; zero in the padding lanes
  Scratch kmem(sizeof(uint64_t) * 4 * Bp), omem(sizeof(double) * Bp);
  if (!kmem.ok() || !omem.ok()) return kOutOfMemory;
  uint64_t* alo = kmem.as<uint64_t>();
  uint64_t* ahi = alo + Bp;
  uint64_t* blo = ahi + Bp;
  uint64_t* bhi = blo + Bp;
  double* org = omem.as<double>();
  for (int64_t j = 0; j < B; ++j) {
    const uint64_t a = box_key(key_seed, col_start + j, 0), b = box_key(key_seed, col_start + j, 1);
    alo[j] = a & 0xFFFFFFFFULL;
    ahi[j] = a >> 32;
    blo[j] = b & 0xFFFFFFFFULL;
    bhi[j] = b >> 32;
    org[j] = origin[j];
  }
  const int nth = resolve_threads(n_threads);
  int status = kOk;

#pragma omp parallel num_threads(nth)
  {
    // rows are split statically, so each id is written by one thread: no reduction needed
    const int tid = thread_id(), nt = team_size();
    const int64_t t0 = T * tid / nt, t1 = T * (tid + 1) / nt;
    Scratch qmem(sizeof(vu) * (kBoxChunk / kW));
    vu* qv = qmem.as<vu>();
    vl bad = vl{};
    if (!qmem.ok()) {
#pragma omp atomic write
      status = kOutOfMemory;
    } else {
      const vd lim = splat(kBoxQLimit), zero = splat(0.0), inv = splat(inv_eps0);
      for (int64_t c0 = 0; c0 < B; c0 += kBoxChunk) {
        const int64_t nc = imin(kBoxChunk, B - c0);
        const int64_t ng = (nc + kW - 1) / kW;
        for (int64_t t = t0; t < t1; ++t) {
          for (int64_t g = 0; g < ng; ++g) {
            const int64_t c = c0 + g * kW;
            vd o;
            std::memcpy(&o, org + c, sizeof(vd));
            vd y = (load_lanes(x, rs, cs, t, c, imin(kW, B - c)) - o) * inv;
            const vl ok = (y >= zero) & (y < lim);  // false for NaN
            bad |= ~ok;
            y = (vd)((vl)y & ok);
            const vuh q32 = (vuh)__builtin_convertvector(y, vih);
            qv[g] = __builtin_convertvector(q32, vu);
          }
          uint64_t* out = ids + t * n_scales * 2;
          for (int k = 0; k < n_scales; ++k) {
            vu s1 = vu{}, s2 = vu{};
            for (int64_t g = 0; g < ng; ++g) {
              const int64_t c = c0 + g * kW;
              vu a0, a1, b0, b1;
              std::memcpy(&a0, alo + c, sizeof(vu));
              std::memcpy(&a1, ahi + c, sizeof(vu));
              std::memcpy(&b0, blo + c, sizeof(vu));
              std::memcpy(&b1, bhi + c, sizeof(vu));
              const vu q = qv[g] >> k;
              s1 += mul_lo32(a0, q) + (mul_lo32(a1, q) << 32);
              s2 += mul_lo32(b0, q) + (mul_lo32(b1, q) << 32);
            }
            out[2 * k] += hsum_u(s1);
            out[2 * k + 1] += hsum_u(s2);
          }
        }
      }
      bool any_bad = false;
      for (int i = 0; i < kW; ++i) any_bad |= bad[i] != 0;
      if (any_bad) {
#pragma omp atomic write
        status = kOutOfRange;
      }
    }
  }
  return status;
}

}  // namespace FD_ARCH_NS
}  // namespace fractaldiff
