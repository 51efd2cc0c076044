#!/usr/bin/env bash
# docs/architectures.md's config-field audit against transformers: every field of each
# architecture's config class and of the built-in configs is named there, and each field it says
# has no effect on inference, changed on the tiny model (same weights), leaves the logits and the
# greedy tokens bit for bit; each field it says is implemented is varied by a parity fixture
# (tools/make_hf_fixtures.py) where it moves the logits, or shapes the checkpoint, or is named with
# where it is checked instead (tools/hf_config_fields.py). DeepSeekMoE, remote code: the fields of
# its built-in configs' files, exercised on the model make_hf_fixtures.py composes for it.
source "$(dirname "$0")/lib.sh"

"$PYTHON" "$SRC/tools/hf_config_fields.py" "$SRC/docs/architectures.md" "$SRC/configs" > "$SCRATCH/fields.txt" 2>&1 ||
  fail "the config-field audit disagrees with transformers: $(grep -E '^PROBLEM|Error|error' "$SCRATCH/fields.txt" | head -20)"
grep -E '^[A-Z0-9].*(fields|skipped|checked)' "$SCRATCH/fields.txt"
finish
