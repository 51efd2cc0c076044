#!/usr/bin/env bash
# effarch experts: the expert counts of every MoE layer equal those of transformers' own router on
# the same token ids (Mixtral checkpoint from effarch init), every figure recomputes from the
# counts, the router dump equals the checkpoint's tensor, text input tokenizes as HF does, and
# bad input fails clearly.
source "$(dirname "$0")/lib.sh"

"$EFFARCH" init tiny-mixtral "$SCRATCH/mixtral" --seed 3 > /dev/null 2>&1 || fail "init tiny-mixtral"
expect_exit 0 "top-1 = previous layer's" "$EFFARCH" experts "$SCRATCH/mixtral" --prompt-lengths 9,21 \
  --json "$SCRATCH/mixtral.json" --router-weights 1 --router-weights-out "$SCRATCH/router1.safetensors"
for m in tiny-deepseek-moe tiny-jamba; do
  expect_exit 0 "MoE layers" "$EFFARCH" experts "$m" --prompt-lengths 5,40 --seed 4 --json "$SCRATCH/$m.json"
done

# Before the checkpoint has a tokenizer, text cannot be routed: exit 2 naming the option.
printf 'some text' > "$SCRATCH/early.txt"
expect_exit 2 "--text-file: $SCRATCH/mixtral has no tokenizer" "$EFFARCH" experts "$SCRATCH/mixtral" \
  --text-file "$SCRATCH/early.txt"

# A tokenizer for the checkpoint, trained here, to route a text file.
"$PYTHON" - "$SCRATCH" <<'PY'
import sys, pathlib
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers
root = pathlib.Path(sys.argv[1])
text = ["Mixture of experts routes each token to a few experts.", "The router is a linear layer."] * 40
tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
tok.train_from_iterator(text, trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
tok.save(str(root / "mixtral" / "tokenizer.json"))
(root / "text.txt").write_text("The router is a linear layer: it routes each token to experts. " * 6)
# A tokenizer with more tokens than tiny-mixtral's 512: not this model's.
alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
vocab = {ch: i for i, ch in enumerate(alphabet)}
vocab.update({f"extra{i}": len(alphabet) + i for i in range(600 - len(alphabet))})
big = Tokenizer(models.BPE(vocab, []))
big.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
big.save(str(root / "big-tokenizer.json"))
PY
expect_exit 0 "sequence(s)" "$EFFARCH" experts "$SCRATCH/mixtral" --text-file "$SCRATCH/text.txt" --max-tokens 50 \
  --json "$SCRATCH/text.json"
# --tokenizer routes text through a bare config (random weights): the same ids as from the folder.
expect_exit 0 "sequence(s)" "$EFFARCH" experts tiny-mixtral --text-file "$SCRATCH/text.txt" --max-tokens 50 \
  --tokenizer "$SCRATCH/mixtral/tokenizer.json" --json "$SCRATCH/text-bare.json"

"$PYTHON" - "$SCRATCH" <<'PY' || fail "figures disagree with transformers or with their own counts"
import json, math, sys, pathlib
import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM
root = pathlib.Path(sys.argv[1])
bad = []

def check_figures(doc, name):
    k = doc["top_k"]
    for layer in doc["layers"]:
        c = layer["counts"]
        n, e = layer["tokens"], len(c)
        if sum(c) != n * k: bad.append(f"{name} layer {layer['layer']}: counts sum {sum(c)} != {n} x {k}")
        mean = sum(c) / e
        cv = math.sqrt(sum((x - mean) ** 2 for x in c) / e) / mean
        ent = -sum(x / sum(c) * math.log2(x / sum(c)) for x in c if x)
        for key, want in [("cv", cv), ("entropy_bits", ent), ("max_over_mean", max(c) / mean),
                          ("max_entropy_bits", math.log2(e))]:
            if abs(layer[key] - want) > 1e-9: bad.append(f"{name} layer {layer['layer']}: {key} {layer[key]} != {want}")
    if doc["layers"][0]["top1_same_as_previous"] is not None: bad.append(f"{name}: first layer has a previous")
    if doc["tokens"] != sum(len(p) for p in doc["prompts"]): bad.append(f"{name}: token count")

# Mixtral: transformers' router on the same ids gives the same selections.
doc = json.load(open(root / "mixtral.json"))
check_figures(doc, "mixtral")
model = AutoModelForCausalLM.from_pretrained(root / "mixtral", dtype=torch.float32).eval()
counts = None
top1 = []
with torch.no_grad():
    for ids in doc["prompts"]:
        logits = model(torch.tensor([ids]), output_router_logits=True).router_logits
        sel = [torch.topk(torch.softmax(l.float(), -1), doc["top_k"], -1).indices for l in logits]
        c = [torch.bincount(s.flatten(), minlength=doc["num_experts"]) for s in sel]
        counts = c if counts is None else [a + b for a, b in zip(counts, c)]
        top1.append([s[:, 0] for s in sel])
for i, layer in enumerate(doc["layers"]):
    if layer["counts"] != counts[i].tolist(): bad.append(f"layer {i}: {layer['counts']} vs HF {counts[i].tolist()}")
same = torch.cat([t[1] == t[0] for t in top1]).double().mean().item()
if abs(doc["layers"][1]["top1_same_as_previous"] - same) > 1e-12: bad.append(f"top-1 agreement {same}")
router = load_file(str(root / "router1.safetensors"))["router.weight"]
ckpt = load_file(str(root / "mixtral" / "model.safetensors"))["model.layers.1.block_sparse_moe.gate.weight"]
if not torch.equal(router, ckpt): bad.append("router dump differs from the checkpoint")

for m, moe_layers in [("tiny-deepseek-moe", None), ("tiny-jamba", [1, 3])]:
    d = json.load(open(root / f"{m}.json"))
    check_figures(d, m)
    if moe_layers and [l["layer"] for l in d["layers"]] != moe_layers: bad.append(f"{m}: layers")
    # What ran is recorded: on the CPU auto runs the fused CPU dispatch.
    if d.get("backend") != "auto" or d.get("implementations", {}).get("moe_dispatch") != "cpu":
        bad.append(f"{m}: backend/implementations not recorded: {d.get('backend')} {d.get('implementations')}")

# Text: the tokens routed are HF's encoding, split into windows of --max-tokens.
t = json.load(open(root / "text.json"))
ids = Tokenizer.from_file(str(root / "mixtral" / "tokenizer.json")).encode(
    (root / "text.txt").read_text()).ids
if [i for p in t["prompts"] for i in p] != ids: bad.append("text tokens differ from HF tokenizers")
if max(len(p) for p in t["prompts"]) > 50: bad.append("--max-tokens not applied")
check_figures(t, "text")
if t["input"]["tokenizer"] != str(root / "mixtral"): bad.append(f"text tokenizer recorded as {t['input']['tokenizer']}")
tb = json.load(open(root / "text-bare.json"))
if tb["prompts"] != t["prompts"]: bad.append("--tokenizer gives other ids than the checkpoint's tokenizer")
if tb["input"]["tokenizer"] != str(root / "mixtral" / "tokenizer.json"): bad.append("--tokenizer not recorded")
check_figures(tb, "text-bare")
print("\n".join(bad))
sys.exit(1 if bad else 0)
PY

# Errors: exit 2 with the reason.
expect_exit 2 "has no MoE layers" "$EFFARCH" experts tiny-llama --prompt-lengths 5
expect_exit 2 "layer 0 is not an MoE layer" "$EFFARCH" experts tiny-jamba --prompt-lengths 5 --router-weights 0
expect_exit 2 "one of the two" "$EFFARCH" experts tiny-mixtral
expect_exit 2 "bare config with no tokenizer" "$EFFARCH" experts tiny-mixtral --text-file "$SCRATCH/text.txt"
expect_exit 2 "missing.txt does not exist" "$EFFARCH" experts "$SCRATCH/mixtral" --text-file "$SCRATCH/missing.txt"
# A folder opens as an empty stream: it must be refused, not routed as no text.
expect_exit 2 "--text-file: $SCRATCH is a folder" "$EFFARCH" experts "$SCRATCH/mixtral" --text-file "$SCRATCH"
expect_exit 2 "not a positive length" "$EFFARCH" experts tiny-mixtral --prompt-lengths 5,0
expect_exit 2 "--router-weights-out says where --router-weights writes" "$EFFARCH" experts tiny-mixtral \
  --prompt-lengths 5 --router-weights-out "$SCRATCH/never.safetensors"
expect_exit 2 "--tokenizer: $SCRATCH/missing.json: no such file" "$EFFARCH" experts tiny-mixtral \
  --text-file "$SCRATCH/text.txt" --tokenizer "$SCRATCH/missing.json"
expect_exit 2 "has 600 tokens but tiny-mixtral's vocabulary has 512" "$EFFARCH" experts tiny-mixtral \
  --text-file "$SCRATCH/text.txt" --tokenizer "$SCRATCH/big-tokenizer.json"
expect_exit 2 "--tokenizer applies to --text-file only" "$EFFARCH" experts tiny-mixtral --prompt-lengths 5 \
  --tokenizer "$SCRATCH/mixtral/tokenizer.json"
expect_exit 2 "--router-weights: layer 7 is not an MoE layer" "$EFFARCH" experts tiny-mixtral --prompt-lengths 5 \
  --router-weights 7
expect_exit 2 "--json: cannot write" "$EFFARCH" experts tiny-mixtral --prompt-lengths 5 --json "$SCRATCH/no/such/dir.json"
finish
