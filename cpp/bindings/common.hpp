// Helpers shared by the register_*.cpp files: numpy arrays -> plain views, with clear errors.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

#include "fractaldiff/api.hpp"

namespace fractaldiff {
namespace bindings {

namespace py = pybind11;

/// A 2-D float32/float64 native-endian array as a strided view (no copy).
inline StridedMatrix as_matrix(const py::array& x, const char* name) {
  if (x.ndim() != 2)
    throw std::invalid_argument(std::string(name) + " must be 2-D, got " +
                                std::to_string(x.ndim()) + "-D");
  StridedMatrix m;
  const py::dtype dt = x.dtype();
  const char order = dt.byteorder();
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  const char native = '>';
#else
  const char native = '<';
#endif
  const bool native_order = order == '=' || order == '|' || order == native;
  if (dt.kind() == 'f' && dt.itemsize() == 4 && native_order) {
    m.dtype = DType::f32;
  } else if (dt.kind() == 'f' && dt.itemsize() == 8 && native_order) {
    m.dtype = DType::f64;
  } else {
    throw std::invalid_argument(std::string(name) +
                                " must be native-endian float32 or float64, got dtype " +
                                std::string(py::str(dt)));
  }
  const auto item = static_cast<int64_t>(dt.itemsize());
  const auto s0 = static_cast<int64_t>(x.strides(0)), s1 = static_cast<int64_t>(x.strides(1));
  if (s0 % item != 0 || s1 % item != 0)
    throw std::invalid_argument(std::string(name) + " has strides that are not a multiple of " +
                                "its item size");
  m.data = x.data();
  m.n_rows = static_cast<int64_t>(x.shape(0));
  m.n_cols = static_cast<int64_t>(x.shape(1));
  m.row_stride = s0 / item;
  m.col_stride = s1 / item;
  return m;
}

/// A writable, C-contiguous float64 1-D accumulator of the given length.
inline double* as_accumulator(py::array_t<double>& a, int64_t length, const char* name) {
  if (a.ndim() != 1 || static_cast<int64_t>(a.shape(0)) != length)
    throw std::invalid_argument(std::string(name) + " must be a 1-D float64 array of length " +
                                std::to_string(length));
  if (!(a.flags() & py::array::c_style) || !a.writeable())
    throw std::invalid_argument(std::string(name) + " must be C-contiguous and writable");
  return a.mutable_data();
}

}  // namespace bindings
}  // namespace fractaldiff
