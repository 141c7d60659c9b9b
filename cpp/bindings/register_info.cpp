// Build and runtime facts for fractaldiff.build_info().
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "cuda_api.hpp"
#include "fractaldiff/api.hpp"

namespace fractaldiff {
namespace bindings {

namespace py = pybind11;

void register_info(py::module_& m) {
  m.def("simd_level", [] { return std::string(active_kernels().simd_level); },
        "SIMD level of the kernels in use.");
  m.def("available_simd_levels", &available_simd_levels,
        "SIMD levels compiled in and supported by this CPU, best first.");
  m.def("set_simd_level", &set_simd_level, py::arg("level"),
        "Use the kernels of another SIMD level (for testing and benchmarking).");
  m.def("default_threads", &default_threads, "Threads the kernels use by default.");
  m.def("openmp_enabled", &openmp_enabled, "Whether the kernels were compiled with OpenMP.");
  m.def("compiler", &compiler_id, "Compiler that built the extension.");
  m.def("cuda_built", &cuda::built, "Whether CUDA kernels were compiled in.");
  m.def("cuda_device_count", &cuda::device_count,
        "CUDA devices visible now (0 without a driver; never raises).");
  m.def("cuda_runtime_version", &cuda::runtime_version, "CUDA runtime version linked in.");
  m.def("cuda_self_test", &cuda::self_test,
        "Run a small CUDA kernel on device 0; returns '' on success, else the error text.");
}

}  // namespace bindings
}  // namespace fractaldiff
