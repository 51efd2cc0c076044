#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this):
#   1. set-up with the test references, the default build (CUDA kernels compile when a toolkit is
#      present), and ctest: unit tests, CLI tests, parity with transformers;
#   2. the same unit and CLI tests under AddressSanitizer + UndefinedBehaviorSanitizer (CPU build);
#   3. a one-minute libFuzzer run on the safetensors header parser.
# Usage: bash tools/test.sh [--quick]   (--quick: step 1 only)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${EFFARCH_VENV:-$HOME/.cache/effarch/venv}
quick=0
[[ ${1:-} == --quick ]] && quick=1
export CCACHE_DIR=${CCACHE_DIR:-$HOME/.cache/ccache}
export CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-5G}
# Paths relative to the clone, so a fresh clone elsewhere (CI) reuses the cache.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$root}
jobs=$(nproc)
# Each stage's wall time is printed when the next begins and in a table at the end: CI's budget
# is mostly compile time, and the log should say which stage spent it.
stage_name="" stage_start=$SECONDS times=()
step() {
  if [[ -n $stage_name ]]; then
    times+=("$((SECONDS - stage_start)) s  $stage_name")
    echo "--- ${times[-1]}"
  fi
  stage_name=$* stage_start=$SECONDS
  echo; echo "=== $* ==="
}
start=$SECONDS

step "set-up (packages, Python environment)"
bash "$root/tools/setup.sh" --tests --no-build

step "build (release)"
cmake --preset default -DEFFARCH_PYTHON="$venv/bin/python" > /dev/null
cmake --build --preset default -j "$jobs"
step "tests (release)"
ctest --preset default -j "$jobs"

if [[ $quick -eq 0 ]]; then
  step "build (address + undefined sanitizers, CPU)"
  cmake --preset asan -DEFFARCH_PYTHON="$venv/bin/python" > /dev/null
  cmake --build --preset asan -j "$jobs"
  step "tests (address + undefined sanitizers)"
  ctest --preset asan -j "$jobs"

  step "fuzz the safetensors header parser (60 s)"
  cmake --preset fuzz -DEFFARCH_PYTHON="$venv/bin/python" > /dev/null
  cmake --build --preset fuzz -j "$jobs"
  ctest --preset fuzz
fi
step "stage times"
printf '%s\n' "${times[@]}"
echo "all test stages passed in $((SECONDS - start)) s"
