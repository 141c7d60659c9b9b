// Bindings used by the snapshot store: a one-pass row checksum + non-finite scan.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <tuple>

#include "fractaldiff/digest.hpp"

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

}  // namespace

void register_io(py::module_& m) {
  m.def("digest_row", &digest, py::arg("row"), py::arg("n_threads") = 0,
        "One pass over a C-contiguous array: (fd64 checksum of its bytes, number of NaN/Inf "
        "values, index of the first one or -1). Floats of 2, 4 or 8 bytes are scanned; other "
        "dtypes are only hashed. The checksum does not depend on n_threads.");
}

}  // namespace bindings
}  // namespace fractaldiff
