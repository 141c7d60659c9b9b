// fractaldiff: small helpers shared, unchanged, by host C++ and CUDA device code.
//
// Everything here is constexpr/inline, 64-bit, and free of the standard library, so that the CPU
// kernels, the CUDA kernels (cuda/*.cu) and their host launchers compute the same things the same
// way: FFT lengths and pass plans, bit reversal, and the box-id key hash (which must be identical,
// bit for bit, on CPU and GPU so that box ids merge across devices).
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define FD_HD __host__ __device__ __forceinline__
#else
// always_inline: these are also used by the per-ISA kernel translation units, which must not
// share out-of-line copies of inline functions compiled with different instruction sets
#define FD_HD __attribute__((always_inline)) inline
#endif

namespace fractaldiff {
namespace hd {

/// Smallest power of two >= max(4, 2*n_rows - 1): the FFT length of the all-lag MSD.
FD_HD int64_t msd_fft_length(int64_t n_rows) {
  int64_t n = 4;
  while (n < 2 * n_rows - 1) n *= 2;
  return n;
}

/// log2 of a power of two.
FD_HD int ilog2(int64_t n) {
  int r = 0;
  while ((int64_t(1) << r) < n) ++r;
  return r;
}

/// Reverse the lowest `bits` bits of k.
FD_HD int64_t bit_reverse(int64_t k, int bits) {
  int64_t r = 0;
  for (int i = 0; i < bits; ++i) {
    r = (r << 1) | (k & 1);
    k >>= 1;
  }
  return r;
}

/// Pass plan of the GPU FFT: log2 N split into passes of radix 2^4 = 16, the remainder (radix 2,
/// 4 or 8) first. Radix-2^r passes are r merged radix-2 DIF stages; output stays bit-reversed.
struct FftPlan {
  int n_pass = 0;
  int log_radix[16] = {0};
};

FD_HD FftPlan fft_plan(int log_n) {
  FftPlan p;
  const int rem = log_n % 4;
  if (rem) p.log_radix[p.n_pass++] = rem;
  for (int i = 0; i < log_n / 4; ++i) p.log_radix[p.n_pass++] = 4;
  return p;
}

/// SplitMix64 finalizer: a bijective 64-bit mix (used for the box-id keys).
FD_HD uint64_t splitmix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

/// Exclusive bound of a quantized box coordinate q = trunc((x - origin) / eps0): 2^31.
constexpr double kBoxQLimit = 2147483648.0;
/// Multiplier that separates the two box-id key streams (which = 0, 1).
constexpr uint64_t kBoxKeyMult = 0xA0761D6478BD642FULL;

/// Key of global column d for box-id sum `which` (0 or 1) under key_seed; the one definition
/// used by the CPU and CUDA kernels, so their box ids agree bit for bit.
FD_HD uint64_t box_key(uint64_t key_seed, int64_t d, int which) {
  return splitmix64(splitmix64(key_seed ^ (kBoxKeyMult * (uint64_t(which) + 1))) +
                    static_cast<uint64_t>(d));
}

/// Seed of the random offsets of box-counting grid `grid` under `seed` (both mod 2^64).
FD_HD uint64_t box_grid_seed(uint64_t seed, uint64_t grid) {
  return splitmix64(seed * 0x2545F4914F6CDD1DULL + grid * 0x9E3779B97F4A7C15ULL);
}

/// Seed of the box-id hash keys of grid `grid` under `seed`.
FD_HD uint64_t box_key_seed(uint64_t seed, uint64_t grid) {
  return box_grid_seed(seed, grid) ^ 0x5851F42D4C957F2DULL;
}

/// Offset of coordinate d in the grid with seed grid_seed: uniform on [0, coarsest) (53 random
/// bits times 2^-53, times coarsest).
FD_HD double box_grid_offset(uint64_t grid_seed, int64_t d, double coarsest) {
  const uint64_t h = splitmix64(static_cast<uint64_t>(d) ^ grid_seed);
  return static_cast<double>(h >> 11) * (1.0 / 9007199254740992.0) * coarsest;
}

}  // namespace hd
}  // namespace fractaldiff
