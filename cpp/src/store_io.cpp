// One-call appends for the snapshot store: every append path (direct, queued, parts) ends in
// commit_append or commit_append_parts below, which write in the order that makes a store
// crash-safe: row, metadata line, commit record.
#include "fractaldiff/store_io.hpp"

#include <fcntl.h>
#include <limits.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include "fractaldiff/digest.hpp"

namespace fractaldiff {

namespace {

/// Rows at least this large are written on a helper thread while the digest is computed.
constexpr int64_t kOverlapBytes = int64_t(1) << 20;

struct Crc32Table {
  uint32_t v[256];
  Crc32Table() {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (0xEDB88320u ^ (c >> 1)) : (c >> 1);
      v[i] = c;
    }
  }
};

const Crc32Table& crc_table() {
  static const Crc32Table table;
  return table;
}

/// pwrite everything (retrying short writes and EINTR); returns 0 or errno.
int pwrite_all(int fd, const void* data, int64_t n, int64_t offset) {
  const auto* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::pwrite(fd, p, static_cast<size_t>(n), static_cast<off_t>(offset));
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (w == 0) return EIO;  // no progress: never loop forever
    p += w;
    n -= w;
    offset += w;
  }
  return 0;
}

/// pwritev everything in ``parts`` at ``offset`` (batches of at most IOV_MAX vectors, short
/// writes and EINTR retried); returns 0 or errno.
int pwritev_all(int fd, const RowPart* parts, int64_t n_parts, int64_t offset) {
#ifdef IOV_MAX
  constexpr int64_t kMaxIov = IOV_MAX < 64 ? IOV_MAX : 64;
#else
  constexpr int64_t kMaxIov = 64;
#endif
  iovec iov[kMaxIov];
  int64_t i = 0, skip = 0;  // next part, and the bytes of it already written
  for (;;) {
    while (i < n_parts && parts[i].bytes == skip) {
      ++i;
      skip = 0;
    }
    if (i >= n_parts) return 0;
    const int64_t n = n_parts - i < kMaxIov ? n_parts - i : kMaxIov;
    for (int64_t k = 0; k < n; ++k) {
      const int64_t from = k == 0 ? skip : 0;
      iov[k].iov_base = const_cast<char*>(static_cast<const char*>(parts[i + k].data) + from);
      iov[k].iov_len = static_cast<size_t>(parts[i + k].bytes - from);
    }
    const ssize_t w = ::pwritev(fd, iov, static_cast<int>(n), static_cast<off_t>(offset));
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (w == 0) return EIO;
    offset += w;
    for (int64_t left = w; left > 0;) {
      const int64_t rest = parts[i].bytes - skip;
      if (left >= rest) {
        left -= rest;
        ++i;
        skip = 0;
      } else {
        skip += left;
        left = 0;
      }
    }
  }
}

AppendResult finish_append(AppendResult r, int fd_data, int fd_meta, const void* meta,
                           int64_t meta_bytes, int64_t meta_offset, int fd_commits,
                           int64_t commit_offset, uint64_t count, uint64_t meta_end,
                           bool durable);

/// Flip the metadata line's '"nonfinite":false' marker to '"nonfinite":true ' (same length).
void flag_nonfinite(char* meta, int64_t meta_bytes) {
  const size_t m = std::strlen(kNonfiniteFalse);
  const std::string_view line(meta, static_cast<size_t>(meta_bytes));
  const size_t at = line.find(kNonfiniteFalse);
  if (at != std::string_view::npos) std::memcpy(meta + at, "\"nonfinite\":true ", m);
}

int sync_data(int fd) {
#if defined(__APPLE__)
  return ::fsync(fd) == 0 ? 0 : errno;
#else
  return ::fdatasync(fd) == 0 ? 0 : errno;
#endif
}

}  // namespace

uint32_t crc32(const void* data, int64_t n, uint32_t crc) {
  const auto& t = crc_table().v;
  const auto* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
  for (int64_t i = 0; i < n; ++i) crc = t[(crc ^ p[i]) & 0xFFu] ^ (crc >> 8);
  return ~crc;
}

AppendResult commit_append(int fd_data, const void* row, int64_t row_bytes, int elem_size,
                           int64_t row_offset, int fd_meta, const void* meta, int64_t meta_bytes,
                           int64_t meta_offset, int fd_commits, int64_t commit_offset,
                           uint64_t count, uint64_t meta_end, bool checksum,
                           bool allow_nonfinite, bool durable, const RowDigest* digest) {
  AppendResult r;
  auto fail = [&r](int err, int stage) {
    r.error = err;
    r.stage = stage;
    return r;
  };
  if (!digest && row_bytes >= kOverlapBytes) {
    // large rows: write on a helper thread while this one computes the digest (both are
    // memory-bound passes over the row); nothing points to the row before its commit record,
    // so a refused (non-finite) row written meanwhile is past the committed data and harmless
    int write_err = 0;
    bool written = false;
    RowDigest d;
    try {
      std::thread writer([&] { write_err = pwrite_all(fd_data, row, row_bytes, row_offset); });
      d = digest_row(row, row_bytes, elem_size, 1);
      writer.join();
      written = true;
    } catch (const std::system_error&) {  // no thread available: one pass after the other
      d = digest_row(row, row_bytes, elem_size, 1);
    }
    r.n_nonfinite = d.n_nonfinite;
    if (d.n_nonfinite && !allow_nonfinite) return r;
    r.row_checksum = checksum ? static_cast<uint32_t>(d.checksum & 0xFFFFFFFFu) : 0u;
    if (!written) write_err = pwrite_all(fd_data, row, row_bytes, row_offset);
    if (write_err) return fail(write_err, 1);
    return finish_append(r, fd_data, fd_meta, meta, meta_bytes, meta_offset, fd_commits,
                         commit_offset, count, meta_end, durable);
  }
  const RowDigest d = digest ? *digest : digest_row(row, row_bytes, elem_size, 1);
  r.n_nonfinite = d.n_nonfinite;
  if (d.n_nonfinite && !allow_nonfinite) return r;
  r.row_checksum = checksum ? static_cast<uint32_t>(d.checksum & 0xFFFFFFFFu) : 0u;
  if (int e = pwrite_all(fd_data, row, row_bytes, row_offset)) return fail(e, 1);
  return finish_append(r, fd_data, fd_meta, meta, meta_bytes, meta_offset, fd_commits,
                       commit_offset, count, meta_end, durable);
}

AppendResult commit_append_parts(int fd_data, const RowPart* parts, int64_t n_parts,
                                 int elem_size, int64_t row_offset, int fd_meta, char* meta,
                                 int64_t meta_bytes, int64_t meta_offset, int fd_commits,
                                 int64_t commit_offset, uint64_t count, uint64_t meta_end,
                                 bool checksum, bool durable) {
  AppendResult r;
  // the row first, then the digest while the parts are still hot in the cache from the
  // write's copy (measured a little faster than the other order); nothing points to the row
  // until the commit record is written below
  if (int e = pwritev_all(fd_data, parts, n_parts, row_offset)) {
    r.error = e;
    r.stage = 1;
    return r;
  }
  const RowDigest d = digest_parts(parts, n_parts, elem_size);
  r.n_nonfinite = d.n_nonfinite;
  r.row_checksum = checksum ? static_cast<uint32_t>(d.checksum & 0xFFFFFFFFu) : 0u;
  if (d.n_nonfinite) flag_nonfinite(meta, meta_bytes);
  return finish_append(r, fd_data, fd_meta, meta, meta_bytes, meta_offset, fd_commits,
                       commit_offset, count, meta_end, durable);
}

namespace {

AppendResult finish_append(AppendResult r, int fd_data, int fd_meta, const void* meta,
                           int64_t meta_bytes, int64_t meta_offset, int fd_commits,
                           int64_t commit_offset, uint64_t count, uint64_t meta_end,
                           bool durable) {
  auto fail = [&r](int err, int stage) {
    r.error = err;
    r.stage = stage;
    return r;
  };
  if (int e = pwrite_all(fd_meta, meta, meta_bytes, meta_offset)) return fail(e, 2);
  if (durable) {
    if (int e = sync_data(fd_data)) return fail(e, 4);
    if (int e = sync_data(fd_meta)) return fail(e, 4);
  }
  unsigned char rec[32];
  std::memcpy(rec, "FDC1", 4);
  const uint32_t flags = 0;
  std::memcpy(rec + 4, &flags, 4);  // little-endian hosts (the store format is little-endian)
  std::memcpy(rec + 8, &count, 8);
  std::memcpy(rec + 16, &meta_end, 8);
  std::memcpy(rec + 24, &r.row_checksum, 4);
  const uint32_t rc = crc32(rec, 28);
  std::memcpy(rec + 28, &rc, 4);
  if (int e = pwrite_all(fd_commits, rec, 32, commit_offset)) return fail(e, 3);
  if (durable) {
    if (int e = sync_data(fd_commits)) return fail(e, 4);
  }
  return r;
}

}  // namespace

}  // namespace fractaldiff

namespace fractaldiff {

AppendWriter::AppendWriter(int fd_data, int fd_meta, int fd_commits, bool checksum, bool durable,
                           int64_t allocated)
    : fd_data_(fd_data),
      fd_meta_(fd_meta),
      fd_commits_(fd_commits),
      checksum_(checksum),
      durable_(durable),
      allocated_(allocated),
      thread_(&AppendWriter::run, this) {}

AppendWriter::~AppendWriter() { stop(); }

void AppendWriter::submit(AppendJob job) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(job));
    ++uncollected_;
  }
  cv_work_.notify_one();
}

std::vector<AppendDone> AppendWriter::collect() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<AppendDone> out;
  out.swap(done_);
  uncollected_ -= static_cast<int64_t>(out.size());
  return out;
}

void AppendWriter::wait() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_idle_.wait(lock, [this] { return queue_.empty() && in_flight_ == 0; });
}

int64_t AppendWriter::pending() const {
  std::lock_guard<std::mutex> lock(mu_);
  return uncollected_;
}

void AppendWriter::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!thread_.joinable()) return;
    stopping_ = true;
  }
  cv_work_.notify_one();
  thread_.join();  // the thread drains the queue before it leaves
}

void AppendWriter::run() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_work_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) break;  // stopping, nothing left
    AppendJob job = std::move(queue_.front());
    queue_.pop_front();
    ++in_flight_;
    const bool skip = failed_;
    lock.unlock();
    AppendDone d;
    d.token = job.token;
    if (skip) {
      d.result.error = -1;
    } else {
      const int64_t need = job.row_offset + job.row_bytes;
      if (need > allocated_) {  // reserve file space ahead (writes into it are ~1.6x faster)
        const int64_t step = job.row_bytes * 8 > (int64_t(64) << 20) ? job.row_bytes * 8
                                                                      : (int64_t(64) << 20);
        const int64_t size = need > allocated_ + step ? need : allocated_ + step;
#if defined(__linux__)
        (void)::posix_fallocate(fd_data_, allocated_, size - allocated_);  // best effort
#endif
        allocated_ = size;
      }
      const RowDigest digest = digest_row(job.row, job.row_bytes, job.elem_size, 1);
      if (digest.n_nonfinite) {  // flag it in the metadata line, keeping its length
        const size_t at = job.meta.find(kNonfiniteFalse);
        if (at != std::string::npos)
          job.meta.replace(at, std::strlen(kNonfiniteFalse), "\"nonfinite\":true ");
      }
      d.result = commit_append(fd_data_, job.row, job.row_bytes, job.elem_size, job.row_offset,
                               fd_meta_, job.meta.data(), static_cast<int64_t>(job.meta.size()),
                               job.meta_offset, fd_commits_, job.commit_offset, job.count,
                               job.meta_end, checksum_, /*allow_nonfinite=*/true, durable_,
                               &digest);
    }
    lock.lock();
    if (d.result.error != 0) failed_ = true;
    done_.push_back(d);
    --in_flight_;
    if (queue_.empty() && in_flight_ == 0) cv_idle_.notify_all();
  }
  cv_idle_.notify_all();
}

}  // namespace fractaldiff
