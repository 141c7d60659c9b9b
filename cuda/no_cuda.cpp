// Stand-ins used when fractaldiff is built without CUDA (FRACTALDIFF_CUDA=OFF, or AUTO without
// nvcc).
#include "cuda_api.hpp"

namespace fractaldiff {
namespace cuda {

bool built() { return false; }
int device_count() { return 0; }
std::string runtime_version() { return ""; }
std::string self_test() { return "fractaldiff was built without CUDA"; }

}  // namespace cuda
}  // namespace fractaldiff
