// fd64: the snapshot store's row checksum, and the non-finite scan, in one pass.
//
// The bytes are cut into 64 KiB chunks. Each chunk is hashed by four independent 64-bit lanes
// (lane i takes words 4k+i: x = (lane ^ word) * K1, then a rotate), so the multiply latency does
// not serialise the pass; a chunk's lanes and length are mixed into one 64-bit value, and the
// chunk values are folded in order. Chunks are independent, so threads split them freely and the
// result never depends on the thread count. It detects corruption (any single flipped bit
// changes the hash; two random rows collide with probability about 2^-64); it is not a
// cryptographic hash.
//
// Speed: one chunk's four lanes are one 256-bit vector, so hashing a single chunk is bound by
// the latency of the lane update (xor, multiply, rotate: ~6 bytes per cycle). With AVX-512
// (VL/DQ for the 64-bit multiply and rotate on 256-bit vectors) up to eight chunks are hashed in
// lockstep, independent chains that keep the multiplier busy, and the non-finite count is taken
// from the same loaded words (a compare per element, summed in vector counters). The portable
// path hashes one chunk at a time. Both give bit-identical results (tests check against a
// reference implementation).
#include "fractaldiff/digest.hpp"

#include <cstring>
#include <vector>

#include "fractaldiff/api.hpp"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FD_DIGEST_AVX512 1
#include <immintrin.h>
#endif

#ifdef _OPENMP
#include <omp.h>
#endif

namespace fractaldiff {

namespace {

constexpr uint64_t kK1 = 0x9E3779B97F4A7C15ull;
constexpr uint64_t kK2 = 0xC2B2AE3D27D4EB4Full;
constexpr int64_t kChunk = 1 << 16;
constexpr int kGroup = 8;  // chunks hashed in lockstep

inline uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

inline uint64_t mix64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xFF51AFD7ED558CCDull;
  x ^= x >> 33;
  x *= 0xC4CEB9FE1A85EC53ull;
  x ^= x >> 33;
  return x;
}

struct ChunkResult {
  uint64_t hash;
  int64_t nonfinite;
  int64_t first;  // element index within the row, or -1
};

template <int kElem>
inline bool is_nonfinite(const unsigned char* p) {
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
ChunkResult finish_chunk(const unsigned char* p, int64_t n, int64_t elem_offset, uint64_t* lane,
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
  ChunkResult r{h, 0, -1};
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
ChunkResult digest_chunk(const unsigned char* p, int64_t n, int64_t elem_offset) {
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

#ifdef FD_DIGEST_AVX512
#define FD_AVX512_TARGET __attribute__((target("avx512f,avx512vl,avx512dq,avx512bw,popcnt")))

/// AVX-512: N chunks of the same length n hashed in lockstep (one 256-bit vector of lanes each).
template <int kElem, int N>
FD_AVX512_TARGET void digest_lockstep(const unsigned char* const* p, int64_t n,
                                      const int64_t* elem_offset, ChunkResult* out) {
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
                         const int64_t* elem_offset, ChunkResult* out) {
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

bool cpu_has_avx512_digest() {
  static const bool ok = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("popcnt");
  }();
  return ok;
}
#endif

bool use_avx512() {
#ifdef FD_DIGEST_AVX512
  return cpu_has_avx512_digest() && std::strcmp(active_kernels().simd_level, "avx512") == 0;
#else
  return false;
#endif
}

/// Hash ``n_chunks`` (<= kGroup) chunks of equal length ``n``.
template <int kElem>
void digest_group(const unsigned char* const* p, int n_chunks, int64_t n,
                  const int64_t* elem_offset, ChunkResult* out, bool avx512) {
#ifdef FD_DIGEST_AVX512
  if (avx512) return digest_group_avx512<kElem>(p, n_chunks, n, elem_offset, out);
#endif
  (void)avx512;
  for (int c = 0; c < n_chunks; ++c) out[c] = digest_chunk<kElem>(p[c], n, elem_offset[c]);
}

RowDigest fold(const std::vector<ChunkResult>& res, int64_t n_bytes) {
  RowDigest out;
  uint64_t h = kK1 ^ static_cast<uint64_t>(n_bytes);
  for (const ChunkResult& r : res) {
    h = mix64(h ^ r.hash) + kK2;
    out.n_nonfinite += r.nonfinite;
    if (out.first_nonfinite < 0 && r.first >= 0) out.first_nonfinite = r.first;
  }
  out.checksum = h;
  return out;
}

/// Chunks [c0, c1) of a contiguous row, in groups of equal-length chunks.
template <int kElem>
void digest_range(const unsigned char* p, int64_t n_bytes, int64_t c0, int64_t c1,
                  ChunkResult* res, bool avx512) {
  const unsigned char* ptr[kGroup];
  int64_t off[kGroup];
  int64_t c = c0;
  while (c < c1) {
    const int64_t a = c * kChunk;
    const int64_t len = n_bytes - a < kChunk ? n_bytes - a : kChunk;
    int g = 0;
    if (len == kChunk) {  // full chunks: up to kGroup of them together
      while (g < kGroup && c + g < c1 && (c + g + 1) * kChunk <= n_bytes) {
        ptr[g] = p + (c + g) * kChunk;
        off[g] = kElem ? (c + g) * kChunk / kElem : 0;
        ++g;
      }
    } else {
      ptr[0] = p + a;
      off[0] = kElem ? a / kElem : 0;
      g = 1;
    }
    digest_group<kElem>(ptr, g, len, off, res + (c - c0), avx512);
    c += g;
  }
}

template <int kElem>
RowDigest digest_impl(const unsigned char* p, int64_t n_bytes, int n_threads) {
  const int64_t n_chunks = n_bytes == 0 ? 1 : (n_bytes + kChunk - 1) / kChunk;
  std::vector<ChunkResult> res(static_cast<size_t>(n_chunks));
  const bool avx512 = use_avx512();
  int nth = 1;
#ifdef _OPENMP
  nth = n_threads > 0 ? n_threads : omp_get_max_threads();
  if (n_chunks < 4 * kGroup) nth = 1;  // a few MiB: one thread is faster than waking others
#endif
  (void)n_threads;
  if (nth <= 1) {
    digest_range<kElem>(p, n_bytes, 0, n_chunks, res.data(), avx512);
  } else {
#ifdef _OPENMP
    // contiguous ranges of whole groups per thread; the fold below keeps the chunk order
    const int64_t n_groups = (n_chunks + kGroup - 1) / kGroup;
#pragma omp parallel for schedule(static) num_threads(nth)
    for (int64_t gi = 0; gi < n_groups; ++gi) {
      const int64_t c0 = gi * kGroup;
      const int64_t c1 = c0 + kGroup < n_chunks ? c0 + kGroup : n_chunks;
      digest_range<kElem>(p, n_bytes, c0, c1, res.data() + c0, avx512);
    }
#endif
  }
  return fold(res, n_bytes);
}

template <int kElem>
RowDigest digest_parts_impl(const RowPart* parts, int64_t n_parts, int64_t n_bytes) {
  const int64_t n_chunks = n_bytes == 0 ? 1 : (n_bytes + kChunk - 1) / kChunk;
  std::vector<ChunkResult> res(static_cast<size_t>(n_chunks));
  const bool avx512 = use_avx512();
  // chunks that straddle parts are gathered into this scratch (one slot per chunk in a group)
  thread_local std::vector<unsigned char> scratch;
  const unsigned char* ptr[kGroup];
  int64_t off[kGroup];
  int64_t part = 0, part_start = 0;  // the part holding the current byte, and its row offset
  int64_t c = 0;
  while (c < n_chunks) {
    const int64_t a = c * kChunk;
    const int64_t len = n_bytes - a < kChunk ? n_bytes - a : kChunk;
    int g = 0;
    int used = 0;
    // collect chunks of length len (full ones, or the last one alone)
    while (g < kGroup && c + g < n_chunks) {
      const int64_t ca = (c + g) * kChunk;
      const int64_t clen = n_bytes - ca < kChunk ? n_bytes - ca : kChunk;
      if (clen != len) break;
      while (part < n_parts && part_start + parts[part].bytes <= ca && clen > 0) {
        part_start += parts[part].bytes;
        ++part;
      }
      const unsigned char* src = nullptr;
      if (clen == 0) {
        src = reinterpret_cast<const unsigned char*>(&kK1);  // never read
      } else if (ca + clen <= part_start + parts[part].bytes) {
        src = static_cast<const unsigned char*>(parts[part].data) + (ca - part_start);
      } else {
        if (scratch.size() < static_cast<size_t>(kGroup * kChunk))
          scratch.resize(static_cast<size_t>(kGroup * kChunk));
        unsigned char* dst = scratch.data() + used * kChunk;
        ++used;
        int64_t got = 0, q = part, qs = part_start;
        while (got < clen) {
          const int64_t from = ca + got - qs;
          const int64_t take = parts[q].bytes - from < clen - got ? parts[q].bytes - from
                                                                   : clen - got;
          std::memcpy(dst + got, static_cast<const unsigned char*>(parts[q].data) + from,
                      static_cast<size_t>(take));
          got += take;
          if (from + take == parts[q].bytes) {
            qs += parts[q].bytes;
            ++q;
          }
        }
        src = dst;
      }
      ptr[g] = src;
      off[g] = kElem ? ca / kElem : 0;
      ++g;
    }
    digest_group<kElem>(ptr, g, len, off, res.data() + c, avx512);
    c += g;
  }
  return fold(res, n_bytes);
}

}  // namespace

bool digest_uses_avx512() { return use_avx512(); }

RowDigest digest_row(const void* data, int64_t n_bytes, int elem_size, int n_threads) {
  const auto* p = static_cast<const unsigned char*>(data);
  switch (elem_size) {
    case 2:
      return digest_impl<2>(p, n_bytes, n_threads);
    case 4:
      return digest_impl<4>(p, n_bytes, n_threads);
    case 8:
      return digest_impl<8>(p, n_bytes, n_threads);
    default:
      return digest_impl<0>(p, n_bytes, n_threads);
  }
}

RowDigest digest_parts(const RowPart* parts, int64_t n_parts, int elem_size) {
  int64_t n_bytes = 0;
  for (int64_t i = 0; i < n_parts; ++i) n_bytes += parts[i].bytes;
  switch (elem_size) {
    case 2:
      return digest_parts_impl<2>(parts, n_parts, n_bytes);
    case 4:
      return digest_parts_impl<4>(parts, n_parts, n_bytes);
    case 8:
      return digest_parts_impl<8>(parts, n_parts, n_bytes);
    default:
      return digest_parts_impl<0>(parts, n_parts, n_bytes);
  }
}

}  // namespace fractaldiff
