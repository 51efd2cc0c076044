#!/usr/bin/env bash
# effarch generate end to end on checkpoints written by effarch init, with a tokenizer trained at
# test time by HF tokenizers: text prompts encode as HF encodes them, sampling is seeded, and
# bad input fails clearly.
source "$(dirname "$0")/lib.sh"

for model in tiny-llama tiny-phi tiny-mistral tiny-llama3; do
  "$EFFARCH" init "$model" "$SCRATCH/$model" --seed 1 > /dev/null 2>&1
done
"$PYTHON" - "$SCRATCH" <<'PY'
import sys, pathlib
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers, processors
root = pathlib.Path(sys.argv[1])
text = ["The key insight of Mamba is a selective state space.", "Transformers keep a growing KV cache.",
        "Mixture of experts routes each token to a few experts."] * 50
tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
tok.train_from_iterator(text, trainers.BpeTrainer(vocab_size=400, special_tokens=["<s>", "</s>"],
                                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
for m in ["tiny-llama", "tiny-phi", "tiny-mistral"]:
    tok.save(str(root / m / "tokenizer.json"))
ids = tok.encode("The key insight of Mamba is").ids
(root / "ids.txt").write_text(",".join(map(str, ids)))
big = Tokenizer(models.BPE())
big.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
big.add_tokens([f"extra{i}" for i in range(400)])  # 400 + 256 byte tokens > the model's 512
big.train_from_iterator(text, trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
big.add_tokens([f"extra{i}" for i in range(400)])
big.save(str(root / "big-tokenizer.json"))
PY
ids=$(cat "$SCRATCH/ids.txt")

for model in tiny-llama tiny-phi tiny-mistral; do
  expect_exit 0 "prompt tokens" "$EFFARCH" generate "$SCRATCH/$model" -p "The key insight of Mamba is" -n 8
  # As many prompt tokens as HF's encoding (its BOS included): one dropped or added fails here.
  n=$("$EFFARCH" generate "$SCRATCH/$model" -p "The key insight of Mamba is" -n 1 --json |
    "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["prompt_tokens"])')
  [[ $n == "$(tr ',' '\n' <<< "$ids" | wc -l)" ]] || fail "$model: -p gave $n prompt tokens, HF's encoding has $ids"
  # Text and ids give the same greedy tokens: the prompt was encoded as HF encodes it.
  a=$("$EFFARCH" generate "$SCRATCH/$model" -p "The key insight of Mamba is" -n 8 --json | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["tokens"])')
  b=$("$EFFARCH" generate "$SCRATCH/$model" --prompt-ids "$ids" -n 8 --json | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["tokens"])')
  [[ $a == "$b" ]] || fail "$model: -p and --prompt-ids disagree: $a vs $b"
done

# Seeded sampling repeats; another seed differs (over 24 tokens); eager attention gives greedy's tokens.
s1=$("$EFFARCH" generate "$SCRATCH/tiny-llama" --prompt-ids "$ids" -n 24 --temperature 1.5 --top-k 100 --top-p 0.95 --seed 7 --json | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["tokens"])')
s2=$("$EFFARCH" generate "$SCRATCH/tiny-llama" --prompt-ids "$ids" -n 24 --temperature 1.5 --top-k 100 --top-p 0.95 --seed 7 --json | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["tokens"])')
s3=$("$EFFARCH" generate "$SCRATCH/tiny-llama" --prompt-ids "$ids" -n 24 --temperature 1.5 --top-k 100 --top-p 0.95 --seed 8 --json | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["tokens"])')
[[ $s1 == "$s2" ]] || fail "same seed, different samples"
[[ $s1 != "$s3" ]] || fail "different seeds, same 24 samples"
g1=$("$EFFARCH" generate "$SCRATCH/tiny-llama" --prompt-ids "$ids" -n 8 --json | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["tokens"])')
g2=$("$EFFARCH" generate "$SCRATCH/tiny-llama" --prompt-ids "$ids" -n 8 --attention eager --json | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["tokens"])')
[[ $g1 == "$g2" ]] || fail "eager and sdpa disagree"
# The config's eos_token_id ends each sequence at its first EOS (kept), and the loop stops once
# every sequence has ended: a token of the greedy run made the EOS, as an integer and as a list.
# A generation_config.json's eos_token_id replaces the config's, as transformers' generate reads
# the file alone (Llama-3-Instruct's lists <|eot_id|> there): null or absent there means none. A
# file that is not JSON is ignored with a warning (transformers ignores it too).
cp -r "$SCRATCH/tiny-llama" "$SCRATCH/tiny-llama-eos"
"$EFFARCH" generate "$SCRATCH/tiny-llama" --prompt-ids "1,2,3;4,5,6" -n 16 --json > "$SCRATCH/eos-full.json" ||
  fail "generate for the EOS check"
for form in int list generation generation-null generation-absent generation-broken; do
  "$PYTHON" - "$SCRATCH" "$form" "$EFFARCH" <<'PY' || fail "config eos_token_id ($form) does not end generation as it should"
import json, pathlib, subprocess, sys
root, form = pathlib.Path(sys.argv[1]), sys.argv[2]
full = json.loads((root / "eos-full.json").read_text())["tokens"]
cfg = json.loads((root / "tiny-llama" / "config.json").read_text())
generation = root / "tiny-llama-eos" / "generation_config.json"
generation.unlink(missing_ok=True)
if form in ("int", "list"):
    eos = [full[1][1]] if form == "int" else [full[0][1], full[1][1]]
    cfg["eos_token_id"] = eos[0] if form == "int" else eos
else:  # the config's eos is one the run makes; the file's replaces it
    cfg["eos_token_id"] = full[0][1]
    eos = [full[1][1]] if form == "generation" else []
    if form == "generation-absent":
        generation.write_text(json.dumps({"bos_token_id": 1}))
    elif form == "generation-broken":
        generation.write_text("{")
        eos = [full[0][1]]
    else:
        generation.write_text(json.dumps({"bos_token_id": 1, "eos_token_id": eos or None}))
(root / "tiny-llama-eos" / "config.json").write_text(json.dumps(cfg))
out = json.loads(subprocess.run([sys.argv[3], "generate", str(root / "tiny-llama-eos"), "--prompt-ids", "1,2,3;4,5,6",
                                 "-n", "16", "--json"], check=True, capture_output=True, text=True).stdout)
want = [row[:next((i + 1 for i, t in enumerate(row) if t in eos), len(row))] for row in full]
assert out["tokens"] == want, f"eos {eos}: got {out['tokens']}, want {want}"
if all(len(r) < 8 for r in want):  # every sequence ended in the first 8 steps: the loop stops at the 8th
    assert out["decode_steps"] < 15, f"eos {eos}: {out['decode_steps']} steps after every sequence ended"
print(f"eos {eos} ({form}): {[len(r) for r in out['tokens']]} tokens, {out['decode_steps']} steps")
PY
done
# How the kernels were launched is in the JSON: programmatic launch is a CUDA matter, off on the CPU.
pl=$("$EFFARCH" generate "$SCRATCH/tiny-llama" --prompt-ids "$ids" -n 2 --json | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["programmatic_launch"])')
[[ $pl == off ]] || fail "programmatic_launch '$pl' on the CPU"
# A batch of prompts; random weights for a bare config.
expect_exit 0 "batch 2" "$EFFARCH" generate tiny-llama3 --prompt-ids "1,2,3;4,5,6" -n 4
expect_exit 0 "bfloat16" "$EFFARCH" generate tiny-llama --prompt-ids "1,2,3" -n 4 --dtype bf16

# Every other architecture end to end: checkpoints written by effarch init, bare configs, bf16, a batch.
for model in tiny-mamba tiny-falcon-mamba tiny-mamba2 tiny-mixtral tiny-deepseek-moe tiny-jamba; do
  "$EFFARCH" init "$model" "$SCRATCH/$model" --seed 2 > /dev/null 2>&1 || fail "$model: init"
  out=$("$EFFARCH" generate "$SCRATCH/$model" --prompt-ids "$ids" -n 12 --json) || fail "$model: generate from its checkpoint"
  n=$(echo "$out" | "$PYTHON" -c 'import json,sys; print(len(json.load(sys.stdin)["tokens"][0]))')
  [[ $n == 12 ]] || fail "$model: $n tokens generated, expected 12"
  expect_exit 0 "batch 2" "$EFFARCH" generate "$model" --prompt-ids "1,2,3;4,5,6" -n 4
  expect_exit 0 "bfloat16" "$EFFARCH" generate "$model" --prompt-ids "1,2,3" -n 4 --dtype bf16
done

# The reported cache: a Transformer's grows with the tokens it must hold, a Mamba state does not.
cache_bytes() { "$EFFARCH" generate "$1" --prompt-ids "1,2,3" -n "$2" --json | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["cache_bytes"])'; }
[[ $(cache_bytes tiny-mamba 4) == $(cache_bytes tiny-mamba 60) ]] || fail "tiny-mamba: cache bytes depend on the length"
(( $(cache_bytes tiny-llama 60) > $(cache_bytes tiny-llama 4) )) || fail "tiny-llama: KV cache does not grow with the length"

# Errors: exit 2 with the reason.
expect_exit 2 "exceed the model's context of 2048" "$EFFARCH" generate tiny-llama --prompt-ids "$ids" -n 5000
expect_exit 2 "not this model's tokenizer" "$EFFARCH" generate "$SCRATCH/tiny-llama" -p "hi" --tokenizer "$SCRATCH/big-tokenizer.json"
expect_exit 2 "bare config with no tokenizer" "$EFFARCH" generate tiny-llama -p "hi"
expect_exit 2 "one of the two" "$EFFARCH" generate tiny-llama
expect_exit 2 "unknown dtype 'int8'" "$EFFARCH" generate tiny-llama --prompt-ids 1 --dtype int8
expect_exit 2 "unknown device 'tpu'" "$EFFARCH" generate tiny-llama --prompt-ids 1 --device tpu
expect_exit 2 "unknown attention 'flash'" "$EFFARCH" generate tiny-llama --prompt-ids 1 --attention flash
expect_exit 2 "--cuda-graphs: unknown value 'yes'" "$EFFARCH" generate tiny-llama --prompt-ids 1 --cuda-graphs yes
expect_exit 2 "CUDA graphs" "$EFFARCH" generate tiny-llama --prompt-ids 1 --device cpu --cuda-graphs on
# The fixed-shape decode step gives the eager tokens.
st=$("$EFFARCH" generate "$SCRATCH/tiny-llama" --prompt-ids "$ids" -n 8 --cuda-graphs static --json | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["tokens"])')
[[ $st == "$g1" ]] || fail "static decode disagrees with eager: $st vs $g1"
expect_exit 2 "outside the model's vocabulary" "$EFFARCH" generate tiny-llama --prompt-ids 1,512
expect_exit 2 "--top-p must be in (0, 1]" "$EFFARCH" generate tiny-llama --prompt-ids 1 --temperature 1 --top-p 0
"$PYTHON" -c "
import json; c = json.load(open('$SRC/configs/models/tiny-llama.json')); c['vocab_size'] = 2**31 - 1
json.dump(c, open('$SCRATCH/huge-vocab.json', 'w'))"
expect_exit 1 "effarch: error: out of memory: " "$EFFARCH" generate "$SCRATCH/huge-vocab.json" --prompt-ids 1 -n 1
for t in nan inf -1; do
  expect_exit 2 "--temperature must be a finite number >= 0" "$EFFARCH" generate tiny-llama --prompt-ids 1 --temperature "$t"
done

# --backend: reference and auto give the same tokens, and the JSON says which implementation ran.
for model in tiny-mamba tiny-mamba2 tiny-jamba; do
  ra=$("$EFFARCH" generate "$model" --prompt-ids "$ids" -n 8 --backend auto --json)
  rr=$("$EFFARCH" generate "$model" --prompt-ids "$ids" -n 8 --backend reference --json)
  ta=$(echo "$ra" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["tokens"])')
  tr=$(echo "$rr" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["tokens"])')
  [[ $ta == "$tr" ]] || fail "$model: --backend auto and reference disagree: $ta vs $tr"
  echo "$ra" | "$PYTHON" -c '
import json, sys
d = json.load(sys.stdin)
assert d["backend"] == "auto", d["backend"]
impl = d["implementations"]
# On the CPU auto runs the fused CPU kernels where an op has one, the reference elsewhere.
cpu_ops = {"selective_scan", "selective_state_update", "ssd_scan", "ssd_state_update", "moe_dispatch"}
assert impl and all(v == ("separate" if k == "add_norm_in_gemv" else "cpu" if k in cpu_ops else "reference")
                    for k, v in impl.items()), impl
assert "causal_conv1d" in impl, impl
assert d["weights"] == "float32", d["weights"]' || fail "$model: generate --json lacks the implementations"
done
expect_exit 2 "--backend cuda" "$EFFARCH" generate tiny-mamba --prompt-ids 1 --device cpu --backend cuda
expect_exit 2 "unknown backend 'fast'" "$EFFARCH" generate tiny-llama --prompt-ids 1 --backend fast

# --weights int8: quantised as the checkpoint loads (effarch init's files) and recorded in the
# JSON (how close its logits stay to the dense weights' is int8_model_test's).
for model in tiny-llama tiny-mamba2 tiny-mixtral; do
  out=$("$EFFARCH" generate "$SCRATCH/$model" --prompt-ids "$ids" -n 12 --weights int8 --json) || fail "$model: --weights int8"
  echo "$out" | "$PYTHON" -c 'import json,sys; d=json.load(sys.stdin); assert d["weights"] == "int8", d["weights"]; assert len(d["tokens"][0]) == 12' \
    || fail "$model: --weights int8 not recorded"
done
expect_exit 2 "--weights 'int4': expected dense" "$EFFARCH" generate tiny-llama --prompt-ids 1 --weights int4
finish
