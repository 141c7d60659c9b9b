// Bindings of the MSD and displacement folds. Arguments are converted while holding the GIL;
// the kernels then run without it.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

#include "common.hpp"
#include "fractaldiff/api.hpp"

namespace fractaldiff {
namespace bindings {

namespace {

int fold_msd_fft(const py::array& x, const py::object& power, const py::object& sqnorm,
                 const py::object& direct, int n_threads) {
  const StridedMatrix m = as_matrix(x, "x");
  // power's and direct's lengths choose nfft and n_direct; anything but a 1-D array is refused
  // by the output check itself, with its message
  if (length_1d(power) < 0) as_accumulator(power, 0, "power");
  if (length_1d(direct) < 0) as_accumulator(direct, 0, "direct");
  const int64_t nfft = length_1d(power);
  if (nfft < 4 || (nfft & (nfft - 1)) != 0 || nfft < 2 * m.n_rows - 1)
    throw std::invalid_argument("power must have a power-of-two length >= max(4, 2*T-1)");
  double* p = as_accumulator(power, nfft, "power");
  double* q = as_accumulator(sqnorm, m.n_rows, "sqnorm");
  const int64_t n_direct = length_1d(direct) - 1;
  if (n_direct < 0 || n_direct > kMaxDirectLags || n_direct >= m.n_rows)
    throw std::invalid_argument("direct must have length n_direct + 1 with n_direct < T and <= " +
                                std::to_string(kMaxDirectLags));
  double* d = as_accumulator(direct, n_direct + 1, "direct");
  if (m.n_cols == 0) return kOk;
  py::gil_scoped_release release;
  return active_kernels().msd_fft_fold(m, nfft, p, q, n_direct, d, n_threads);
}

int fold_msd_lags(const py::array& x, py::array_t<int64_t> lags, const py::object& out,
                  int n_threads) {
  const StridedMatrix m = as_matrix(x, "x");
  if (lags.ndim() != 1 || !(lags.flags() & py::array::c_style))
    throw std::invalid_argument("lags must be a C-contiguous 1-D int64 array");
  const int64_t n_lags = static_cast<int64_t>(lags.shape(0));
  const int64_t* l = lags.data();
  for (int64_t i = 0; i < n_lags; ++i)
    if (l[i] < 0 || l[i] >= m.n_rows)
      throw std::invalid_argument("lags[" + std::to_string(i) + "] = " + std::to_string(l[i]) +
                                  " is outside [0, T)");
  double* o = as_accumulator(out, n_lags, "out");
  if (m.n_cols == 0 || n_lags == 0) return kOk;
  py::gil_scoped_release release;
  return active_kernels().msd_lags_fold(m, l, n_lags, o, n_threads);
}

int fold_displacement(const py::array& x, int64_t ref, const py::object& out, int n_threads) {
  const StridedMatrix m = as_matrix(x, "x");
  if (ref < 0 || ref >= m.n_rows) throw std::invalid_argument("ref is outside [0, T)");
  double* o = as_accumulator(out, m.n_rows, "out");
  if (m.n_cols == 0) return kOk;
  py::gil_scoped_release release;
  return active_kernels().displacement_fold(m, ref, o, n_threads);
}

}  // namespace

void register_msd(py::module_& m) {
  m.attr("STATUS_OK") = static_cast<int>(kOk);
  m.attr("STATUS_NONFINITE") = static_cast<int>(kNonFinite);
  m.attr("STATUS_OUT_OF_MEMORY") = static_cast<int>(kOutOfMemory);
  m.attr("MAX_DIRECT_LAGS") = kMaxDirectLags;
  m.def("msd_fft_length", &msd_fft_length, py::arg("n_rows"),
        "Smallest power of two >= max(4, 2*n_rows - 1).");
  m.def("fold_msd_fft", &fold_msd_fft, py::arg("x"), py::arg("power"), py::arg("sqnorm"),
        py::arg("direct"), py::arg("n_threads") = 0,
        "Add the column block x (T, B) into the all-lag MSD accumulators in place: power (nfft) "
        "+= sum over packed column pairs of |FFT|^2 (centred columns), sqnorm (T) += squared "
        "row norms of the centred block, direct[tau] += exact sum of squared lag-tau "
        "differences for 1 <= tau < len(direct). Returns a status code.");
  m.def("fold_msd_lags", &fold_msd_lags, py::arg("x"), py::arg("lags"), py::arg("out"),
        py::arg("n_threads") = 0,
        "out[l] += sum_t sum_d (x[t+lags[l], d] - x[t, d])**2 by a direct pass. Returns a status "
        "code.");
  m.def("fold_displacement", &fold_displacement, py::arg("x"), py::arg("ref"), py::arg("out"),
        py::arg("n_threads") = 0,
        "out[t] += sum_d (x[t, d] - x[ref, d])**2. Returns a status code.");
}

}  // namespace bindings
}  // namespace fractaldiff
