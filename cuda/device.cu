// CUDA device discovery and a self-test kernel (a grid-stride squared-difference reduction,
// 64-bit indices) that proves the toolchain, the static runtime and the device work together.
// The analysis folds are in fold.cu.
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "cuda_api.hpp"

namespace fractaldiff {
namespace cuda {

namespace {

__global__ void sq_diff_sum_kernel(const float* a, const float* b, int64_t n, double* out) {
  double acc = 0.0;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const double d = static_cast<double>(a[i]) - static_cast<double>(b[i]);
    acc += d * d;
  }
  atomicAdd(out, acc);
}

std::string err(cudaError_t e, const char* what) {
  return std::string(what) + ": " + cudaGetErrorString(e);
}

}  // namespace

bool built() { return true; }

int device_count() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky-free error state
    return 0;
  }
  return n;
}

std::string runtime_version() {
  int v = 0;
  if (cudaRuntimeGetVersion(&v) != cudaSuccess) return "";
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}

std::string device_name(int device) {
  cudaDeviceProp p;
  if (cudaGetDeviceProperties(&p, device) != cudaSuccess) {
    (void)cudaGetLastError();
    return "";
  }
  return std::string(p.name) + " (sm_" + std::to_string(p.major) + std::to_string(p.minor) +
         ", " + std::to_string(p.multiProcessorCount) + " SMs, " +
         std::to_string(p.totalGlobalMem >> 20) + " MiB)";
}

std::string self_test() {
  if (device_count() == 0) return "no CUDA device is visible";
  const int64_t n = 1 << 20;
  float *a = nullptr, *b = nullptr;
  double* out = nullptr;
  cudaError_t e;
  if ((e = cudaMalloc(&a, n * sizeof(float))) != cudaSuccess) return err(e, "cudaMalloc");
  if ((e = cudaMalloc(&b, n * sizeof(float))) != cudaSuccess) {
    cudaFree(a);
    return err(e, "cudaMalloc");
  }
  if ((e = cudaMalloc(&out, sizeof(double))) != cudaSuccess) {
    cudaFree(a);
    cudaFree(b);
    return err(e, "cudaMalloc");
  }
  std::string result;
  float* host = new float[n];
  for (int64_t i = 0; i < n; ++i) host[i] = static_cast<float>(i % 7);
  double expect = 0.0;
  for (int64_t i = 0; i < n; ++i) expect += static_cast<double>(host[i]) * host[i];
  if ((e = cudaMemcpy(a, host, n * sizeof(float), cudaMemcpyHostToDevice)) != cudaSuccess ||
      (e = cudaMemset(b, 0, n * sizeof(float))) != cudaSuccess ||
      (e = cudaMemset(out, 0, sizeof(double))) != cudaSuccess) {
    result = err(e, "copy");
  } else {
    sq_diff_sum_kernel<<<256, 256>>>(a, b, n, out);
    double got = 0.0;
    if ((e = cudaGetLastError()) != cudaSuccess) {
      result = err(e, "launch");
    } else if ((e = cudaMemcpy(&got, out, sizeof(double), cudaMemcpyDeviceToHost)) !=
               cudaSuccess) {
      result = err(e, "result copy");
    } else if (got != expect) {
      result = "self-test kernel returned " + std::to_string(got) + ", expected " +
               std::to_string(expect);
    }
  }
  delete[] host;
  cudaFree(a);
  cudaFree(b);
  cudaFree(out);
  return result;
}

}  // namespace cuda
}  // namespace fractaldiff
