// Host side of the CUDA folds (GpuFold): device accumulators, launch configuration, and the
// pinned, double-buffered host->device streaming of column blocks (shared by every fold kind:
// MSD, selected lags, displacement, box ids and the centred Gram matrix).
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

struct GpuFold::Impl {
  FoldKind kind;
  int dev = 0;
  int64_t T = 0, N = 0, n_direct = 0, ref = 0, memory_limit = 0;
  int log_n = 0;
  hd::FftPlan plan;
  std::vector<int64_t> lags;
  int sm_count = 1, smem_optin = 48 * 1024;
  cudaStream_t compute = nullptr, copy = nullptr;
  cudaEvent_t h2d_done[2] = {nullptr, nullptr}, consumed[2] = {nullptr, nullptr};
  // read-back of the accumulators (finish) and box origins: two pinned chunks each
  cudaEvent_t rb_ready[2] = {nullptr, nullptr}, origin_copied[2] = {nullptr, nullptr};
  DevBuf acc, part, tw, status, d_lags, gwork, stage[2];
  // box ids: origins of one column chunk; gram: column means of one column chunk, K-split partials
  DevBuf d_origin, means, gpart;
  PinnedBuf pinned[2], readback_buf[2], pin_origin[2];
  int64_t acc_len = 0, stage_bytes = 0;
  /// Bytes of one "auxiliary" chunk: the device origins (box ids) or column means (gram) of
  /// aux_bytes / 8 columns, and each pinned read-back or origin chunk. Launches on more columns
  /// run in column chunks of that width, so these buffers stay bounded for any D.
  int64_t aux_bytes = 0;
  // box ids
  int n_scales = 0;
  uint64_t key_seed = 0;
  double inv_eps0 = 1.0;
  int64_t box_col_start = 0, box_cols = -1;
  const double* box_origin = nullptr;  // the caller's origins of the current block (not copied)
  int origin_slot = 0;

  ~Impl() {
    if (compute) cudaStreamSynchronize(compute);
    if (copy) cudaStreamSynchronize(copy);
    for (int k = 0; k < 2; ++k) {
      if (h2d_done[k]) cudaEventDestroy(h2d_done[k]);
      if (consumed[k]) cudaEventDestroy(consumed[k]);
      if (rb_ready[k]) cudaEventDestroy(rb_ready[k]);
      if (origin_copied[k]) cudaEventDestroy(origin_copied[k]);
    }
    if (compute) cudaStreamDestroy(compute);
    if (copy) cudaStreamDestroy(copy);
    if (compute) (void)cudaGetLastError();  // a destructor reports nothing
  }

  /// Validate, allocate and upload what the fold kind needs (the current device is `device`).
  void init(FoldKind kind_, int device, int64_t n_rows, int64_t n_direct_,
            const std::vector<int64_t>& lags_, int64_t ref_, int64_t memory_limit_);

  int64_t fixed_bytes() const {
    return static_cast<int64_t>(acc.bytes + part.bytes + tw.bytes + status.bytes + d_lags.bytes +
                                gwork.bytes + d_origin.bytes + means.bytes + gpart.bytes);
  }

  /// fixed_bytes() as counted against memory_limit: without the gram kind's (T, T) result.
  int64_t counted_bytes() const {
    return fixed_bytes() - (kind == FoldKind::gram ? static_cast<int64_t>(acc.bytes) : 0);
  }

  /// Throw CudaOutOfMemory when `need` bytes exceed memory_limit.
  void require_budget(int64_t need, const std::string& what) const {
    if (need > memory_limit)
      throw CudaOutOfMemory("fractaldiff CUDA: memory_limit=" + std::to_string(memory_limit) +
                            " bytes is too small for " + what + " (needs about " +
                            std::to_string(need) + " bytes); raise memory_limit");
  }

  // ---- launches --------------------------------------------------------------------------

  template <class S>
  void launch_msd(const StridedMatrix& x) {
    using namespace kern;
    const int64_t pairs = (x.n_cols + 1) / 2;
    MsdArgs a;
    a.x = x.data;
    a.T = x.n_rows;
    a.D = x.n_cols;
    a.rs = x.row_stride;
    a.cs = x.col_stride;
    a.N = N;
    a.log_n = log_n;
    a.n_direct = static_cast<int>(n_direct);
    a.tw = tw.as<double2>();
    a.part_stride = N + T + kMaxDirect + 1;
    a.status = status.as<int>();
    const size_t smem = static_cast<size_t>(24 * N + 8 * T);
    const int threads = N >= 2048 ? kMsdThreads : 256;
    const bool small = n_direct <= 8;
    auto pick = [&](bool use_smem) {
      if (use_smem) return small ? msd_fft_kernel<S, 8, true> : msd_fft_kernel<S, 16, true>;
      return small ? msd_fft_kernel<S, 8, false> : msd_fft_kernel<S, 16, false>;
    };
    bool use_smem = smem + 1024 <= static_cast<size_t>(smem_optin);
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
      const int64_t room = memory_limit - fixed_bytes() + static_cast<int64_t>(part.bytes) -
                           2 * stage_bytes;
      const int64_t fit = room / (a.part_stride * 8);
      if (fit < 1)
        throw CudaOutOfMemory("fractaldiff CUDA: memory_limit=" + std::to_string(memory_limit) +
                              " bytes is too small for the MSD accumulators of T=" +
                              std::to_string(T));
      grid = grid_cap(pairs, std::min<int64_t>(fit, static_cast<int64_t>(per_sm) * sm_count));
      a.gwork = nullptr;
      a.gwork_stride = 0;
    } else {
      // workspace in global memory: 24 N + 8 T bytes per block, within memory_limit
      const int64_t per_block = ((24 * N + 8 * T) + 255) / 256 * 256;
      const int64_t room = memory_limit - fixed_bytes() + static_cast<int64_t>(gwork.bytes) -
                           2 * stage_bytes;
      const int64_t fit = room / per_block;
      if (fit < 1)
        throw CudaOutOfMemory("fractaldiff CUDA: memory_limit=" + std::to_string(memory_limit) +
                              " bytes is too small for the MSD workspace of T=" +
                              std::to_string(T) + " (needs about " +
                              std::to_string(per_block + fixed_bytes()) + " bytes)");
      grid = grid_cap(pairs, std::min<int64_t>(fit, 2LL * sm_count));
      if (static_cast<int64_t>(gwork.bytes) < grid * per_block)
        gwork.alloc(static_cast<size_t>(grid * per_block), "the MSD FFT workspace");
      a.gwork = gwork.as<double2>();
      a.gwork_stride = per_block;
      per_sm = 1;
    }
    const int64_t need_part = static_cast<int64_t>(grid) * a.part_stride * 8;
    if (static_cast<int64_t>(part.bytes) < need_part)
      part.alloc(static_cast<size_t>(need_part), "the MSD partial sums");
    a.part = part.as<double>();
    auto kfn = pick(use_smem);
    kfn<<<grid, threads, use_smem ? smem : 0, compute>>>(a);
    FD_CUDA_CHECK_LAUNCH("msd_fft_kernel");
    const int64_t n_out = N + T + kMaxDirect + 1;
    reduce_partials_kernel<<<grid_cap((n_out + 255) / 256, 4LL * sm_count), 256, 0, compute>>>(
        part.as<double>(), a.part_stride, grid, N, log_n, n_out, acc.as<double>());
    FD_CUDA_CHECK_LAUNCH("reduce_partials_kernel");
  }

  template <class S>
  void launch_lags(const StridedMatrix& x) {
    using namespace kern;
    const int64_t L = static_cast<int64_t>(lags.size());
    if (L == 0) return;
    const int64_t want = (x.n_cols + kLagThreads - 1) / kLagThreads;
    const int64_t max_y = 65535;
    const int64_t ly = std::min(L, max_y);
    const int nb = grid_cap(want, std::max<int64_t>(1, 8LL * sm_count / ly + 1));
    const int64_t need_part = static_cast<int64_t>(nb) * ly * 8;
    if (static_cast<int64_t>(part.bytes) < need_part)
      part.alloc(static_cast<size_t>(need_part), "the lag partial sums");
    for (int64_t l0 = 0; l0 < L; l0 += max_y) {
      const int64_t nl = std::min(max_y, L - l0);
      dim3 grid(nb, static_cast<unsigned>(nl));
      lags_kernel<S><<<grid, kLagThreads, 0, compute>>>(
          static_cast<const S*>(x.data), x.n_rows, x.n_cols, x.row_stride, x.col_stride,
          d_lags.as<int64_t>() + l0, part.as<double>(), status.as<int>());
      FD_CUDA_CHECK_LAUNCH("lags_kernel");
      reduce_rows_kernel<<<grid_cap((nl + 255) / 256, 4LL * sm_count), 256, 0, compute>>>(
          part.as<double>(), nl, nb, acc.as<double>() + l0);
      FD_CUDA_CHECK_LAUNCH("reduce_rows_kernel");
    }
  }

  template <class S>
  void launch_displacement(const StridedMatrix& x) {
    using namespace kern;
    const int64_t rows_per_launch = 65535LL * kDispRows;
    const int64_t want = (x.n_cols + kDispThreads - 1) / kDispThreads;
    for (int64_t r0 = 0; r0 < T; r0 += rows_per_launch) {
      const int64_t nr = std::min(rows_per_launch, T - r0);
      const int64_t gy = (nr + kDispRows - 1) / kDispRows;
      const int nb = grid_cap(want, std::max<int64_t>(1, 8LL * sm_count / gy + 1));
      const int64_t need_part = static_cast<int64_t>(nb) * nr * 8;
      if (static_cast<int64_t>(part.bytes) < need_part)
        part.alloc(static_cast<size_t>(need_part), "the displacement partial sums");
      // part rows are indexed by absolute t: shift the pointer so row r0 lands at 0
      double* base = part.as<double>() - r0 * static_cast<int64_t>(nb);
      dim3 grid(nb, static_cast<unsigned>(gy));
      displacement_kernel<S><<<grid, kDispThreads, 0, compute>>>(
          static_cast<const S*>(x.data), x.n_rows, x.n_cols, x.row_stride, x.col_stride, ref, r0,
          base);
      FD_CUDA_CHECK_LAUNCH("displacement_kernel");
      reduce_rows_kernel<<<grid_cap((nr + 255) / 256, 4LL * sm_count), 256, 0, compute>>>(
          part.as<double>(), nr, nb, acc.as<double>() + r0);
      FD_CUDA_CHECK_LAUNCH("reduce_rows_kernel");
    }
  }

  template <class S, int NS>
  void run_box(kern::BoxArgs a, int64_t n_rows) {
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
      box_ids_kernel<S, NS><<<grid, kBoxRows, 0, compute>>>(a);
      FD_CUDA_CHECK_LAUNCH("box_ids_kernel");
    }
  }

  /// box ids: the block about to be folded (n_cols columns) has its origins and a configuration.
  void check_box_block(int64_t n_cols) const {
    if (n_scales == 0) throw std::logic_error("GpuFold(box_ids): configure_box() was not called");
    if (box_cols < 0 || n_cols > box_cols)
      throw std::invalid_argument("GpuFold(box_ids): set_box_block() gave " +
                                  std::to_string(std::max<int64_t>(0, box_cols)) +
                                  " origins for a block of " + std::to_string(n_cols) +
                                  " columns");
  }

  /// Columns per origin / column-mean chunk.
  int64_t aux_cols() const { return aux_bytes / 8; }

  template <class S>
  void launch_box(const StridedMatrix& x, int64_t c_off) {
    using namespace kern;
    check_box_block(c_off + x.n_cols);
    // the origins go up in chunks of aux_cols() columns through two pinned buffers into one
    // device buffer: on the compute stream, each copy is ordered after the kernel that read the
    // previous chunk, and a pinned buffer is refilled once its copy (two chunks ago) is done
    const int64_t cap = aux_cols();
    for (int64_t c = 0; c < x.n_cols; c += cap) {
      const int64_t n = std::min(cap, x.n_cols - c);
      const int k = origin_slot;
      origin_slot ^= 1;
      FD_CUDA_CHECK(cudaEventSynchronize(origin_copied[k]));
      std::memcpy(pin_origin[k].p, box_origin + c_off + c, static_cast<size_t>(n) * 8);
      FD_CUDA_CHECK(cudaMemcpyAsync(d_origin.p, pin_origin[k].p, static_cast<size_t>(n) * 8,
                                    cudaMemcpyHostToDevice, compute));
      FD_CUDA_CHECK(cudaEventRecord(origin_copied[k], compute));
      BoxArgs a;
      a.x = static_cast<const S*>(x.data) + c * x.col_stride;
      a.T = x.n_rows;
      a.B = n;
      a.rs = x.row_stride;
      a.cs = x.col_stride;
      a.origin = d_origin.as<double>();
      a.col_start = box_col_start + c_off + c;
      a.inv_eps0 = inv_eps0;
      a.n_scales = n_scales;
      a.key_seed = key_seed;
      a.ids = acc.as<unsigned long long>();
      a.status = status.as<int>();
      if (n_scales <= 8) {
        run_box<S, 8>(a, x.n_rows);
      } else if (n_scales <= 16) {
        run_box<S, 16>(a, x.n_rows);
      } else {
        run_box<S, 31>(a, x.n_rows);
      }
    }
  }

  /// gram: column chunks of aux_cols() columns (their means fit the means buffer); centred
  /// Gram matrices of disjoint column sets add up.
  template <class S>
  void launch_gram(const StridedMatrix& x) {
    const int64_t cap = aux_cols();
    for (int64_t c = 0; c < x.n_cols; c += cap) {
      StridedMatrix sub = x;
      sub.data = static_cast<const S*>(x.data) + c * x.col_stride;
      sub.n_cols = std::min(cap, x.n_cols - c);
      launch_gram_chunk<S>(sub);
    }
  }

  template <class S>
  void launch_gram_chunk(const StridedMatrix& x) {
    using namespace kern;
    const int64_t B = x.n_cols;
    // the means buffer (aux_bytes, allocated with the fold) is rewritten after the previous
    // chunk's Gram kernel has read it: both run on the compute stream
    column_means_kernel<S><<<grid_cap(ceil_div(B, 256), 8LL * sm_count), 256, 0, compute>>>(
        static_cast<const S*>(x.data), T, B, x.row_stride, x.col_stride, means.as<double>(),
        status.as<int>());
    FD_CUDA_CHECK_LAUNCH("column_means_kernel");
    const int64_t nt = ceil_div(T, kGramTile);
    const int64_t tiles = nt * (nt + 1) / 2;
    if (tiles > 0x7fffffffLL)
      throw std::invalid_argument("T=" + std::to_string(T) + " is too large for the GPU Gram "
                                  "kernel's grid");
    // K-splits fill the GPU when there are fewer tiles than SMs (one block per SM): each split
    // sums a column range into its own (T, T) partial, added into G in order afterwards
    const int64_t gsize = T * T;
    int64_t splits = std::min<int64_t>({ceil_div(2LL * sm_count, tiles), 16,
                                        std::max<int64_t>(1, B / 1024)});
    if (splits > 1) {
      const int64_t used = fixed_bytes() - static_cast<int64_t>(acc.bytes + gpart.bytes) +
                           2 * stage_bytes;
      splits = std::min<int64_t>(splits, (memory_limit - used) / (gsize * 8));
    }
    GramArgs a;
    a.x = x.data;
    a.T = T;
    a.B = B;
    a.rs = x.row_stride;
    a.cs = x.col_stride;
    a.mean = means.as<double>();
    if (splits > 1) {
      if (static_cast<int64_t>(gpart.bytes) < splits * gsize * 8) {
        FD_CUDA_CHECK(cudaStreamSynchronize(compute));
        gpart.alloc(static_cast<size_t>(splits * gsize * 8), "the Gram K-split partial sums");
      }
      FD_CUDA_CHECK(cudaMemsetAsync(gpart.p, 0, static_cast<size_t>(splits * gsize * 8),
                                    compute));
      a.out = gpart.as<double>();
      a.split_stride = gsize;
    } else {
      splits = 1;
      a.out = acc.as<double>();
      a.split_stride = 0;
    }
    a.cols_per_split = ceil_div(ceil_div(B, splits), kGramK) * kGramK;
    splits = ceil_div(B, a.cols_per_split);
    dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(splits));
    gram_kernel<S><<<grid, kGramThreads, 0, compute>>>(a);
    FD_CUDA_CHECK_LAUNCH("gram_kernel");
    if (a.out != acc.as<double>()) {
      add_splits_kernel<<<grid_cap(ceil_div(gsize, 256), 8LL * sm_count), 256, 0, compute>>>(
          gpart.as<double>(), gsize, static_cast<int>(splits), gsize, acc.as<double>());
      FD_CUDA_CHECK_LAUNCH("add_splits_kernel");
    }
  }

  /// Fold x, whose first column is column c_off of the block passed to fold_device/fold_host.
  void launch(const StridedMatrix& x, int64_t c_off = 0) {
    if (x.n_cols == 0) return;
    if (x.n_rows != T)
      throw std::invalid_argument("x has " + std::to_string(x.n_rows) +
                                  " rows; this fold was set up for T=" + std::to_string(T));
    const bool f32 = x.dtype == DType::f32;
    switch (kind) {
      case FoldKind::msd_fft:
        f32 ? launch_msd<float>(x) : launch_msd<double>(x);
        break;
      case FoldKind::msd_lags:
        f32 ? launch_lags<float>(x) : launch_lags<double>(x);
        break;
      case FoldKind::displacement:
        f32 ? launch_displacement<float>(x) : launch_displacement<double>(x);
        break;
      case FoldKind::box_ids:
        f32 ? launch_box<float>(x, c_off) : launch_box<double>(x, c_off);
        break;
      case FoldKind::gram:
        f32 ? launch_gram<float>(x) : launch_gram<double>(x);
        break;
    }
  }

  // ---- host streaming ------------------------------------------------------------------------

  /// Bytes kept free of the staging buffers for the box-id fold: its device origin chunk and,
  /// so that the pinned host memory stays within memory_limit as well, the two pinned origin
  /// chunks and the two pinned read-back chunks.
  int64_t box_reserve() const { return 4 * aux_bytes + 4096; }

  /// Two device staging buffers (and, when the source must be packed, two pinned ones), each at
  /// most a quarter of memory_limit (box ids: at most half of what the id sums and the origin
  /// and read-back chunks leave) but at least one column pair.
  void ensure_staging(int64_t item, bool need_pinned) {
    if (stage_bytes == 0) {
      int64_t per = std::min<int64_t>(memory_limit / 4, 256LL << 20);
      if (kind == FoldKind::box_ids)
        per = std::min<int64_t>(per, (memory_limit - static_cast<int64_t>(acc.bytes) -
                                      box_reserve()) / 2);
      per = std::max<int64_t>(per, 2 * T * item);
      per = (per + 255) / 256 * 256;
      require_budget(counted_bytes() -
                         static_cast<int64_t>(part.bytes + gwork.bytes + gpart.bytes) + 2 * per,
                     "two staging buffers of " + std::to_string(per) + " bytes each");
      // partial sums sized while nothing was staged (fold_device) would now exceed the budget:
      // drop them, the next launch sizes them again within what the staging leaves
      if (counted_bytes() + 2 * per > memory_limit) {
        FD_CUDA_CHECK(cudaStreamSynchronize(compute));
        part.free();
        gwork.free();
        gpart.free();
      }
      for (int k = 0; k < 2; ++k) {
        stage[k].alloc(static_cast<size_t>(per), "the host-to-device staging buffers");
        if (!h2d_done[k])
          FD_CUDA_CHECK(cudaEventCreateWithFlags(&h2d_done[k], cudaEventDisableTiming));
        if (!consumed[k])
          FD_CUDA_CHECK(cudaEventCreateWithFlags(&consumed[k], cudaEventDisableTiming));
      }
      stage_bytes = per;
    }
    if (need_pinned && pinned[0].p == nullptr)
      for (int k = 0; k < 2; ++k) pinned[k].alloc(static_cast<size_t>(stage_bytes));
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
  void read_back(const E* dev, int64_t n, F&& consume) {
    ensure_readback();
    const int64_t per = aux_bytes / static_cast<int64_t>(sizeof(E));
    const int64_t chunks = ceil_div(n, per);
    auto issue = [&](int64_t i) {
      const int k = static_cast<int>(i & 1);
      const int64_t first = i * per, count = std::min(per, n - first);
      FD_CUDA_CHECK(cudaMemcpyAsync(readback_buf[k].p, dev + first,
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

  /// Read the status flag and reset the accumulators and the flag, all on the compute stream
  /// (ordered after the kernels and the read-back; the next fold's kernels follow them).
  int read_flag_and_reset() {
    int flag = 0;
    FD_CUDA_CHECK(cudaMemcpyAsync(&flag, status.p, sizeof(int), cudaMemcpyDeviceToHost, compute));
    FD_CUDA_CHECK(cudaMemsetAsync(acc.p, 0, acc.bytes, compute));
    FD_CUDA_CHECK(cudaMemsetAsync(status.p, 0, sizeof(int), compute));
    FD_CUDA_CHECK(cudaStreamSynchronize(compute));
    return flag;
  }

  void fold_host(const StridedMatrix& x) {
    if (x.n_cols == 0) return;
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
    ensure_staging(item, !direct);
    int64_t width = stage_bytes / (T * item);
    if (kind == FoldKind::msd_fft && width > 1) width -= width % 2;  // whole column pairs
    width = std::max<int64_t>(1, std::min(width, x.n_cols));
    const char* src = static_cast<const char*>(x.data);
    int k = 0;
    for (int64_t c0 = 0; c0 < x.n_cols; c0 += width, k ^= 1) {
      const int64_t w = std::min(width, x.n_cols - c0);
      const int64_t bytes = T * w * item;
      // device buffer k is free once the kernel that read it is done
      FD_CUDA_CHECK(cudaStreamWaitEvent(copy, consumed[k], 0));
      if (direct) {
        FD_CUDA_CHECK(cudaMemcpy2DAsync(stage[k].p, static_cast<size_t>(w * item),
                                        src + c0 * item, static_cast<size_t>(x.row_stride * item),
                                        static_cast<size_t>(w * item), static_cast<size_t>(T),
                                        cudaMemcpyHostToDevice, copy));
      } else {
        // pinned buffer k is free once its previous copy is done; pack the sub-block into it
        FD_CUDA_CHECK(cudaEventSynchronize(h2d_done[k]));
        pack_columns(x, c0, w, static_cast<char*>(pinned[k].p));
        FD_CUDA_CHECK(cudaMemcpyAsync(stage[k].p, pinned[k].p, static_cast<size_t>(bytes),
                                      cudaMemcpyHostToDevice, copy));
      }
      FD_CUDA_CHECK(cudaEventRecord(h2d_done[k], copy));
      FD_CUDA_CHECK(cudaStreamWaitEvent(compute, h2d_done[k], 0));
      StridedMatrix blk;
      blk.data = stage[k].p;
      blk.dtype = x.dtype;
      blk.n_rows = T;
      blk.n_cols = w;
      blk.row_stride = w;
      blk.col_stride = 1;
      launch(blk, c0);
      FD_CUDA_CHECK(cudaEventRecord(consumed[k], compute));
    }
    // the caller's memory may go away after we return: direct copies must be complete
    if (direct) FD_CUDA_CHECK(cudaStreamSynchronize(copy));
  }

};

GpuFold::GpuFold(FoldKind kind, int device, int64_t n_rows, int64_t n_direct,
                 const std::vector<int64_t>& lags, int64_t ref, int64_t memory_limit)
    : impl_(new Impl) {
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
  DeviceGuard guard(device);
  try {
    impl_->init(kind, device, n_rows, n_direct, lags, ref, memory_limit);
  } catch (...) {
    impl_.reset();  // free the streams and buffers while `device` is current
    throw;
  }
}

void GpuFold::Impl::init(FoldKind kind_, int device, int64_t n_rows, int64_t n_direct_,
                         const std::vector<int64_t>& lags_, int64_t ref_, int64_t memory_limit_) {
  kind = kind_;
  dev = device;
  T = n_rows;
  ref = ref_;
  memory_limit = memory_limit_;
  lags = lags_;
  // memory_limit / 64 rounded down to whole float64s, in [8 KiB, 4 MiB]
  aux_bytes = std::min<int64_t>(std::max<int64_t>(memory_limit / 64, 8 << 10), 4 << 20) / 8 * 8;
  FD_CUDA_CHECK(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device));
  FD_CUDA_CHECK(
      cudaDeviceGetAttribute(&smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  FD_CUDA_CHECK(cudaStreamCreateWithFlags(&compute, cudaStreamNonBlocking));
  FD_CUDA_CHECK(cudaStreamCreateWithFlags(&copy, cudaStreamNonBlocking));
  // host data for the uploads below must outlive them: the constructor waits for them at its end
  std::vector<double> w;
  switch (kind) {
    case FoldKind::msd_fft: {
      if (n_rows < 2) throw std::invalid_argument("the MSD needs T >= 2");
      if (n_direct_ < 0 || n_direct_ > kern::kMaxDirect || n_direct_ >= n_rows)
        throw std::invalid_argument("n_direct must lie in [0, min(T-1, 16)]");
      n_direct = n_direct_;
      N = hd::msd_fft_length(n_rows);
      log_n = hd::ilog2(N);
      plan = hd::fft_plan(log_n);
      acc_len = N + T + kern::kMaxDirect + 1;
      // twiddles W_N^e, e < N/2, from exact index arithmetic and long double angles
      const int64_t h = N / 2;
      w.resize(static_cast<size_t>(2 * h));
      for (int64_t e = 0; e < h; ++e) {
        const long double ang = 6.283185307179586476925286766559L *
                                (static_cast<long double>(e) / static_cast<long double>(N));
        w[2 * e] = static_cast<double>(std::cos(ang));
        w[2 * e + 1] = static_cast<double>(-std::sin(ang));
      }
      tw.alloc(w.size() * sizeof(double), "the FFT twiddles");
      // on the compute stream: ordered before the kernels that read them
      FD_CUDA_CHECK(cudaMemcpyAsync(tw.p, w.data(), w.size() * sizeof(double),
                                    cudaMemcpyHostToDevice, compute));
      break;
    }
    case FoldKind::msd_lags:
      for (size_t i = 0; i < lags.size(); ++i)
        if (lags[i] < 0 || lags[i] >= n_rows)
          throw std::invalid_argument("lags[" + std::to_string(i) + "] = " +
                                      std::to_string(lags[i]) + " is outside [0, T)");
      acc_len = static_cast<int64_t>(lags.size());
      d_lags.alloc(std::max<size_t>(1, lags.size()) * sizeof(int64_t), "the lag list");
      if (!lags.empty())
        FD_CUDA_CHECK(cudaMemcpyAsync(d_lags.p, lags.data(), lags.size() * sizeof(int64_t),
                                      cudaMemcpyHostToDevice, compute));
      break;
    case FoldKind::displacement:
      if (ref < 0 || ref >= n_rows) throw std::invalid_argument("ref is outside [0, T)");
      acc_len = T;
      break;
    case FoldKind::box_ids:
      acc_len = 0;  // (T, n_scales, 2) uint64 sums, allocated by configure_box()
      break;
    case FoldKind::gram: {
      if (n_rows > (int64_t(1) << 31) / 8)
        throw std::invalid_argument("T=" + std::to_string(n_rows) + " is too large for a (T, T) "
                                    "Gram matrix");
      // two staging buffers of two columns each, the column means of one chunk (device) and
      // the two read-back chunks (pinned host) must fit; the (T, T) result is not counted
      require_budget(4 * n_rows * 8 + 2 * aux_bytes + 4096,
                     "staging the Gram matrix's column blocks of T=" + std::to_string(n_rows));
      acc_len = n_rows * n_rows;
      means.alloc(static_cast<size_t>(aux_bytes), "the column means");
      break;
    }
  }
  if (kind == FoldKind::gram) {
    const std::string advice =
        "this is the (T, T) float64 result itself, T*T*8 = " + std::to_string(acc_len * 8) +
        " bytes for T=" + std::to_string(T) +
        ", which memory_limit does not count: free GPU memory or use fewer snapshots";
    acc.alloc(static_cast<size_t>(acc_len) * sizeof(double), "the (T, T) Gram matrix",
              advice.c_str());
  } else {
    acc.alloc(static_cast<size_t>(std::max<int64_t>(1, acc_len)) * sizeof(double),
              "the accumulators");
  }
  FD_CUDA_CHECK(cudaMemsetAsync(acc.p, 0, acc.bytes, compute));
  status.alloc(sizeof(int), "the status flag");
  FD_CUDA_CHECK(cudaMemsetAsync(status.p, 0, sizeof(int), compute));
  FD_CUDA_CHECK(cudaStreamSynchronize(compute));
}

GpuFold::~GpuFold() {
  if (!impl_) return;
  DeviceGuard guard(impl_->dev, std::nothrow);  // streams and buffers belong to that device
  impl_.reset();
}

void GpuFold::fold_device(const StridedMatrix& x) {
  Impl& s = *impl_;
  DeviceGuard guard(s.dev);
  check_device_pointer(x.data, s.dev);
  if (s.kind == FoldKind::box_ids) s.check_box_block(x.n_cols);
  // whatever produced x (PyTorch or another library, on its own streams) must be finished
  FD_CUDA_CHECK(cudaDeviceSynchronize());
  s.launch(x);
}

void GpuFold::fold_host(const StridedMatrix& x) {
  Impl& s = *impl_;
  DeviceGuard guard(s.dev);
  if (s.kind == FoldKind::box_ids) s.check_box_block(x.n_cols);
  s.fold_host(x);
}

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

int GpuFold::finish(double* out0, double* out1, double* out2) {
  Impl& s = *impl_;
  if (s.kind == FoldKind::box_ids)
    throw std::logic_error("GpuFold(box_ids): use finish_ids()");
  DeviceGuard guard(s.dev);
  FD_CUDA_CHECK(cudaStreamSynchronize(s.copy));
  FD_CUDA_CHECK(cudaStreamSynchronize(s.compute));
  bool finite = true;
  const int64_t T = s.T;
  // chunks of the accumulators go straight from pinned memory into the caller's arrays
  s.read_back(s.acc.as<double>(), s.acc_len, [&](const double* h, int64_t first, int64_t n) {
    switch (s.kind) {
      case FoldKind::msd_fft:
        finite &= add_overlap(out0, 0, s.N, h, first, n);
        finite &= add_overlap(out1, s.N, T, h, first, n);
        // direct[0] stays untouched, as on the CPU
        finite &= add_overlap(out2 + 1, s.N + T + 1, s.n_direct, h, first, n);
        break;
      case FoldKind::msd_lags:
      case FoldKind::displacement:
        finite &= add_overlap(out0, 0, s.acc_len, h, first, n);
        break;
      case FoldKind::gram:
        // the lower triangle (j <= i) of each row in this chunk; the strict upper triangle is
        // scratch and is not written
        for (int64_t e = first; e < first + n;) {
          const int64_t i = e / T;
          const int64_t row_end = std::min(first + n, (i + 1) * T);
          const int64_t low_end = std::min(row_end, i * T + i + 1);
          for (int64_t k = e; k < low_end; ++k) out0[k] += h[k - first];
          e = row_end;
        }
        break;
      case FoldKind::box_ids:
        break;
    }
  });
  const int flag = s.read_flag_and_reset();
  // gram: judge the diagonal (|G_ij| <= sqrt(G_ii G_jj): it bounds the whole lower triangle)
  if (s.kind == FoldKind::gram)
    for (int64_t i = 0; i < T; ++i) finite &= static_cast<bool>(std::isfinite(out0[i * T + i]));
  return (flag || !finite) ? kNonFinite : kOk;
}

void GpuFold::configure_box(int n_scales, uint64_t key_seed, double inv_eps0) {
  Impl& s = *impl_;
  if (s.kind != FoldKind::box_ids)
    throw std::logic_error("configure_box() applies to GpuFold(box_ids) only");
  if (n_scales < 1 || n_scales > 31) throw std::invalid_argument("n_scales must be in [1, 31]");
  if (!(inv_eps0 > 0.0) || !std::isfinite(inv_eps0))
    throw std::invalid_argument("1/eps0 must be a finite number > 0");
  const int64_t ids_bytes = s.T * n_scales * 16;
  // the id sums, two staging buffers (at least two float64 columns each, or those already
  // allocated), the origin chunk and the pinned chunks (see ensure_staging)
  const int64_t staging = s.stage_bytes > 0 ? 2 * s.stage_bytes : 4 * s.T * 8;
  s.require_budget(ids_bytes + staging + s.box_reserve(),
                   "the box-id sums of T=" + std::to_string(s.T) + " snapshots and " +
                       std::to_string(n_scales) + " scales plus two staging columns");
  DeviceGuard guard(s.dev);
  FD_CUDA_CHECK(cudaStreamSynchronize(s.compute));
  s.acc.alloc(static_cast<size_t>(ids_bytes), "the box-id sums");
  FD_CUDA_CHECK(cudaMemsetAsync(s.acc.p, 0, s.acc.bytes, s.compute));
  if (!s.d_origin.p) {
    s.d_origin.alloc(static_cast<size_t>(s.aux_bytes), "the box origins");
    for (int k = 0; k < 2; ++k) {
      s.pin_origin[k].alloc(static_cast<size_t>(s.aux_bytes));
      FD_CUDA_CHECK(cudaEventCreateWithFlags(&s.origin_copied[k], cudaEventDisableTiming));
    }
  }
  FD_CUDA_CHECK(cudaStreamSynchronize(s.compute));
  s.n_scales = n_scales;
  s.key_seed = key_seed;
  s.inv_eps0 = inv_eps0;
  s.acc_len = s.T * n_scales * 2;
}

void GpuFold::set_box_block(int64_t col_start, const double* origin, int64_t n_cols) {
  Impl& s = *impl_;
  if (s.kind != FoldKind::box_ids)
    throw std::logic_error("set_box_block() applies to GpuFold(box_ids) only");
  if (col_start < 0 || n_cols < 0)
    throw std::invalid_argument("col_start and the number of origins must be >= 0");
  if (n_cols > 0 && origin == nullptr) throw std::invalid_argument("origin is null");
  // read (in column chunks, through pinned buffers) by the fold_device/fold_host calls that follow
  s.box_origin = origin;
  s.box_col_start = col_start;
  s.box_cols = n_cols;
}

int GpuFold::finish_ids(uint64_t* ids) {
  Impl& s = *impl_;
  if (s.kind != FoldKind::box_ids) throw std::logic_error("finish_ids() applies to box_ids only");
  if (s.n_scales == 0) throw std::logic_error("GpuFold(box_ids): configure_box() was not called");
  DeviceGuard guard(s.dev);
  FD_CUDA_CHECK(cudaStreamSynchronize(s.copy));
  FD_CUDA_CHECK(cudaStreamSynchronize(s.compute));
  s.read_back(s.acc.as<uint64_t>(), s.acc_len, [&](const uint64_t* h, int64_t first, int64_t n) {
    for (int64_t i = 0; i < n; ++i) ids[first + i] += h[i];  // mod 2^64
  });
  const int flag = s.read_flag_and_reset();
  s.box_origin = nullptr;  // the caller's origins may go away now
  s.box_cols = -1;
  return flag ? kOutOfRange : kOk;
}

void GpuFold::synchronize() {
  DeviceGuard guard(impl_->dev);
  FD_CUDA_CHECK(cudaStreamSynchronize(impl_->copy));
  FD_CUDA_CHECK(cudaStreamSynchronize(impl_->compute));
}

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

int64_t GpuFold::device_bytes() const {
  return impl_->fixed_bytes() + static_cast<int64_t>(impl_->stage[0].bytes + impl_->stage[1].bytes);
}

}  // namespace cuda
}  // namespace fractaldiff
