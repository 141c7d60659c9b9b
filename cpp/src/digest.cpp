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
// reference implementation). The chunk hashing is a kernel like the others
// (digest_kernels.hpp), compiled per SIMD level and called through the active KernelTable;
// this file only cuts rows into chunks, spreads them over threads and folds the results.
#include "fractaldiff/digest.hpp"

#include <cstring>
#include <vector>

#include "fractaldiff/api.hpp"
#include "fractaldiff/digest_kernels.hpp"  // constants and mix64 (the generic copy)

#ifdef _OPENMP
#include <omp.h>
#endif

namespace fractaldiff {

namespace {

using generic::digest::kChunk;
using generic::digest::kGroup;
using generic::digest::kK1;
using generic::digest::kK2;
using generic::digest::mix64;
using ChunkResult = DigestChunk;

/// Hash ``n_chunks`` (<= kGroup) chunks of equal length ``n`` with the active SIMD level.
template <int kElem>
void digest_group(const unsigned char* const* p, int n_chunks, int64_t n,
                  const int64_t* elem_offset, ChunkResult* out) {
  active_kernels().digest_group(kElem, p, n_chunks, n, elem_offset, out);
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
                  ChunkResult* res) {
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
    digest_group<kElem>(ptr, g, len, off, res + (c - c0));
    c += g;
  }
}

template <int kElem>
RowDigest digest_impl(const unsigned char* p, int64_t n_bytes, int n_threads) {
  const int64_t n_chunks = n_bytes == 0 ? 1 : (n_bytes + kChunk - 1) / kChunk;
  std::vector<ChunkResult> res(static_cast<size_t>(n_chunks));
  int nth = 1;
#ifdef _OPENMP
  nth = n_threads > 0 ? n_threads : omp_get_max_threads();
  if (n_chunks < 4 * kGroup) nth = 1;  // a few MiB: one thread is faster than waking others
#endif
  (void)n_threads;
  if (nth <= 1) {
    digest_range<kElem>(p, n_bytes, 0, n_chunks, res.data());
  } else {
#ifdef _OPENMP
    // contiguous ranges of whole groups per thread; the fold below keeps the chunk order
    const int64_t n_groups = (n_chunks + kGroup - 1) / kGroup;
#pragma omp parallel for schedule(static) num_threads(nth)
    for (int64_t gi = 0; gi < n_groups; ++gi) {
      const int64_t c0 = gi * kGroup;
      const int64_t c1 = c0 + kGroup < n_chunks ? c0 + kGroup : n_chunks;
      digest_range<kElem>(p, n_bytes, c0, c1, res.data() + c0);
    }
#endif
  }
  return fold(res, n_bytes);
}

template <int kElem>
RowDigest digest_parts_impl(const RowPart* parts, int64_t n_parts, int64_t n_bytes) {
  const int64_t n_chunks = n_bytes == 0 ? 1 : (n_bytes + kChunk - 1) / kChunk;
  std::vector<ChunkResult> res(static_cast<size_t>(n_chunks));
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
    digest_group<kElem>(ptr, g, len, off, res.data() + c);
    c += g;
  }
  return fold(res, n_bytes);
}

}  // namespace

bool digest_uses_avx512() {
  return std::strcmp(active_kernels().simd_level, "avx512") == 0;
}

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
