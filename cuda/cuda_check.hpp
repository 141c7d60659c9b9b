// Every CUDA runtime call goes through FD_CUDA_CHECK: a failure becomes a C++ exception naming
// the call, the CUDA error and the source line; the bindings turn it into a Python exception
// (CudaOutOfMemory -> MemoryError, CudaError -> RuntimeError).
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "cuda_api.hpp"

namespace fractaldiff {
namespace cuda {

[[noreturn]] inline void throw_cuda(cudaError_t e, const char* call, const char* file, int line) {
  (void)cudaGetLastError();  // clear a non-sticky error so later calls can proceed
  std::string msg = std::string("fractaldiff CUDA error: ") + call + " failed with " +
                    cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ") at " + file + ":" +
                    std::to_string(line);
  if (e == cudaErrorMemoryAllocation) throw CudaOutOfMemory(msg);
  throw CudaError(msg);
}

}  // namespace cuda
}  // namespace fractaldiff

#define FD_CUDA_CHECK(call)                                                          \
  do {                                                                               \
    const cudaError_t fd_err_ = (call);                                              \
    if (fd_err_ != cudaSuccess) ::fractaldiff::cuda::throw_cuda(fd_err_, #call, __FILE__, __LINE__); \
  } while (0)

/// Check a kernel launch (configuration errors) right after the <<<...>>>.
#define FD_CUDA_CHECK_LAUNCH(name)                                                            \
  do {                                                                                       \
    const cudaError_t fd_err_ = cudaGetLastError();                                          \
    if (fd_err_ != cudaSuccess)                                                              \
      ::fractaldiff::cuda::throw_cuda(fd_err_, "launch of " name, __FILE__, __LINE__);       \
  } while (0)
