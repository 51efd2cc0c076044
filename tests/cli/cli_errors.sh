#!/usr/bin/env bash
# Bad input on the command line and in configs: a message naming the problem, exit 2 for usage,
# 1 for bad files.
source "$(dirname "$0")/lib.sh"

expect_exit 2 "" "$EFFARCH"
expect_exit 2 "frobnicate" "$EFFARCH" frobnicate
expect_exit 2 "--no-such-flag" "$EFFARCH" info --no-such-flag
expect_exit 2 "not a checkpoint folder, a config file or a built-in config" "$EFFARCH" info no-such-model
expect_exit 2 "--cache-dtype" "$EFFARCH" info tiny-llama --cache-dtype fp8
expect_exit 0 "effarch 0." "$EFFARCH" --version
# The help explains MODEL under the commands that take one, and only there (every command's help
# once ended with it, compare's and kernels' too); the top-level help names those commands.
for cmd in info generate experts bench profile; do
  expect_exit 0 "MODEL is a Hugging Face checkpoint folder" "$EFFARCH" $cmd --help
done
for cmd in inspect init tokenize compare report kernels; do
  out=$("$EFFARCH" $cmd --help 2>&1) || fail "$cmd --help exited non-zero"
  [[ $out != *MODEL* ]] || fail "$cmd --help mentions MODEL, which it does not take:"$'\n'"$out"
done
expect_exit 0 "MODEL (info, generate, experts, bench, profile) is" "$EFFARCH" --help
# --pdl takes auto (the default), on or off; on needs a build with the CUDA kernels (a CUDA build accepts it anywhere).
expect_exit 2 "--pdl: unknown value 'maybe' (use auto, on or off)" "$EFFARCH" generate tiny-llama --prompt-ids 1,2 --pdl maybe
expect_exit 2 "--pdl: unknown value '1'" "$EFFARCH" bench tiny-llama --pdl 1
expect_exit 2 "--pdl: unknown value 'yes'" "$EFFARCH" profile tiny-llama --pdl yes
expect_exit 2 "--pdl: unknown value 'true'" "$EFFARCH" kernels --ops add_norm --pdl true
expect_exit 2 "--parallel-block: unknown value 'on' (use auto, fused or separate)" "$EFFARCH" generate tiny-phi --prompt-ids 1,2 --parallel-block on
expect_exit 2 "--parallel-block: unknown value 'yes'" "$EFFARCH" bench tiny-phi --parallel-block yes
expect_exit 2 "--parallel-block: unknown value 'four'" "$EFFARCH" profile tiny-phi --parallel-block four
expect_exit 2 "--norm-prologue: unknown value 'on' (use auto, fused or separate)" "$EFFARCH" generate tiny-llama --prompt-ids 1,2 --norm-prologue on
expect_exit 2 "--norm-prologue: unknown value 'yes'" "$EFFARCH" bench tiny-llama --norm-prologue yes
expect_exit 2 "--norm-prologue: unknown value 'four'" "$EFFARCH" profile tiny-llama --norm-prologue four
# fused where it cannot run (the CPU has no CUDA add_norm or GEMV kernel) is refused at load, not
# quietly run separate: a result would record a path that never ran.
expect_exit 2 "--norm-prologue fused" "$EFFARCH" generate tiny-llama --device cpu --prompt-ids 1,2 -n 2 --norm-prologue fused
# --selective-scan names a CUDA prefill kernel: an unknown name lists the names; a model without
# Mamba-1 layers, or the CPU (no CUDA kernel runs there), is refused at load, not ignored.
expect_exit 2 "--selective-scan: unknown value 'lanes4' (use auto, lanes16, lanes8, pieces, seg4, seg8, split)" "$EFFARCH" generate tiny-mamba --prompt-ids 1,2 --selective-scan lanes4
expect_exit 2 "--selective-scan: unknown value 'x'" "$EFFARCH" bench tiny-mamba --selective-scan x
expect_exit 2 "--selective-scan: unknown value 'fast'" "$EFFARCH" profile tiny-mamba --selective-scan fast
expect_exit 2 "--selective-scan pieces: picks the CUDA selective scan's prefill kernel, and" "$EFFARCH" generate tiny-mamba2 --device cpu --prompt-ids 1,2 -n 2 --selective-scan pieces
expect_exit 2 "which needs a CUDA device and a CUDA build, not cpu" "$EFFARCH" generate tiny-mamba --device cpu --prompt-ids 1,2 -n 2 --selective-scan pieces

# A config with a missing key names the key and the file.
"$PYTHON" - "$SRC/configs/models/tiny-llama.json" "$SCRATCH" <<'PY'
import json, sys, pathlib
cfg = json.load(open(sys.argv[1]))
out = pathlib.Path(sys.argv[2])
c = dict(cfg); del c["num_attention_heads"]; json.dump(c, open(out / "missing.json", "w"))
c = dict(cfg); c["num_hidden_layers"] = "two"; json.dump(c, open(out / "typed.json", "w"))
c = dict(cfg); c["architectures"] = ["BertModel"]; json.dump(c, open(out / "arch.json", "w"))
c = dict(cfg); c.update(hidden_size=36, num_attention_heads=4, num_key_value_heads=4); json.dump(c, open(out / "odd.json", "w"))
(out / "broken.json").write_text('{"architectures": [')
PY
expect_exit 1 "missing.json: key 'num_attention_heads': missing" "$EFFARCH" info "$SCRATCH/missing.json"
expect_exit 1 "key 'num_hidden_layers': must be an integer" "$EFFARCH" info "$SCRATCH/typed.json"
expect_exit 1 "unknown architecture BertModel" "$EFFARCH" info "$SCRATCH/arch.json"
expect_exit 1 "broken.json: invalid JSON" "$EFFARCH" info "$SCRATCH/broken.json"
# An odd head size is blamed on itself, not on a partial_rotary_factor the config does not have.
expect_exit 1 "odd.json: key 'num_attention_heads': head_dim = hidden_size / num_attention_heads = 36 / 4 = 9 is odd" \
  "$EFFARCH" info "$SCRATCH/odd.json"
out=$("$EFFARCH" info "$SCRATCH/odd.json" 2>&1) || true
[[ $out != *partial_rotary_factor* ]] || fail "an odd head_dim blamed on partial_rotary_factor: $out"
# generate's numbers: an empty --prompt-ids entry, a length past any cache; a safetensors file as MODEL.
expect_exit 2 "--prompt-ids: an empty entry in '1,,2'" "$EFFARCH" generate tiny-llama --prompt-ids 1,,2
expect_exit 2 "--prompt-ids: an empty entry in ',1'" "$EFFARCH" generate tiny-llama --prompt-ids ,1
expect_exit 2 "--prompt-ids: an empty entry in '1,2,'" "$EFFARCH" generate tiny-llama --prompt-ids 1,2,
expect_exit 2 "-n: 99999999999 tokens is past the longest sequence" "$EFFARCH" generate tiny-mamba --prompt-ids 1,2 -n 99999999999
expect_exit 2 "--context: 99999999999 tokens is past the longest sequence" "$EFFARCH" profile tiny-mamba --context 99999999999
: > "$SCRATCH/model.safetensors"
expect_exit 2 "is a safetensors file: give the checkpoint folder" "$EFFARCH" info "$SCRATCH/model.safetensors"
expect_exit 2 "OUT_DIR: the path is empty" "$EFFARCH" init tiny-llama ""
# The broken-file corpus that BadInput.Corpus opens is the generator's output, byte for byte
# (a hand edit there would test a file nobody can remake).
"$PYTHON" "$SRC/tools/make_bad_corpus.py" --check || fail "tests/corpus differs from tools/make_bad_corpus.py's output"
finish
