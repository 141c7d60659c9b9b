// fractaldiff: one pass over a snapshot row that both checksums it and counts non-finite values.
// Used by the snapshot store on every append, so it runs at memory speed (several 64 KiB chunks
// hashed in lockstep with AVX-512 where the CPU has it, threads over chunks for large rows).
#pragma once

#include <cstdint>

namespace fractaldiff {

/// Result of digest_row.
struct RowDigest {
  uint64_t checksum = 0;     ///< fd64 hash of the bytes (see digest.cpp)
  int64_t n_nonfinite = 0;   ///< NaN/Inf values among the elements
  int64_t first_nonfinite = -1;  ///< index of the first one, or -1
};

/// Hash ``n_bytes`` bytes and count non-finite IEEE floats of ``elem_size`` bytes (2, 4 or 8;
/// 0 skips the check). The hash does not depend on n_threads.
RowDigest digest_row(const void* data, int64_t n_bytes, int elem_size, int n_threads);

/// One piece of a row that lives in the caller's memory (e.g. one parameter tensor).
struct RowPart {
  const void* data = nullptr;
  int64_t bytes = 0;
};

/// digest_row of the concatenation of ``parts`` (in order), read where they are: the result is
/// bit-identical to digest_row on a gathered copy. Each part's size must be a multiple of
/// elem_size. Single-threaded (meant for rows that are hot in the cache).
RowDigest digest_parts(const RowPart* parts, int64_t n_parts, int elem_size);

/// Whether the digest uses the AVX-512 lockstep path now (it follows the active SIMD level:
/// set_simd_level("baseline") selects the portable code).
bool digest_uses_avx512();

}  // namespace fractaldiff
