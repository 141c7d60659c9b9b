#!/usr/bin/env bash
# Sanitized run: build the extension with AddressSanitizer + UndefinedBehaviorSanitizer (GCC,
# CPU-only, -O1 -g1) in a separate build folder, then run the tests that exercise compiled code
# against it: every kernel (MSD FFT/direct/lags, displacement, box ids, pairwise/Gram, digest,
# the fused SGLD step),
# every binding's argument checks, the store's compiled append paths (direct, queued writer
# thread, parts/pwritev) and the fault suite (which also runs them in subprocesses: those
# inherit the sanitizer). Python is not instrumented: libasan is preloaded. Any ASan or UBSan
# report fails the run: halt_on_error, and reports are also written to log files that are
# checked at the end (so one in a subprocess whose exit code a test ignores still counts).
#
# Usage: .ci/sanitize.sh [extra pytest args]     (about 5-8 minutes on 2 cores)
# Env:   SAN_BUILD (build folder, default build/asan in this checkout), PYTHON (default python3)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
BUILD=${SAN_BUILD:-$ROOT/build/asan}
# a build folder configured from another checkout (a shared or reused folder) cannot be reused:
# CMake refuses a cache whose source directory differs, so start that folder afresh
if [ -f "$BUILD/CMakeCache.txt" ] && \
   ! grep -qx "CMAKE_HOME_DIRECTORY:INTERNAL=$ROOT" "$BUILD/CMakeCache.txt"; then
  echo "sanitize: $BUILD was configured for another source folder; starting it afresh"
  rm -rf "$BUILD"
fi
LOGS=$BUILD/reports
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"

# build tools the isolated pip build used, for this separate build
"$PYTHON" -c "import pybind11" 2>/dev/null || "$PYTHON" -m pip install --quiet "pybind11>=2.12"
command -v ninja >/dev/null 2>&1 || "$PYTHON" -m pip install --quiet ninja
command -v cmake >/dev/null 2>&1 || "$PYTHON" -m pip install --quiet cmake
PYBIND11_DIR=$("$PYTHON" -m pybind11 --cmakedir)
cmake -S . -B "$BUILD" -G Ninja -DFRACTALDIFF_CUDA=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS="$SAN -O1 -g1" -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" \
  -DCMAKE_MODULE_LINKER_FLAGS="$SAN" -DCMAKE_SHARED_LINKER_FLAGS="$SAN" \
  -Dpybind11_DIR="$PYBIND11_DIR" -DPython_EXECUTABLE="$(command -v "$PYTHON")" >/dev/null
nice ninja -C "$BUILD" _core

# the package with the sanitized extension in place of the normal one
rm -rf "$BUILD/pkg" "$LOGS"
mkdir -p "$BUILD/pkg" "$LOGS"
cp -r python/fractaldiff "$BUILD/pkg/"
rm -f "$BUILD"/pkg/fractaldiff/_core*.so
cp "$BUILD"/_core*.so "$BUILD/pkg/fractaldiff/"

LIBASAN=$(${CXX:-g++} -print-file-name=libasan.so)
# libstdc++ too: python is not linked with it, and without it loaded at start-up ASan's
# __cxa_throw interceptor finds no real __cxa_throw (a CHECK failure at the first C++ throw)
LIBSTDCXX=$(${CXX:-g++} -print-file-name=libstdc++.so.6)
export LD_PRELOAD="$LIBASAN $LIBSTDCXX"
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=1:log_path=$LOGS/asan:detect_odr_violation=0"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$LOGS/ubsan"
export PYTHONPATH=$BUILD/pkg
export FRACTALDIFF_SANITIZED=1
unset FRACTALDIFF_EXPECT_CUDA  # this build is CPU-only
cd "$BUILD"  # so that the checkout's python/ is not imported by accident
"$PYTHON" -c "import fractaldiff._core as c, sys; assert c.__file__.startswith(sys.argv[1]), c.__file__" "$BUILD/pkg"
status=0
nice "$PYTHON" -m pytest -q -p no:cacheprovider -x \
  "$ROOT/tests/test_msd.py" "$ROOT/tests/test_boxcount.py" "$ROOT/tests/test_digest.py" \
  "$ROOT/tests/test_bad_input.py" "$ROOT/tests/test_layouts.py" "$ROOT/tests/test_build_info.py" \
  "$ROOT/tests/test_store.py" "$ROOT/tests/test_sgld_kernel.py" "$ROOT/tests/faults" \
  -k "not sigkill_at_random_moments and not fused_and_tensor_paths" "$@" || status=$?
if compgen -G "$LOGS/*" >/dev/null; then
  echo "sanitize: sanitizer reports:" >&2
  cat "$LOGS"/* >&2
  exit 1
fi
exit $status
