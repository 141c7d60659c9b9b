// Binding of the fused SGLD update. Arguments are checked while holding the GIL; the kernel then
// runs without it.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <stdexcept>
#include <string>

#include "common.hpp"
#include "fractaldiff/api.hpp"

namespace fractaldiff {
namespace bindings {

namespace {

using Params = py::array_t<double, py::array::c_style | py::array::forcecast>;

/// A (C, D) chain array of the given dtype with contiguous rows; writable if asked.
StridedMatrix chain_array(const py::object& obj, const char* name, bool writable,
                          const StridedMatrix* like) {
  if (!py::isinstance<py::array>(obj))
    throw std::invalid_argument(std::string(name) + " must be a numpy array, got " +
                                Py_TYPE(obj.ptr())->tp_name);
  const auto a = py::reinterpret_borrow<py::array>(obj);
  const StridedMatrix m = as_matrix(a, name);
  if (writable && !a.writeable()) throw std::invalid_argument(std::string(name) + " is read-only");
  if (m.n_cols > 1 && m.col_stride != 1)
    throw std::invalid_argument(std::string(name) + " must have contiguous rows (stride 1 "
                                "along the parameters)");
  if (like) {
    if (m.dtype != like->dtype)
      throw std::invalid_argument(std::string(name) + " must have the dtype of w");
    if (m.n_rows != like->n_rows || m.n_cols != like->n_cols)
      throw std::invalid_argument(std::string(name) + " must have the shape of w (" +
                                  std::to_string(like->n_rows) + ", " +
                                  std::to_string(like->n_cols) + ")");
  }
  return m;
}

const double* per_chain(const Params& p, int64_t C, const char* name, bool allow_zero) {
  if (p.ndim() != 1 || static_cast<int64_t>(p.shape(0)) != C)
    throw std::invalid_argument(std::string(name) + " must be 1-D of length " + std::to_string(C));
  const double* v = p.data();
  for (int64_t c = 0; c < C; ++c)
    if (!std::isfinite(v[c]) || v[c] < 0.0 || (!allow_zero && v[c] == 0.0))
      throw std::invalid_argument(std::string(name) + " must hold finite values " +
                                  (allow_zero ? ">= 0" : "> 0") + ", got " +
                                  std::to_string(v[c]) + " for chain " + std::to_string(c));
  return v;
}

int sgld_step(const py::object& w, const py::object& center, const py::object& grad,
              const py::object& w_out, const Params& nbeta, const Params& gamma,
              const Params& eps, uint64_t seed, int64_t step, const py::object& virial,
              int n_threads) {
  const StridedMatrix mw = chain_array(w, "w", false, nullptr);
  const StridedMatrix mc = chain_array(center, "center", false, &mw);
  const StridedMatrix mg = chain_array(grad, "grad", true, &mw);
  const StridedMatrix mo = chain_array(w_out, "w_out", true, &mw);
  if (step < 0) throw std::invalid_argument("step must be >= 0");
  SgldArgs a;
  a.dtype = mw.dtype;
  a.n_chains = mw.n_rows;
  a.n_params = mw.n_cols;
  a.w = mw.data;
  a.w_stride = mw.row_stride;
  a.center = mc.data;
  a.center_stride = mc.row_stride;
  a.grad = const_cast<void*>(mg.data);
  a.grad_stride = mg.row_stride;
  a.w_out = const_cast<void*>(mo.data);
  a.out_stride = mo.row_stride;
  a.nbeta = per_chain(nbeta, a.n_chains, "nbeta", true);
  a.gamma = per_chain(gamma, a.n_chains, "gamma", true);
  a.eps = per_chain(eps, a.n_chains, "eps", false);
  a.virial = as_accumulator(virial, a.n_chains, "virial");
  a.seed = seed;
  a.step = static_cast<uint64_t>(step);
  a.n_threads = n_threads > 0 ? n_threads : default_threads();
  py::gil_scoped_release release;
  return active_kernels().sgld_step(a);
}

}  // namespace

void register_sgld(py::module_& m) {
  m.def("sgld_step", &sgld_step, py::arg("w"), py::arg("center"), py::arg("grad"),
        py::arg("w_out"), py::arg("nbeta"), py::arg("gamma"), py::arg("eps"), py::arg("seed"),
        py::arg("step"), py::arg("virial"), py::arg("n_threads") = 0,
        "One fused localized-SGLD step of C chains (float32 or float64 (C, D) arrays with "
        "contiguous rows): drift = nbeta g + gamma (w - center) is written over grad, "
        "virial[c] = sum_d (w - center) drift, and w_out = w - (eps/2) drift + sqrt(eps) xi "
        "(w_out may be w itself), xi the counter-based Gaussian stream of (seed, step, chain) "
        "described in sgld_kernels.hpp. Returns a status code.");
}

}  // namespace bindings
}  // namespace fractaldiff
