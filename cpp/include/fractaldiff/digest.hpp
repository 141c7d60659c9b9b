// fractaldiff: one pass over a snapshot row that both checksums it and counts non-finite values.
// Used by the snapshot store on every append, so it runs at memory speed (threads over chunks).
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

}  // namespace fractaldiff
