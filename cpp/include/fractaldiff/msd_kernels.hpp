// fractaldiff: MSD and displacement kernels for one instruction-set level.
//
// This header is compiled once per SIMD level (baseline, AVX2, AVX-512, ...), each time inside its
// own namespace FD_ARCH_NS, and the level is chosen at run time (dispatch.cpp). Everything
// defined here must therefore live in that namespace and must not instantiate std:: templates
// (their out-of-line copies would be shared between levels by the linker).
//
// Layout. A "group" is 2W adjacent columns of the snapshot matrix, W = doubles per SIMD register
// of this level (8 for AVX-512, 4 for AVX2, 2 for SSE2/NEON). Its 2W real columns are packed into
// W complex signals z = a + i b (a = the first W columns, b = the next W); each complex signal is
// one SIMD lane. In the row-major [t][d] layout the 2W values of one group row are contiguous, so
// a group row is two full-width loads.
//
// All-lag MSD (Wiener-Khinchin). For centred columns x_d,
//   (T - tau) msd(tau) = sum_{t<T-tau} Q[t] + sum_{t>=tau} Q[t] - 2 S2(tau),
//   Q[t] = sum_d x_d[t]^2,  S2(tau) = sum_d sum_t x_d[t] x_d[t+tau] = IFFT(sum_d |FFT x_d|^2)[tau]
// with zero padding to N >= 2T-1. The kernel accumulates Q and the power spectrum summed over all
// columns (for packed pairs |A_k|^2 + |B_k|^2 = (|Z_k|^2 + |Z_{N-k}|^2)/2, so summing |Z_k|^2 and
// symmetrising once at the end is exact). One inverse FFT at the very end finishes the job.
// The smallest lags, where S1 and S2 cancel the most, are summed exactly by a direct pass on the
// raw values. All arithmetic is float64.
//
// FFT. Why a hand-written FFT: no permissively licensed FFT library is available as a build
// dependency, and none batches many short real transforms into SIMD lanes while summing only the
// power spectrum. This one is a radix-2/4 decimation-in-frequency transform, in place, with
// output left in bit-reversed order: only sum_k |Z_k|^2 is needed, so the permutation is undone
// once on the small accumulator rather than on every transform. The first radix-2 stage is fused
// with loading (its second input is the zero padding), recursion is depth first so that blocks
// become cache resident, and the power is accumulated right after the last stage of each leaf.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "fractaldiff/api.hpp"
#include "fractaldiff/hd_common.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

#ifndef FD_ARCH_NS
#define FD_ARCH_NS generic
#endif

namespace fractaldiff {
namespace FD_ARCH_NS {

#ifndef FD_VEC_BYTES
#define FD_VEC_BYTES 16
#endif
/// Complex lanes per vector (doubles per SIMD register of this level).
constexpr int kW = FD_VEC_BYTES / 8;
/// Real columns per group.
constexpr int64_t kCols = 2 * kW;
typedef double vd __attribute__((vector_size(FD_VEC_BYTES)));     ///< one lane per complex signal
typedef float vfh __attribute__((vector_size(FD_VEC_BYTES / 2)));  ///< kW floats (float32 loads)

/// One complex sample of kW signals (structure of arrays within).
struct alignas(FD_VEC_BYTES) cv {
  vd re;
  vd im;
};

constexpr int64_t kLeafSize = 16384 / FD_VEC_BYTES;  ///< leaf blocks (32 KiB) are finished in L1

__attribute__((always_inline)) inline vd splat(double x) { return vd{} + x; }

__attribute__((always_inline)) inline double hsum(vd v) {
  double s = 0.0;
  for (int i = 0; i < kW; ++i) s += v[i];
  return s;
}

/// True when every lane of v is finite.
__attribute__((always_inline)) inline bool all_finite(vd v) {
  vd z = v - v;  // NaN for NaN or +-Inf lanes, 0 otherwise
  for (int i = 0; i < kW; ++i)
    if (!(z[i] == 0.0)) return false;
  return true;
}

inline bool all_finite_array(const double* p, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (!__builtin_isfinite(p[i])) return false;
  return true;
}

using hd::bit_reverse;  // shared with the CUDA kernels (hd_common.hpp)
using hd::ilog2;

inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }

/// 64-byte aligned, zero-initialised scratch memory; nullptr on failure.
inline void* scratch_alloc(size_t bytes) {
  void* p = nullptr;
  if (bytes == 0) bytes = 64;
  bytes = (bytes + 63) & ~size_t(63);
  if (posix_memalign(&p, 64, bytes) != 0) return nullptr;
  std::memset(p, 0, bytes);
  return p;
}

/// Owns a scratch allocation (no std:: templates: see the note at the top of this file).
class Scratch {
 public:
  Scratch() = default;
  explicit Scratch(size_t bytes) : p_(scratch_alloc(bytes)) {}
  ~Scratch() { std::free(p_); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  template <class U>
  U* as() const { return static_cast<U*>(p_); }
  bool ok() const { return p_ != nullptr; }

 private:
  void* p_ = nullptr;
};

/// Load row t, columns d0 .. d0+nc-1 (nc <= kCols) of a strided matrix into kW + kW lanes;
/// missing columns are zero.
template <class S>
__attribute__((always_inline)) inline void load_group_row(const S* x, int64_t rs, int64_t cs,
                                                          int64_t t, int64_t d0, int64_t nc,
                                                          cv& out) {
  const S* p = x + t * rs + d0 * cs;
  if (nc == kCols && cs == 1) {
    if constexpr (sizeof(S) == 4) {
      vfh a, b;
      std::memcpy(&a, p, sizeof(a));
      std::memcpy(&b, p + kW, sizeof(b));
      out.re = __builtin_convertvector(a, vd);
      out.im = __builtin_convertvector(b, vd);
    } else {
      std::memcpy(&out.re, p, sizeof(vd));
      std::memcpy(&out.im, p + kW, sizeof(vd));
    }
  } else {
    alignas(FD_VEC_BYTES) double tmp[kCols] = {0};
    for (int64_t c = 0; c < nc; ++c) tmp[c] = static_cast<double>(p[c * cs]);
    std::memcpy(&out.re, tmp, sizeof(vd));
    std::memcpy(&out.im, tmp + kW, sizeof(vd));
  }
}

/// Twiddle factors for one transform length N: the fused first radix-2 stage (W_N^j, j < N/2)
/// and every radix-4 stage of block size M = N/2, N/8, ... (W_M^j, W_M^2j, W_M^3j, j < M/4).
struct Twiddles {
  int64_t n = 0;
  double* first = nullptr;      ///< 2 doubles per j (re, im)
  double* r4[64] = {nullptr};   ///< indexed by log2(M); 6 doubles per j
  Scratch mem;

  explicit Twiddles(int64_t nfft) : n(nfft), mem(bytes_needed(nfft)) {
    if (!mem.ok()) return;
    double* p = mem.as<double>();
    const double two_pi = 6.283185307179586476925286766559;
    const int64_t h = n / 2;
    first = p;
    for (int64_t j = 0; j < h; ++j) {
      double ang = two_pi * (static_cast<double>(j) / static_cast<double>(n));
      first[2 * j] = std::cos(ang);
      first[2 * j + 1] = -std::sin(ang);
    }
    p += 2 * h;
    for (int64_t m = h; m >= 4; m /= 4) {
      const int lg = ilog2(m);
      r4[lg] = p;
      const int64_t q = m / 4;
      for (int64_t j = 0; j < q; ++j) {
        for (int k = 1; k <= 3; ++k) {
          // exact index arithmetic: (k*j) mod m, then one rounding in the angle
          double ang = two_pi * (static_cast<double>((k * j) % m) / static_cast<double>(m));
          p[6 * j + 2 * (k - 1)] = std::cos(ang);
          p[6 * j + 2 * (k - 1) + 1] = -std::sin(ang);
        }
      }
      p += 6 * q;
    }
  }
  bool ok() const { return first != nullptr; }

  static size_t bytes_needed(int64_t nfft) {
    int64_t count = nfft;  // first stage: 2 * N/2
    for (int64_t m = nfft / 2; m >= 4; m /= 4) count += 6 * (m / 4);
    return static_cast<size_t>(count) * sizeof(double);
  }
};

__attribute__((always_inline)) inline void cmul(vd ar, vd ai, double wr, double wi, vd& outr,
                                                vd& outi) {
  outr = ar * wr - ai * wi;
  outi = ar * wi + ai * wr;
}

/// One radix-4 DIF butterfly (two merged radix-2 stages, so the output order stays bit-reversed).
/// Outputs: x0 <- s02+s13; x1 <- (s02-s13) W^2j; x2 <- (d02 - i d13) W^j; x3 <- (d02 + i d13) W^3j.
template <bool kTwiddle>
__attribute__((always_inline)) inline void butterfly4(cv* x0, cv* x1, cv* x2, cv* x3,
                                                      const double* w) {
  const vd a0r = x0->re, a0i = x0->im, a1r = x1->re, a1i = x1->im;
  const vd a2r = x2->re, a2i = x2->im, a3r = x3->re, a3i = x3->im;
  const vd s02r = a0r + a2r, s02i = a0i + a2i, d02r = a0r - a2r, d02i = a0i - a2i;
  const vd s13r = a1r + a3r, s13i = a1i + a3i, d13r = a1r - a3r, d13i = a1i - a3i;
  x0->re = s02r + s13r;
  x0->im = s02i + s13i;
  const vd t1r = s02r - s13r, t1i = s02i - s13i;
  const vd t2r = d02r + d13i, t2i = d02i - d13r;
  const vd t3r = d02r - d13i, t3i = d02i + d13r;
  if constexpr (kTwiddle) {
    cmul(t1r, t1i, w[2], w[3], x1->re, x1->im);
    cmul(t2r, t2i, w[0], w[1], x2->re, x2->im);
    cmul(t3r, t3i, w[4], w[5], x3->re, x3->im);
  } else {
    x1->re = t1r;
    x1->im = t1i;
    x2->re = t2r;
    x2->im = t2i;
    x3->re = t3r;
    x3->im = t3i;
  }
}

/// Radix-4 DIF stage of block size m over the n samples at a (n a multiple of m).
inline void radix4_stage(cv* a, int64_t n, int64_t m, const double* tw) {
  const int64_t q = m / 4;
  for (int64_t b = 0; b < n; b += m) {
    cv* x = a + b;
    butterfly4<false>(x, x + q, x + 2 * q, x + 3 * q, nullptr);
    for (int64_t j = 1; j < q; ++j)
      butterfly4<true>(x + j, x + j + q, x + j + 2 * q, x + j + 3 * q, tw + 6 * j);
  }
}

/// Finish a block of n <= kLeafSize samples (all remaining stages) and add |z|^2 to power.
inline void fft_leaf(cv* a, int64_t n, const Twiddles& tw, vd* power) {
  int64_t m = n;
  for (; m >= 8; m /= 4) {
    const int lg = ilog2(m);
    radix4_stage(a, n, m, tw.r4[lg]);
  }
  if (m == 4) {
    // last radix-4 stage (all twiddles 1), fused with the power accumulation
    for (int64_t b = 0; b < n; b += 4) {
      cv* x = a + b;
      butterfly4<false>(x, x + 1, x + 2, x + 3, nullptr);
      for (int k = 0; k < 4; ++k) power[b + k] += x[k].re * x[k].re + x[k].im * x[k].im;
    }
  } else if (m == 2) {
    for (int64_t b = 0; b < n; b += 2) {
      const vd ur = a[b].re, ui = a[b].im, vr = a[b + 1].re, vi = a[b + 1].im;
      const vd sr = ur + vr, si = ui + vi, dr = ur - vr, di = ui - vi;
      power[b] += sr * sr + si * si;
      power[b + 1] += dr * dr + di * di;
    }
  } else {  // n == 1
    power[0] += a[0].re * a[0].re + a[0].im * a[0].im;
  }
}

/// Depth-first DIF over a block of n samples (a power of two); power is indexed like a.
inline void fft_block(cv* a, int64_t n, const Twiddles& tw, vd* power) {
  if (n <= kLeafSize) {
    fft_leaf(a, n, tw, power);
    return;
  }
  const int lg = ilog2(n);
  radix4_stage(a, n, n, tw.r4[lg]);
  const int64_t q = n / 4;
  for (int k = 0; k < 4; ++k) fft_block(a + k * q, q, tw, power + k * q);
}



inline int resolve_threads(int n_threads) {
#ifdef _OPENMP
  return n_threads > 0 ? n_threads : omp_get_max_threads();
#else
  (void)n_threads;
  return 1;
#endif
}

inline int thread_id() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

/// All-lag MSD accumulator fold; see the file comment. power has nfft entries (natural order,
/// sum over columns of |Z_k|^2 for the packed signals), sqnorm has n_rows entries, direct has
/// n_direct + 1 entries (direct[tau] += sum_t sum_d (x[t+tau]-x[t])^2 for 1 <= tau <= n_direct).
template <class S>
int msd_fft_fold_impl(const StridedMatrix& m, int64_t nfft, double* power_out,
                      double* sqnorm_out, int64_t n_direct, double* direct_out, int n_threads) {
  const S* x = static_cast<const S*>(m.data);
  const int64_t T = m.n_rows, D = m.n_cols, rs = m.row_stride, cs = m.col_stride;
  const int64_t h = nfft / 2;
  const int64_t n_groups = (D + kCols - 1) / kCols;
  const int bits = ilog2(nfft);

  Twiddles tw(nfft);
  if (!tw.ok()) return kOutOfMemory;
  const int nth = resolve_threads(n_threads);
  // per-thread results, summed in thread order afterwards so results are reproducible
  const int64_t slot = nfft + T + (n_direct + 1);
  Scratch results(sizeof(double) * static_cast<size_t>(slot) * nth);
  if (!results.ok()) return kOutOfMemory;
  int status = kOk;

#pragma omp parallel num_threads(nth)
  {
    const int tid = thread_id();
    Scratch abuf(sizeof(cv) * nfft), pbuf(sizeof(vd) * nfft), qbuf(sizeof(vd) * T),
        dbuf(sizeof(vd) * (n_direct + 1));
    const bool ok = abuf.ok() && pbuf.ok() && qbuf.ok() && dbuf.ok();
    if (!ok) {
#pragma omp atomic write
      status = kOutOfMemory;
    }
    cv* a = abuf.as<cv>();
    vd* pw = pbuf.as<vd>();
    vd* qv = qbuf.as<vd>();
    vd* dv = dbuf.as<vd>();
    bool finite = true;

#pragma omp for schedule(static)
    for (int64_t g = 0; g < n_groups; ++g) {
      if (!ok) continue;
      const int64_t d0 = g * kCols;
      const int64_t nc = imin(kCols, D - d0);
      // pass 1: raw values, exact direct sums for the smallest lags, and column sums of the
      // offsets from the first row (exact for float32 input, and exactly 0 for a constant column)
      load_group_row(x, rs, cs, 0, d0, nc, a[0]);
      const vd first_re = a[0].re, first_im = a[0].im;
      vd sum_re = splat(0.0), sum_im = splat(0.0);
      for (int64_t t = 1; t < T; ++t) {
        load_group_row(x, rs, cs, t, d0, nc, a[t]);
        const vd r = a[t].re, i = a[t].im;
        sum_re += r - first_re;
        sum_im += i - first_im;
        const int64_t kk = imin(n_direct, t);
        for (int64_t tau = 1; tau <= kk; ++tau) {
          const vd dr = r - a[t - tau].re, di = i - a[t - tau].im;
          dv[tau] += dr * dr + di * di;
        }
      }
      if (!all_finite(sum_re + sum_im + first_re + first_im)) finite = false;
      // pass 2: centre, squared norms, first radix-2 stage against the zero padding
      const vd mean_re = sum_re / static_cast<double>(T), mean_im = sum_im / static_cast<double>(T);
      for (int64_t t = 0; t < T; ++t) {
        const vd r = (a[t].re - first_re) - mean_re, i = (a[t].im - first_im) - mean_im;
        qv[t] += r * r + i * i;
        a[t].re = r;
        a[t].im = i;
        cmul(r, i, tw.first[2 * t], tw.first[2 * t + 1], a[t + h].re, a[t + h].im);
      }
      for (int64_t t = T; t < h; ++t) {
        a[t].re = a[t].im = a[t + h].re = a[t + h].im = splat(0.0);
      }
      fft_block(a, h, tw, pw);
      fft_block(a + h, h, tw, pw + h);
    }

    if (!finite) {
#pragma omp atomic write
      status = kNonFinite;
    }
    if (ok) {
      double* res = results.as<double>() + static_cast<int64_t>(tid) * slot;
      for (int64_t k = 0; k < nfft; ++k) res[k] = hsum(pw[bit_reverse(k, bits)]);
      for (int64_t t = 0; t < T; ++t) res[nfft + t] = hsum(qv[t]);
      for (int64_t tau = 0; tau <= n_direct; ++tau) res[nfft + T + tau] = hsum(dv[tau]);
    }
  }
  if (status == kOutOfMemory) return status;
  for (int th = 0; th < nth; ++th) {
    const double* res = results.as<double>() + static_cast<int64_t>(th) * slot;
    for (int64_t k = 0; k < nfft; ++k) power_out[k] += res[k];
    for (int64_t t = 0; t < T; ++t) sqnorm_out[t] += res[nfft + t];
    for (int64_t tau = 1; tau <= n_direct; ++tau) direct_out[tau] += res[nfft + T + tau];
  }
  // squares that overflow float64 make the sums infinite
  if (!all_finite_array(power_out, nfft) || !all_finite_array(sqnorm_out, T) ||
      !all_finite_array(direct_out, n_direct + 1))
    status = kNonFinite;
  return status;
}

/// Selected lags by a direct pass: out[l] += sum_{t < T-lag_l} sum_d (x[t+lag_l,d] - x[t,d])^2.
template <class S>
int msd_lags_fold_impl(const StridedMatrix& m, const int64_t* lags, int64_t n_lags, double* out,
                       int n_threads) {
  const S* x = static_cast<const S*>(m.data);
  const int64_t T = m.n_rows, D = m.n_cols, rs = m.row_stride, cs = m.col_stride;
  const int64_t n_groups = (D + kCols - 1) / kCols;
  const int nth = resolve_threads(n_threads);
  Scratch results(sizeof(double) * static_cast<size_t>(n_lags) * nth);
  if (!results.ok()) return kOutOfMemory;
  int status = kOk;

#pragma omp parallel num_threads(nth)
  {
    const int tid = thread_id();
    Scratch abuf(sizeof(cv) * T), lbuf(sizeof(vd) * n_lags);
    const bool ok = abuf.ok() && lbuf.ok();
    if (!ok) {
#pragma omp atomic write
      status = kOutOfMemory;
    }
    cv* a = abuf.as<cv>();
    vd* acc = lbuf.as<vd>();
    bool finite = true;
#pragma omp for schedule(static)
    for (int64_t g = 0; g < n_groups; ++g) {
      if (!ok) continue;
      const int64_t d0 = g * kCols;
      const int64_t nc = imin(kCols, D - d0);
      vd chk = splat(0.0);
      for (int64_t t = 0; t < T; ++t) {
        load_group_row(x, rs, cs, t, d0, nc, a[t]);
        chk += a[t].re + a[t].im;
      }
      if (!all_finite(chk)) finite = false;
      for (int64_t l = 0; l < n_lags; ++l) {
        const int64_t lag = lags[l];
        vd s0 = splat(0.0), s1 = splat(0.0);
        for (int64_t t = 0; t + lag < T; ++t) {
          const vd dr = a[t + lag].re - a[t].re, di = a[t + lag].im - a[t].im;
          s0 += dr * dr;
          s1 += di * di;
        }
        acc[l] += s0 + s1;
      }
    }
    if (!finite) {
#pragma omp atomic write
      status = kNonFinite;
    }
    if (ok) {
      double* res = results.as<double>() + static_cast<int64_t>(tid) * n_lags;
      for (int64_t l = 0; l < n_lags; ++l) res[l] = hsum(acc[l]);
    }
  }
  if (status == kOutOfMemory) return status;
  for (int th = 0; th < nth; ++th)
    for (int64_t l = 0; l < n_lags; ++l) out[l] += results.as<double>()[th * n_lags + l];
  if (!all_finite_array(out, n_lags)) status = kNonFinite;
  return status;
}

/// Squared displacement from a reference row: out[t] += sum_d (x[t,d] - x[ref,d])^2.
template <class S>
int displacement_fold_impl(const StridedMatrix& m, int64_t ref, double* out, int n_threads) {
  const S* x = static_cast<const S*>(m.data);
  const int64_t T = m.n_rows, D = m.n_cols, rs = m.row_stride, cs = m.col_stride;
  const int64_t n_groups = (D + kCols - 1) / kCols;
  const int nth = resolve_threads(n_threads);
  Scratch results(sizeof(double) * static_cast<size_t>(T) * nth);
  if (!results.ok()) return kOutOfMemory;
  int status = kOk;
#pragma omp parallel num_threads(nth)
  {
    const int tid = thread_id();
    Scratch rbuf(sizeof(vd) * T);
    const bool ok = rbuf.ok();
    if (!ok) {
#pragma omp atomic write
      status = kOutOfMemory;
    }
    vd* r2 = rbuf.as<vd>();
#pragma omp for schedule(static)
    for (int64_t g = 0; g < n_groups; ++g) {
      if (!ok) continue;
      const int64_t d0 = g * kCols;
      const int64_t nc = imin(kCols, D - d0);
      cv r0, row;
      load_group_row(x, rs, cs, ref, d0, nc, r0);
      for (int64_t t = 0; t < T; ++t) {
        load_group_row(x, rs, cs, t, d0, nc, row);
        const vd dr = row.re - r0.re, di = row.im - r0.im;
        r2[t] += dr * dr + di * di;
      }
    }
    if (ok) {
      double* res = results.as<double>() + static_cast<int64_t>(tid) * T;
      for (int64_t t = 0; t < T; ++t) res[t] = hsum(r2[t]);
    }
  }
  if (status == kOutOfMemory) return status;
  bool finite = true;
  for (int64_t t = 0; t < T; ++t) {
    double s = 0.0;
    for (int th = 0; th < nth; ++th) s += results.as<double>()[th * T + t];
    out[t] += s;
    if (!__builtin_isfinite(s)) finite = false;
  }
  return finite ? kOk : kNonFinite;
}

}  // namespace FD_ARCH_NS
}  // namespace fractaldiff
