#!/usr/bin/env bash
# effarch inspect: listing, metadata, and checkpoint problems with exit codes.
source "$(dirname "$0")/lib.sh"

"$EFFARCH" init tiny-llama "$SCRATCH/ok" > /dev/null 2>&1
expect_exit 0 "model.layers.1.mlp.down_proj.weight" "$EFFARCH" inspect "$SCRATCH/ok/model.safetensors"
expect_exit 0 "metadata format = pt" "$EFFARCH" inspect "$SCRATCH/ok/model.safetensors"
"$EFFARCH" inspect --json "$SCRATCH/ok" > "$SCRATCH/ok.json"
"$PYTHON" -c "import json,sys; d=json.load(open(sys.argv[1])); assert d['valid'] and d['check']['ok'] and len(d['tensors'])==21, d['check']" "$SCRATCH/ok.json" \
  || fail "inspect --json"

# A tensor removed, one added, one reshaped, one stored as integers: all four listed, exit 1.
"$PYTHON" - "$SCRATCH" <<'PY'
import sys, shutil, pathlib
from safetensors.torch import load_file, save_file
import torch
root = pathlib.Path(sys.argv[1])
bad = root / "bad"
shutil.copytree(root / "ok", bad)
t = load_file(bad / "model.safetensors")
del t["model.layers.0.self_attn.k_proj.weight"]
t["model.layers.0.self_attn.extra.weight"] = torch.zeros(2, 2)
t["model.norm.weight"] = torch.ones(129)
t["model.layers.1.mlp.up_proj.weight"] = t["model.layers.1.mlp.up_proj.weight"].to(torch.int32)
save_file(t, bad / "model.safetensors", metadata={"format": "pt"})
PY
expect_exit 1 "missing tensor 'model.layers.0.self_attn.k_proj.weight'" "$EFFARCH" inspect "$SCRATCH/bad"
expect_exit 1 "unexpected tensor 'model.layers.0.self_attn.extra.weight'" "$EFFARCH" inspect "$SCRATCH/bad"
expect_exit 1 "wrong shape tensor 'model.norm.weight': expected [128], found [129]" "$EFFARCH" inspect "$SCRATCH/bad"
expect_exit 1 "wrong dtype tensor 'model.layers.1.mlp.up_proj.weight': stored as I32" "$EFFARCH" inspect "$SCRATCH/bad"
expect_exit 1 "wrong dtype tensor 'model.layers.1.mlp.up_proj.weight'" "$EFFARCH" generate "$SCRATCH/bad" --prompt-ids 1,2

# float8 weights (F8_E4M3, F8_E5M2) load as their values, as transformers upcasts them: a checkpoint
# holding two weights in float8 gives the tokens of one holding the same values in float32.
"$PYTHON" - "$SCRATCH" <<'PY'
import sys, shutil, pathlib
from safetensors.torch import load_file, save_file
import torch
root = pathlib.Path(sys.argv[1])
for name in ("f8", "f8-as-f32"):
    shutil.rmtree(root / name, ignore_errors=True)
    shutil.copytree(root / "ok", root / name)
t = load_file(root / "ok" / "model.safetensors")
f8 = dict(t)
f8["model.layers.0.mlp.down_proj.weight"] = (t["model.layers.0.mlp.down_proj.weight"] * 8).to(torch.float8_e4m3fn)
f8["model.layers.1.self_attn.v_proj.weight"] = (t["model.layers.1.self_attn.v_proj.weight"] * 8).to(torch.float8_e5m2)
save_file(f8, root / "f8" / "model.safetensors", metadata={"format": "pt"})
save_file({k: v.float() for k, v in f8.items()}, root / "f8-as-f32" / "model.safetensors", metadata={"format": "pt"})
PY
a=$("$EFFARCH" generate "$SCRATCH/f8" --prompt-ids "1,2,3;4,5,6" -n 8 --json) || fail "generate from float8 weights"
b=$("$EFFARCH" generate "$SCRATCH/f8-as-f32" --prompt-ids "1,2,3;4,5,6" -n 8 --json) || fail "generate from their float32 values"
c=$("$EFFARCH" generate "$SCRATCH/ok" --prompt-ids "1,2,3;4,5,6" -n 8 --json) || fail "generate from the original"
tokens() { "$PYTHON" -c 'import json,sys; print(json.loads(sys.argv[1])["tokens"])' "$1"; }
[[ $(tokens "$a") == "$(tokens "$b")" ]] || fail "float8 weights give other tokens than their float32 values"
[[ $(tokens "$a") != "$(tokens "$c")" ]] || fail "float8 weights x8 give the original's tokens: the check cannot tell"

# A tied model's checkpoint may carry lm_head.weight or not; old Mamba files say "embedding".
"$EFFARCH" init tiny-mamba "$SCRATCH/mamba" > /dev/null 2>&1
"$PYTHON" - "$SCRATCH/mamba" <<'PY'
import sys, pathlib
from safetensors.torch import load_file, save_file
p = pathlib.Path(sys.argv[1]) / "model.safetensors"
t = load_file(p)
t["backbone.embedding.weight"] = t.pop("backbone.embeddings.weight")
t["lm_head.weight"] = t["backbone.embedding.weight"].clone()
save_file(t, p, metadata={"format": "pt"})
PY
expect_exit 0 "checkpoint matches MambaForCausalLM" "$EFFARCH" inspect "$SCRATCH/mamba"

# A corrupt file is a clear error naming it; a missing path is a usage error.
head -c 100 "$SCRATCH/ok/model.safetensors" > "$SCRATCH/truncated.safetensors"
expect_exit 1 "truncated.safetensors" "$EFFARCH" inspect "$SCRATCH/truncated.safetensors"
expect_exit 2 "no such file" "$EFFARCH" inspect "$SCRATCH/does-not-exist"
# A JSON file is not a safetensors file: said so, with what to pass instead (it was read as a
# header length of 8388350557284278907 bytes).
expect_exit 2 "$SCRATCH/ok/config.json is a model config (JSON), not a safetensors file: \`effarch inspect \
$SCRATCH/ok\` checks the checkpoint folder holding it" "$EFFARCH" inspect "$SCRATCH/ok/config.json"
expect_exit 2 "tiny-mamba.json is a model config (JSON), not a safetensors file: \`effarch info" \
  "$EFFARCH" inspect "$SRC/configs/models/tiny-mamba.json"
echo '{"metadata": {}, "weight_map": {}}' > "$SCRATCH/model.safetensors.index.json"
expect_exit 2 "is a sharded checkpoint's index (JSON), not a safetensors file: give its folder" \
  "$EFFARCH" inspect "$SCRATCH/model.safetensors.index.json"
echo '[1, 2, 3]' > "$SCRATCH/list.json"
expect_exit 2 "list.json is a JSON file, not a safetensors file" "$EFFARCH" inspect "$SCRATCH/list.json"
finish
