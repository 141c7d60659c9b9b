// Host-side packing of strided column blocks into contiguous pinned staging buffers (plain C++ so
// that OpenMP applies; part of CUDA builds only).
#include <cstring>

#include "cuda_api.hpp"

namespace fractaldiff {
namespace cuda {

void pack_columns(const StridedMatrix& x, int64_t c0, int64_t w, char* dst) {
  const int64_t item = x.dtype == DType::f32 ? 4 : 8;
  const char* base = static_cast<const char*>(x.data);
  const int64_t T = x.n_rows, rs = x.row_stride, cs = x.col_stride;
#pragma omp parallel for schedule(static) if (T * w > (1 << 16))
  for (int64_t t = 0; t < T; ++t) {
    const char* row = base + (t * rs + c0 * cs) * item;
    char* out = dst + t * w * item;
    if (cs == 1) {
      std::memcpy(out, row, static_cast<size_t>(w * item));
    } else if (item == 4) {
      const float* r = reinterpret_cast<const float*>(row);
      float* o = reinterpret_cast<float*>(out);
      for (int64_t j = 0; j < w; ++j) o[j] = r[j * cs];
    } else {
      const double* r = reinterpret_cast<const double*>(row);
      double* o = reinterpret_cast<double*>(out);
      for (int64_t j = 0; j < w; ++j) o[j] = r[j * cs];
    }
  }
}

}  // namespace cuda
}  // namespace fractaldiff
