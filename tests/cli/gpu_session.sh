#!/usr/bin/env bash
# A dry run of every stage of tools/gpu/session.sh on this machine: a GPU session has 15 minutes of
# device time and a handful of calls, so a mistyped option or a test filter that matches nothing
# must fail here, not there. Stand-ins take the places of effarch, effarch_tests and ncu
# (EFFARCH_SESSION_DRY): each effarch command line must be refused only for want of a CUDA device
# (effarch checks every option before it looks for one), and each pattern of a --gtest_filter must
# name at least one test.
#   gpu_session.sh EFFARCH SOURCE_DIR SCRATCH_DIR PYTHON EFFARCH_TESTS
source "$(dirname "$0")/lib.sh"
TESTS=${5:?usage: gpu_session.sh EFFARCH SOURCE_DIR SCRATCH_DIR PYTHON EFFARCH_TESTS}
dry=$SCRATCH/dry
log=$SCRATCH/commands.log
mkdir -p "$dry"

# effarch: the real binary with no GPU visible (a machine that has one must not run the session's
# benchmarks from ctest); its output passes through for the session's own logs. A command for a
# CUDA device must be refused only for want of one; any other (init, a CPU run) must succeed.
cat > "$dry/effarch" <<EOF
#!/usr/bin/env bash
out=\$(CUDA_VISIBLE_DEVICES= "$EFFARCH" "\$@" 2>&1); rc=\$?
printf '%s\n' "\$out"
if [[ \$rc -ne 0 && \$out == *"--device cuda"*": no CUDA device available"* ]]; then
  echo "ok: effarch \$*" >> "$log"
elif [[ \$rc -eq 0 && " \$* " != *" --device cuda"* ]]; then  # a run on the CPU (or init): it must succeed here
  echo "ok: effarch \$*" >> "$log"
else
  echo "BAD: effarch \$* (exit \$rc): \$(tail -n 2 <<< "\$out" | tr "\\n" " ")" >> "$log"
fi
exit \$rc
EOF

# effarch_tests: every pattern of the filter, positive and negative, names a test. It lists the
# tests once and matches with the shell's globs, which treat * and ? as GoogleTest does.
"$TESTS" --gtest_list_tests |
  awk '/^[^ ]/ {suite = $1} /^  / {print suite $1}' > "$SCRATCH/tests.txt"
[[ -s $SCRATCH/tests.txt ]] || fail "effarch_tests --gtest_list_tests listed no tests"
cat > "$dry/effarch_tests" <<EOF
#!/usr/bin/env bash
filter=
for a in "\$@"; do [[ \$a == --gtest_filter=* ]] && filter=\${a#--gtest_filter=}; done
[[ -n \$filter ]] || { echo "BAD: effarch_tests \$* (no --gtest_filter: the whole suite)" >> "$log"; exit 0; }
IFS=':' read -ra patterns <<< "\${filter/-/:}"
for p in "\${patterns[@]}"; do
  [[ -z \$p ]] && continue
  hit=0
  while read -r t; do [[ \$t == \$p ]] && { hit=1; break; }; done < "$SCRATCH/tests.txt"
  if [[ \$hit == 1 ]]; then echo "ok: test pattern \$p" >> "$log"; else echo "BAD: test pattern \$p names no test" >> "$log"; fi
done
echo "[  PASSED  ] 0 tests (a dry run)"
EOF

# ncu: its own options cannot be checked here; the effarch command it profiles can.
cat > "$dry/ncu" <<EOF
#!/usr/bin/env bash
while [[ \$# -gt 0 && \$1 != "$dry/effarch" ]]; do shift; done
[[ \$# -gt 0 ]] || { echo "BAD: ncu profiles no effarch command" >> "$log"; exit 1; }
exec "\$@"
EOF
chmod +x "$dry"/*

for stage in check pdl prefill decode targets followups prologue moe small scans kernels bench; do
  : > "$log"
  out=$SCRATCH/out-$stage
  (cd "$SRC" && EFFARCH_SESSION_DRY=$dry PYTHON=$PYTHON OUT= bash tools/gpu/session.sh "$stage" "$out") > "$SCRATCH/$stage.txt" 2>&1 ||
    fail "session.sh $stage exited $? (output: $SCRATCH/$stage.txt)"
  n=$(grep -c '^ok: effarch' "$log" || true)
  [[ $n -gt 0 ]] || fail "session.sh $stage ran no effarch command"
  if grep -q '^BAD' "$log"; then
    fail "session.sh $stage: $(grep '^BAD' "$log")"
  fi
  echo "$stage: $n effarch command lines, $(grep -c '^ok: test pattern' "$log" || true) test patterns checked"
  [[ -f $out/summary-$stage.txt ]] || fail "session.sh $stage wrote no summary"
done
# EFFARCH_SESSION_UNTIL: with less than the 20-second margin and 10 more left, the stage skips
# every command with a line each in its summary, and still ends by itself, packing its outputs.
: > "$log"
out=$SCRATCH/out-until
(cd "$SRC" && EFFARCH_SESSION_UNTIL=$(($(date +%s) + 25)) EFFARCH_SESSION_DRY=$dry OUT= \
  bash tools/gpu/session.sh decode "$out") > "$SCRATCH/until.txt" 2>&1 || fail "session.sh decode with a deadline exited $?"
ran=$(grep -c '^ok: effarch' "$log" || true)
skipped=$(grep -c '^skipped (EFFARCH_SESSION_UNTIL is near)' "$out/summary-decode.txt" || true)
[[ $ran -eq 0 && $skipped -eq 16 ]] || fail "deadline: $ran ran, $skipped skipped, expected 0 and 16"
grep -q "^== done" "$out/summary-decode.txt" || fail "deadline: the stage did not end by itself"
echo "deadline: $skipped command lines skipped"
# The first call of docs/perf/pending.md's Order: check, prologue and moe into one OUT. The stages
# after check do not run their tests again (check ran every test), and each still writes its summary.
: > "$log"
out=$SCRATCH/out-call1
for stage in check prologue moe; do
  (cd "$SRC" && EFFARCH_SESSION_DRY=$dry OUT= bash tools/gpu/session.sh "$stage" "$out") >> "$SCRATCH/call1.txt" 2>&1 ||
    fail "session.sh $stage after check exited $?"
done
for stage in prologue moe; do
  grep -q "^tests: ran in this call's check" "$out/summary-$stage.txt" || fail "$stage after check ran its tests again"
done
grep -q "^tests exit" "$out/summary-prologue.txt" "$out/summary-moe.txt" && fail "a stage after check ran its tests"
echo "call 1: check, prologue and moe in one OUT, the tests once"
finish
