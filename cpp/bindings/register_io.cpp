// Bindings used by the snapshot store: a one-pass row checksum + non-finite scan.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <map>
#include <tuple>

#include "fractaldiff/digest.hpp"
#include "fractaldiff/store_io.hpp"

namespace fractaldiff {
namespace bindings {

namespace py = pybind11;

namespace {

std::tuple<uint64_t, int64_t, int64_t> digest(const py::array& row, int n_threads) {
  if (!(row.flags() & py::array::c_style))
    throw std::invalid_argument("row must be a C-contiguous array");
  const char kind = row.dtype().kind();
  const int item = static_cast<int>(row.dtype().itemsize());
  const int elem = (kind == 'f' && (item == 2 || item == 4 || item == 8)) ? item : 0;
  const int64_t n_bytes = static_cast<int64_t>(row.nbytes());
  const void* data = row.data();
  RowDigest d;
  {
    py::gil_scoped_release release;
    d = digest_row(data, n_bytes, elem, n_threads);
  }
  return {d.checksum, d.n_nonfinite, d.first_nonfinite};
}

std::tuple<uint32_t, int64_t, int, int> append(int fd_data, const py::array& row,
                                               int64_t row_offset, int fd_meta,
                                               const py::bytes& meta, int64_t meta_offset,
                                               int fd_commits, int64_t commit_offset,
                                               uint64_t count, uint64_t meta_end, bool checksum,
                                               bool allow_nonfinite, bool durable) {
  if (!(row.flags() & py::array::c_style))
    throw std::invalid_argument("row must be a C-contiguous array");
  const char kind = row.dtype().kind();
  const int item = static_cast<int>(row.dtype().itemsize());
  const int elem = (kind == 'f' && (item == 2 || item == 4 || item == 8)) ? item : 0;
  char* meta_ptr = nullptr;
  Py_ssize_t meta_len = 0;
  if (PyBytes_AsStringAndSize(meta.ptr(), &meta_ptr, &meta_len) != 0)
    throw py::error_already_set();
  const void* data = row.data();
  const int64_t n_bytes = static_cast<int64_t>(row.nbytes());
  AppendResult r;
  {
    py::gil_scoped_release release;
    r = commit_append(fd_data, data, n_bytes, elem, row_offset, fd_meta, meta_ptr, meta_len,
                      meta_offset, fd_commits, commit_offset, count, meta_end, checksum,
                      allow_nonfinite, durable);
  }
  return {r.row_checksum, r.n_nonfinite, r.error, r.stage};
}

/// Python face of AppendWriter: keeps each submitted row array alive until its result has
/// been collected (the writer thread reads it without the GIL).
class PyAppendWriter {
 public:
  PyAppendWriter(int fd_data, int fd_meta, int fd_commits, bool checksum, bool durable,
                 int64_t allocated)
      : w_(fd_data, fd_meta, fd_commits, checksum, durable, allocated) {}
  ~PyAppendWriter() {
    py::gil_scoped_release release;
    w_.stop();
  }

  void submit(const py::array& row, int64_t row_offset, const py::bytes& meta,
              int64_t meta_offset, int64_t commit_offset, uint64_t count, uint64_t meta_end,
              int64_t token) {
    if (!(row.flags() & py::array::c_style))
      throw std::invalid_argument("row must be a C-contiguous array");
    AppendJob job;
    job.row = row.data();
    job.row_bytes = static_cast<int64_t>(row.nbytes());
    const char kind = row.dtype().kind();
    const int item = static_cast<int>(row.dtype().itemsize());
    job.elem_size = (kind == 'f' && (item == 2 || item == 4 || item == 8)) ? item : 0;
    job.row_offset = row_offset;
    job.meta = meta;
    job.meta_offset = meta_offset;
    job.commit_offset = commit_offset;
    job.count = count;
    job.meta_end = meta_end;
    job.token = token;
    rows_[token] = row;  // keep the memory alive while the writer may read it
    w_.submit(std::move(job));
  }

  /// [(token, row checksum, n_nonfinite, errno (-1: not attempted), stage), ...]
  py::list collect() {
    py::list out;
    for (const AppendDone& d : w_.collect()) {
      rows_.erase(d.token);
      out.append(py::make_tuple(d.token, d.result.row_checksum, d.result.n_nonfinite,
                                d.result.error, d.result.stage));
    }
    return out;
  }

  void wait() {
    py::gil_scoped_release release;
    w_.wait();
  }

  int64_t pending() const { return w_.pending(); }

 private:
  AppendWriter w_;
  std::map<int64_t, py::array> rows_;
};

}  // namespace

void register_io(py::module_& m) {
  py::class_<PyAppendWriter>(m, "AppendWriter",
                             "Background thread appending rows to a snapshot store in order, "
                             "without the GIL (private; see SnapshotStore.append_async).")
      .def(py::init<int, int, int, bool, bool, int64_t>(), py::arg("fd_data"),
           py::arg("fd_meta"), py::arg("fd_commits"), py::arg("checksum"), py::arg("durable"),
           py::arg("allocated") = 0)
      .def("submit", &PyAppendWriter::submit, py::arg("row"), py::arg("row_offset"),
           py::arg("meta"), py::arg("meta_offset"), py::arg("commit_offset"), py::arg("count"),
           py::arg("meta_end"), py::arg("token"))
      .def("collect", &PyAppendWriter::collect)
      .def("wait", &PyAppendWriter::wait)
      .def("pending", &PyAppendWriter::pending);
  m.def("store_append", &append, py::arg("fd_data"), py::arg("row"), py::arg("row_offset"),
        py::arg("fd_meta"), py::arg("meta"), py::arg("meta_offset"), py::arg("fd_commits"),
        py::arg("commit_offset"), py::arg("count"), py::arg("meta_end"), py::arg("checksum"),
        py::arg("allow_nonfinite"), py::arg("durable"),
        "Snapshot-store append in one call without the GIL: NaN/Inf check and fd64 checksum, "
        "row, metadata line, commit record (in that order). Returns (row checksum, "
        "n_nonfinite, errno, stage); nothing is written when the row has NaN/Inf and "
        "allow_nonfinite is False.");
  m.def("crc32", [](const py::bytes& b) {
    std::string s = b;
    return crc32(s.data(), static_cast<int64_t>(s.size()));
  }, py::arg("data"), "CRC-32 of bytes (the same as zlib.crc32).");
  m.def("digest_row", &digest, py::arg("row"), py::arg("n_threads") = 0,
        "One pass over a C-contiguous array: (fd64 checksum of its bytes, number of NaN/Inf "
        "values, index of the first one or -1). Floats of 2, 4 or 8 bytes are scanned; other "
        "dtypes are only hashed. The checksum does not depend on n_threads.");
}

}  // namespace bindings
}  // namespace fractaldiff
