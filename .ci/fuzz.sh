#!/usr/bin/env bash
# Coverage-guided fuzzing (atheris/libFuzzer) of the store opener (manifest, commit log,
# metadata, data), the safetensors/checkpoint readers and the analyses' argument validation.
# Each target runs FUZZ_SECONDS (default 60) from the seed corpus in tests/fuzz/corpus/<target>
# (new inputs go to a scratch copy, the repository's corpus is not modified). Any crash (an
# unexpected exception, a failed check, a timeout or running out of memory) fails the run and
# leaves its input in $FUZZ_OUT; copy it to tests/fuzz/regressions/<target>/, fix the bug, and
# tests/fuzz/test_fuzz_replay.py keeps it fixed.
#
# Usage: .ci/fuzz.sh [target ...]       targets: store safetensors analysis (default: all)
# Longer run (e.g. before a release, or overnight): FUZZ_SECONDS=3600 .ci/fuzz.sh
# Grow the checked-in corpus from a long run: copy $FUZZ_OUT/corpus-<target>/* after
#   python tests/fuzz/harness_<target>.py -merge=1 tests/fuzz/corpus/<target> $FUZZ_OUT/corpus-<target>
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
SECONDS_PER_TARGET=${FUZZ_SECONDS:-60}
FUZZ_OUT=${FUZZ_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/fractaldiff-fuzz.XXXXXX")}
# the installed fractaldiff, or the checkout's when its extension was built in place
if compgen -G "python/fractaldiff/_core*.so" >/dev/null; then
  export PYTHONPATH=${PYTHONPATH:-$PWD/python}
fi
"$PYTHON" -c "import atheris" 2>/dev/null || "$PYTHON" -m pip install --quiet atheris
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(store safetensors analysis)
status=0
for t in "${targets[@]}"; do
  work="$FUZZ_OUT/corpus-$t"
  mkdir -p "$work"
  echo "fuzz: $t for ${SECONDS_PER_TARGET}s (artifacts in $FUZZ_OUT)"
  if ! nice "$PYTHON" "tests/fuzz/harness_$t.py" -max_total_time="$SECONDS_PER_TARGET" \
      -rss_limit_mb=3072 -timeout=30 -print_final_stats=1 \
      -artifact_prefix="$FUZZ_OUT/$t-" "$work" "tests/fuzz/corpus/$t" \
      > "$FUZZ_OUT/$t.log" 2>&1; then
    status=1
    echo "fuzz: $t FAILED; last lines of its log:" >&2
    tail -40 "$FUZZ_OUT/$t.log" >&2
  else
    grep -E "stat::number_of_executed_units|cov:" "$FUZZ_OUT/$t.log" | tail -2
  fi
done
if compgen -G "$FUZZ_OUT/*-crash-*" >/dev/null || compgen -G "$FUZZ_OUT/*-timeout-*" >/dev/null \
    || compgen -G "$FUZZ_OUT/*-oom-*" >/dev/null; then
  echo "fuzz: crash inputs:" >&2
  ls "$FUZZ_OUT"/*-crash-* "$FUZZ_OUT"/*-timeout-* "$FUZZ_OUT"/*-oom-* 2>/dev/null >&2
  status=1
fi
exit $status
