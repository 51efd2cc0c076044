#!/usr/bin/env bash
# Packs this machine's CUDA build (build/, sm_90 and sm_121) into .gpu-kit/prebuilt/, so that a
# GPU session, which has 15 minutes of device time in all, does not spend minutes compiling:
# tools/gpu/build.sh there unpacks it when the sources there hash the same (source-hash.sh), and
# compiles otherwise. Run on the development machine after tools/gpu/fetch-kit.sh:
#   bash tools/gpu/prebuild.sh [BUILD_DIR]   (default build; the `default` CMake preset)
# The binaries keep this machine's paths (the source root for the test data and the configs,
# the Python of tools/setup.sh for the fixtures); build.sh links those paths to the GPU
# machine's tree and python3. The libraries they load come from the kit (env.sh) and the GPU
# machine's torch and CUDA, as a build there would use.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
build=${1:-build}
[[ -d .gpu-kit ]] || { echo "prebuild.sh: run tools/gpu/fetch-kit.sh first (.gpu-kit/ is missing)" >&2; exit 1; }
[[ -f "$build/CMakeCache.txt" ]] || { echo "prebuild.sh: $build is not configured (cmake --preset default)" >&2; exit 1; }
cmake --build "$build" --target effarch effarch_tests -j "$(nproc)"
archs=$(grep -o 'code=\[compute_[0-9]*,sm_[0-9]*\]' "$build/build.ninja" | grep -o 'sm_[0-9]*' | sort -u | tr '\n' ' ' || true)
# (grep reads all of ldd's output: with pipefail, `grep -q` leaving early makes ldd die of SIGPIPE
# and the test fail on a CUDA build, as it did once.)
if [[ -z $archs ]] || ! ldd "$build/src/effarch" | grep libcudart > /dev/null; then
  echo "prebuild.sh: $build is not a CUDA build (no sm_ targets in build.ninja, or no libcudart)" >&2
  exit 1
fi
out=.gpu-kit/prebuilt
rm -rf "$out"
mkdir -p "$out"
# The two probe libraries LinkedSymbols.ReportsASmallerDefinitionThatWins opens from the build
# folder (a few KB each; missing from the kit, the test failed on the 2026-11-27 H100 run).
probes=("$build"/tests/libeffarch_clash_probe_*.so)
cp "$build/src/effarch" "$build/tests/effarch_tests" "${probes[@]}" "$out/"
strip "$out/effarch" "$out/effarch_tests"
# One solid xz stream for both, its dictionary larger than a binary: they share their device code
# (most of their 79-84 MB, the kernels for two architectures), which is then stored once. At
# a7be713 that took them from 28.3 MB (each file on its own) to 14.7, and the kit back under the
# device call's 64 MiB with the working tree (it was 68 MB). Single-threaded (threads would cut
# the stream into blocks that cannot see each other): about 75 s.
tar cf - -C "$out" effarch effarch_tests | xz -T1 --lzma2=preset=6,dict=192MiB > "$out/binaries.tar.xz"
rm "$out/effarch" "$out/effarch_tests"
python=$(sed -n 's/^EFFARCH_PYTHON:[A-Z]*=//p' "$build/CMakeCache.txt")
{
  echo "source_hash=$(bash "$here/source-hash.sh")"
  echo "source_root=$root"
  echo "python=$python"
  echo "cuda_archs=$archs"
  echo "commit=$(git rev-parse HEAD)$(git diff --quiet HEAD -- . ':!docs' || echo '+changes')"
  echo "built=$(date -u +%FT%TZ) $(c++ --version | head -1); $(nvcc --version | tail -1)"
} > "$out/BUILT_FROM"
# The bf16 parity fixtures (tools/make_hf_fixtures.py --bf16, about 6 MB packed), which
# `session.sh check` runs effarch against on the GPU (HfParity.Bf16AgainstFp32 and
# ResidualInFp32 with EFFARCH_HF_DEVICE=cuda): the GPU machine need not have transformers.
fixtures=$(mktemp -d)
"$python" tools/make_hf_fixtures.py "$fixtures" --bf16 2> "$fixtures.log" ||
  { cat "$fixtures.log"; echo "prebuild.sh: making the bf16 fixtures failed" >&2; exit 1; }
tar cf - -C "$fixtures" . | xz -T0 -6 > "$out/hf-bf16.tar.xz"
rm -rf "$fixtures" "$fixtures.log"
cat "$out/BUILT_FROM"
du -sh "$out"
