#!/usr/bin/env bash
# Every built-in config against Hugging Face transformers' own model classes: the same
# parameter counts and the same checkpoint tensor names and shapes (DeepSeekMoE is remote code
# that transformers does not ship: its counts are checked by hand in tests/model/stats_test.cpp).
source "$(dirname "$0")/lib.sh"

"$EFFARCH" info --json --tensors > "$SCRATCH/effarch.json"
# --verify-save: for the tiny configs the layout read from transformers' modules is also what its
# save_pretrained writes (a layout derived wrongly would otherwise agree with a wrong effarch).
"$PYTHON" "$SRC/tools/hf_param_counts.py" --verify-save "$SRC"/configs/models/*.json > "$SCRATCH/hf.jsonl"
"$PYTHON" - "$SCRATCH/effarch.json" "$SCRATCH/hf.jsonl" <<'PY' || fail "effarch and transformers disagree"
import json, sys, pathlib
ours = {pathlib.Path(r["config"]).stem: r for r in json.load(open(sys.argv[1]))}
checked = saved = 0
bad = []
for line in open(sys.argv[2]):
    ref = json.loads(line)
    name = pathlib.Path(ref["config"]).stem
    if "skipped" in ref:
        print(f"{name}: skipped ({ref['skipped']})")
        continue
    mine = ours[name]
    if mine["total_params"] != ref["total_params"]:
        bad.append(f"{name}: total {mine['total_params']} vs transformers {ref['total_params']}")
    if "active_params" in ref and mine["active_params"] != ref["active_params"]:
        bad.append(f"{name}: active {mine['active_params']} vs transformers {ref['active_params']}")
    required = {t["name"]: t["shape"] for t in mine["tensors"] if not t["optional"]}
    optional = {t["name"] for t in mine["tensors"] if t["optional"]}
    theirs = {k: v for k, v in ref["tensors"].items() if k not in optional}
    for k in sorted(set(required) - set(theirs)):
        bad.append(f"{name}: effarch expects {k}, transformers has no such tensor")
    for k in sorted(set(theirs) - set(required)):
        bad.append(f"{name}: transformers has {k}, effarch does not expect it")
    for k in sorted(set(required) & set(theirs)):
        if list(required[k]) != list(theirs[k]):
            bad.append(f"{name}: {k} shape {required[k]} vs transformers {theirs[k]}")
    checked += 1
    saved += ref.get("save_verified", False)
    print(f"{name}: {mine['total_params']:,} params, {len(required)} tensors agree")
print("\n".join(bad[:40]))
assert not bad, f"{len(bad)} disagreements"
assert checked >= 16, checked
assert saved >= 9, f"only {saved} layouts checked against save_pretrained"
PY
finish
