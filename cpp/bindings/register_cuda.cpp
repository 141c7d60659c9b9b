// Bindings of the CUDA folds (cuda/cuda_api.hpp): one class per fold kind, sharing the streaming
// methods. Compiled in every build: without CUDA the constructors raise a clear error
// (cuda/no_cuda.cpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda_api.hpp"
#include "common.hpp"
#include "fractaldiff/api.hpp"

namespace fractaldiff {
namespace bindings {

namespace {

/// A (T, B) matrix in device memory described by pointer, dtype name and element strides.
StridedMatrix device_matrix(uintptr_t ptr, const std::string& dtype, int64_t n_rows,
                            int64_t n_cols, int64_t row_stride, int64_t col_stride) {
  StridedMatrix m;
  if (dtype == "float32") {
    m.dtype = DType::f32;
  } else if (dtype == "float64") {
    m.dtype = DType::f64;
  } else {
    throw std::invalid_argument("dtype must be 'float32' or 'float64', got '" + dtype + "'");
  }
  if (n_rows < 0 || n_cols < 0) throw std::invalid_argument("negative shape");
  m.data = reinterpret_cast<const void*>(ptr);
  m.n_rows = n_rows;
  m.n_cols = n_cols;
  m.row_stride = row_stride;
  m.col_stride = col_stride;
  if (n_cols > 0 && ptr == 0) throw std::invalid_argument("x's device pointer is null");
  return m;
}

/// The methods every GPU fold kind shares (streaming and synchronisation).
template <class Fold>
struct PyFoldBase {
  std::unique_ptr<Fold> fold;
  int64_t n_rows = 0;

  void fold_host(const py::array& x) {
    const StridedMatrix m = as_matrix(x, "x");
    py::gil_scoped_release release;
    fold->fold_host(m);
  }
  void fold_device(uintptr_t ptr, const std::string& dtype, int64_t rows, int64_t cols,
                   int64_t row_stride, int64_t col_stride) {
    const StridedMatrix m = device_matrix(ptr, dtype, rows, cols, row_stride, col_stride);
    if (cols == 0) return;
    py::gil_scoped_release release;
    fold->fold_device(m);
  }
  void synchronize() {
    py::gil_scoped_release release;
    fold->synchronize();
  }
  int64_t device_bytes() const { return fold->device_bytes(); }
};

template <class Fold, class... A>
std::unique_ptr<Fold> make_fold(A... args) {
  py::gil_scoped_release release;
  return std::make_unique<Fold>(args...);
}

struct PyMsdFold : PyFoldBase<cuda::MsdFftFold> {
  int64_t n_direct = 0;
  PyMsdFold(int device, int64_t rows, int64_t direct, int64_t memory_limit) : n_direct(direct) {
    n_rows = rows;
    fold = make_fold<cuda::MsdFftFold>(device, rows, direct, memory_limit);
  }
  int finish(const py::object& power, const py::object& sqnorm, const py::object& direct) {
    double* a = as_accumulator(power, msd_fft_length(n_rows), "power");
    double* b = as_accumulator(sqnorm, n_rows, "sqnorm");
    double* c = as_accumulator(direct, n_direct + 1, "direct");
    py::gil_scoped_release release;
    return fold->finish(a, b, c);
  }
};

struct PyLagsFold : PyFoldBase<cuda::LagsFold> {
  int64_t n_lags = 0;
  PyLagsFold(int device, int64_t rows,
             py::array_t<int64_t, py::array::c_style | py::array::forcecast> lags,
             int64_t memory_limit) {
    if (lags.ndim() != 1) throw std::invalid_argument("lags must be 1-D");
    std::vector<int64_t> l(lags.data(), lags.data() + lags.shape(0));
    n_rows = rows;
    n_lags = static_cast<int64_t>(l.size());
    fold = make_fold<cuda::LagsFold>(device, rows, l, memory_limit);
  }
  int finish(const py::object& sums) {
    double* a = as_accumulator(sums, n_lags, "sums");
    py::gil_scoped_release release;
    return fold->finish(a);
  }
};

struct PyDisplacementFold : PyFoldBase<cuda::DisplacementFold> {
  PyDisplacementFold(int device, int64_t rows, int64_t ref, int64_t memory_limit) {
    n_rows = rows;
    fold = make_fold<cuda::DisplacementFold>(device, rows, ref, memory_limit);
  }
  int finish(const py::object& sq) {
    double* a = as_accumulator(sq, n_rows, "sq");
    py::gil_scoped_release release;
    return fold->finish(a);
  }
};

struct PyBoxIdsFold : PyFoldBase<cuda::BoxIdsFold> {
  int n_scales = 0;
  py::array_t<double> origin;  // the current block's origins, read by the fold until finish()
  PyBoxIdsFold(int device, int64_t rows, int scales, uint64_t key_seed, double eps0,
               int64_t memory_limit)
      : n_scales(scales) {
    if (!(eps0 > 0.0) || !std::isfinite(eps0))
      throw std::invalid_argument("eps0 must be a finite number > 0");
    n_rows = rows;
    // 1/eps0 computed exactly as the CPU binding does, so the quantization matches bit for bit
    fold = make_fold<cuda::BoxIdsFold>(device, rows, scales, key_seed, 1.0 / eps0, memory_limit);
  }
  void set_block(int64_t col_start,
                 py::array_t<double, py::array::c_style | py::array::forcecast> o) {
    if (o.ndim() != 1) throw std::invalid_argument("origin must be 1-D");
    {
      py::gil_scoped_release release;
      fold->set_block(col_start, o.data(), o.shape(0));
    }
    origin = std::move(o);
  }
  int finish(const py::object& ids) {
    uint64_t* out = as_output<uint64_t>(ids, {n_rows, n_scales, 2}, "ids", "uint64");
    int status;
    {
      py::gil_scoped_release release;
      status = fold->finish(out);
    }
    origin = py::array_t<double>();
    return status;
  }
};

struct PyGramFold : PyFoldBase<cuda::GramFold> {
  PyGramFold(int device, int64_t rows, int64_t memory_limit) {
    n_rows = rows;
    fold = make_fold<cuda::GramFold>(device, rows, memory_limit);
  }
  int finish(const py::object& gram) {
    double* g = as_output<double>(gram, {n_rows, n_rows}, "gram", "float64");
    py::gil_scoped_release release;
    return fold->finish(g);
  }
};

/// Bind the shared methods of a fold kind.
template <class Py>
py::class_<Py> bind_fold(py::module_& m, const char* name, const char* doc) {
  py::class_<Py> c(m, name, doc);
  c.def("fold_host", &Py::fold_host, py::arg("x"),
        "Stream a host (T, B) float32/float64 array (any strides) to the device and fold it.")
      .def("fold_device", &Py::fold_device, py::arg("ptr"), py::arg("dtype"), py::arg("n_rows"),
           py::arg("n_cols"), py::arg("row_stride"), py::arg("col_stride"),
           "Fold a (T, B) matrix in device memory; strides in elements (may be negative).")
      .def("synchronize", &Py::synchronize,
           "Wait for every kernel and copy issued so far (device inputs may then be freed).")
      .def("device_bytes", &Py::device_bytes, "Device memory held now, in bytes.");
  return c;
}

int box_minmax_device(uintptr_t ptr, const std::string& dtype, int64_t n_rows, int64_t n_cols,
                      int64_t row_stride, int64_t col_stride, int device,
                      const py::object& mins, const py::object& maxs, int64_t memory_limit) {
  const StridedMatrix m = device_matrix(ptr, dtype, n_rows, n_cols, row_stride, col_stride);
  double* lo = as_accumulator(mins, n_cols, "mins");
  double* hi = as_accumulator(maxs, n_cols, "maxs");
  if (memory_limit < (1 << 20)) throw std::invalid_argument("memory_limit must be >= 1 MiB");
  py::gil_scoped_release release;
  return cuda::box_minmax_device(device, m, lo, hi, memory_limit);
}

}  // namespace

void register_cuda(py::module_& m) {
  static py::exception<cuda::CudaError> cuda_error(m, "CudaError", PyExc_RuntimeError);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const cuda::CudaOutOfMemory& e) {
      PyErr_SetString(PyExc_MemoryError, e.what());
    } catch (const cuda::CudaError& e) {
      py::set_error(cuda_error, e.what());
    }
  });
  m.def("cuda_device_name", &cuda::device_name, py::arg("device") = 0,
        "Name, compute capability, SM count and memory of a CUDA device ('' if unavailable).");
  m.def("cuda_box_minmax", &box_minmax_device, py::arg("ptr"), py::arg("dtype"),
        py::arg("n_rows"), py::arg("n_cols"), py::arg("row_stride"), py::arg("col_stride"),
        py::arg("device"), py::arg("mins"), py::arg("maxs"),
        py::arg("memory_limit") = int64_t(512) << 20,
        "Overwrite mins/maxs (length n_cols) with the per-column min and max of a (T, B) matrix "
        "in CUDA device memory (strides in elements), as box_minmax does on the host. Returns a "
        "status code (non-finite data -> STATUS_NONFINITE).");
  const int64_t ml = int64_t(512) << 20;
  bind_fold<PyMsdFold>(m, "GpuMsdFold", "All-lag MSD accumulators on a CUDA device (engine).")
      .def(py::init<int, int64_t, int64_t, int64_t>(), py::kw_only(), py::arg("device"),
           py::arg("n_rows"), py::arg("n_direct"), py::arg("memory_limit") = ml)
      .def("finish", &PyMsdFold::finish, py::arg("power"), py::arg("sqnorm"), py::arg("direct"),
           "Wait, add the sums into the host arrays, reset; returns a status code.");
  bind_fold<PyLagsFold>(m, "GpuLagsFold", "Selected-lag MSD sums on a CUDA device (engine).")
      .def(py::init<int, int64_t, py::array_t<int64_t, py::array::c_style | py::array::forcecast>,
                    int64_t>(),
           py::kw_only(), py::arg("device"), py::arg("n_rows"), py::arg("lags"),
           py::arg("memory_limit") = ml)
      .def("finish", &PyLagsFold::finish, py::arg("sums"),
           "Wait, add the lag sums into `sums`, reset; returns a status code.");
  bind_fold<PyDisplacementFold>(m, "GpuDisplacementFold",
                                "Squared displacements on a CUDA device (engine).")
      .def(py::init<int, int64_t, int64_t, int64_t>(), py::kw_only(), py::arg("device"),
           py::arg("n_rows"), py::arg("ref"), py::arg("memory_limit") = ml)
      .def("finish", &PyDisplacementFold::finish, py::arg("sq"),
           "Wait, add the squared displacements into `sq`, reset; returns a status code.");
  bind_fold<PyBoxIdsFold>(m, "GpuBoxIdsFold", "Box-id sums on a CUDA device (engine).")
      .def(py::init<int, int64_t, int, uint64_t, double, int64_t>(), py::kw_only(),
           py::arg("device"), py::arg("n_rows"), py::arg("n_scales"), py::arg("key_seed"),
           py::arg("eps0"), py::arg("memory_limit") = ml)
      .def("set_block", &PyBoxIdsFold::set_block, py::arg("col_start"), py::arg("origin"),
           "The next folded block starts at global column col_start and has these per-column "
           "origins.")
      .def("finish", &PyBoxIdsFold::finish, py::arg("ids"),
           "Wait, add the id sums into ids (T, n_scales, 2) mod 2^64, reset; returns a status "
           "code (STATUS_OUT_OF_RANGE when a quantized value left [0, 2^31)).");
  bind_fold<PyGramFold>(m, "GpuGramFold", "Centred Gram matrix on a CUDA device (engine).")
      .def(py::init<int, int64_t, int64_t>(), py::kw_only(), py::arg("device"),
           py::arg("n_rows"), py::arg("memory_limit") = ml)
      .def("finish", &PyGramFold::finish, py::arg("gram"),
           "Wait, add the Gram matrix into the lower triangle (j <= i) of `gram`, reset; "
           "returns a status code.");
}

}  // namespace bindings
}  // namespace fractaldiff
