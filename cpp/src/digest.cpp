// fd64: the snapshot store's row checksum, and the non-finite scan, in one threaded pass.
//
// The bytes are cut into 64 KiB chunks. Each chunk is hashed by four independent 64-bit lanes
// (lane i takes words 4k+i: x = (lane ^ word) * K1, then a rotate), so the multiply latency does
// not serialise the pass; a chunk's lanes and length are mixed into one 64-bit value, and the
// chunk values are folded in order. Chunks are independent, so threads split them freely and the
// result never depends on the thread count. It detects corruption (any single flipped bit
// changes the hash; two random rows collide with probability about 2^-64); it is not a
// cryptographic hash.
#include "fractaldiff/digest.hpp"

#include <cstring>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace fractaldiff {

namespace {

constexpr uint64_t kK1 = 0x9E3779B97F4A7C15ull;
constexpr uint64_t kK2 = 0xC2B2AE3D27D4EB4Full;
constexpr int64_t kChunk = 1 << 16;

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
  int64_t first;  // byte-element index within the row, or -1
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

template <int kElem>
ChunkResult digest_chunk(const unsigned char* p, int64_t n, int64_t elem_offset) {
  uint64_t lane[4] = {kK2, kK2 ^ 1, kK2 ^ 2, kK2 ^ 3};
  const int64_t n_words = n / 8;
  int64_t w = 0;
  for (; w + 4 <= n_words; w += 4) {
    uint64_t v[4];
    std::memcpy(v, p + 8 * w, 32);
    for (int i = 0; i < 4; ++i) lane[i] = rotl((lane[i] ^ v[i]) * kK1, 31);
  }
  for (; w < n_words; ++w) {
    uint64_t v;
    std::memcpy(&v, p + 8 * w, 8);
    lane[w & 3] = rotl((lane[w & 3] ^ v) * kK1, 31);
  }
  if (n % 8) {
    uint64_t v = 0;
    std::memcpy(&v, p + 8 * n_words, n % 8);
    lane[0] = rotl((lane[0] ^ v) * kK1, 31);
  }
  uint64_t h = mix64(lane[0] ^ rotl(lane[1], 17) ^ rotl(lane[2], 29) ^ rotl(lane[3], 43) ^
                     static_cast<uint64_t>(n));
  ChunkResult r{h, 0, -1};
  if constexpr (kElem > 0) {
    // branch-free count first (vectorises); locate only when something was found
    int64_t count = 0;
    for (int64_t i = 0; i + kElem <= n; i += kElem) count += is_nonfinite<kElem>(p + i);
    if (count) {
      for (int64_t i = 0; i + kElem <= n; i += kElem)
        if (is_nonfinite<kElem>(p + i)) {
          r.first = elem_offset + i / kElem;
          break;
        }
    }
    r.nonfinite = count;
  }
  return r;
}

template <int kElem>
RowDigest digest_impl(const unsigned char* p, int64_t n_bytes, int n_threads) {
  const int64_t n_chunks = n_bytes == 0 ? 1 : (n_bytes + kChunk - 1) / kChunk;
  std::vector<ChunkResult> res(static_cast<size_t>(n_chunks));
#ifdef _OPENMP
  const int nth = n_threads > 0 ? n_threads : omp_get_max_threads();
#pragma omp parallel for schedule(static) num_threads(nth) if (n_chunks > 4)
#endif
  for (int64_t c = 0; c < n_chunks; ++c) {
    const int64_t a = c * kChunk;
    const int64_t len = n_bytes - a < kChunk ? n_bytes - a : kChunk;
    res[static_cast<size_t>(c)] = digest_chunk<kElem>(p + a, len, kElem ? a / kElem : 0);
  }
  (void)n_threads;
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

}  // namespace

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

}  // namespace fractaldiff
