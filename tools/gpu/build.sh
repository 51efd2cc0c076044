#!/usr/bin/env bash
# Builds effarch on an offline GPU machine (see docs/building.md): run from the source root after
# `source .gpu-kit/env.sh` (the kit made by tools/gpu/fetch-kit.sh).
# Usage: tools/gpu/build.sh [BUILD_DIR] [CUDA_ARCHS]   (default build, 90)
# When the kit holds binaries packed on the development machine (tools/gpu/prebuild.sh) from
# sources that hash the same as this tree's, it places them in BUILD_DIR instead of compiling
# (device time is short); otherwise it compiles. Prints which, and the time; the full logs go to
# BUILD_DIR.configure.log and BUILD_DIR.build.log.
set -euo pipefail
build=${1:-build}
archs=${2:-90}
t0=$(date +%s)
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# The packed binaries, if they fit this tree: 0 when placed.
use_prebuilt() {
  local kit=.gpu-kit/prebuilt
  [[ -f $kit/BUILT_FROM && -z ${EFFARCH_GPU_COMPILE:-} ]] || return 1
  local want have root python
  want=$(sed -n 's/^source_hash=//p' "$kit/BUILT_FROM")
  have=$(bash "$here/source-hash.sh")
  if [[ $want != "$have" ]]; then
    echo "gpu build: the packed binaries are of other sources ($want, this tree $have): compiling"
    return 1
  fi
  # Their compiled-in paths: the source root (test data, configs) and the fixtures' Python.
  root=$(sed -n 's/^source_root=//p' "$kit/BUILT_FROM")
  python=$(sed -n 's/^python=//p' "$kit/BUILT_FROM")
  if [[ $(readlink -f "$root" 2>/dev/null) != "$(pwd -P)" ]]; then
    if [[ -e $root ]]; then
      echo "gpu build: $root exists here and is not this tree: compiling"
      return 1
    fi
    mkdir -p "$(dirname "$root")" && ln -s "$(pwd -P)" "$root"
  fi
  if [[ ! -x $python ]]; then mkdir -p "$(dirname "$python")" && ln -sf "$(command -v python3)" "$python"; fi
  mkdir -p "$build/src" "$build/tests"
  xz -dc "$kit/binaries.tar.xz" | tar xf - -O effarch > "$build/src/effarch"  # (prebuild.sh: one stream for both)
  xz -dc "$kit/binaries.tar.xz" | tar xf - -O effarch_tests > "$build/tests/effarch_tests"
  chmod +x "$build/src/effarch" "$build/tests/effarch_tests"
  cp "$kit"/libeffarch_clash_probe_*.so "$build/tests/"  # (opened by a test from the build folder)
  if ! "$build/tests/effarch_tests" --gtest_list_tests > "$build.prebuilt.log" 2>&1 || ! "$build/src/effarch" --version >> "$build.prebuilt.log" 2>&1; then
    echo "gpu build: the packed binaries do not run here ($(tail -1 "$build.prebuilt.log")): compiling"
    rm -f "$build/src/effarch" "$build/tests/effarch_tests"
    return 1
  fi
  echo "gpu build: packed binaries placed in $(( $(date +%s) - t0 )) s: $(sed -n 's/^commit=//p' "$kit/BUILT_FROM"), CUDA archs $(sed -n 's/^cuda_archs=//p' "$kit/BUILT_FROM"), $(sed -n 's/^built=//p' "$kit/BUILT_FROM")"
}
use_prebuilt && exit 0
# Packed binaries placed earlier must not pass for this build's outputs.
if [[ -f $build.prebuilt.log ]]; then rm -f "$build/src/effarch" "$build/tests/effarch_tests" "$build.prebuilt.log"; fi

cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$CMAKE_PREFIX_PATH" \
  -DEFFARCH_PYTHON="$(command -v python3)" -DCMAKE_CUDA_ARCHITECTURES="$archs" > "$build.configure.log" 2>&1 \
  || { tail -40 "$build.configure.log"; exit 1; }
ninja -C "$build" effarch effarch_tests > "$build.build.log" 2>&1 || { grep -m3 -B2 -A12 error "$build.build.log"; exit 1; }
echo "gpu build: $(( $(date +%s) - t0 )) s, CUDA archs $archs, $(c++ --version | head -1)"
