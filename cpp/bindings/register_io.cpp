// Bindings used by the snapshot store: the append paths (direct, queued, parts) and the row digest.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <map>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

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

/// Python face of commit_append_parts: the parts (C-contiguous arrays whose concatenation is
/// one row, e.g. numpy views of a model's parameter tensors) are fixed at construction and kept
/// alive; each append reads them where they are, without the GIL.
class PyPartsAppender {
 public:
  PyPartsAppender(int fd_data, int fd_meta, int fd_commits, const py::list& parts,
                  bool checksum, bool durable)
      : fd_data_(fd_data), fd_meta_(fd_meta), fd_commits_(fd_commits), checksum_(checksum),
        durable_(durable) {
    for (const py::handle& h : parts) {
      py::array a = py::reinterpret_borrow<py::array>(h);
      if (!py::isinstance<py::array>(h))
        throw std::invalid_argument("parts must be numpy arrays");
      if (!(a.flags() & py::array::c_style))
        throw std::invalid_argument("every part must be a C-contiguous array");
      const char kind = a.dtype().kind();
      const int item = static_cast<int>(a.dtype().itemsize());
      const int elem = (kind == 'f' && (item == 2 || item == 4 || item == 8)) ? item : 0;
      if (parts_.empty()) elem_ = elem;
      else if (elem != elem_)
        throw std::invalid_argument("every part must have the same floating-point dtype");
      parts_.push_back(RowPart{a.data(), static_cast<int64_t>(a.nbytes())});
      bytes_ += static_cast<int64_t>(a.nbytes());
      keep_.push_back(a);
    }
  }

  /// (row checksum, n_nonfinite, errno, stage), as store_append.
  std::tuple<uint32_t, int64_t, int, int> append(int64_t row_offset, const py::bytes& meta,
                                                 int64_t meta_offset, int64_t commit_offset,
                                                 uint64_t count, uint64_t meta_end) {
    char* meta_ptr = nullptr;
    Py_ssize_t meta_len = 0;
    if (PyBytes_AsStringAndSize(meta.ptr(), &meta_ptr, &meta_len) != 0)
      throw py::error_already_set();
    std::string line(meta_ptr, static_cast<size_t>(meta_len));  // the NaN flag may change it
    AppendResult r;
    {
      py::gil_scoped_release release;
      r = commit_append_parts(fd_data_, parts_.data(), static_cast<int64_t>(parts_.size()),
                              elem_, row_offset, fd_meta_, line.data(),
                              static_cast<int64_t>(line.size()), meta_offset, fd_commits_,
                              commit_offset, count, meta_end, checksum_, durable_);
    }
    return {r.row_checksum, r.n_nonfinite, r.error, r.stage};
  }

  /// (fd64 checksum, n_nonfinite, first index or -1) of the parts' current contents.
  std::tuple<uint64_t, int64_t, int64_t> digest() const {
    RowDigest d;
    {
      py::gil_scoped_release release;
      d = digest_parts(parts_.data(), static_cast<int64_t>(parts_.size()), elem_);
    }
    return {d.checksum, d.n_nonfinite, d.first_nonfinite};
  }

  int64_t nbytes() const { return bytes_; }

 private:
  int fd_data_, fd_meta_, fd_commits_;
  bool checksum_, durable_;
  int elem_ = 0;
  int64_t bytes_ = 0;
  std::vector<RowPart> parts_;
  std::vector<py::array> keep_;
};

}  // namespace

void register_io(py::module_& m) {
  py::class_<PyPartsAppender>(m, "PartsAppender",
                              "Snapshot-store appends of a row held in several arrays (e.g. a "
                              "model's parameters), written from their memory in one call "
                              "without the GIL (private; see SnapshotStore.parts_writer).")
      .def(py::init<int, int, int, const py::list&, bool, bool>(), py::arg("fd_data"),
           py::arg("fd_meta"), py::arg("fd_commits"), py::arg("parts"), py::arg("checksum"),
           py::arg("durable"))
      .def("append", &PyPartsAppender::append, py::arg("row_offset"), py::arg("meta"),
           py::arg("meta_offset"), py::arg("commit_offset"), py::arg("count"),
           py::arg("meta_end"),
           "Digest the parts, write them as one row (pwritev), the metadata line (its "
           "'\"nonfinite\":false' marker flipped on NaN/Inf) and the commit record. Returns "
           "(row checksum, n_nonfinite, errno, stage).")
      .def("digest", &PyPartsAppender::digest,
           "(fd64 checksum, n_nonfinite, first index or -1) of the concatenated parts, as "
           "digest_row of a gathered copy.")
      .def_property_readonly("nbytes", &PyPartsAppender::nbytes);
  m.def("digest_uses_avx512", &digest_uses_avx512,
        "Whether the row digest takes its AVX-512 path (it follows the active SIMD level).");
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
