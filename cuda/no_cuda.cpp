// Stand-ins used when fractaldiff is built without CUDA (FRACTALDIFF_CUDA=OFF, or AUTO without
// nvcc).
#include "cuda_api.hpp"

namespace fractaldiff {
namespace cuda {

bool built() { return false; }
int device_count() { return 0; }
std::string runtime_version() { return ""; }
std::string self_test() { return "fractaldiff was built without CUDA"; }
std::string device_name(int) { return ""; }

struct GpuFold::Impl {};

namespace {
[[noreturn]] void no_cuda() {
  throw CudaError("device='cuda': fractaldiff was built without CUDA (rebuild with "
                  "FRACTALDIFF_CUDA=ON and nvcc on PATH)");
}
}  // namespace

GpuFold::GpuFold(FoldKind, int, int64_t, int64_t, const std::vector<int64_t>&, int64_t, int64_t) {
  no_cuda();
}
GpuFold::~GpuFold() = default;
void GpuFold::fold_device(const StridedMatrix&) { no_cuda(); }
void GpuFold::fold_host(const StridedMatrix&) { no_cuda(); }
int GpuFold::finish(double*, double*, double*) { no_cuda(); }
void GpuFold::configure_box(int, uint64_t, double) { no_cuda(); }
void GpuFold::set_box_block(int64_t, const double*, int64_t) { no_cuda(); }
int GpuFold::finish_ids(uint64_t*) { no_cuda(); }
void GpuFold::synchronize() { no_cuda(); }
int64_t GpuFold::device_bytes() const { return 0; }
int box_minmax_device(int, const StridedMatrix&, double*, double*, int64_t) { no_cuda(); }
void pack_columns(const StridedMatrix&, int64_t, int64_t, char*) { no_cuda(); }

}  // namespace cuda
}  // namespace fractaldiff
