#!/usr/bin/env bash
# Session 14, device call 3: the unit tests at the final commit (add_norm keeps its row in
# registers; the scan as at a20191f but dt's bias in shared memory), add_norm and the prefills
# against call 1, decode unchanged, and cuBLAS's own logs of Mamba-2.8B's batch-32 out_proj in the
# model and in the sweep (entry 41).
source .gpu-kit/env.sh
out=$OUT
export EFFARCH_SESSION_UNTIL=$(($(date +%s) + ${1:-280}))
S="$out/s"; mkdir -p "$S"
tools/gpu/build.sh build 90 > $S/build.txt 2>&1 || { tail $S/build.txt; exit 1; }
B=build/src/effarch; T=build/tests/effarch_tests
left() { echo $((EFFARCH_SESSION_UNTIL - $(date +%s) - 15)); }
run() { local t=$1; shift; local l=$(left); ((l < 10)) && { echo "SKIP $*" >> $S/log.txt; return; }
  echo "== $(date -u +%T) $*" >> $S/log.txt; timeout $((t < l ? t : l)) "$@"; echo "exit $?" >> $S/log.txt; }
run 120 $T --gtest_filter='-HfParity.*:TokenizerFixtures.*' > $S/gtest.log 2>&1
grep -E '^\[  (PASSED|FAILED)  \]|tests ran' $S/gtest.log >> $S/log.txt
K="--device cuda --dtype bfloat16 --reps 10 --warmup 2"
run 30 $B kernels $K --transformer phi-2 --batch 1,4096 --ops add_norm -o $S/k-addnorm-phi-2.json > $S/k-addnorm-phi-2.txt 2>&1
run 30 $B kernels $K --transformer llama-3-8b --batch 1,4096 --ops add_norm -o $S/k-addnorm-llama.json > $S/k-addnorm-llama.txt 2>&1
for m in mamba-2.8b phi-2 llama-3-8b; do run 30 $B profile $m --phase prefill --device cuda --dtype bfloat16 --context 4096 --steps 4 -o $S/prof-prefill-$m.json > $S/prof-prefill-$m.txt 2>&1; done
run 80 $B bench mamba-2.8b phi-2 --device cuda --dtype bf16 --prompt-lengths 4096,16384 --gen-tokens 16 --reps 2 --cuda-graphs on --no-progress --format md -o $S/prefill.json > $S/prefill.md 2>&1
run 60 $B bench mamba-2.8b phi-2 llama-3-8b --device cuda --dtype bf16 --prompt-lengths 512 --gen-tokens 128 --reps 2 --cuda-graphs on --no-progress --format md -o $S/decode.json > $S/decode.md 2>&1
CUBLASLT_LOG_LEVEL=5 CUBLASLT_LOG_FILE=$S/lt-model.log CUBLAS_LOGINFO_DBG=1 CUBLAS_LOGDEST_DBG=$S/cublas-model.log run 40 $B profile mamba-2.8b --device cuda --batch 32 --context 512 --steps 1 --cuda-graphs off -o $S/prof-b32.json > $S/prof-b32.txt 2>&1
CUBLASLT_LOG_LEVEL=5 CUBLASLT_LOG_FILE=$S/lt-sweep.log CUBLAS_LOGINFO_DBG=1 CUBLAS_LOGDEST_DBG=$S/cublas-sweep.log run 30 $B kernels --device cuda --dtype bfloat16 --reps 2 --warmup 1 --batch 32 --ops dense_gemv_out_proj > $S/k-b32-out.txt 2>&1
ls -la $S >> $S/log.txt
cd "$out" && tar czf s.tgz s && rm -rf s
