// Run-time choice among the SIMD levels compiled in (see CMakeLists.txt: FD_HAVE_<LEVEL>).
#include <atomic>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "fractaldiff/api.hpp"
#include "fractaldiff/hd_common.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace fractaldiff {
namespace baseline {
const KernelTable& kernel_table();
}
#ifdef FD_HAVE_AVX2
namespace avx2 {
const KernelTable& kernel_table();
}
#endif
#ifdef FD_HAVE_AVX512
namespace avx512 {
const KernelTable& kernel_table();
}
#endif

namespace {

struct Level {
  const char* name;
  const KernelTable& (*table)();
  bool (*supported)();
};

bool always() { return true; }
#if defined(FD_HAVE_AVX2)
bool has_avx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#endif
#if defined(FD_HAVE_AVX512)
bool has_avx512() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#endif

const std::vector<Level>& levels() {
  static const std::vector<Level> all = {
#ifdef FD_HAVE_AVX512
      {"avx512", &avx512::kernel_table, &has_avx512},
#endif
#ifdef FD_HAVE_AVX2
      {"avx2", &avx2::kernel_table, &has_avx2},
#endif
      {"baseline", &baseline::kernel_table, &always},
  };
  return all;
}

const KernelTable* pick(const std::string& name) {
  for (const Level& l : levels())
    if (l.supported() && (name.empty() || name == l.name)) return &l.table();
  return nullptr;
}

std::atomic<const KernelTable*>& active() {
  static std::atomic<const KernelTable*> table{[] {
    const char* env = std::getenv("FRACTALDIFF_SIMD");
    const KernelTable* t = env ? pick(env) : nullptr;
    return t ? t : pick("");
  }()};
  return table;
}

}  // namespace

const KernelTable& active_kernels() { return *active().load(); }

std::vector<std::string> available_simd_levels() {
  std::vector<std::string> out;
  for (const Level& l : levels())
    if (l.supported()) out.emplace_back(l.name);
  return out;
}

void set_simd_level(const std::string& level) {
  const KernelTable* t = pick(level);
  if (!t) {
    std::string msg = "unknown or unsupported SIMD level '" + level + "'; available:";
    for (const std::string& s : available_simd_levels()) msg += " " + s;
    throw std::invalid_argument(msg);
  }
  active().store(t);
}

int default_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

bool openmp_enabled() {
#ifdef _OPENMP
  return true;
#else
  return false;
#endif
}

std::string compiler_id() {
#if defined(__clang__)
  return std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  return std::string("gcc ") + __VERSION__;
#else
  return "unknown";
#endif
}

int64_t msd_fft_length(int64_t n_rows) { return hd::msd_fft_length(n_rows); }

}  // namespace fractaldiff
