#!/usr/bin/env bash
# Builds effarch on an offline GPU machine (see docs/building.md): run from the source root after
# `source .gpu-kit/env.sh` (the kit made by tools/gpu/fetch-kit.sh).
# Usage: tools/gpu/build.sh [BUILD_DIR] [CUDA_ARCHS]   (default build, 90)
# Prints the build time; the full logs go to BUILD_DIR.configure.log and BUILD_DIR.build.log.
set -euo pipefail
build=${1:-build}
archs=${2:-90}
t0=$(date +%s)
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$CMAKE_PREFIX_PATH" \
  -DEFFARCH_PYTHON="$(command -v python3)" -DCMAKE_CUDA_ARCHITECTURES="$archs" > "$build.configure.log" 2>&1 \
  || { tail -40 "$build.configure.log"; exit 1; }
ninja -C "$build" effarch effarch_tests > "$build.build.log" 2>&1 || { grep -m3 -B2 -A12 error "$build.build.log"; exit 1; }
echo "gpu build: $(( $(date +%s) - t0 )) s, CUDA archs $archs, $(c++ --version | head -1)"
