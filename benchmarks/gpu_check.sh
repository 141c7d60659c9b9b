#!/usr/bin/env bash
# Device check for a fresh GPU machine: build fractaldiff with FRACTALDIFF_CUDA=ON
# for sm_90, run every GPU test with FRACTALDIFF_REQUIRE_GPU=1 (a skip is a failure), run the GPU
# benchmark (MSD, box counting, pairwise distances), and print one short table. Logs go to $OUT (or
# /tmp/fd_gpu_check). About 5 minutes; at most build + TEST_TIMEOUT + BENCH_TIMEOUT (~8 minutes).
#   usage: bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=${OUT:-/tmp/fd_gpu_check}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
T0=$(date +%s)
stamp() { echo "[gpu_check +$(( $(date +%s) - T0 ))s] $*"; }

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem \
  --format=csv 2>&1 | tee "$OUT/nvidia_smi.txt"
command -v nvcc >/dev/null || export PATH=/usr/local/cuda/bin:$PATH
export CUDACXX=${CUDACXX:-$(command -v nvcc)}
export FRACTALDIFF_CUDA=ON CMAKE_ARGS="-DCMAKE_CUDA_ARCHITECTURES=90" CMAKE_BUILD_PARALLEL_LEVEL=16

stamp "build (nvcc: $($CUDACXX --version | tail -1))"
if ! "$PY" -m pip install --no-build-isolation --no-deps -v . >"$OUT/build.log" 2>&1; then
  tail -40 "$OUT/build.log"; stamp "BUILD FAILED"; exit 1
fi
cd /tmp  # import the installed package, not the source tree
"$PY" -c "import fractaldiff as fd, json; i = fd.build_info(); print(json.dumps(i)); \
assert i['cuda_built'] and i['cuda_devices'] > 0, 'CUDA not usable'" | tee "$OUT/build_info.json" \
  || { stamp "IMPORT/DEVICE CHECK FAILED"; exit 1; }

stamp "GPU tests (FRACTALDIFF_REQUIRE_GPU=1, -m gpu)"
FRACTALDIFF_REQUIRE_GPU=1 PYTHONUNBUFFERED=1 timeout "${TEST_TIMEOUT:-220}" "$PY" -m pytest "$ROOT/tests" -m gpu -q \
  -p no:cacheprovider -p no:warnings --durations=5 >"$OUT/tests.log" 2>&1
TEST_RC=$?
tail -25 "$OUT/tests.log"
TEST_LINE=$(grep -E "passed|failed|error" "$OUT/tests.log" | tail -1)

stamp "benchmark"
PYTHONUNBUFFERED=1 timeout "${BENCH_TIMEOUT:-200}" "$PY" "$ROOT/benchmarks/bench_gpu.py" --out "$OUT/bench.json" ${BENCH_ARGS:-} \
  >"$OUT/bench.log" 2>&1
BENCH_RC=$?
[ $BENCH_RC -ne 0 ] && tail -30 "$OUT/bench.log"

stamp "done"
echo
echo "================ fractaldiff gpu_check ================"
echo "GPU tests (REQUIRE_GPU=1): rc=$TEST_RC  $TEST_LINE"
sed -n '/== fractaldiff GPU benchmark ==/,$p' "$OUT/bench.log" | grep -v "^Traceback" | head -20
echo "benchmark rc=$BENCH_RC; total $(( $(date +%s) - T0 )) s"
exit $(( TEST_RC != 0 || BENCH_RC != 0 ))
