// fractaldiff: the row digest's chunk hashing (fd64 and the non-finite count), compiled once per
// SIMD level like every other kernel (kernels_arch.cpp puts it in the level's KernelTable).
//
// A chunk's four 64-bit lanes take words 4k+i: x = (lane ^ word) * K1, then a rotate; its lanes
// and length are mixed into one 64-bit value (digest.cpp folds the chunk values in order). The
// portable code hashes one chunk at a time; with AVX-512 (VL/DQ for the 64-bit multiply and
// rotate on 256-bit vectors, BW for 16-bit compares) up to eight chunks are hashed in lockstep,
// independent chains that keep the multiplier busy, and the non-finite count is taken from the
// same loaded words. Both give bit-identical results (tests check against a reference).
//
// Like the other kernel headers, everything lives in the per-level namespace FD_ARCH_NS.
#pragma once

#include <cstdint>
#include <cstring>

#include "fractaldiff/api.hpp"

#if defined(__AVX512F__) && defined(__AVX512VL__) && defined(__AVX512DQ__) && \
    defined(__AVX512BW__)
#define FD_DIGEST_LOCKSTEP 1
#include <immintrin.h>
#endif

#ifndef FD_ARCH_NS
#define FD_ARCH_NS generic
#endif

#define FD_DIGEST_INLINE __attribute__((always_inline)) inline

namespace fractaldiff {
namespace FD_ARCH_NS {
namespace digest {

constexpr uint64_t kK1 = 0x9E3779B97F4A7C15ull;
constexpr uint64_t kK2 = 0xC2B2AE3D27D4EB4Full;
constexpr int64_t kChunk = 1 << 16;
constexpr int kGroup = 8;  // chunks hashed in lockstep

FD_DIGEST_INLINE uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

FD_DIGEST_INLINE uint64_t mix64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xFF51AFD7ED558CCDull;
  x ^= x >> 33;
  x *= 0xC4CEB9FE1A85EC53ull;
  x ^= x >> 33;
  return x;
}


template <int kElem>
FD_DIGEST_INLINE bool is_nonfinite(const unsigned char* p) {
  if constexpr (kElem == 2) {
    uint16_t v;
    std::memcpy(&v, p, 2);
    return (v & 0x7C00u) == 0x7C00u;
  } else if constexpr (kElem == 4) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return (v & 0x7F800000u) == 0x7F800000u;
  } else {
    uint64_t v;
    std::memcpy(&v, p, 8);
    return (v & 0x7FF0000000000000ull) == 0x7FF0000000000000ull;
  }
}

/// Finish a chunk whose lanes have taken the words before byte ``done`` (a multiple of 32):
/// the remaining words and the partial word, the length mix, and the non-finite count of the
/// bytes from ``done`` on (``count`` holds the count before it).
template <int kElem>
DigestChunk finish_chunk(const unsigned char* p, int64_t n, int64_t elem_offset, uint64_t* lane,
                         int64_t done, int64_t count) {
  const int64_t n_words = n / 8;
  for (int64_t w = done / 8; w < n_words; ++w) {
    uint64_t v;
    std::memcpy(&v, p + 8 * w, 8);
    lane[w & 3] = rotl((lane[w & 3] ^ v) * kK1, 31);
  }
  if (n % 8) {
    uint64_t v = 0;
    std::memcpy(&v, p + 8 * n_words, n % 8);
    lane[0] = rotl((lane[0] ^ v) * kK1, 31);
  }
  const uint64_t h = mix64(lane[0] ^ rotl(lane[1], 17) ^ rotl(lane[2], 29) ^ rotl(lane[3], 43) ^
                           static_cast<uint64_t>(n));
  DigestChunk r{h, 0, -1};
  if constexpr (kElem > 0) {
    for (int64_t i = done; i + kElem <= n; i += kElem) count += is_nonfinite<kElem>(p + i);
    if (count) {  // locate only when something was found
      for (int64_t i = 0; i + kElem <= n; i += kElem)
        if (is_nonfinite<kElem>(p + i)) {
          r.first = elem_offset + i / kElem;
          break;
        }
    }
    r.nonfinite = count;
  }
  (void)count;
  return r;
}

/// Portable: one chunk at a time.
template <int kElem>
DigestChunk digest_chunk(const unsigned char* p, int64_t n, int64_t elem_offset) {
  uint64_t lane[4] = {kK2, kK2 ^ 1, kK2 ^ 2, kK2 ^ 3};
  const int64_t n_blocks = n / 32;
  for (int64_t b = 0; b < n_blocks; ++b) {
    uint64_t v[4];
    std::memcpy(v, p + 32 * b, 32);
    for (int i = 0; i < 4; ++i) lane[i] = rotl((lane[i] ^ v[i]) * kK1, 31);
  }
  int64_t count = 0;
  if constexpr (kElem > 0) {
    // branch-free count (vectorises)
    for (int64_t i = 0; i + kElem <= 32 * n_blocks; i += kElem) count += is_nonfinite<kElem>(p + i);
  }
  return finish_chunk<kElem>(p, n, elem_offset, lane, 32 * n_blocks, count);
}

#ifdef FD_DIGEST_LOCKSTEP
/// AVX-512: N chunks of the same length n hashed in lockstep (one 256-bit vector of lanes each).
template <int kElem, int N>
void digest_lockstep(const unsigned char* const* p, int64_t n,
                                      const int64_t* elem_offset, DigestChunk* out) {
  __m256i lane[N];
  __m256i cnt[N];
  const __m256i k1 = _mm256_set1_epi64x(static_cast<long long>(kK1));
  const __m256i init = _mm256_set_epi64x(static_cast<long long>(kK2 ^ 3),
                                         static_cast<long long>(kK2 ^ 2),
                                         static_cast<long long>(kK2 ^ 1),
                                         static_cast<long long>(kK2));
  __m256i expo;
  if constexpr (kElem == 2) expo = _mm256_set1_epi16(0x7C00);
  else if constexpr (kElem == 4) expo = _mm256_set1_epi32(0x7F800000);
  else expo = _mm256_set1_epi64x(0x7FF0000000000000ll);
  for (int c = 0; c < N; ++c) {
    lane[c] = init;
    cnt[c] = _mm256_setzero_si256();
  }
  const int64_t n_blocks = n / 32;
  for (int64_t b = 0; b < n_blocks; ++b) {
#pragma GCC unroll 8
    for (int c = 0; c < N; ++c) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p[c] + 32 * b));
      lane[c] = _mm256_rol_epi64(_mm256_mullo_epi64(_mm256_xor_si256(lane[c], v), k1), 31);
      if constexpr (kElem > 0) {
        const __m256i e = _mm256_and_si256(v, expo);
        // a matching element compares to all-ones (-1): subtracting counts it, per lane
        if constexpr (kElem == 2) cnt[c] = _mm256_sub_epi16(cnt[c], _mm256_cmpeq_epi16(e, expo));
        else if constexpr (kElem == 4) cnt[c] = _mm256_sub_epi32(cnt[c], _mm256_cmpeq_epi32(e, expo));
        else cnt[c] = _mm256_sub_epi64(cnt[c], _mm256_cmpeq_epi64(e, expo));
      }
    }
  }
  for (int c = 0; c < N; ++c) {
    alignas(32) uint64_t l[4];
    _mm256_store_si256(reinterpret_cast<__m256i*>(l), lane[c]);
    int64_t count = 0;
    if constexpr (kElem > 0) {
      // per-lane counters: 16-bit lanes count at most 2048 per 64 KiB chunk, no overflow
      alignas(32) uint16_t c16[16];
      alignas(32) uint32_t c32[8];
      alignas(32) uint64_t c64[4];
      if constexpr (kElem == 2) {
        _mm256_store_si256(reinterpret_cast<__m256i*>(c16), cnt[c]);
        for (int i = 0; i < 16; ++i) count += c16[i];
      } else if constexpr (kElem == 4) {
        _mm256_store_si256(reinterpret_cast<__m256i*>(c32), cnt[c]);
        for (int i = 0; i < 8; ++i) count += c32[i];
      } else {
        _mm256_store_si256(reinterpret_cast<__m256i*>(c64), cnt[c]);
        for (int i = 0; i < 4; ++i) count += static_cast<int64_t>(c64[i]);
      }
    }
    out[c] = finish_chunk<kElem>(p[c], n, elem_offset[c], l, 32 * n_blocks, count);
  }
}

template <int kElem>
void digest_group_avx512(const unsigned char* const* p, int n_chunks, int64_t n,
                         const int64_t* elem_offset, DigestChunk* out) {
  switch (n_chunks) {
    case 1: return digest_lockstep<kElem, 1>(p, n, elem_offset, out);
    case 2: return digest_lockstep<kElem, 2>(p, n, elem_offset, out);
    case 3: return digest_lockstep<kElem, 3>(p, n, elem_offset, out);
    case 4: return digest_lockstep<kElem, 4>(p, n, elem_offset, out);
    case 5: return digest_lockstep<kElem, 5>(p, n, elem_offset, out);
    case 6: return digest_lockstep<kElem, 6>(p, n, elem_offset, out);
    case 7: return digest_lockstep<kElem, 7>(p, n, elem_offset, out);
    default: return digest_lockstep<kElem, 8>(p, n, elem_offset, out);
  }
}

#endif

/// Hash ``n_chunks`` (<= kGroup) chunks of equal length ``n`` (kElem: element size for the
/// non-finite count, 0 for none).
template <int kElem>
void group(const unsigned char* const* p, int n_chunks, int64_t n, const int64_t* elem_offset,
           DigestChunk* out) {
#ifdef FD_DIGEST_LOCKSTEP
  return digest_group_avx512<kElem>(p, n_chunks, n, elem_offset, out);
#else
  for (int c = 0; c < n_chunks; ++c) out[c] = digest_chunk<kElem>(p[c], n, elem_offset[c]);
#endif
}

}  // namespace digest
}  // namespace FD_ARCH_NS
}  // namespace fractaldiff
