// fractaldiff: the snapshot store's append as one call without Python: check and checksum the
// row, write it, write its metadata line, then its commit record (see docs/store.md).
#pragma once

#include <cstdint>

#include "fractaldiff/digest.hpp"

namespace fractaldiff {

/// Result of commit_append.
struct AppendResult {
  uint32_t row_checksum = 0;  ///< low 32 bits of the row's fd64 hash (0 when not asked for)
  int64_t n_nonfinite = 0;    ///< NaN/Inf values in the row
  int error = 0;              ///< errno of a failed write/sync, or 0
  int stage = 0;              ///< 1 row, 2 metadata, 3 commit record, 4 sync (when error != 0)
};

/// Append one snapshot: if the row has non-finite values and !allow_nonfinite, nothing is
/// committed and n_nonfinite > 0 tells why (a row of 1 MiB or more may have been written past
/// the committed data: its write overlaps the digest on a helper thread). Otherwise: row at row_offset of fd_data, metadata
/// line at meta_offset of fd_meta (fdatasync both when durable), then the 32-byte commit record
/// {"FDC1", flags 0, count, meta_end, row checksum, CRC-32 of the first 28 bytes} at
/// commit_offset of fd_commits (fdatasync when durable). The order is what makes appends
/// crash-safe: a record is only ever written after everything it points to.
AppendResult commit_append(int fd_data, const void* row, int64_t row_bytes, int elem_size,
                           int64_t row_offset, int fd_meta, const void* meta, int64_t meta_bytes,
                           int64_t meta_offset, int fd_commits, int64_t commit_offset,
                           uint64_t count, uint64_t meta_end, bool checksum,
                           bool allow_nonfinite, bool durable,
                           const RowDigest* digest = nullptr);

/// Append one snapshot whose row is the concatenation of ``parts`` (e.g. a model's parameter
/// tensors), read where they are, with no gathered copy: the row is written from them with
/// pwritev at row_offset of fd_data, the digest (checksum and NaN/Inf count) is taken from the
/// parts, then the metadata line (its '"nonfinite":false' marker, if present, becomes
/// '"nonfinite":true ' when the row holds NaN/Inf: ``meta`` is modified in place), then the commit
/// record, in the order and with the syncs of commit_append. NaN/Inf values are stored and
/// counted, never refused. The parts must not change during the call.
AppendResult commit_append_parts(int fd_data, const RowPart* parts, int64_t n_parts,
                                 int elem_size, int64_t row_offset, int fd_meta, char* meta,
                                 int64_t meta_bytes, int64_t meta_offset, int fd_commits,
                                 int64_t commit_offset, uint64_t count, uint64_t meta_end,
                                 bool checksum, bool durable);

/// Standard CRC-32 (the one zlib.crc32 computes).
uint32_t crc32(const void* data, int64_t n, uint32_t crc = 0);

}  // namespace fractaldiff

#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace fractaldiff {

/// One queued append for AppendWriter (the row memory is owned by the caller until the job's
/// result has been collected).
struct AppendJob {
  const void* row = nullptr;
  int64_t row_bytes = 0;
  int elem_size = 0;
  int64_t row_offset = 0;
  std::string meta;
  int64_t meta_offset = 0;
  int64_t commit_offset = 0;
  uint64_t count = 0;
  uint64_t meta_end = 0;
  int64_t token = 0;
};

/// In a metadata line, the marker the writer flips when the row holds NaN/Inf (same length,
/// so later offsets stay valid): '"nonfinite":false' becomes '"nonfinite":true '.
constexpr const char* kNonfiniteFalse = "\"nonfinite\":false";

/// Outcome of one AppendJob: err = -1 means "not attempted" (an earlier job failed).
struct AppendDone {
  int64_t token = 0;
  AppendResult result;
};

/// A background thread that performs queued appends in order (commit records stay in order, so
/// the store's crash safety is unchanged) without ever touching Python. Non-finite values are
/// stored and counted, never refused. After a failed write, later jobs are not attempted.
class AppendWriter {
 public:
  /// ``allocated``: bytes of fd_data already reserved; the writer reserves more ahead of the
  /// rows (posix_fallocate, in steps of at least 64 MiB) on its own thread.
  AppendWriter(int fd_data, int fd_meta, int fd_commits, bool checksum, bool durable,
               int64_t allocated = 0);
  ~AppendWriter();
  AppendWriter(const AppendWriter&) = delete;
  AppendWriter& operator=(const AppendWriter&) = delete;

  void submit(AppendJob job);
  /// Results of the jobs finished since the last call, in submission order.
  std::vector<AppendDone> collect();
  /// Block until every submitted job has finished (or been skipped).
  void wait();
  /// Number of jobs submitted and not yet collected.
  int64_t pending() const;
  void stop();

 private:
  void run();
  int fd_data_, fd_meta_, fd_commits_;
  bool checksum_, durable_;
  int64_t allocated_;
  mutable std::mutex mu_;
  std::condition_variable cv_work_, cv_idle_;
  std::deque<AppendJob> queue_;
  std::vector<AppendDone> done_;
  int64_t in_flight_ = 0;
  int64_t uncollected_ = 0;
  bool failed_ = false;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace fractaldiff
