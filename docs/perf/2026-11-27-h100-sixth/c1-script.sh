#!/usr/bin/env bash
# Session 14, device call 1: check, then entries 45, 41, 43, 25, 44 (docs/perf/pending.md).
source .gpu-kit/env.sh
out=$OUT
export EFFARCH_SESSION_UNTIL=$(($(date +%s) + ${1:-400}))
bash tools/gpu/session.sh check "$out/check" > "$out/check-stdout.txt" 2>&1
B=build/src/effarch; T=build/tests/effarch_tests
NCU=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
S="$out/s"; mkdir -p "$S"
left() { echo $((EFFARCH_SESSION_UNTIL - $(date +%s) - 15)); }
run() { local t=$1; shift; local l=$(left); ((l < 10)) && { echo "SKIP $*" >> $S/log.txt; return; }
  echo "== $(date -u +%T) $*" >> $S/log.txt; timeout $((t < l ? t : l)) "$@"; echo "exit $?" >> $S/log.txt; }
# entry 45
run 60 $B kernels --device cuda --dtype bfloat16 --transformer phi-2 --reps 10 --warmup 2 --batch 1,64 --ops activation -o $S/k-act.json > $S/k-act.txt 2>&1
for m in phi-2 llama-3-8b mamba-2.8b; do run 40 $B profile $m --phase prefill --device cuda --dtype bfloat16 --context 4096 --steps 4 -o $S/prof-prefill-$m.json > $S/prof-prefill-$m.txt 2>&1; done
# entry 43
run 90 $NCU --clock-control none --kernel-name regex:selective_scan_lanes --launch-count 1 --section WarpStateStats --section SourceCounters --section MemoryWorkloadAnalysis --section InstructionStats --section SpeedOfLight --section Occupancy --import-source yes $B kernels --device cuda --dtype bfloat16 --reps 1 --warmup 0 --lengths 4096 --ops selective_scan > $S/ncu-scan-source.txt 2>&1
# entry 41
run 40 $B profile mamba-2.8b --device cuda --batch 32 --context 512 --steps 8 --cuda-graphs off -o $S/prof-b32.json > $S/prof-b32.txt 2>&1
run 60 $NCU --kernel-name regex:nvjet --launch-count 6 --section LaunchStats --section SpeedOfLight $B kernels --device cuda --dtype bfloat16 --reps 1 --warmup 0 --batch 32 --ops dense_gemv_in_proj,dense_gemv_x_proj,dense_gemv_out_proj > $S/ncu-sweep-gemm.txt 2>&1
# entry 25 and 44
run 60 $B kernels --device cuda --dtype bfloat16 --reps 10 --warmup 2 --batch 1,2 --ops dense_gemv_in_proj,dense_gemv_x_proj,dense_gemv_out_proj,dense_gemv_lm_head,dense_gemv_mlp_down,dense_gemv_mlp_up,dense_gemv_qkv,dense_gemv_mamba2_in_proj,dense_gemv_mamba2_out_proj -o $S/k-gemv.json > $S/k-gemv.txt 2>&1
run 60 $NCU --clock-control none --kernel-name regex:gemv_kernel --launch-count 2 --section SpeedOfLight --section WarpStateStats --section MemoryWorkloadAnalysis --section LaunchStats --section Occupancy $B kernels --device cuda --dtype bfloat16 --reps 1 --warmup 0 --batch 1 --ops dense_gemv_in_proj > $S/ncu-gemv.txt 2>&1
run 40 $B kernels --device cuda --dtype bfloat16 --moe deepseek-moe-16b --reps 10 --warmup 2 --batch 1,8 --ops moe_decode -o $S/k-moe-decode.json > $S/k-moe-decode.txt 2>&1
run 60 $NCU --clock-control none --kernel-name regex:moe_expert_gemv --launch-count 3 --section SpeedOfLight --section WarpStateStats --section LaunchStats --section Occupancy $B kernels --device cuda --dtype bfloat16 --moe deepseek-moe-16b --reps 1 --warmup 0 --batch 1 --ops moe_decode > $S/ncu-moe.txt 2>&1
run 90 $B bench mamba-2.8b phi-2 --device cuda --dtype bf16 --prompt-lengths 4096,16384 --gen-tokens 16 --reps 2 --cuda-graphs on --no-progress --format md -o $S/prefill.json > $S/prefill.md 2>&1
cp "$out"/check/summary-check.txt $S/ 2>/dev/null
cd "$out" && tar czf s.tgz s && rm -rf s
