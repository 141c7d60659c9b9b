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

/// Bit layout of T (IEEE 754 binary32 / binary64) and the series length reaching its precision.
template <class T>
struct SgldBits;
template <>
struct SgldBits<float> {
  using U = uint32_t;
  static constexpr int kMant = 23;
  static constexpr U kExpMask = 0xff, kBias = 127, kOne = 0x3f800000u;
  static constexpr int kAtanhTerms = 6;  // |s| <= 0.172: s2^6 / 13 is below 2^-24
};
template <>
struct SgldBits<double> {
  using U = uint64_t;
  static constexpr int kMant = 52;
  static constexpr U kExpMask = 0x7ff, kBias = 1023, kOne = 0x3ff0000000000000ULL;
  static constexpr int kAtanhTerms = 11;  // s2^11 / 23 is below 2^-53
};

/// ln u1 for u1 = (h + 1) / 2^32, given u1 and m = 1 - u1 = (2^32 - 1 - h) / 2^32 (both as
/// exact as T allows): 2 atanh(s) with s = (x - 1)/(x + 1) and |s| <= 0.172, where
/// x = u1 = 1 - m (s = -m / (2 - m), accurate even when u1 rounds to 1 in float32) for
/// u1 >= √½, else x the mantissa of u1 scaled into [√½, √2) and its exponent added.
template <class T>
__attribute__((always_inline)) inline T sgld_log_u1(T u1, T m) {
  using B = SgldBits<T>;
  typename B::U bits;
  std::memcpy(&bits, &u1, sizeof(T));
  T e = static_cast<T>(static_cast<int64_t>((bits >> B::kMant) & B::kExpMask) -
                       static_cast<int64_t>(B::kBias));
  const typename B::U mb = (bits & ((typename B::U(1) << B::kMant) - 1)) | B::kOne;
  T x;
  std::memcpy(&x, &mb, sizeof(T));
  const bool big = x > T(1.4142135623730951);
  x = big ? x * T(0.5) : x;
  e = big ? e + T(1) : e;
  // blended arithmetically (exact: one weight is 0, the other 1): selects here keep the
  // compiler from vectorizing the loop
  const T sel = static_cast<T>(u1 >= T(0.7071067811865476));
  const T s = ((T(1) - sel) * (x - T(1)) - sel * m) / ((T(1) - sel) * (x + T(1)) + sel * (T(2) - m));
  const T s2 = s * s;
  T p = T(1) / T(2 * B::kAtanhTerms - 1);
  for (int k = B::kAtanhTerms - 2; k >= 0; --k) p = T(1) / T(2 * k + 1) + s2 * p;
  return (T(1) - sel) * e * T(0.6931471805599453094) + T(2) * s * p;
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
