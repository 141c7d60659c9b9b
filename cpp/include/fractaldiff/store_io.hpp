// fractaldiff: the snapshot store's append as one call without Python: check and checksum the
// row, write it, write its metadata line, then its commit record (see docs/store.md).
#pragma once

#include <cstdint>

namespace fractaldiff {

/// Result of commit_append.
struct AppendResult {
  uint32_t row_checksum = 0;  ///< low 32 bits of the row's fd64 hash (0 when not asked for)
  int64_t n_nonfinite = 0;    ///< NaN/Inf values in the row
  int error = 0;              ///< errno of a failed write/sync, or 0
  int stage = 0;              ///< 1 row, 2 metadata, 3 commit record, 4 sync (when error != 0)
};

/// Append one snapshot: if the row has non-finite values and !allow_nonfinite, nothing is
/// written and n_nonfinite > 0 tells why. Otherwise: row at row_offset of fd_data, metadata
/// line at meta_offset of fd_meta (fdatasync both when durable), then the 32-byte commit record
/// {"FDC1", flags 0, count, meta_end, row checksum, CRC-32 of the first 28 bytes} at
/// commit_offset of fd_commits (fdatasync when durable). The order is what makes appends
/// crash-safe: a record is only ever written after everything it points to.
AppendResult commit_append(int fd_data, const void* row, int64_t row_bytes, int elem_size,
                           int64_t row_offset, int fd_meta, const void* meta, int64_t meta_bytes,
                           int64_t meta_offset, int fd_commits, int64_t commit_offset,
                           uint64_t count, uint64_t meta_end, bool checksum,
                           bool allow_nonfinite, bool durable);

/// Standard CRC-32 (the one zlib.crc32 computes).
uint32_t crc32(const void* data, int64_t n, uint32_t crc = 0);

}  // namespace fractaldiff
