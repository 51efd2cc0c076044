#!/usr/bin/env bash
# One GPU session, everything that needs the GPU in one go (docs/perf/README.md): build, the unit
# tests (the CUDA ones run there), and the benchmark suites. Run from the source root on the GPU
# machine after `source .gpu-kit/env.sh` (the kit tools/gpu/fetch-kit.sh makes, docs/building.md);
# results land in OUT (default ./gpu-out), each stage bounded by a timeout so a slow one cannot
# eat the rest. The GPU checks still waiting for a run are listed in docs/perf/pending.md.
#   tools/gpu/session.sh [OUT]
out=${1:-${OUT:-gpu-out}}
mkdir -p "$out"
summary="$out/summary.txt"
log() { echo "$@" | tee -a "$summary"; }
log "== $(date -u +%FT%TZ) $(git rev-parse --short=12 HEAD 2>/dev/null || echo no-git) on $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader)"
tools/gpu/build.sh build 90 2>&1 | tee -a "$summary" || exit 1
B=build/src/effarch
T=build/tests/effarch_tests
log "== link order of the test binary (NEEDED):"
readelf -d "$T" | grep NEEDED | head -6 | tee -a "$summary"
log "== unit tests"
timeout 150 "$T" --gtest_filter='-HfParity.*' > "$out/gtest.log" 2>&1
rc=$?
log "gtest exit $rc: $(grep -E '^\[  (PASSED|FAILED)  \]' "$out/gtest.log" | tr '\n' ' ')"
if [[ $rc != 0 ]]; then  # a link-order problem shows as a crash; retry with the system libstdc++ first
  LD_PRELOAD=$(g++ -print-file-name=libstdc++.so.6) timeout 150 "$T" --gtest_filter='-HfParity.*' > "$out/gtest.log" 2>&1
  log "gtest with libstdc++ preloaded exit $?: $(grep -E '^\[  (PASSED|FAILED)  \]' "$out/gtest.log" | tr '\n' ' ')"
fi
grep -E 'CausalConv1dCuda|CudaGraph|RefuseMoe|Backend\.AutoOnAGpu|Implementations\.' "$out/gtest.log" | grep -E 'OK|FAILED|SKIPPED' >> "$summary"
bench() {  # name timeout args...
  local name=$1 limit=$2
  shift 2
  log "== bench $name: $*"
  timeout --signal=INT "$limit" "$B" bench "$@" -o "$out/$name.json" --no-progress --format md >> "$summary" 2>&1
  log "exit $?"
}
bench quickstart 40 --suite quickstart --device cuda --dtype bf16
bench mamba-vs-transformer 140 --suite mamba-vs-transformer --device cuda
bench mamba-vs-transformer-graphs 80 --suite mamba-vs-transformer --device cuda --cuda-graphs on --prompt-lengths 512,4096,32768
bench memory-curve 80 --suite memory-curve --device cuda
bench moe 50 --suite moe --device cuda --prompt-lengths 512,2048 --batch 1
rm -f "$out"/*.jsonl  # the final JSONs hold the same points
log "== done $(date -u +%FT%TZ)"
