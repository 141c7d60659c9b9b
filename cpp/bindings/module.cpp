// The compiled module fractaldiff._core. All pybind11 code lives in cpp/bindings/.
#include <pybind11/pybind11.h>

namespace fractaldiff {
namespace bindings {
void register_msd(pybind11::module_& m);
void register_info(pybind11::module_& m);
void register_io(pybind11::module_& m);
void register_box(pybind11::module_& m);
void register_cuda(pybind11::module_& m);
void register_sgld(pybind11::module_& m);
}  // namespace bindings
}  // namespace fractaldiff

PYBIND11_MODULE(_core, m) {
  m.doc() = "fractaldiff compiled kernels (private; use the fractaldiff package API)";
#ifdef FRACTALDIFF_VERSION
  m.attr("__version__") = FRACTALDIFF_VERSION;
#endif
  fractaldiff::bindings::register_msd(m);
  fractaldiff::bindings::register_info(m);
  fractaldiff::bindings::register_io(m);
  fractaldiff::bindings::register_box(m);
  fractaldiff::bindings::register_cuda(m);
  fractaldiff::bindings::register_sgld(m);
}
