// Bindings of the box-counting and pairwise-distance (centred Gram) folds. Arguments are checked
// while holding the GIL; the kernels then run without it.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <stdexcept>
#include <string>

#include "common.hpp"
#include "fractaldiff/api.hpp"
#include "fractaldiff/hd_common.hpp"

namespace fractaldiff {
namespace bindings {

namespace {

int box_minmax(const py::array& x, const py::object& mins, const py::object& maxs,
               int n_threads) {
  const StridedMatrix m = as_matrix(x, "x");
  double* lo = as_accumulator(mins, m.n_cols, "mins");
  double* hi = as_accumulator(maxs, m.n_cols, "maxs");
  if (m.n_cols == 0) return kOk;
  if (m.n_rows == 0) throw std::invalid_argument("x must have at least one row");
  py::gil_scoped_release release;
  return active_kernels().box_minmax(m, lo, hi, n_threads);
}

int fold_box_ids(const py::array& x, int64_t col_start,
                 py::array_t<double, py::array::c_style | py::array::forcecast> origin, double eps0,
                 int n_scales, uint64_t key_seed, const py::object& ids, int n_threads) {
  const StridedMatrix m = as_matrix(x, "x");
  if (col_start < 0) throw std::invalid_argument("col_start must be >= 0");
  if (!(eps0 > 0.0) || !std::isfinite(eps0))
    throw std::invalid_argument("eps0 must be a finite number > 0");
  if (n_scales < 1 || n_scales > 31) throw std::invalid_argument("n_scales must be in [1, 31]");
  // origin is an input: any array that converts to float64 will do
  if (origin.ndim() != 1 || static_cast<int64_t>(origin.shape(0)) != m.n_cols)
    throw std::invalid_argument("origin must be 1-D of length " + std::to_string(m.n_cols));
  const double* o = origin.data();
  uint64_t* out = as_output<uint64_t>(ids, {m.n_rows, n_scales, 2}, "ids", "uint64");
  if (m.n_cols == 0 || m.n_rows == 0) return kOk;
  py::gil_scoped_release release;
  return active_kernels().box_ids_fold(m, col_start, o, 1.0 / eps0, n_scales, key_seed, out,
                                       n_threads);
}

int fold_gram(const py::array& x, const py::object& gram, int n_threads) {
  const StridedMatrix m = as_matrix(x, "x");
  double* g = as_output<double>(gram, {m.n_rows, m.n_rows}, "gram", "float64");
  if (m.n_cols == 0 || m.n_rows == 0) return kOk;
  py::gil_scoped_release release;
  return active_kernels().gram_fold(m, g, n_threads);
}

py::array_t<double> box_grid_offsets(
    py::array_t<int64_t, py::array::c_style | py::array::forcecast> columns, double coarsest,
    uint64_t seed, uint64_t grid) {
  if (columns.ndim() != 1) throw std::invalid_argument("columns must be 1-D");
  const int64_t n = columns.shape(0);
  py::array_t<double> out(n);
  const int64_t* d = columns.data();
  double* o = out.mutable_data();
  const uint64_t gs = hd::box_grid_seed(seed, grid);
  {
    py::gil_scoped_release release;
    for (int64_t i = 0; i < n; ++i) o[i] = hd::box_grid_offset(gs, d[i], coarsest);
  }
  return out;
}

py::array_t<uint64_t> box_keys(uint64_t key_seed, int64_t col_start, int64_t n) {
  if (col_start < 0 || n < 0) throw std::invalid_argument("col_start and n must be >= 0");
  py::array_t<uint64_t> out({int64_t(2), n});
  uint64_t* k = out.mutable_data();
  for (int which = 0; which < 2; ++which)
    for (int64_t i = 0; i < n; ++i) k[which * n + i] = hd::box_key(key_seed, col_start + i, which);
  return out;
}

}  // namespace

void register_box(py::module_& m) {
  m.attr("STATUS_OUT_OF_RANGE") = static_cast<int>(kOutOfRange);
  m.attr("BOX_Q_LIMIT") = hd::kBoxQLimit;
  m.attr("BOX_KEY_MULT") = py::int_(hd::kBoxKeyMult);
  m.def("box_key_seed", &hd::box_key_seed, py::arg("seed"), py::arg("grid"),
        "Seed of the box-id hash keys of grid `grid` under `seed` (both taken mod 2^64 by the "
        "caller).");
  m.def("box_grid_offsets", &box_grid_offsets, py::arg("columns"), py::arg("coarsest"),
        py::arg("seed"), py::arg("grid"),
        "Random offsets, uniform on [0, coarsest), of the global columns `columns` in grid "
        "`grid` under `seed` (float64).");
  m.def("box_keys", &box_keys, py::arg("key_seed"), py::arg("col_start"), py::arg("n"),
        "(2, n) uint64: the two hash keys of global columns col_start..col_start+n-1.");
  m.def("box_minmax", &box_minmax, py::arg("x"), py::arg("mins"), py::arg("maxs"),
        py::arg("n_threads") = 0,
        "Overwrite mins/maxs (length B) with the per-column min and max of the block x (T, B). "
        "Returns a status code (non-finite data -> STATUS_NONFINITE).");
  m.def("fold_box_ids", &fold_box_ids, py::arg("x"), py::arg("col_start"), py::arg("origin"),
        py::arg("eps0"), py::arg("n_scales"), py::arg("key_seed"), py::arg("ids"),
        py::arg("n_threads") = 0,
        "Quantize q = trunc((x - origin) * (1/eps0)) (must lie in [0, 2^31)) and add, for every "
        "snapshot t and scale k, sum_d key_s(col_start + d) * (q >> k) mod 2^64 into "
        "ids[t, k, s] (s = 0, 1). Returns a status code.");
  m.def("fold_gram", &fold_gram, py::arg("x"), py::arg("gram"), py::arg("n_threads") = 0,
        "Add the centred Gram matrix of the block x (T, B) (columns centred by their mean over "
        "T) into the lower triangle (j <= i) of gram (T, T); the strict upper triangle is "
        "scratch. Returns a status code.");
}

}  // namespace bindings
}  // namespace fractaldiff
