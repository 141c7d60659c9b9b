// fractaldiff: the fused SGLD update for one instruction-set level.
//
// Compiled once per SIMD level inside namespace FD_ARCH_NS, like msd_kernels.hpp (same rules: no
// std:: templates, 64-bit sizes). One pass over the (C, D) chain parameters does what would take
// seven passes as separate tensor operations (difference to the centre, drift, the virial dot
// product, the Gaussian draw, two scaled adds): for chain c with nβ_c, γ_c, ε_c,
//   δ = w − w*,  drift = nβ_c g + γ_c δ,  virial_c = Σ_d δ·drift,
//   w' = w − (ε_c/2) drift + √ε_c ξ,      ξ ~ N(0, 1)
// with drift written over g (the caller needs it for the Metropolis check) and w' into w_out.
//
// The Gaussian draws. Why not a library generator: the update is memory-light, so a separate
// generator pass (a buffer written then read back) costs as much as the rest of the step; drawing
// in registers, inside the same loop, is the point. The stream is counter-based, so its values
// do not depend on the thread count, the SIMD level or the block schedule:
//   key_{t,c}  = mix(mix(seed + G (t + 1)) + G (c + 1))           (G = 0x9E3779B97F4A7C15)
//   b_k        = mix(key_{t,c} + G (k + 1))                       64 random bits of pair k
//   u1 = (⌊b_k / 2^32⌋ + 1) / 2^32 ∈ (0, 1],  u2 = (b_k mod 2^32) / 2^32 ∈ [0, 1)
//   (z0, z1)   = √(−2 ln u1) (cos 2π u2, sin 2π u2)               (Box–Muller)
// mix is the SplitMix64 finalizer (hd::splitmix64 without its increment). Element d of a chain
// lies in block j = ⌊d / 512⌋ at offset o = d mod 512; it takes z0 of pair k = 256 j + o when
// o < 256, else z1 of pair k = 256 j + o − 256. ln, cos and sin are evaluated here by series
// accurate to the working precision (float32: ~1e-7 relative, float64: ~1e-15), branch free so
// that the compiler vectorizes them; the largest |ξ| the 32-bit u1 allows is 6.66.
// tests/reference.py holds the plain numpy version of all of this.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <new>

#include "fractaldiff/api.hpp"
#include "fractaldiff/hd_common.hpp"

#ifndef FD_ARCH_NS
#define FD_ARCH_NS generic
#endif

namespace fractaldiff {
namespace FD_ARCH_NS {

/// Elements per block of the noise layout (two halves of kSgldPairs Box–Muller pairs).
constexpr int64_t kSgldBlock = 512;
constexpr int64_t kSgldPairs = kSgldBlock / 2;

/// SplitMix64 finalizer without the increment (the generator adds its own counter).
__attribute__((always_inline)) inline uint64_t sgld_mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

constexpr uint64_t kSgldGolden = 0x9E3779B97F4A7C15ULL;

/// ln u1 for u1 = (h + 1) / 2^32, given u1 and m = 1 - u1 = (2^32 - 1 - h) / 2^32 (both as
/// exact as T allows): 2 atanh(s) with s = (x - 1)/(x + 1) and |s| <= 0.172, where
/// x = u1 = 1 - m (s = -m / (2 - m), accurate even when u1 rounds to 1 in float32) for
/// u1 >= √½, else x the mantissa of u1 scaled into [√½, √2) and its exponent added.
template <class T>
__attribute__((always_inline)) inline T sgld_log_u1(T u1, T m);

template <>
__attribute__((always_inline)) inline float sgld_log_u1<float>(float u1, float m) {
  uint32_t bits;
  std::memcpy(&bits, &u1, 4);
  int32_t e = static_cast<int32_t>((bits >> 23) & 0xff) - 127;
  uint32_t mb = (bits & 0x7fffffu) | 0x3f800000u;
  float x;
  std::memcpy(&x, &mb, 4);
  const bool big = x > 1.41421356f;
  x = big ? x * 0.5f : x;
  e = big ? e + 1 : e;
  // blended arithmetically (exact: one weight is 0, the other 1): selects here keep the
  // compiler from vectorizing the loop
  const float sel = static_cast<float>(u1 >= 0.70710678f);
  const float s = ((1.0f - sel) * (x - 1.0f) - sel * m) / ((1.0f - sel) * (x + 1.0f) + sel * (2.0f - m));
  const float s2 = s * s;  // <= 0.0295: six terms of the atanh series reach float precision
  const float p =
      1.0f + s2 * (1.0f / 3 + s2 * (1.0f / 5 + s2 * (1.0f / 7 + s2 * (1.0f / 9 + s2 * (1.0f / 11)))));
  return (1.0f - sel) * static_cast<float>(e) * 0.693147180559945309f + 2.0f * s * p;
}

template <>
__attribute__((always_inline)) inline double sgld_log_u1<double>(double u1, double m) {
  uint64_t bits;
  std::memcpy(&bits, &u1, 8);
  int64_t e = static_cast<int64_t>((bits >> 52) & 0x7ff) - 1023;
  uint64_t mb = (bits & 0xfffffffffffffULL) | 0x3ff0000000000000ULL;
  double x;
  std::memcpy(&x, &mb, 8);
  const bool big = x > 1.4142135623730951;
  x = big ? x * 0.5 : x;
  e = big ? e + 1 : e;
  const double sel = static_cast<double>(u1 >= 0.7071067811865476);
  const double s = ((1.0 - sel) * (x - 1.0) - sel * m) / ((1.0 - sel) * (x + 1.0) + sel * (2.0 - m));
  const double s2 = s * s;  // eleven terms reach double precision
  double p = 1.0 / 21;
  for (int k = 9; k >= 0; --k) p = 1.0 / (2 * k + 1) + s2 * p;
  return (1.0 - sel) * static_cast<double>(e) * 0.6931471805599453094 + 2.0 * s * p;
}

/// sin and cos of a, |a| <= π/4, by their Taylor series to the working precision.
template <class T>
__attribute__((always_inline)) inline void sgld_sincos_small(T a, T& s, T& c) {
  constexpr int kTerms = sizeof(T) == 4 ? 6 : 10;  // error a^(2n+1)/(2n+1)! below the ulp
  const T a2 = a * a;
  // Horner from the highest term: sin a = a Σ (-a²)^k / (2k+1)!, cos a = Σ (-a²)^k / (2k)!
  T ps = T(1), pc = T(1);
  for (int k = kTerms - 1; k >= 1; --k) {
    ps = T(1) - a2 / T((2 * k) * (2 * k + 1)) * ps;
    pc = T(1) - a2 / T((2 * k - 1) * (2 * k)) * pc;
  }
  s = a * ps;
  c = pc;
}

/// Box–Muller pair of 64 random bits (see the header comment).
template <class T>
__attribute__((always_inline)) inline void sgld_pair(uint64_t b, T& z0, T& z1) {
  const uint64_t hi = b >> 32;
  const T u1 = static_cast<T>(static_cast<double>(hi + 1) * (1.0 / 4294967296.0));
  const T m1 = static_cast<T>(static_cast<double>(0xffffffffULL - hi) * (1.0 / 4294967296.0));
  const T u2 = static_cast<T>(static_cast<double>(b & 0xffffffffULL) * (1.0 / 4294967296.0));
  const T r = std::sqrt(T(-2) * sgld_log_u1<T>(u1, m1));
  // 2π u2 = q π/2 + a, q = round(4 u2) in 0..4, |a| <= π/4
  const T x = T(4) * u2;
  const int q = static_cast<int>(x + T(0.5));
  const T a = (x - static_cast<T>(q)) * T(1.5707963267948966192);
  T s, c;
  sgld_sincos_small<T>(a, s, c);
  const bool odd = (q & 1) != 0;
  const bool neg_s = (q & 2) != 0;            // q = 2, 3: sin(θ) = -(sin|cos)
  const bool neg_c = ((q + 1) & 2) != 0;      // q = 1, 2: cos(θ) = -(sin|cos)
  const T sin_t = odd ? c : s;
  const T cos_t = odd ? s : c;
  z0 = r * (neg_c ? -cos_t : cos_t);
  z1 = r * (neg_s ? -sin_t : sin_t);
}

/// Stream key of chain c at step t.
__attribute__((always_inline)) inline uint64_t sgld_key(uint64_t seed, uint64_t step,
                                                        uint64_t chain) {
  return sgld_mix(sgld_mix(seed + kSgldGolden * (step + 1)) + kSgldGolden * (chain + 1));
}

/// One block of one chain: n <= kSgldBlock elements starting at element 512 j.
template <class T>
inline double sgld_block(const T* w, const T* ctr, T* g, T* out, int64_t n, uint64_t key,
                         uint64_t pair0, T nb, T gm, T half_ep, T sq_ep) {
  alignas(64) T noise[kSgldBlock];
  const int64_t pairs = n < kSgldPairs ? n : kSgldPairs;
  for (int64_t o = 0; o < pairs; ++o) {
    T z0, z1;
    sgld_pair<T>(sgld_mix(key + kSgldGolden * (pair0 + static_cast<uint64_t>(o) + 1)), z0, z1);
    noise[o] = z0;
    noise[kSgldPairs + o] = z1;
  }
  double v = 0.0;
#ifdef _OPENMP
#pragma omp simd reduction(+ : v)
#endif
  for (int64_t o = 0; o < n; ++o) {
    const T delta = w[o] - ctr[o];
    const T drift = nb * g[o] + gm * delta;
    v += static_cast<double>(delta * drift);
    g[o] = drift;
    out[o] = w[o] - half_ep * drift + sq_ep * noise[o];
  }
  return v;
}

template <class T>
int sgld_step_impl(const SgldArgs& a) {
  const int64_t C = a.n_chains, D = a.n_params;
  if (C <= 0 || D <= 0) return kOk;
  const int64_t nblk = (D + kSgldBlock - 1) / kSgldBlock;
  const int64_t jobs = C * nblk;
  double* part = new (std::nothrow) double[jobs];
  if (!part) return kOutOfMemory;
  const T* w = static_cast<const T*>(a.w);
  const T* ctr = static_cast<const T*>(a.center);
  T* g = static_cast<T*>(a.grad);
  T* out = static_cast<T*>(a.w_out);
  const int nt = a.n_threads > 0 ? a.n_threads : 1;
  (void)nt;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1 && jobs > 8)
#endif
  for (int64_t job = 0; job < jobs; ++job) {
    const int64_t c = job / nblk, j = job % nblk;
    const int64_t d0 = j * kSgldBlock;
    const int64_t n = (D - d0) < kSgldBlock ? (D - d0) : kSgldBlock;
    const uint64_t key = sgld_key(a.seed, a.step, static_cast<uint64_t>(c));
    const double ep = a.eps[c];
    part[job] = sgld_block<T>(w + c * a.w_stride + d0, ctr + c * a.center_stride + d0,
                              g + c * a.grad_stride + d0, out + c * a.out_stride + d0, n, key,
                              static_cast<uint64_t>(j * kSgldPairs), static_cast<T>(a.nbeta[c]),
                              static_cast<T>(a.gamma[c]), static_cast<T>(0.5 * ep),
                              static_cast<T>(std::sqrt(ep)));
  }
  for (int64_t c = 0; c < C; ++c) {  // fixed order: the same sums for any thread count
    double v = 0.0;
    for (int64_t j = 0; j < nblk; ++j) v += part[c * nblk + j];
    a.virial[c] = v;
  }
  delete[] part;
  return kOk;
}

}  // namespace FD_ARCH_NS
}  // namespace fractaldiff
