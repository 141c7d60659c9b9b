// Helpers shared by the register_*.cpp files: numpy arrays -> plain views, with clear errors.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <initializer_list>
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

/// An output array the kernels add into: a writable, C-contiguous numpy array of exactly
/// dtype E (`dtype_name`) and the given shape. Nothing is converted: a converted temporary would
/// receive the results and be thrown away, so a wrong dtype, layout or shape raises ValueError
/// naming the argument.
template <class E>
E* as_output(const py::object& obj, std::initializer_list<int64_t> shape, const char* name,
             const char* dtype_name) {
  std::string want = "(";
  for (auto it = shape.begin(); it != shape.end(); ++it)
    want += (it == shape.begin() ? "" : ", ") + std::to_string(*it);
  want += shape.size() == 1 ? ",)" : ")";
  const std::string what = std::string(name) + " must be a writable C-contiguous " + dtype_name +
                           " numpy array of shape " + want;
  if (!py::isinstance<py::array>(obj))
    throw std::invalid_argument(what + ", got " + std::string(Py_TYPE(obj.ptr())->tp_name));
  auto a = py::reinterpret_borrow<py::array>(obj);
  if (!py::isinstance<py::array_t<E, py::array::c_style>>(a) || !a.writeable() ||
      a.ndim() != static_cast<py::ssize_t>(shape.size()))
    throw std::invalid_argument(what + ", got dtype " + std::string(py::str(a.dtype())) + ", " +
                                std::to_string(a.ndim()) + "-D" +
                                (a.writeable() ? "" : ", read-only") +
                                (a.flags() & py::array::c_style ? "" : ", not C-contiguous"));
  py::ssize_t d = 0;
  for (const int64_t n : shape) {
    if (static_cast<int64_t>(a.shape(d)) != n)
      throw std::invalid_argument(what + ", got shape " +
                                  std::string(py::str(a.attr("shape"))));
    ++d;
  }
  return static_cast<E*>(a.mutable_data());
}

/// Length of a 1-D numpy array, -1 for anything else (the output checks then name the problem).
inline int64_t length_1d(const py::object& a) {
  if (!py::isinstance<py::array>(a)) return -1;
  const auto arr = py::reinterpret_borrow<py::array>(a);
  return arr.ndim() == 1 ? static_cast<int64_t>(arr.shape(0)) : -1;
}

/// A writable, C-contiguous float64 1-D accumulator of the given length (no conversion).
inline double* as_accumulator(const py::object& a, int64_t length, const char* name) {
  return as_output<double>(a, {length}, name, "float64");
}

}  // namespace bindings
}  // namespace fractaldiff
