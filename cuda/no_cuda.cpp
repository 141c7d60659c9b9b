// Stand-ins used when fractaldiff is built without CUDA (FRACTALDIFF_CUDA=OFF, or AUTO without
// nvcc): every GPU fold constructor raises a clear error.
#include "cuda_api.hpp"

namespace fractaldiff {
namespace cuda {

bool built() { return false; }
int device_count() { return 0; }
std::string runtime_version() { return ""; }
std::string self_test() { return "fractaldiff was built without CUDA"; }
std::string device_name(int) { return ""; }

struct GpuFold::Streamer {};
struct MsdFftFold::State {};
struct LagsFold::State {};
struct DisplacementFold::State {};
struct BoxIdsFold::State {};
struct GramFold::State {};

namespace {
[[noreturn]] void no_cuda() {
  throw CudaError("device='cuda': fractaldiff was built without CUDA (rebuild with "
                  "FRACTALDIFF_CUDA=ON and nvcc on PATH)");
}
}  // namespace

GpuFold::GpuFold(int, int64_t, int64_t) { no_cuda(); }
GpuFold::~GpuFold() = default;
void GpuFold::fold_device(const StridedMatrix&) { no_cuda(); }
void GpuFold::fold_host(const StridedMatrix&) { no_cuda(); }
void GpuFold::synchronize() { no_cuda(); }
int64_t GpuFold::device_bytes() const { return 0; }
void GpuFold::check_block(int64_t) const {}
int64_t GpuFold::uncounted_bytes() const { return 0; }
int64_t GpuFold::scratch_bytes() const { return 0; }
void GpuFold::drop_scratch() {}
int64_t GpuFold::staging_cap() const { return 0; }
int64_t GpuFold::column_multiple() const { return 1; }

MsdFftFold::MsdFftFold(int d, int64_t t, int64_t, int64_t m) : GpuFold(d, t, m) {}
MsdFftFold::~MsdFftFold() = default;
int MsdFftFold::finish(double*, double*, double*) { no_cuda(); }
void MsdFftFold::launch(const StridedMatrix&, int64_t) { no_cuda(); }
int64_t MsdFftFold::counted_bytes() const { return 0; }
int64_t MsdFftFold::scratch_bytes() const { return 0; }
void MsdFftFold::drop_scratch() {}
int64_t MsdFftFold::column_multiple() const { return 2; }

LagsFold::LagsFold(int d, int64_t t, const std::vector<int64_t>&, int64_t m) : GpuFold(d, t, m) {}
LagsFold::~LagsFold() = default;
int LagsFold::finish(double*) { no_cuda(); }
void LagsFold::launch(const StridedMatrix&, int64_t) { no_cuda(); }
int64_t LagsFold::counted_bytes() const { return 0; }
int64_t LagsFold::scratch_bytes() const { return 0; }
void LagsFold::drop_scratch() {}

DisplacementFold::DisplacementFold(int d, int64_t t, int64_t, int64_t m) : GpuFold(d, t, m) {}
DisplacementFold::~DisplacementFold() = default;
int DisplacementFold::finish(double*) { no_cuda(); }
void DisplacementFold::launch(const StridedMatrix&, int64_t) { no_cuda(); }
int64_t DisplacementFold::counted_bytes() const { return 0; }
int64_t DisplacementFold::scratch_bytes() const { return 0; }
void DisplacementFold::drop_scratch() {}

BoxIdsFold::BoxIdsFold(int d, int64_t t, int, uint64_t, double, int64_t m) : GpuFold(d, t, m) {}
BoxIdsFold::~BoxIdsFold() = default;
void BoxIdsFold::set_block(int64_t, const double*, int64_t) { no_cuda(); }
int BoxIdsFold::finish(uint64_t*) { no_cuda(); }
void BoxIdsFold::launch(const StridedMatrix&, int64_t) { no_cuda(); }
void BoxIdsFold::check_block(int64_t) const {}
int64_t BoxIdsFold::counted_bytes() const { return 0; }
int64_t BoxIdsFold::staging_cap() const { return 0; }

GramFold::GramFold(int d, int64_t t, int64_t m) : GpuFold(d, t, m) {}
GramFold::~GramFold() = default;
int GramFold::finish(double*) { no_cuda(); }
void GramFold::launch(const StridedMatrix&, int64_t) { no_cuda(); }
int64_t GramFold::counted_bytes() const { return 0; }
int64_t GramFold::uncounted_bytes() const { return 0; }
int64_t GramFold::scratch_bytes() const { return 0; }
void GramFold::drop_scratch() {}

int box_minmax_device(int, const StridedMatrix&, double*, double*, int64_t) { no_cuda(); }
void pack_columns(const StridedMatrix&, int64_t, int64_t, char*) { no_cuda(); }

}  // namespace cuda
}  // namespace fractaldiff
