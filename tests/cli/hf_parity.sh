#!/usr/bin/env bash
# Generates transformers reference fixtures (tools/make_hf_fixtures.py, pinned versions from
# tools/setup.sh) and runs the C++ parity test against them.
source "$(dirname "$0")/lib.sh"
TESTS_BIN=$5
"$PYTHON" "$SRC/tools/make_hf_fixtures.py" "$SCRATCH/fixtures" 2> "$SCRATCH/fixtures.log" \
  || { cat "$SCRATCH/fixtures.log"; fail "fixture generation"; finish; }
EFFARCH_HF_FIXTURES="$SCRATCH/fixtures" "$TESTS_BIN" --gtest_filter='HfParity.*' || fail "parity with transformers"
finish
