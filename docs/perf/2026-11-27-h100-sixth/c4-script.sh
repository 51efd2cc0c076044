#!/usr/bin/env bash
# Session 14, device call 4: ops::linear's fold (Mamba's batched decode, entry 41).
source .gpu-kit/env.sh
out=$OUT; S="$out/s"; mkdir -p "$S"
tools/gpu/build.sh build 90 > $S/build.txt 2>&1 || { tail $S/build.txt; exit 1; }
B=build/src/effarch; T=build/tests/effarch_tests
timeout 40 $T --gtest_filter='Linear*:Implementations.*:DenseGemvCuda.*:RowsGemmCuda.*' > $S/gtest.log 2>&1; echo "gtest exit $?" > $S/log.txt
grep -E '^\[  (PASSED|FAILED)  \]' $S/gtest.log >> $S/log.txt
timeout 20 $B profile mamba-2.8b --device cuda --batch 32 --context 512 --steps 4 --cuda-graphs off -o $S/prof-b32.json > $S/prof-b32.txt 2>&1; echo "profile exit $?" >> $S/log.txt
timeout 60 $B bench mamba-2.8b phi-2 --device cuda --dtype bf16 --prompt-lengths 512 --batch 32 --gen-tokens 32 --reps 2 --cuda-graphs on --no-progress --format md -o $S/b32.json > $S/b32.md 2>&1; echo "bench exit $?" >> $S/log.txt
cd "$out" && tar czf s.tgz s && rm -rf s
