// Host side of the CUDA folds: the kind-agnostic streamer (GpuFold::Streamer: streams, events,
// pinned double-buffered host->device staging of column blocks, the status flag and the chunked
// read-back) and one small class per fold kind (MSD, selected lags, displacement, box ids, the
// centred Gram matrix) with its accumulators and launch configuration.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "box_kernels.cuh"
#include "cuda_api.hpp"
#include "cuda_check.hpp"
#include "fractaldiff/hd_common.hpp"
#include "gram_kernels.cuh"
#include "msd_kernels.cuh"


namespace fractaldiff {
namespace cuda {

namespace {

size_t item_size(DType t) { return t == DType::f32 ? 4 : 8; }

/// RAII device allocation.
struct DevBuf {
  void* p = nullptr;
  size_t bytes = 0;
  DevBuf() = default;
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  ~DevBuf() {
    if (p) cudaFree(p);
  }
  /// `advice` ends the out-of-memory message (default: the buffer counts in memory_limit).
  void alloc(size_t n, const char* what, const char* advice = nullptr) {
    if (p) FD_CUDA_CHECK(cudaFree(p));
    p = nullptr;
    bytes = 0;
    if (n == 0) n = 8;
    const cudaError_t e = cudaMalloc(&p, n);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      p = nullptr;
      throw CudaOutOfMemory("fractaldiff CUDA: could not allocate " + std::to_string(n) +
                            " bytes of device memory for " + what + " (" +
                            cudaGetErrorString(e) + "); " +
                            (advice ? advice : "lower memory_limit or free GPU memory"));
    }
    bytes = n;
  }
  void free() {
    if (p) FD_CUDA_CHECK(cudaFree(p));
    p = nullptr;
    bytes = 0;
  }
  template <class T>
  T* as() const { return static_cast<T*>(p); }
};

struct PinnedBuf {
  void* p = nullptr;
  size_t bytes = 0;
  PinnedBuf() = default;
  PinnedBuf(const PinnedBuf&) = delete;
  PinnedBuf& operator=(const PinnedBuf&) = delete;
  ~PinnedBuf() {
    if (p) cudaFreeHost(p);
  }
  void alloc(size_t n) {
    if (p) FD_CUDA_CHECK(cudaFreeHost(p));
    p = nullptr;
    bytes = 0;
    const cudaError_t e = cudaHostAlloc(&p, n, cudaHostAllocDefault);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      p = nullptr;
      throw CudaOutOfMemory("fractaldiff CUDA: could not allocate " + std::to_string(n) +
                            " bytes of pinned host memory for staging (" +
                            cudaGetErrorString(e) + "); lower memory_limit");
    }
    bytes = n;
  }
};

/// Makes `device` current for its lifetime and restores the caller's current device on exit,
/// error paths included (the destructor cannot throw: a failed restore is dropped).
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    FD_CUDA_CHECK(cudaGetDevice(&prev_));
    if (prev_ != device) {
      FD_CUDA_CHECK(cudaSetDevice(device));
      switched_ = true;
    }
  }
  /// For destructors: never throws; leaves the current device alone when it cannot be read.
  DeviceGuard(int device, std::nothrow_t) {
    if (cudaGetDevice(&prev_) != cudaSuccess) {
      (void)cudaGetLastError();
      return;
    }
    if (prev_ != device) {
      if (cudaSetDevice(device) == cudaSuccess)
        switched_ = true;
      else
        (void)cudaGetLastError();
    }
  }
  ~DeviceGuard() {
    if (switched_ && cudaSetDevice(prev_) != cudaSuccess) (void)cudaGetLastError();
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int prev_ = 0;
  bool switched_ = false;
};

int grid_cap(int64_t want, int64_t cap) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(want, cap)));
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

/// x's data must be device (or managed) memory on device dev.
void check_device_pointer(const void* p, int dev) {
  cudaPointerAttributes at;
  const cudaError_t e = cudaPointerGetAttributes(&at, p);
  if (e != cudaSuccess || (at.type != cudaMemoryTypeDevice && at.type != cudaMemoryTypeManaged)) {
    (void)cudaGetLastError();
    throw std::invalid_argument("x's data pointer is not CUDA device memory");
  }
  if (at.device != dev)
    throw std::invalid_argument("x lives on CUDA device " + std::to_string(at.device) +
                                ", this fold runs on device " + std::to_string(dev));
}

}  // namespace

struct GpuFold::Streamer {
  int dev = 0;
  int64_t T = 0, memory_limit = 0;
  int sm_count = 1, smem_optin = 48 * 1024;
  cudaStream_t compute = nullptr, copy = nullptr;
  cudaEvent_t h2d_done[2] = {nullptr, nullptr}, consumed[2] = {nullptr, nullptr};
  cudaEvent_t rb_ready[2] = {nullptr, nullptr};
  DevBuf status, stage[2];
  PinnedBuf pinned[2], readback_buf[2];
  int64_t stage_bytes = 0;
  /// Bytes of one "auxiliary" chunk: the device origins (box ids) or column means (gram) of
  /// aux_bytes / 8 columns, and each pinned read-back or origin chunk. Launches on more columns
  /// run in column chunks of that width, so these buffers stay bounded for any D.
  int64_t aux_bytes = 0;

  ~Streamer() {
    if (compute) cudaStreamSynchronize(compute);
    if (copy) cudaStreamSynchronize(copy);
    for (int k = 0; k < 2; ++k) {
      if (h2d_done[k]) cudaEventDestroy(h2d_done[k]);
      if (consumed[k]) cudaEventDestroy(consumed[k]);
      if (rb_ready[k]) cudaEventDestroy(rb_ready[k]);
    }
    if (compute) cudaStreamDestroy(compute);
    if (copy) cudaStreamDestroy(copy);
    if (compute) (void)cudaGetLastError();  // a destructor reports nothing
  }

  /// Columns per origin / column-mean chunk.
  int64_t aux_cols() const { return aux_bytes / 8; }

  /// Throw CudaOutOfMemory when `need` bytes exceed memory_limit.
  void require_budget(int64_t need, const std::string& what) const {
    if (need > memory_limit)
      throw CudaOutOfMemory("fractaldiff CUDA: memory_limit=" + std::to_string(memory_limit) +
                            " bytes is too small for " + what + " (needs about " +
                            std::to_string(need) + " bytes); raise memory_limit");
  }

  /// Two pinned read-back chunks of aux_bytes and their events (allocated on first use).
  void ensure_readback() {
    for (int k = 0; k < 2; ++k) {
      if (!readback_buf[k].p) readback_buf[k].alloc(static_cast<size_t>(aux_bytes));
      if (!rb_ready[k])
        FD_CUDA_CHECK(cudaEventCreateWithFlags(&rb_ready[k], cudaEventDisableTiming));
    }
  }

  /// Copy n elements of device memory to the host in chunks of aux_bytes through two pinned
  /// buffers (the copy of chunk i + 1 overlaps consume(chunk, first, count) of chunk i), on the
  /// compute stream, i.e. after every kernel issued so far.
  template <class E, class F>
  void read_back(const E* dev_ptr, int64_t n, F&& consume) {
    ensure_readback();
    const int64_t per = aux_bytes / static_cast<int64_t>(sizeof(E));
    const int64_t chunks = ceil_div(n, per);
    auto issue = [&](int64_t i) {
      const int k = static_cast<int>(i & 1);
      const int64_t first = i * per, count = std::min(per, n - first);
      FD_CUDA_CHECK(cudaMemcpyAsync(readback_buf[k].p, dev_ptr + first,
                                    static_cast<size_t>(count) * sizeof(E),
                                    cudaMemcpyDeviceToHost, compute));
      FD_CUDA_CHECK(cudaEventRecord(rb_ready[k], compute));
    };
    if (chunks > 0) issue(0);
    for (int64_t i = 0; i < chunks; ++i) {
      // buffer (i + 1) & 1 was consumed in the previous iteration: refill it now
      if (i + 1 < chunks) issue(i + 1);
      const int k = static_cast<int>(i & 1);
      FD_CUDA_CHECK(cudaEventSynchronize(rb_ready[k]));
      const int64_t first = i * per;
      consume(static_cast<const E*>(readback_buf[k].p), first, std::min(per, n - first));
    }
  }

  /// Read the status flag and reset the accumulator `acc` and the flag, all on the compute
  /// stream (ordered after the kernels and the read-back; the next fold's kernels follow them).
  int read_flag_and_reset(DevBuf& acc) {
    int flag = 0;
    FD_CUDA_CHECK(cudaMemcpyAsync(&flag, status.p, sizeof(int), cudaMemcpyDeviceToHost, compute));
    FD_CUDA_CHECK(cudaMemsetAsync(acc.p, 0, acc.bytes, compute));
    FD_CUDA_CHECK(cudaMemsetAsync(status.p, 0, sizeof(int), compute));
    FD_CUDA_CHECK(cudaStreamSynchronize(compute));
    return flag;
  }

  /// Wait for both streams.
  void wait() {
    FD_CUDA_CHECK(cudaStreamSynchronize(copy));
    FD_CUDA_CHECK(cudaStreamSynchronize(compute));
  }
};

// ---- GpuFold: the kind-agnostic part ------------------------------------------------------------

GpuFold::GpuFold(int device, int64_t n_rows, int64_t memory_limit) : s_(new Streamer) {
  int count = 0;
  const cudaError_t ce = cudaGetDeviceCount(&count);
  if (ce != cudaSuccess || count == 0) {
    (void)cudaGetLastError();
    throw CudaError(std::string("device='cuda': no usable CUDA device (") +
                    (ce != cudaSuccess ? cudaGetErrorString(ce) : "none visible") + ")");
  }
  if (device < 0 || device >= count)
    throw std::invalid_argument("CUDA device index " + std::to_string(device) +
                                " is out of range: " + std::to_string(count) +
                                " device(s) visible");
  if (n_rows < 1) throw std::invalid_argument("n_rows must be >= 1");
  if (memory_limit < (1 << 20)) throw std::invalid_argument("memory_limit must be >= 1 MiB");
  Streamer& s = *s_;
  s.dev = device;
  s.T = n_rows;
  s.memory_limit = memory_limit;
  // memory_limit / 64 rounded down to whole float64s, in [8 KiB, 4 MiB]
  s.aux_bytes = std::min<int64_t>(std::max<int64_t>(memory_limit / 64, 8 << 10), 4 << 20) / 8 * 8;
  DeviceGuard guard(device);
  try {
    FD_CUDA_CHECK(cudaDeviceGetAttribute(&s.sm_count, cudaDevAttrMultiProcessorCount, device));
    FD_CUDA_CHECK(
        cudaDeviceGetAttribute(&s.smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    FD_CUDA_CHECK(cudaStreamCreateWithFlags(&s.compute, cudaStreamNonBlocking));
    FD_CUDA_CHECK(cudaStreamCreateWithFlags(&s.copy, cudaStreamNonBlocking));
    s.status.alloc(sizeof(int), "the status flag");
    FD_CUDA_CHECK(cudaMemsetAsync(s.status.p, 0, sizeof(int), s.compute));
  } catch (...) {
    s_.reset();  // free the streams and buffers while `device` is current
    throw;
  }
}

GpuFold::~GpuFold() {
  if (!s_) return;
  DeviceGuard guard(s_->dev, std::nothrow);  // streams and buffers belong to that device
  s_.reset();
}

template <class State>
void GpuFold::release(std::unique_ptr<State>& state) noexcept {
  if (!state) return;
  if (!s_) {
    state.reset();
    return;
  }
  DeviceGuard guard(s_->dev, std::nothrow);
  if (s_->compute) cudaStreamSynchronize(s_->compute);
  if (s_->copy) cudaStreamSynchronize(s_->copy);
  state.reset();
  (void)cudaGetLastError();
}

void GpuFold::check_block(int64_t) const {}
int64_t GpuFold::scratch_bytes() const { return 0; }
void GpuFold::drop_scratch() {}
int64_t GpuFold::staging_cap() const {
  return std::min<int64_t>(s_->memory_limit / 4, 256LL << 20);
}
int64_t GpuFold::column_multiple() const { return 1; }

void GpuFold::launch_checked(const StridedMatrix& x, int64_t c_off) {
  if (x.n_cols == 0) return;
  if (x.n_rows != s_->T)
    throw std::invalid_argument("x has " + std::to_string(x.n_rows) +
                                " rows; this fold was set up for T=" + std::to_string(s_->T));
  launch(x, c_off);
}

void GpuFold::fold_device(const StridedMatrix& x) {
  DeviceGuard guard(s_->dev);
  check_device_pointer(x.data, s_->dev);
  check_block(x.n_cols);
  // whatever produced x (PyTorch or another library, on its own streams) must be finished
  FD_CUDA_CHECK(cudaDeviceSynchronize());
  launch_checked(x, 0);
}

void GpuFold::fold_host(const StridedMatrix& x) {
  Streamer& s = *s_;
  DeviceGuard guard(s.dev);
  check_block(x.n_cols);
  if (x.n_cols == 0) return;
  const int64_t T = s.T;
  const int64_t item = static_cast<int64_t>(item_size(x.dtype));
  // is the source itself pinned (e.g. a torch tensor after pin_memory())?
  bool src_pinned = false;
  {
    cudaPointerAttributes at;
    if (cudaPointerGetAttributes(&at, x.data) == cudaSuccess)
      src_pinned = at.type == cudaMemoryTypeHost;
    else
      (void)cudaGetLastError();
  }
  const bool direct = src_pinned && x.col_stride == 1 && x.row_stride >= x.n_cols;
  // Two device staging buffers (and, when the source must be packed, two pinned ones), each at
  // most staging_cap() but at least one column pair.
  if (s.stage_bytes == 0) {
    int64_t per = std::max<int64_t>(staging_cap(), 2 * T * item);
    per = (per + 255) / 256 * 256;
    s.require_budget(counted_bytes() + static_cast<int64_t>(s.status.bytes) - scratch_bytes() +
                         2 * per,
                     "two staging buffers of " + std::to_string(per) + " bytes each");
    // scratch sized while nothing was staged (fold_device) would now exceed the budget: drop
    // it, the next launch sizes it again within what the staging leaves
    if (counted_bytes() + static_cast<int64_t>(s.status.bytes) + 2 * per > s.memory_limit) {
      FD_CUDA_CHECK(cudaStreamSynchronize(s.compute));
      drop_scratch();
    }
    for (int k = 0; k < 2; ++k) {
      s.stage[k].alloc(static_cast<size_t>(per), "the host-to-device staging buffers");
      if (!s.h2d_done[k])
        FD_CUDA_CHECK(cudaEventCreateWithFlags(&s.h2d_done[k], cudaEventDisableTiming));
      if (!s.consumed[k])
        FD_CUDA_CHECK(cudaEventCreateWithFlags(&s.consumed[k], cudaEventDisableTiming));
    }
    s.stage_bytes = per;
  }
  if (!direct && s.pinned[0].p == nullptr)
    for (int k = 0; k < 2; ++k) s.pinned[k].alloc(static_cast<size_t>(s.stage_bytes));
  int64_t width = s.stage_bytes / (T * item);
  const int64_t mult = column_multiple();
  if (mult > 1 && width > mult) width -= width % mult;
  width = std::max<int64_t>(1, std::min(width, x.n_cols));
  const char* src = static_cast<const char*>(x.data);
  int k = 0;
  for (int64_t c0 = 0; c0 < x.n_cols; c0 += width, k ^= 1) {
    const int64_t w = std::min(width, x.n_cols - c0);
    const int64_t bytes = T * w * item;
    // device buffer k is free once the kernel that read it is done
    FD_CUDA_CHECK(cudaStreamWaitEvent(s.copy, s.consumed[k], 0));
    if (direct) {
      FD_CUDA_CHECK(cudaMemcpy2DAsync(s.stage[k].p, static_cast<size_t>(w * item),
                                      src + c0 * item, static_cast<size_t>(x.row_stride * item),
                                      static_cast<size_t>(w * item), static_cast<size_t>(T),
                                      cudaMemcpyHostToDevice, s.copy));
    } else {
      // pinned buffer k is free once its previous copy is done; pack the sub-block into it
      FD_CUDA_CHECK(cudaEventSynchronize(s.h2d_done[k]));
      pack_columns(x, c0, w, static_cast<char*>(s.pinned[k].p));
      FD_CUDA_CHECK(cudaMemcpyAsync(s.stage[k].p, s.pinned[k].p, static_cast<size_t>(bytes),
                                    cudaMemcpyHostToDevice, s.copy));
    }
    FD_CUDA_CHECK(cudaEventRecord(s.h2d_done[k], s.copy));
    FD_CUDA_CHECK(cudaStreamWaitEvent(s.compute, s.h2d_done[k], 0));
    StridedMatrix blk;
    blk.data = s.stage[k].p;
    blk.dtype = x.dtype;
    blk.n_rows = T;
    blk.n_cols = w;
    blk.row_stride = w;
    blk.col_stride = 1;
    launch_checked(blk, c0);
    FD_CUDA_CHECK(cudaEventRecord(s.consumed[k], s.compute));
  }
  // the caller's memory may go away after we return: direct copies must be complete
  if (direct) FD_CUDA_CHECK(cudaStreamSynchronize(s.copy));
}

void GpuFold::synchronize() {
  DeviceGuard guard(s_->dev);
  s_->wait();
}

int64_t GpuFold::device_bytes() const {
  return counted_bytes() + uncounted_bytes() +
         static_cast<int64_t>(s_->status.bytes + s_->stage[0].bytes + s_->stage[1].bytes);
}

int64_t GpuFold::uncounted_bytes() const { return 0; }

namespace {

/// dst[i - seg] += src[i - first] for i in [first, first + count) and [seg, seg + len); returns
/// false when a sum is not finite.
bool add_overlap(double* dst, int64_t seg, int64_t len, const double* src, int64_t first,
                 int64_t count) {
  const int64_t a = std::max(first, seg), b = std::min(first + count, seg + len);
  bool finite = true;
  for (int64_t i = a; i < b; ++i) {
    double& d = dst[i - seg];
    d += src[i - first];
    finite &= static_cast<bool>(std::isfinite(d));
  }
  return finite;
}

}  // namespace

// ---- all-lag MSD ---------------------------------------------------------------------------------

struct MsdFftFold::State {
  int64_t N = 0, n_direct = 0, acc_len = 0;
  int log_n = 0;
  DevBuf acc, part, tw, gwork;
};

MsdFftFold::MsdFftFold(int device, int64_t n_rows, int64_t n_direct, int64_t memory_limit)
    : GpuFold(device, n_rows, memory_limit), st_(new State) {
  if (n_rows < 2) throw std::invalid_argument("the MSD needs T >= 2");
  if (n_direct < 0 || n_direct > kern::kMaxDirect || n_direct >= n_rows)
    throw std::invalid_argument("n_direct must lie in [0, min(T-1, 16)]");
  Streamer& s = *s_;
  DeviceGuard guard(device);
  try {
    State& st = *st_;
    st.n_direct = n_direct;
    st.N = hd::msd_fft_length(n_rows);
    st.log_n = hd::ilog2(st.N);
    st.acc_len = st.N + n_rows + kern::kMaxDirect + 1;
    // twiddles W_N^e, e < N/2, from exact index arithmetic and long double angles
    const int64_t h = st.N / 2;
    std::vector<double> w(static_cast<size_t>(2 * h));
    for (int64_t e = 0; e < h; ++e) {
      const long double ang = 6.283185307179586476925286766559L *
                              (static_cast<long double>(e) / static_cast<long double>(st.N));
      w[2 * e] = static_cast<double>(std::cos(ang));
      w[2 * e + 1] = static_cast<double>(-std::sin(ang));
    }
    st.tw.alloc(w.size() * sizeof(double), "the FFT twiddles");
    // on the compute stream: ordered before the kernels that read them
    FD_CUDA_CHECK(cudaMemcpyAsync(st.tw.p, w.data(), w.size() * sizeof(double),
                                  cudaMemcpyHostToDevice, s.compute));
    st.acc.alloc(static_cast<size_t>(st.acc_len) * sizeof(double), "the accumulators");
    FD_CUDA_CHECK(cudaMemsetAsync(st.acc.p, 0, st.acc.bytes, s.compute));
    FD_CUDA_CHECK(cudaStreamSynchronize(s.compute));  // `w` must outlive its upload
  } catch (...) {
    st_.reset();
    throw;
  }
}

MsdFftFold::~MsdFftFold() { release(st_); }

int64_t MsdFftFold::counted_bytes() const {
  return static_cast<int64_t>(st_->acc.bytes + st_->part.bytes + st_->tw.bytes +
                              st_->gwork.bytes);
}
int64_t MsdFftFold::scratch_bytes() const {
  return static_cast<int64_t>(st_->part.bytes + st_->gwork.bytes);
}
void MsdFftFold::drop_scratch() {
  st_->part.free();
  st_->gwork.free();
}
int64_t MsdFftFold::column_multiple() const { return 2; }  // whole column pairs

void MsdFftFold::launch(const StridedMatrix& x, int64_t) {
  x.dtype == DType::f32 ? run<float>(x) : run<double>(x);
}

template <class S>
void MsdFftFold::run(const StridedMatrix& x) {
  using namespace kern;
  Streamer& s = *s_;
  State& st = *st_;
  const int64_t T = s.T, N = st.N;
  const int64_t fixed = counted_bytes() + static_cast<int64_t>(s.status.bytes);
  const int64_t pairs = (x.n_cols + 1) / 2;
  MsdArgs a;
  a.x = x.data;
  a.T = x.n_rows;
  a.D = x.n_cols;
  a.rs = x.row_stride;
  a.cs = x.col_stride;
  a.N = N;
  a.log_n = st.log_n;
  a.n_direct = static_cast<int>(st.n_direct);
  a.tw = st.tw.as<double2>();
  a.part_stride = N + T + kMaxDirect + 1;
  a.status = s.status.as<int>();
  const size_t smem = static_cast<size_t>(24 * N + 8 * T);
  const int threads = N >= 2048 ? kMsdThreads : 256;
  const bool small = st.n_direct <= 8;
  auto pick = [&](bool use_smem) {
    if (use_smem) return small ? msd_fft_kernel<S, 8, true> : msd_fft_kernel<S, 16, true>;
    return small ? msd_fft_kernel<S, 8, false> : msd_fft_kernel<S, 16, false>;
  };
  bool use_smem = smem + 1024 <= static_cast<size_t>(s.smem_optin);
  int per_sm = 0;
  if (use_smem) {
    auto kfn = pick(true);
    FD_CUDA_CHECK(cudaFuncSetAttribute(kfn, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(smem)));
    FD_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kfn, threads, smem));
    if (per_sm == 0) use_smem = false;
  }
  int grid;
  if (use_smem) {
    const int64_t room = s.memory_limit - fixed + static_cast<int64_t>(st.part.bytes) -
                         2 * s.stage_bytes;
    const int64_t fit = room / (a.part_stride * 8);
    if (fit < 1)
      throw CudaOutOfMemory("fractaldiff CUDA: memory_limit=" + std::to_string(s.memory_limit) +
                            " bytes is too small for the MSD accumulators of T=" +
                            std::to_string(T));
    grid = grid_cap(pairs, std::min<int64_t>(fit, static_cast<int64_t>(per_sm) * s.sm_count));
    a.gwork = nullptr;
    a.gwork_stride = 0;
  } else {
    // workspace in global memory: 24 N + 8 T bytes per block, within memory_limit
    const int64_t per_block = ((24 * N + 8 * T) + 255) / 256 * 256;
    const int64_t room = s.memory_limit - fixed + static_cast<int64_t>(st.gwork.bytes) -
                         2 * s.stage_bytes;
    const int64_t fit = room / per_block;
    if (fit < 1)
      throw CudaOutOfMemory("fractaldiff CUDA: memory_limit=" + std::to_string(s.memory_limit) +
                            " bytes is too small for the MSD workspace of T=" +
                            std::to_string(T) + " (needs about " +
                            std::to_string(per_block + fixed) + " bytes)");
    grid = grid_cap(pairs, std::min<int64_t>(fit, 2LL * s.sm_count));
    if (static_cast<int64_t>(st.gwork.bytes) < grid * per_block)
      st.gwork.alloc(static_cast<size_t>(grid * per_block), "the MSD FFT workspace");
    a.gwork = st.gwork.as<double2>();
    a.gwork_stride = per_block;
    per_sm = 1;
  }
  const int64_t need_part = static_cast<int64_t>(grid) * a.part_stride * 8;
  if (static_cast<int64_t>(st.part.bytes) < need_part)
    st.part.alloc(static_cast<size_t>(need_part), "the MSD partial sums");
  a.part = st.part.as<double>();
  auto kfn = pick(use_smem);
  kfn<<<grid, threads, use_smem ? smem : 0, s.compute>>>(a);
  FD_CUDA_CHECK_LAUNCH("msd_fft_kernel");
  const int64_t n_out = N + T + kMaxDirect + 1;
  reduce_partials_kernel<<<grid_cap((n_out + 255) / 256, 4LL * s.sm_count), 256, 0,
                           s.compute>>>(st.part.as<double>(), a.part_stride, grid, N, st.log_n,
                                        n_out, st.acc.as<double>());
  FD_CUDA_CHECK_LAUNCH("reduce_partials_kernel");
}

int MsdFftFold::finish(double* power, double* sqnorm, double* direct) {
  Streamer& s = *s_;
  State& st = *st_;
  DeviceGuard guard(s.dev);
  s.wait();
  bool finite = true;
  const int64_t T = s.T, N = st.N;
  // chunks of the accumulators go straight from pinned memory into the caller's arrays
  s.read_back(st.acc.as<double>(), st.acc_len, [&](const double* h, int64_t first, int64_t n) {
    finite &= add_overlap(power, 0, N, h, first, n);
    finite &= add_overlap(sqnorm, N, T, h, first, n);
    // direct[0] stays untouched, as on the CPU
    finite &= add_overlap(direct + 1, N + T + 1, st.n_direct, h, first, n);
  });
  const int flag = s.read_flag_and_reset(st.acc);
  return (flag || !finite) ? kNonFinite : kOk;
}

// ---- selected lags -------------------------------------------------------------------------------

struct LagsFold::State {
  std::vector<int64_t> lags;
  DevBuf acc, part, d_lags;
};

LagsFold::LagsFold(int device, int64_t n_rows, const std::vector<int64_t>& lags,
                   int64_t memory_limit)
    : GpuFold(device, n_rows, memory_limit), st_(new State) {
  for (size_t i = 0; i < lags.size(); ++i)
    if (lags[i] < 0 || lags[i] >= n_rows)
      throw std::invalid_argument("lags[" + std::to_string(i) + "] = " +
                                  std::to_string(lags[i]) + " is outside [0, T)");
  Streamer& s = *s_;
  DeviceGuard guard(device);
  try {
    State& st = *st_;
    st.lags = lags;
    st.d_lags.alloc(std::max<size_t>(1, lags.size()) * sizeof(int64_t), "the lag list");
    if (!lags.empty())
      FD_CUDA_CHECK(cudaMemcpyAsync(st.d_lags.p, st.lags.data(), lags.size() * sizeof(int64_t),
                                    cudaMemcpyHostToDevice, s.compute));
    st.acc.alloc(std::max<size_t>(1, lags.size()) * sizeof(double), "the accumulators");
    FD_CUDA_CHECK(cudaMemsetAsync(st.acc.p, 0, st.acc.bytes, s.compute));
    FD_CUDA_CHECK(cudaStreamSynchronize(s.compute));
  } catch (...) {
    st_.reset();
    throw;
  }
}

LagsFold::~LagsFold() { release(st_); }

int64_t LagsFold::counted_bytes() const {
  return static_cast<int64_t>(st_->acc.bytes + st_->part.bytes + st_->d_lags.bytes);
}
int64_t LagsFold::scratch_bytes() const { return static_cast<int64_t>(st_->part.bytes); }
void LagsFold::drop_scratch() { st_->part.free(); }

void LagsFold::launch(const StridedMatrix& x, int64_t) {
  x.dtype == DType::f32 ? run<float>(x) : run<double>(x);
}

template <class S>
void LagsFold::run(const StridedMatrix& x) {
  using namespace kern;
  Streamer& s = *s_;
  State& st = *st_;
  const int64_t L = static_cast<int64_t>(st.lags.size());
  if (L == 0) return;
  const int64_t want = (x.n_cols + kLagThreads - 1) / kLagThreads;
  const int64_t max_y = 65535;
  const int64_t ly = std::min(L, max_y);
  const int nb = grid_cap(want, std::max<int64_t>(1, 8LL * s.sm_count / ly + 1));
  const int64_t need_part = static_cast<int64_t>(nb) * ly * 8;
  if (static_cast<int64_t>(st.part.bytes) < need_part)
    st.part.alloc(static_cast<size_t>(need_part), "the lag partial sums");
  for (int64_t l0 = 0; l0 < L; l0 += max_y) {
    const int64_t nl = std::min(max_y, L - l0);
    dim3 grid(nb, static_cast<unsigned>(nl));
    lags_kernel<S><<<grid, kLagThreads, 0, s.compute>>>(
        static_cast<const S*>(x.data), x.n_rows, x.n_cols, x.row_stride, x.col_stride,
        st.d_lags.as<int64_t>() + l0, st.part.as<double>(), s.status.as<int>());
    FD_CUDA_CHECK_LAUNCH("lags_kernel");
    reduce_rows_kernel<<<grid_cap((nl + 255) / 256, 4LL * s.sm_count), 256, 0, s.compute>>>(
        st.part.as<double>(), nl, nb, st.acc.as<double>() + l0);
    FD_CUDA_CHECK_LAUNCH("reduce_rows_kernel");
  }
}

int LagsFold::finish(double* sums) {
  Streamer& s = *s_;
  State& st = *st_;
  DeviceGuard guard(s.dev);
  s.wait();
  bool finite = true;
  const int64_t L = static_cast<int64_t>(st.lags.size());
  s.read_back(st.acc.as<double>(), L, [&](const double* h, int64_t first, int64_t n) {
    finite &= add_overlap(sums, 0, L, h, first, n);
  });
  const int flag = s.read_flag_and_reset(st.acc);
  return (flag || !finite) ? kNonFinite : kOk;
}

// ---- displacement --------------------------------------------------------------------------------

struct DisplacementFold::State {
  int64_t ref = 0;
  DevBuf acc, part;
};

DisplacementFold::DisplacementFold(int device, int64_t n_rows, int64_t ref, int64_t memory_limit)
    : GpuFold(device, n_rows, memory_limit), st_(new State) {
  if (ref < 0 || ref >= n_rows) throw std::invalid_argument("ref is outside [0, T)");
  Streamer& s = *s_;
  DeviceGuard guard(device);
  try {
    st_->ref = ref;
    st_->acc.alloc(static_cast<size_t>(n_rows) * sizeof(double), "the accumulators");
    FD_CUDA_CHECK(cudaMemsetAsync(st_->acc.p, 0, st_->acc.bytes, s.compute));
    FD_CUDA_CHECK(cudaStreamSynchronize(s.compute));
  } catch (...) {
    st_.reset();
    throw;
  }
}

DisplacementFold::~DisplacementFold() { release(st_); }

int64_t DisplacementFold::counted_bytes() const {
  return static_cast<int64_t>(st_->acc.bytes + st_->part.bytes);
}
int64_t DisplacementFold::scratch_bytes() const { return static_cast<int64_t>(st_->part.bytes); }
void DisplacementFold::drop_scratch() { st_->part.free(); }

void DisplacementFold::launch(const StridedMatrix& x, int64_t) {
  x.dtype == DType::f32 ? run<float>(x) : run<double>(x);
}

template <class S>
void DisplacementFold::run(const StridedMatrix& x) {
  using namespace kern;
  Streamer& s = *s_;
  State& st = *st_;
  const int64_t T = s.T;
  const int64_t rows_per_launch = 65535LL * kDispRows;
  const int64_t want = (x.n_cols + kDispThreads - 1) / kDispThreads;
  for (int64_t r0 = 0; r0 < T; r0 += rows_per_launch) {
    const int64_t nr = std::min(rows_per_launch, T - r0);
    const int64_t gy = (nr + kDispRows - 1) / kDispRows;
    const int nb = grid_cap(want, std::max<int64_t>(1, 8LL * s.sm_count / gy + 1));
    const int64_t need_part = static_cast<int64_t>(nb) * nr * 8;
    if (static_cast<int64_t>(st.part.bytes) < need_part)
      st.part.alloc(static_cast<size_t>(need_part), "the displacement partial sums");
    // part rows are indexed by absolute t: shift the pointer so row r0 lands at 0
    double* base = st.part.as<double>() - r0 * static_cast<int64_t>(nb);
    dim3 grid(nb, static_cast<unsigned>(gy));
    displacement_kernel<S><<<grid, kDispThreads, 0, s.compute>>>(
        static_cast<const S*>(x.data), x.n_rows, x.n_cols, x.row_stride, x.col_stride, st.ref,
        r0, base);
    FD_CUDA_CHECK_LAUNCH("displacement_kernel");
    reduce_rows_kernel<<<grid_cap((nr + 255) / 256, 4LL * s.sm_count), 256, 0, s.compute>>>(
        st.part.as<double>(), nr, nb, st.acc.as<double>() + r0);
    FD_CUDA_CHECK_LAUNCH("reduce_rows_kernel");
  }
}

int DisplacementFold::finish(double* sq) {
  Streamer& s = *s_;
  State& st = *st_;
  DeviceGuard guard(s.dev);
  s.wait();
  bool finite = true;
  const int64_t T = s.T;
  s.read_back(st.acc.as<double>(), T, [&](const double* h, int64_t first, int64_t n) {
    finite &= add_overlap(sq, 0, T, h, first, n);
  });
  const int flag = s.read_flag_and_reset(st.acc);
  return (flag || !finite) ? kNonFinite : kOk;
}

// ---- box ids -------------------------------------------------------------------------------------

struct BoxIdsFold::State {
  int n_scales = 0;
  uint64_t key_seed = 0;
  double inv_eps0 = 1.0;
  int64_t acc_len = 0;
  int64_t col_start = 0, n_origins = -1;
  const double* origin = nullptr;  // the caller's origins of the current block (not copied)
  int origin_slot = 0;
  DevBuf acc, d_origin;
  PinnedBuf pin_origin[2];
  cudaEvent_t origin_copied[2] = {nullptr, nullptr};
  ~State() {
    for (int k = 0; k < 2; ++k)
      if (origin_copied[k]) cudaEventDestroy(origin_copied[k]);
  }
};

namespace {
/// Bytes kept free of the staging buffers for the box-id fold: its device origin chunk and,
/// so that the pinned host memory stays within memory_limit as well, the two pinned origin
/// chunks and the two pinned read-back chunks.
int64_t box_reserve(int64_t aux_bytes) { return 4 * aux_bytes + 4096; }
}  // namespace

BoxIdsFold::BoxIdsFold(int device, int64_t n_rows, int n_scales, uint64_t key_seed,
                       double inv_eps0, int64_t memory_limit)
    : GpuFold(device, n_rows, memory_limit), st_(new State) {
  if (n_scales < 1 || n_scales > 31) throw std::invalid_argument("n_scales must be in [1, 31]");
  if (!(inv_eps0 > 0.0) || !std::isfinite(inv_eps0))
    throw std::invalid_argument("1/eps0 must be a finite number > 0");
  Streamer& s = *s_;
  const int64_t ids_bytes = n_rows * n_scales * 16;
  // the id sums, two staging buffers (at least two float64 columns each), the origin chunk and
  // the pinned chunks
  s.require_budget(ids_bytes + 4 * n_rows * 8 + box_reserve(s.aux_bytes),
                   "the box-id sums of T=" + std::to_string(n_rows) + " snapshots and " +
                       std::to_string(n_scales) + " scales plus two staging columns");
  DeviceGuard guard(device);
  try {
    State& st = *st_;
    st.n_scales = n_scales;
    st.key_seed = key_seed;
    st.inv_eps0 = inv_eps0;
    st.acc_len = n_rows * n_scales * 2;
    st.acc.alloc(static_cast<size_t>(ids_bytes), "the box-id sums");
    FD_CUDA_CHECK(cudaMemsetAsync(st.acc.p, 0, st.acc.bytes, s.compute));
    st.d_origin.alloc(static_cast<size_t>(s.aux_bytes), "the box origins");
    for (int k = 0; k < 2; ++k) {
      st.pin_origin[k].alloc(static_cast<size_t>(s.aux_bytes));
      FD_CUDA_CHECK(cudaEventCreateWithFlags(&st.origin_copied[k], cudaEventDisableTiming));
    }
    FD_CUDA_CHECK(cudaStreamSynchronize(s.compute));
  } catch (...) {
    st_.reset();
    throw;
  }
}

BoxIdsFold::~BoxIdsFold() { release(st_); }

int64_t BoxIdsFold::counted_bytes() const {
  return static_cast<int64_t>(st_->acc.bytes + st_->d_origin.bytes);
}

int64_t BoxIdsFold::staging_cap() const {
  // at most half of what the id sums and the origin and read-back chunks leave
  return std::min<int64_t>(GpuFold::staging_cap(),
                           (s_->memory_limit - static_cast<int64_t>(st_->acc.bytes) -
                            box_reserve(s_->aux_bytes)) / 2);
}

void BoxIdsFold::check_block(int64_t n_cols) const {
  if (st_->n_origins < 0 || n_cols > st_->n_origins)
    throw std::invalid_argument("BoxIdsFold: set_block() gave " +
                                std::to_string(std::max<int64_t>(0, st_->n_origins)) +
                                " origins for a block of " + std::to_string(n_cols) +
                                " columns");
}

void BoxIdsFold::set_block(int64_t col_start, const double* origin, int64_t n_cols) {
  if (col_start < 0 || n_cols < 0)
    throw std::invalid_argument("col_start and the number of origins must be >= 0");
  if (n_cols > 0 && origin == nullptr) throw std::invalid_argument("origin is null");
  // read (in column chunks, through pinned buffers) by the fold_device/fold_host calls that follow
  st_->origin = origin;
  st_->col_start = col_start;
  st_->n_origins = n_cols;
}

void BoxIdsFold::launch(const StridedMatrix& x, int64_t c_off) {
  x.dtype == DType::f32 ? run<float>(x, c_off) : run<double>(x, c_off);
}

namespace {
template <class S, int NS>
void run_box_grid(kern::BoxArgs a, int64_t n_rows, int sm_count, cudaStream_t stream) {
  using namespace kern;
  const int64_t max_y = 65535;
  const int64_t row_tiles = ceil_div(n_rows, kBoxRows);
  // columns per block: enough blocks to fill the GPU (8 per SM), whole key chunks
  const int64_t want_cols = std::max<int64_t>(1, 8LL * sm_count / std::max<int64_t>(1, row_tiles));
  int64_t cpb = ceil_div(ceil_div(a.B, want_cols), kBoxKeyChunk) * kBoxKeyChunk;
  a.cols_per_block = cpb;
  const int64_t gx = ceil_div(a.B, cpb);
  for (int64_t r0 = 0; r0 < n_rows; r0 += max_y * kBoxRows) {
    a.row_base = r0;
    const int64_t gy = std::min(max_y, ceil_div(n_rows - r0, kBoxRows));
    dim3 grid(static_cast<unsigned>(gx), static_cast<unsigned>(gy));
    box_ids_kernel<S, NS><<<grid, kBoxRows, 0, stream>>>(a);
    FD_CUDA_CHECK_LAUNCH("box_ids_kernel");
  }
}
}  // namespace

template <class S>
void BoxIdsFold::run(const StridedMatrix& x, int64_t c_off) {
  using namespace kern;
  Streamer& s = *s_;
  State& st = *st_;
  check_block(c_off + x.n_cols);
  // the origins go up in chunks of aux_cols() columns through two pinned buffers into one
  // device buffer: on the compute stream, each copy is ordered after the kernel that read the
  // previous chunk, and a pinned buffer is refilled once its copy (two chunks ago) is done
  const int64_t cap = s.aux_cols();
  for (int64_t c = 0; c < x.n_cols; c += cap) {
    const int64_t n = std::min(cap, x.n_cols - c);
    const int k = st.origin_slot;
    st.origin_slot ^= 1;
    FD_CUDA_CHECK(cudaEventSynchronize(st.origin_copied[k]));
    std::memcpy(st.pin_origin[k].p, st.origin + c_off + c, static_cast<size_t>(n) * 8);
    FD_CUDA_CHECK(cudaMemcpyAsync(st.d_origin.p, st.pin_origin[k].p, static_cast<size_t>(n) * 8,
                                  cudaMemcpyHostToDevice, s.compute));
    FD_CUDA_CHECK(cudaEventRecord(st.origin_copied[k], s.compute));
    BoxArgs a;
    a.x = static_cast<const S*>(x.data) + c * x.col_stride;
    a.T = x.n_rows;
    a.B = n;
    a.rs = x.row_stride;
    a.cs = x.col_stride;
    a.origin = st.d_origin.as<double>();
    a.col_start = st.col_start + c_off + c;
    a.inv_eps0 = st.inv_eps0;
    a.n_scales = st.n_scales;
    a.key_seed = st.key_seed;
    a.ids = st.acc.as<unsigned long long>();
    a.status = s.status.as<int>();
    if (st.n_scales <= 8) {
      run_box_grid<S, 8>(a, x.n_rows, s.sm_count, s.compute);
    } else if (st.n_scales <= 16) {
      run_box_grid<S, 16>(a, x.n_rows, s.sm_count, s.compute);
    } else {
      run_box_grid<S, 31>(a, x.n_rows, s.sm_count, s.compute);
    }
  }
}

int BoxIdsFold::finish(uint64_t* ids) {
  Streamer& s = *s_;
  State& st = *st_;
  DeviceGuard guard(s.dev);
  s.wait();
  s.read_back(st.acc.as<uint64_t>(), st.acc_len, [&](const uint64_t* h, int64_t first, int64_t n) {
    for (int64_t i = 0; i < n; ++i) ids[first + i] += h[i];  // mod 2^64
  });
  const int flag = s.read_flag_and_reset(st.acc);
  st.origin = nullptr;  // the caller's origins may go away now
  st.n_origins = -1;
  return flag ? kOutOfRange : kOk;
}

// ---- centred Gram matrix -------------------------------------------------------------------------

struct GramFold::State {
  DevBuf acc, means, gpart;
};

GramFold::GramFold(int device, int64_t n_rows, int64_t memory_limit)
    : GpuFold(device, n_rows, memory_limit), st_(new State) {
  if (n_rows > (int64_t(1) << 31) / 8)
    throw std::invalid_argument("T=" + std::to_string(n_rows) + " is too large for a (T, T) "
                                "Gram matrix");
  Streamer& s = *s_;
  // two staging buffers of two columns each, the column means of one chunk (device) and the two
  // read-back chunks (pinned host) must fit; the (T, T) result is not counted
  s.require_budget(4 * n_rows * 8 + 2 * s.aux_bytes + 4096,
                   "staging the Gram matrix's column blocks of T=" + std::to_string(n_rows));
  DeviceGuard guard(device);
  try {
    State& st = *st_;
    st.means.alloc(static_cast<size_t>(s.aux_bytes), "the column means");
    const int64_t len = n_rows * n_rows;
    const std::string advice =
        "this is the (T, T) float64 result itself, T*T*8 = " + std::to_string(len * 8) +
        " bytes for T=" + std::to_string(n_rows) +
        ", which memory_limit does not count: free GPU memory or use fewer snapshots";
    st.acc.alloc(static_cast<size_t>(len) * sizeof(double), "the (T, T) Gram matrix",
                 advice.c_str());
    FD_CUDA_CHECK(cudaMemsetAsync(st.acc.p, 0, st.acc.bytes, s.compute));
    FD_CUDA_CHECK(cudaStreamSynchronize(s.compute));
  } catch (...) {
    st_.reset();
    throw;
  }
}

GramFold::~GramFold() { release(st_); }

// the (T, T) result is not counted against memory_limit
int64_t GramFold::counted_bytes() const {
  return static_cast<int64_t>(st_->means.bytes + st_->gpart.bytes);
}
int64_t GramFold::uncounted_bytes() const { return static_cast<int64_t>(st_->acc.bytes); }
int64_t GramFold::scratch_bytes() const { return static_cast<int64_t>(st_->gpart.bytes); }
void GramFold::drop_scratch() { st_->gpart.free(); }

void GramFold::launch(const StridedMatrix& x, int64_t) {
  x.dtype == DType::f32 ? run<float>(x) : run<double>(x);
}

/// Column chunks of aux_cols() columns (their means fit the means buffer); centred Gram
/// matrices of disjoint column sets add up.
template <class S>
void GramFold::run(const StridedMatrix& x) {
  const int64_t cap = s_->aux_cols();
  for (int64_t c = 0; c < x.n_cols; c += cap) {
    StridedMatrix sub = x;
    sub.data = static_cast<const S*>(x.data) + c * x.col_stride;
    sub.n_cols = std::min(cap, x.n_cols - c);
    run_chunk<S>(sub);
  }
}

template <class S>
void GramFold::run_chunk(const StridedMatrix& x) {
  using namespace kern;
  Streamer& s = *s_;
  State& st = *st_;
  const int64_t T = s.T;
  const int64_t B = x.n_cols;
  // the means buffer (aux_bytes, allocated with the fold) is rewritten after the previous
  // chunk's Gram kernel has read it: both run on the compute stream
  column_means_kernel<S><<<grid_cap(ceil_div(B, 256), 8LL * s.sm_count), 256, 0, s.compute>>>(
      static_cast<const S*>(x.data), T, B, x.row_stride, x.col_stride, st.means.as<double>(),
      s.status.as<int>());
  FD_CUDA_CHECK_LAUNCH("column_means_kernel");
  const int64_t nt = ceil_div(T, kGramTile);
  const int64_t tiles = nt * (nt + 1) / 2;
  if (tiles > 0x7fffffffLL)
    throw std::invalid_argument("T=" + std::to_string(T) + " is too large for the GPU Gram "
                                "kernel's grid");
  // K-splits fill the GPU when there are fewer tiles than SMs (one block per SM): each split
  // sums a column range into its own (T, T) partial, added into G in order afterwards
  const int64_t gsize = T * T;
  int64_t splits = std::min<int64_t>({ceil_div(2LL * s.sm_count, tiles), 16,
                                      std::max<int64_t>(1, B / 1024)});
  if (splits > 1) {
    const int64_t used = counted_bytes() + static_cast<int64_t>(s.status.bytes) -
                         static_cast<int64_t>(st.gpart.bytes) + 2 * s.stage_bytes;
    splits = std::min<int64_t>(splits, (s.memory_limit - used) / (gsize * 8));
  }
  GramArgs a;
  a.x = x.data;
  a.T = T;
  a.B = B;
  a.rs = x.row_stride;
  a.cs = x.col_stride;
  a.mean = st.means.as<double>();
  if (splits > 1) {
    if (static_cast<int64_t>(st.gpart.bytes) < splits * gsize * 8) {
      FD_CUDA_CHECK(cudaStreamSynchronize(s.compute));
      st.gpart.alloc(static_cast<size_t>(splits * gsize * 8), "the Gram K-split partial sums");
    }
    FD_CUDA_CHECK(cudaMemsetAsync(st.gpart.p, 0, static_cast<size_t>(splits * gsize * 8),
                                  s.compute));
    a.out = st.gpart.as<double>();
    a.split_stride = gsize;
  } else {
    splits = 1;
    a.out = st.acc.as<double>();
    a.split_stride = 0;
  }
  a.cols_per_split = ceil_div(ceil_div(B, splits), kGramK) * kGramK;
  splits = ceil_div(B, a.cols_per_split);
  dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(splits));
  gram_kernel<S><<<grid, kGramThreads, 0, s.compute>>>(a);
  FD_CUDA_CHECK_LAUNCH("gram_kernel");
  if (a.out != st.acc.as<double>()) {
    add_splits_kernel<<<grid_cap(ceil_div(gsize, 256), 8LL * s.sm_count), 256, 0, s.compute>>>(
        st.gpart.as<double>(), gsize, static_cast<int>(splits), gsize, st.acc.as<double>());
    FD_CUDA_CHECK_LAUNCH("add_splits_kernel");
  }
}

int GramFold::finish(double* gram) {
  Streamer& s = *s_;
  State& st = *st_;
  DeviceGuard guard(s.dev);
  s.wait();
  const int64_t T = s.T;
  // the lower triangle (j <= i) of each row in a chunk; the strict upper triangle is scratch
  // and is not written
  s.read_back(st.acc.as<double>(), T * T, [&](const double* h, int64_t first, int64_t n) {
    for (int64_t e = first; e < first + n;) {
      const int64_t i = e / T;
      const int64_t row_end = std::min(first + n, (i + 1) * T);
      const int64_t low_end = std::min(row_end, i * T + i + 1);
      for (int64_t k = e; k < low_end; ++k) gram[k] += h[k - first];
      e = row_end;
    }
  });
  const int flag = s.read_flag_and_reset(st.acc);
  // judge the diagonal (|G_ij| <= sqrt(G_ii G_jj): it bounds the whole lower triangle)
  bool finite = true;
  for (int64_t i = 0; i < T; ++i) finite &= static_cast<bool>(std::isfinite(gram[i * T + i]));
  return (flag || !finite) ? kNonFinite : kOk;
}

// ---- per-column ranges of a device matrix --------------------------------------------------------

int box_minmax_device(int device, const StridedMatrix& x, double* mins, double* maxs,
                      int64_t memory_limit) {
  if (x.n_cols == 0) return kOk;
  if (x.n_rows < 1) throw std::invalid_argument("x must have at least one row");
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || device < 0 || device >= count) {
    (void)cudaGetLastError();
    throw CudaError("device='cuda': CUDA device " + std::to_string(device) + " is not usable");
  }
  DeviceGuard guard(device);
  check_device_pointer(x.data, device);
  int sm_count = 1;
  FD_CUDA_CHECK(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device));
  // whatever produced x (PyTorch or another library, on its own streams) must be finished
  FD_CUDA_CHECK(cudaDeviceSynchronize());
  // everything below runs on the legacy default stream, in issue order
  const int64_t width = std::max<int64_t>(1, std::min<int64_t>(x.n_cols, memory_limit / 32));
  DevBuf lo, hi, flag;
  lo.alloc(static_cast<size_t>(width * 8), "the column minima");
  hi.alloc(static_cast<size_t>(width * 8), "the column maxima");
  flag.alloc(sizeof(int), "the status flag");
  FD_CUDA_CHECK(cudaMemset(flag.p, 0, sizeof(int)));
  const size_t item = item_size(x.dtype);
  for (int64_t c0 = 0; c0 < x.n_cols; c0 += width) {
    const int64_t w = std::min(width, x.n_cols - c0);
    const void* base = static_cast<const char*>(x.data) + c0 * x.col_stride * static_cast<int64_t>(item);
    const int grid = grid_cap(ceil_div(w, 256), 16LL * sm_count);
    if (x.dtype == DType::f32) {
      kern::box_minmax_kernel<float><<<grid, 256>>>(static_cast<const float*>(base), x.n_rows, w,
                                                    x.row_stride, x.col_stride, lo.as<double>(),
                                                    hi.as<double>(), flag.as<int>());
    } else {
      kern::box_minmax_kernel<double><<<grid, 256>>>(static_cast<const double*>(base), x.n_rows,
                                                     w, x.row_stride, x.col_stride,
                                                     lo.as<double>(), hi.as<double>(),
                                                     flag.as<int>());
    }
    FD_CUDA_CHECK_LAUNCH("box_minmax_kernel");
    FD_CUDA_CHECK(cudaMemcpy(mins + c0, lo.p, static_cast<size_t>(w * 8), cudaMemcpyDeviceToHost));
    FD_CUDA_CHECK(cudaMemcpy(maxs + c0, hi.p, static_cast<size_t>(w * 8), cudaMemcpyDeviceToHost));
  }
  int status = 0;
  FD_CUDA_CHECK(cudaMemcpy(&status, flag.p, sizeof(int), cudaMemcpyDeviceToHost));
  return status ? kNonFinite : kOk;
}

}  // namespace cuda
}  // namespace fractaldiff
