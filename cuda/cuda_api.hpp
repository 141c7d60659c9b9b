// Host-side interface of the CUDA part; implemented by cuda/*.cu, or by cuda/no_cuda.cpp when the
// package is built without CUDA.
#pragma once

#include <string>

namespace fractaldiff {
namespace cuda {

/// Whether CUDA kernels were compiled into this build.
bool built();
/// Number of CUDA devices visible now; 0 without a driver or device (never throws).
int device_count();
/// CUDA runtime version the build was linked against ("" without CUDA).
std::string runtime_version();
/// Run the self-test kernel on device 0: returns "" on success, else the CUDA error text.
std::string self_test();

}  // namespace cuda
}  // namespace fractaldiff
