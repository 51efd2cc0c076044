#!/usr/bin/env bash
# Session 14, device call 2: the unit tests at aee583b (softplus, lanes16's two block shapes), the
# scan's shapes side by side, Mamba-2.8B's prefill against Phi-2's, entry 41's diagnostic, two-row
# decode against cuBLAS.
source .gpu-kit/env.sh
out=$OUT
export EFFARCH_SESSION_UNTIL=$(($(date +%s) + ${1:-300}))
S="$out/s"; mkdir -p "$S"
tools/gpu/build.sh build 90 > $S/build.txt 2>&1 || { tail $S/build.txt; exit 1; }
B=build/src/effarch; T=build/tests/effarch_tests
NCU=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
left() { echo $((EFFARCH_SESSION_UNTIL - $(date +%s) - 15)); }
run() { local t=$1; shift; local l=$(left); ((l < 10)) && { echo "SKIP $*" >> $S/log.txt; return; }
  echo "== $(date -u +%T) $*" >> $S/log.txt; timeout $((t < l ? t : l)) "$@"; echo "exit $?" >> $S/log.txt; }
run 150 $T --gtest_filter='-HfParity.*:TokenizerFixtures.*' > $S/gtest.log 2>&1
grep -E '^\[  (PASSED|FAILED)  \]|tests ran' $S/gtest.log >> $S/log.txt
mkdir -p $S/fx && xz -dc .gpu-kit/prebuilt/hf-bf16.tar.xz | tar xf - -C $S/fx
EFFARCH_HF_FIXTURES=$S/fx EFFARCH_HF_DEVICE=cuda run 60 $T --gtest_filter='HfParity.Bf16AgainstFp32:HfParity.ResidualInFp32' > $S/hf-bf16.log 2>&1; rm -rf $S/fx
grep -E '^\[ +(OK|FAILED)' $S/hf-bf16.log >> $S/log.txt
K="--device cuda --dtype bfloat16 --reps 10 --warmup 2"
run 60 $B kernels $K --lengths 4096,16384 --batch 1,4 --ops selective_scan,selective_scan_lanes8,selective_scan_lanes4 -o $S/k-scan.json > $S/k-scan.txt 2>&1
run 40 $B kernels $K --mamba1 jamba-v0.1 --lengths 4096 --ops selective_scan,selective_scan_lanes8,selective_scan_lanes4 -o $S/k-scan-jamba.json > $S/k-scan-jamba.txt 2>&1
run 60 $NCU --clock-control none --kernel-name regex:selective_scan_lanes --launch-count 2 --section SpeedOfLight --section InstructionStats --section Occupancy --section LaunchStats $B kernels --device cuda --dtype bfloat16 --reps 1 --warmup 0 --lengths 4096 --ops selective_scan_lanes8,selective_scan_lanes4 > $S/ncu-scan.txt 2>&1
run 40 $B profile mamba-2.8b --phase prefill --device cuda --dtype bfloat16 --context 4096 --steps 4 -o $S/prof-prefill-mamba-2.8b.json > $S/prof-prefill-mamba-2.8b.txt 2>&1
run 90 $B bench mamba-2.8b phi-2 --device cuda --dtype bf16 --prompt-lengths 4096,16384 --gen-tokens 16 --reps 2 --cuda-graphs on --no-progress --format md -o $S/prefill.json > $S/prefill.md 2>&1
run 50 $NCU --kernel-name regex:nvjet_sm90_tst_128x8 --launch-count 3 --section LaunchStats --section SpeedOfLight $B profile mamba-2.8b --device cuda --batch 32 --context 512 --steps 1 --cuda-graphs off -o $S/prof-b32-ncu.json > $S/ncu-b32-model.txt 2>&1
run 50 $NCU --kernel-name 'regex:nvjet_sm90_tst_(64|96|128|192|256)x' --launch-count 6 --section LaunchStats --section SpeedOfLight $B kernels --device cuda --dtype bfloat16 --reps 1 --warmup 0 --batch 32 --ops dense_gemv_in_proj,dense_gemv_x_proj,dense_gemv_out_proj > $S/ncu-b32-sweep.txt 2>&1
run 90 $B bench mamba-2.8b phi-2 --device cuda --dtype bf16 --prompt-lengths 512 --batch 2 --gen-tokens 32 --reps 2 --cuda-graphs on --backend reference,auto --no-progress --format md -o $S/gemv-b2.json > $S/gemv-b2.md 2>&1
cd "$out" && tar czf s.tgz s && rm -rf s
