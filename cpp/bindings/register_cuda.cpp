// Bindings of the CUDA folds (cuda/cuda_api.hpp). Compiled in every build: without CUDA the
// GpuFold constructor raises a clear error (cuda/no_cuda.cpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "../../cuda/cuda_api.hpp"
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

/// GpuFold plus the accumulator lengths its finish() expects.
class PyGpuFold {
 public:
  PyGpuFold(const std::string& kind, int device, int64_t n_rows, int64_t n_direct,
            py::array_t<int64_t, py::array::c_style | py::array::forcecast> lags, int64_t ref,
            int64_t memory_limit)
      : n_rows_(n_rows), n_direct_(n_direct) {
    if (kind == "msd_fft") {
      kind_ = cuda::FoldKind::msd_fft;
    } else if (kind == "msd_lags") {
      kind_ = cuda::FoldKind::msd_lags;
    } else if (kind == "displacement") {
      kind_ = cuda::FoldKind::displacement;
    } else if (kind == "box_ids") {
      kind_ = cuda::FoldKind::box_ids;
    } else if (kind == "gram") {
      kind_ = cuda::FoldKind::gram;
    } else {
      throw std::invalid_argument("kind must be 'msd_fft', 'msd_lags', 'displacement', "
                                  "'box_ids' or 'gram', got '" + kind + "'");
    }
    if (lags.ndim() != 1) throw std::invalid_argument("lags must be 1-D");
    lags_.assign(lags.data(), lags.data() + lags.shape(0));
    if (memory_limit < (1 << 20)) throw std::invalid_argument("memory_limit must be >= 1 MiB");
    py::gil_scoped_release release;
    fold_ = std::make_unique<cuda::GpuFold>(kind_, device, n_rows, n_direct, lags_, ref,
                                            memory_limit);
  }

  void fold_host(const py::array& x) {
    const StridedMatrix m = as_matrix(x, "x");
    py::gil_scoped_release release;
    fold_->fold_host(m);
  }

  void fold_device(uintptr_t ptr, const std::string& dtype, int64_t n_rows, int64_t n_cols,
                   int64_t row_stride, int64_t col_stride) {
    const StridedMatrix m = device_matrix(ptr, dtype, n_rows, n_cols, row_stride, col_stride);
    if (n_cols == 0) return;
    py::gil_scoped_release release;
    fold_->fold_device(m);
  }

  void configure_box(int n_scales, uint64_t key_seed, double eps0) {
    if (!(eps0 > 0.0) || !std::isfinite(eps0))
      throw std::invalid_argument("eps0 must be a finite number > 0");
    // 1/eps0 computed exactly as the CPU binding does, so the quantization matches bit for bit
    const double inv = 1.0 / eps0;
    {
      py::gil_scoped_release release;
      fold_->configure_box(n_scales, key_seed, inv);
    }
    n_scales_ = n_scales;
  }

  void set_box_block(int64_t col_start,
                     py::array_t<double, py::array::c_style | py::array::forcecast> origin) {
    if (origin.ndim() != 1) throw std::invalid_argument("origin must be 1-D");
    const double* o = origin.data();
    const int64_t n = origin.shape(0);
    {
      py::gil_scoped_release release;
      fold_->set_box_block(col_start, o, n);
    }
    // GpuFold reads the origins during the following folds: keep them (or their float64 copy)
    origin_ = std::move(origin);
  }

  int finish_ids(const py::object& ids) {
    uint64_t* out = as_output<uint64_t>(ids, {n_rows_, n_scales_, 2}, "ids", "uint64");
    int status;
    {
      py::gil_scoped_release release;
      status = fold_->finish_ids(out);
    }
    origin_ = py::array_t<double>();
    return status;
  }

  int finish(const py::object& out0, const py::object& out1, const py::object& out2) {
    double* a = nullptr;
    double* b = nullptr;
    double* c = nullptr;
    switch (kind_) {
      case cuda::FoldKind::msd_fft:
        a = as_accumulator(out0, msd_fft_length(n_rows_), "power");
        b = as_accumulator(out1, n_rows_, "sqnorm");
        c = as_accumulator(out2, n_direct_ + 1, "direct");
        break;
      case cuda::FoldKind::msd_lags:
        a = as_accumulator(out0, static_cast<int64_t>(lags_.size()), "out");
        break;
      case cuda::FoldKind::displacement:
        a = as_accumulator(out0, n_rows_, "out");
        break;
      case cuda::FoldKind::gram:
        a = as_output<double>(out0, {n_rows_, n_rows_}, "gram", "float64");
        break;
      case cuda::FoldKind::box_ids:
        throw std::invalid_argument("a box_ids fold finishes with finish_ids()");
    }
    py::gil_scoped_release release;
    return fold_->finish(a, b, c);
  }

  void synchronize() {
    py::gil_scoped_release release;
    fold_->synchronize();
  }

  int64_t device_bytes() const { return fold_->device_bytes(); }

 private:
  cuda::FoldKind kind_ = cuda::FoldKind::msd_fft;
  int64_t n_rows_ = 0, n_direct_ = 0;
  int n_scales_ = 0;
  std::vector<int64_t> lags_;
  py::array_t<double> origin_;  // the current box block's origins, read by GpuFold
  std::unique_ptr<cuda::GpuFold> fold_;
};

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
  py::class_<PyGpuFold>(m, "GpuFold",
                        "Fold column blocks into float64 accumulators on a CUDA device (private).")
      .def(py::init<const std::string&, int, int64_t, int64_t,
                    py::array_t<int64_t, py::array::c_style | py::array::forcecast>, int64_t,
                    int64_t>(),
           py::arg("kind"), py::arg("device"), py::arg("n_rows"), py::arg("n_direct") = 0,
           py::arg("lags") = py::array_t<int64_t>(0), py::arg("ref") = 0,
           py::arg("memory_limit") = int64_t(512) << 20)
      .def("fold_host", &PyGpuFold::fold_host, py::arg("x"),
           "Stream a host (T, B) float32/float64 array (any strides) to the device and fold it.")
      .def("fold_device", &PyGpuFold::fold_device, py::arg("ptr"), py::arg("dtype"),
           py::arg("n_rows"), py::arg("n_cols"), py::arg("row_stride"), py::arg("col_stride"),
           "Fold a (T, B) matrix in device memory; strides in elements (may be negative).")
      .def("finish", &PyGpuFold::finish, py::arg("out0"), py::arg("out1") = py::none(),
           py::arg("out2") = py::none(),
           "Wait, add the accumulators into the host arrays, reset; returns a status code.")
      .def("configure_box", &PyGpuFold::configure_box, py::arg("n_scales"), py::arg("key_seed"),
           py::arg("eps0"),
           "box_ids folds: scales, hash-key seed and finest box side (as for fold_box_ids).")
      .def("set_box_block", &PyGpuFold::set_box_block, py::arg("col_start"), py::arg("origin"),
           "box_ids folds: the next folded block starts at global column col_start and has "
           "these per-column origins.")
      .def("finish_ids", &PyGpuFold::finish_ids, py::arg("ids"),
           "box_ids folds: wait, add the id sums into ids (T, n_scales, 2) mod 2^64, reset; "
           "returns a status code (STATUS_OUT_OF_RANGE when a quantized value left [0, 2^31)).")
      .def("synchronize", &PyGpuFold::synchronize,
           "Wait for every kernel and copy issued so far (device inputs may then be freed).")
      .def("device_bytes", &PyGpuFold::device_bytes, "Device memory held now, in bytes.");
}

}  // namespace bindings
}  // namespace fractaldiff
