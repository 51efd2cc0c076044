#!/usr/bin/env bash
# effarch init writes checkpoints that effarch inspect validates and HF's safetensors reads.
source "$(dirname "$0")/lib.sh"

for model in tiny-llama tiny-llama3 tiny-mistral tiny-phi tiny-mamba tiny-falcon-mamba tiny-mamba2 \
             tiny-mixtral tiny-deepseek-moe tiny-jamba; do
  expect_exit 0 "" "$EFFARCH" init "$model" "$SCRATCH/$model" --seed 3
  expect_exit 0 "checkpoint matches" "$EFFARCH" inspect "$SCRATCH/$model"
done

# Sharding above --max-shard-size, with an index; bf16 weights.
expect_exit 0 "" "$EFFARCH" init tiny-mixtral "$SCRATCH/sharded" --dtype bf16 --max-shard-size 1MB
[[ -f $SCRATCH/sharded/model.safetensors.index.json ]] || fail "no index written for a sharded checkpoint"
ls "$SCRATCH/sharded"/model-0000?-of-0000?.safetensors > /dev/null || fail "no shards written"
expect_exit 0 "checkpoint matches MixtralForCausalLM" "$EFFARCH" inspect "$SCRATCH/sharded"
grep -q '"torch_dtype": "bfloat16"' "$SCRATCH/sharded/config.json" || fail "config.json dtype not updated"

# Same seed, same bytes; another seed, other bytes.
expect_exit 0 "" "$EFFARCH" init tiny-mamba "$SCRATCH/again" --seed 3
cmp -s "$SCRATCH/tiny-mamba/model.safetensors" "$SCRATCH/again/model.safetensors" || fail "init is not deterministic"
expect_exit 0 "" "$EFFARCH" init tiny-mamba "$SCRATCH/other" --seed 4
cmp -s "$SCRATCH/tiny-mamba/model.safetensors" "$SCRATCH/other/model.safetensors" && fail "seed has no effect"

# Refuses to overwrite; bad options are usage errors.
expect_exit 2 "not empty" "$EFFARCH" init tiny-mamba "$SCRATCH/tiny-mamba"
# --force replaces a sharded checkpoint with a one-file one: the old shards and index go, so the
# folder loads as the new model (the loader would take a stale index or every *.safetensors).
cp -r "$SCRATCH/sharded" "$SCRATCH/replaced"
echo keep > "$SCRATCH/replaced/notes.txt"
expect_exit 0 "removed $SCRATCH/replaced/model.safetensors.index.json (--force)" \
  "$EFFARCH" init tiny-mamba "$SCRATCH/replaced" --force
[[ -f $SCRATCH/replaced/notes.txt ]] || fail "--force removed a file that is not a weight file"
ls "$SCRATCH/replaced"/model-0000?-of-0000?.safetensors > /dev/null 2>&1 && fail "--force left the old shards"
expect_exit 0 "checkpoint matches MambaForCausalLM" "$EFFARCH" inspect "$SCRATCH/replaced"
expect_exit 2 "--dtype" "$EFFARCH" init tiny-mamba "$SCRATCH/x" --dtype int4
expect_exit 2 "--max-shard-size" "$EFFARCH" init tiny-mamba "$SCRATCH/y" --max-shard-size lots
for seed in -1 18446744073709551616 3x; do  # CLI11 alone wrapped the first two to 2^64 - 1
  expect_exit 2 "a seed is a whole number from 0 to 18446744073709551615, got '$seed'" "$EFFARCH" init tiny-mamba \
    "$SCRATCH/z" --seed "$seed"
done
# A folder that cannot be made is an error naming it, not an internal one.
touch "$SCRATCH/a-file"
expect_exit 1 "effarch: error: filesystem error" "$EFFARCH" init tiny-mamba "$SCRATCH/a-file/sub"

# The independent reader: HF safetensors + transformers load what effarch wrote.
"$PYTHON" - "$SCRATCH" <<'PY' || fail "HF could not read effarch's checkpoints"
import sys, json, pathlib
from safetensors.torch import load_file
import torch
root = pathlib.Path(sys.argv[1])
t = load_file(root / "tiny-llama" / "model.safetensors")
cfg = json.load(open(root / "tiny-llama" / "config.json"))
shape = tuple(t["model.embed_tokens.weight"].shape)
assert shape == (cfg["vocab_size"], cfg["hidden_size"]), shape
shards = sorted((root / "sharded").glob("model-*.safetensors"))
total = {}
for s in shards:
    total.update(load_file(s))
index = json.load(open(root / "sharded" / "model.safetensors.index.json"))
assert set(index["weight_map"]) == set(total), "index and shards disagree"
assert all(v.dtype == torch.bfloat16 for v in total.values())
from transformers import AutoModelForCausalLM
for name in ["tiny-llama", "tiny-mamba", "tiny-jamba", "tiny-mixtral", "tiny-phi", "tiny-mamba2"]:
    # transformers only warns about a missing, extra or misshapen tensor (and fills a missing
    # one at random): the loading info must list none.
    m, info = AutoModelForCausalLM.from_pretrained(root / name, output_loading_info=True)
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        assert not info.get(kind), (name, kind, info.get(kind))
    out = m(torch.tensor([[1, 2, 3, 4]])).logits
    assert torch.isfinite(out).all(), name
PY
finish
