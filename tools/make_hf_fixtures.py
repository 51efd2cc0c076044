#!/usr/bin/env python3
"""Reference outputs from Hugging Face transformers for effarch's parity tests.

Usage: make_hf_fixtures.py OUT_DIR [--only NAME ... | --bf16]

For each fixture (a tiny config from configs/models/, possibly with a few switches changed), builds
the transformers model on the CPU with seeded random weights, saves it with save_pretrained
(config.json + model.safetensors) into OUT_DIR/NAME/, and writes OUT_DIR/NAME.expected.safetensors
(beside the checkpoint folder). DeepSeekMoE, which transformers does not ship, is composed of
transformers' Llama and DeepSeek-V2 MoE modules and saved under its own names (deepseek_model).
The expected outputs:
  input_ids      [2, 7]   int64   a batch of two prompts of an odd length
  logits         [2, 7, V] fp32   the model's logits for them (one forward, no cache)
  input_ids_1    [1, 1]   int64   a length-1 prompt
  logits_1       [1, 1, V] fp32
  greedy         [2, 16]  int64   16 greedy tokens after `input_ids`, each from a full forward
                                  over the sequence so far (independent of HF's cache code)
  input_ids_long [4, 32]  int64   only for bf16 fixtures (torch_dtype bfloat16: the model cast to
  logits_long    [4, 32, V] fp32  bf16 after its weights are drawn, its logits computed in bf16)
  logits_long_fp32 [4, 32, V] fp32  the same bf16 weights computed in fp32
  greedy_decode  [2, 16]  int64   only for fixtures where transformers' own decode path differs
                                  from full forwards by design (Mamba-2's time_step_limit clamps dt
                                  in the chunked scan, not in the decode step): 16 greedy tokens
                                  from a prefill and 15 one-token steps through transformers' cache
OUT_DIR/versions.json records the torch and transformers versions that made them.
"""
import argparse
import copy
import json
import pathlib
import sys

import torch
import transformers
from safetensors.torch import save_file
from transformers import AutoConfig, AutoModelForCausalLM

ROOT = pathlib.Path(__file__).resolve().parent.parent

# An override that keeps only the listed keys and the model's sizes (vocab, hidden, layers, heads,
# intermediate), the architecture and the model type: every other key takes its class's default.
KEEP_ONLY = "keep only"
SIZE_KEYS = {"architectures", "model_type", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
             "num_attention_heads"}

# name -> (base config, overrides). Each switch that changes the math is varied by some fixture
# (tools/hf_config_fields.py checks it).
FIXTURES = {
    "llama-gqa": ("tiny-llama", {}),                                     # GQA 4/2, untied head
    "llama-mha-tied": ("tiny-llama", {"num_key_value_heads": 4, "tie_word_embeddings": True}),
    "llama-gqa4": ("tiny-llama", {"num_attention_heads": 8, "num_key_value_heads": 2}),
    "llama3-rope": ("tiny-llama3", {}),                                  # llama3 rope scaling, tied
    "llama-theta": ("tiny-llama", {"rope_theta": 500000.0, "rms_norm_eps": 1e-6}),
    "mistral": ("tiny-mistral", {}),
    "phi": ("tiny-phi", {}),                                             # partial rotary 0.4, biases
    "phi-full-rotary": ("tiny-phi", {"partial_rotary_factor": 1.0}),
    "mixtral-top2": ("tiny-mixtral", {}),                                # fp32 router softmax, renormalised
    "mixtral-top1": ("tiny-mixtral", {"num_experts_per_tok": 1}),
    "mamba": ("tiny-mamba", {}),                                         # tied head, fp32 residual
    "mamba-untied-bias": ("tiny-mamba", {"tie_word_embeddings": False, "use_bias": True, "time_step_rank": 7}),
    "falcon-mamba": ("tiny-falcon-mamba", {}),                           # weightless dt/B/C RMSNorms
    "mamba2": ("tiny-mamba2", {"n_groups": 1, "chunk_size": 256}),      # one group, one chunk
    "mamba2-groups": ("tiny-mamba2", {}),                                # 2 groups over 8 heads, chunk 16
    "mamba2-chunks": ("tiny-mamba2", {"chunk_size": 3, "n_groups": 4}),  # 7 tokens = 3 chunks, padded
    # Jamba, 5 layers: attention where i % attn_period == attn_offset, MoE where i % expert_period == offset.
    "jamba": ("tiny-jamba", {}),                                         # attn 3/1, experts 2/1
    "jamba-periods": ("tiny-jamba", {"attn_layer_period": 2, "attn_layer_offset": 0,
                                     "expert_layer_period": 3, "expert_layer_offset": 2}),
    "jamba-all-moe": ("tiny-jamba", {"attn_layer_period": 4, "attn_layer_offset": 3,
                                     "expert_layer_period": 1, "expert_layer_offset": 0,
                                     "num_experts_per_tok": 1}),
    # Sliding windows shorter than the 7-token prompt and the 16 greedy tokens after it.
    "mistral-window": ("tiny-mistral", {"sliding_window": 4}),
    "mixtral-window": ("tiny-mixtral", {"sliding_window": 3}),
    # hidden_act other than SiLU: the Mamba conv output, the experts, Jamba's conv, MLPs and experts.
    "mamba-gelu": ("tiny-mamba", {"hidden_act": "gelu"}),
    "mamba2-relu": ("tiny-mamba2", {"hidden_act": "relu"}),
    "mixtral-gelu-new": ("tiny-mixtral", {"hidden_act": "gelu_new"}),
    "jamba-gelu-tanh": ("tiny-jamba", {"hidden_act": "gelu_pytorch_tanh"}),
    # RoPE scaling types besides llama3 (dynamic NTK changes nothing within max_position_embeddings).
    "llama-rope-linear": ("tiny-llama", {"rope_scaling": {"rope_type": "linear", "factor": 4.0}}),
    "llama-rope-dynamic": ("tiny-llama", {"rope_scaling": {"rope_type": "dynamic", "factor": 2.0}}),
    "llama-rope-yarn": ("tiny-llama", {"rope_scaling": {"rope_type": "yarn", "factor": 4.0,
                                                        "original_max_position_embeddings": 512}}),
    "llama-rope-yarn-mscale": ("tiny-llama", {"rope_scaling": {"rope_type": "yarn", "factor": 8.0,
                                                               "original_max_position_embeddings": 256,
                                                               "mscale": 0.707, "mscale_all_dim": 1.0,
                                                               "beta_fast": 16, "truncate": False}}),
    # A finite time_step_limit: dt clamped in the prefill scan only (greedy_decode checks decode).
    "mamba2-dt-limit": ("tiny-mamba2", {"time_step_limit": [0.05, 0.06]}),
    # Switches the audit (docs/architectures.md) lists as implemented that no fixture above varied.
    "llama-biases": ("tiny-llama", {"attention_bias": True, "mlp_bias": True}),
    "llama-head-dim": ("tiny-llama", {"head_dim": 24}),                   # q/k/v wider than hidden / heads
    "mamba-no-conv-bias": ("tiny-mamba", {"use_conv_bias": False}),
    "mamba2-biases": ("tiny-mamba2", {"use_bias": True, "use_conv_bias": False}),
    "falcon-mamba-eps": ("tiny-falcon-mamba", {"mixer_rms_eps": 0.5}),     # large enough to move the logits
    "jamba-biases": ("tiny-jamba", {"mamba_conv_bias": False, "mamba_proj_bias": True}),
    "phi-eps": ("tiny-phi", {"layer_norm_eps": 0.5}),
    # Conv widths besides 4 (the causal conv runs 2, 3 and 4; docs/architectures.md).
    "mamba-conv3": ("tiny-mamba", {"conv_kernel": 3}),
    "mamba2-conv2": ("tiny-mamba2", {"conv_kernel": 2}),
    "jamba-conv3": ("tiny-jamba", {"mamba_d_conv": 3}),
    # RoPE scalings beyond Llama: Phi's partial rotary under linear and yarn, Mistral's and
    # Mixtral's attention (with a window) under dynamic, llama3 and linear; a wider head_dim.
    "phi-rope-linear": ("tiny-phi", {"rope_scaling": {"rope_type": "linear", "factor": 4.0}}),
    "phi-rope-yarn": ("tiny-phi", {"rope_scaling": {"rope_type": "yarn", "factor": 4.0,
                                                    "original_max_position_embeddings": 512}}),
    "mistral-rope-dynamic": ("tiny-mistral", {"rope_scaling": {"rope_type": "dynamic", "factor": 2.0}}),
    "mistral-rope-llama3": ("tiny-mistral", {"rope_scaling": {"rope_type": "llama3", "factor": 8.0,
                                                              "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                              "original_max_position_embeddings": 64}}),
    "mixtral-rope-linear": ("tiny-mixtral", {"rope_scaling": {"rope_type": "linear", "factor": 2.0}}),
    "mixtral-head-dim": ("tiny-mixtral", {"head_dim": 24}),
    # The implemented fields each architecture's fixtures above all left at one value (the check in
    # tools/hf_config_fields.py, "implemented, exercised"): another activation, rope_theta and head
    # size, a tied head, yarn taking max_position_embeddings as its original length, Mamba's
    # expand, Mamba-2's heads, and norm epsilons large enough to move the logits (on their own: an
    # epsilon that large shrinks the activations until the other fields hardly show).
    "llama-fields": ("tiny-llama", {"hidden_act": "gelu", "max_position_embeddings": 256,
                                    "rope_scaling": {"rope_type": "yarn", "factor": 4.0}}),
    "mistral-fields": ("tiny-mistral", {"hidden_act": "gelu_pytorch_tanh", "rope_theta": 500.0, "head_dim": 24,
                                        "tie_word_embeddings": True, "max_position_embeddings": 256,
                                        "rope_scaling": {"rope_type": "yarn", "factor": 4.0}}),
    "mistral-eps": ("tiny-mistral", {"rms_norm_eps": 0.5}),
    "phi-fields": ("tiny-phi", {"hidden_act": "relu", "rope_theta": 500.0, "tie_word_embeddings": True,
                                "max_position_embeddings": 256, "rope_scaling": {"rope_type": "yarn", "factor": 4.0}}),
    # DeepSeekMoE, composed of transformers' Llama and DeepSeek-V2 MoE modules (deepseek_model
    # below): one dense layer then MoE with shared experts; MoE every second layer from the first;
    # top-1 without shared experts, with attention biases, gelu and linear RoPE scaling; another
    # rope_theta and a tied head; a norm epsilon of 0.5.
    "deepseek-moe": ("tiny-deepseek-moe", {}),
    "deepseek-moe-freq2": ("tiny-deepseek-moe", {"first_k_dense_replace": 0, "moe_layer_freq": 2,
                                                 "num_hidden_layers": 4}),
    "deepseek-moe-variants": ("tiny-deepseek-moe", {"num_experts_per_tok": 1, "n_shared_experts": 0,
                                                    "attention_bias": True, "hidden_act": "gelu",
                                                    "rope_scaling": {"rope_type": "linear", "factor": 2.0}}),
    "deepseek-moe-fields": ("tiny-deepseek-moe", {"rope_theta": 500.0, "tie_word_embeddings": True}),
    "deepseek-moe-eps": ("tiny-deepseek-moe", {"rms_norm_eps": 0.5}),
    "mamba-fields": ("tiny-mamba", {"expand": 3, "intermediate_size": 192, "layer_norm_epsilon": 0.5}),
    "falcon-mamba-fields": ("tiny-falcon-mamba", {"hidden_act": "gelu", "expand": 3, "intermediate_size": 192,
                                                  "use_bias": True, "use_conv_bias": False,
                                                  "tie_word_embeddings": True}),
    "falcon-mamba-norm-eps": ("tiny-falcon-mamba", {"layer_norm_epsilon": 0.5}),
    "mamba2-fields": ("tiny-mamba2", {"num_heads": 4, "head_dim": 32, "layer_norm_epsilon": 0.5,
                                      "tie_word_embeddings": True}),
    # (head_dim given: 5.23's yarn reads Mixtral's head_dim, None unless the file sets it, and fails.)
    "mixtral-fields": ("tiny-mixtral", {"rope_theta": 500.0, "tie_word_embeddings": True, "head_dim": 32,
                                        "max_position_embeddings": 256,
                                        "rope_scaling": {"rope_type": "yarn", "factor": 4.0}}),
    "mixtral-eps": ("tiny-mixtral", {"rms_norm_eps": 0.5}),
    "jamba-fields": ("tiny-jamba", {"rms_norm_eps": 0.5, "tie_word_embeddings": True}),
    # Configs that leave out every key but the model's sizes (KEEP_ONLY): each config class's
    # defaults, as a Hub file from before a key existed gets them. The checkpoint's config.json is
    # the reduced file itself, not what save_pretrained writes back (which names every default), so
    # effarch must take the class's default for each key it does not find. (Mixtral's and Jamba's
    # kv heads are kept: their default 8 cannot share the tiny models' 4 attention heads.)
    **{f"{base}-defaults": (f"tiny-{base}", {KEEP_ONLY: keep}) for base, keep in (
        ("llama", []), ("mistral", []), ("phi", []),
        ("mixtral", ["num_key_value_heads"]), ("mamba", []), ("falcon-mamba", []),
        ("mamba2", ["num_heads", "head_dim", "expand"]), ("jamba", ["num_key_value_heads"]))},
    # bf16 (the model cast after the weights are drawn, its logits computed in bf16): Mamba's
    # residual_in_fp32, which an fp32 model cannot show, both ways on the same weights.
    **{f"{base}-bf16-residual-{stream}": (f"tiny-{base}", {"torch_dtype": "bfloat16", "num_hidden_layers": 4,
                                                          "residual_in_fp32": stream == "fp32"})
       for base in ("mamba", "falcon-mamba", "mamba2") for stream in ("fp32", "bf16")},
    # Every family in bf16 as configured: effarch's bf16 error against transformers' own
    # (HfParity.Bf16AgainstFp32).
    **{f"{base}-bf16": (f"tiny-{base}", {"torch_dtype": "bfloat16"})
       for base in ("llama", "llama3", "mistral", "phi", "mixtral", "jamba", "deepseek-moe", "mamba",
                    "falcon-mamba", "mamba2")},
}

# What a fixture changes besides its config: the embedding scaled after the weights are drawn.
EXTRA = {name: {"embedding_scale": 100.0} for name in FIXTURES if "-bf16-residual-" in name}

# Fixtures whose greedy reference is transformers' cached decode (see greedy_decode above).
DECODE_REFERENCE = {"mamba2-dt-limit"}


def fixture_config_dict(name):
    """A fixture's config.json contents: its base config with its overrides, a copy of both
    (transformers writes into the rope dict it is given; FIXTURES must not change)."""
    base, overrides = FIXTURES[name]
    cfg_dict = json.loads((ROOT / "configs" / "models" / f"{base}.json").read_text())
    overrides = copy.deepcopy(overrides)
    keep = overrides.pop(KEEP_ONLY, None)
    if keep is not None:
        cfg_dict = {k: v for k, v in cfg_dict.items() if k in SIZE_KEYS or k in keep}
    cfg_dict.update(overrides)
    return cfg_dict


def build(name, out):
    extra = EXTRA.get(name, {})
    cfg_dict = fixture_config_dict(name)
    bf16 = cfg_dict.get("torch_dtype") == "bfloat16"
    torch.manual_seed(1234)
    if cfg_dict["model_type"] == "deepseek":
        model, save = deepseek_model(cfg_dict)
    else:
        cfg_dict.pop("auto_map", None)
        model_type = cfg_dict["model_type"]
        config = AutoConfig.for_model(model_type, **{k: v for k, v in cfg_dict.items() if k != "model_type"})
        model = AutoModelForCausalLM.from_config(config, torch_dtype=torch.float32)
        save = None
    model.eval()
    # HF initialises norms to 1 and biases to 0: perturb them so those weights are exercised.
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if p.ndim == 1:
                p.add_(torch.randn_like(p) * 0.1)
        # A residual stream much larger than what each layer adds (the mixers read it through a
        # norm, so their outputs keep their size): then rounding the stream to bf16 between
        # layers, what residual_in_fp32 avoids, shows above the engines' other roundings.
        if "embedding_scale" in extra:
            model.get_input_embeddings().weight.mul_(extra["embedding_scale"])
    if bf16:
        model = model.to(torch.bfloat16)
    folder = out / name
    if save:
        save(model, folder)
    else:
        model.save_pretrained(folder, safe_serialization=True)
    if KEEP_ONLY in FIXTURES[name][1]:
        (folder / "config.json").write_text(json.dumps(fixture_config_dict(name), indent=2) + "\n")
    config = model.config

    vocab = config.vocab_size
    gen = torch.Generator().manual_seed(99)
    ids = torch.randint(0, vocab, (2, 7), generator=gen)
    ids1 = torch.randint(0, vocab, (1, 1), generator=gen)
    with torch.no_grad():
        logits = model(ids, use_cache=False).logits.float()
        logits1 = model(ids1, use_cache=False).logits.float()
        seq = ids.clone()
        for _ in range(16):
            nxt = model(seq, use_cache=False).logits[:, -1].float().argmax(-1, keepdim=True)
            seq = torch.cat([seq, nxt], dim=1)
    tensors = {"input_ids": ids, "logits": logits.contiguous(), "input_ids_1": ids1,
               "logits_1": logits1.contiguous(), "greedy": seq[:, 7:].contiguous()}
    if bf16:
        # More positions for a bf16 comparison, which reads means over many logits, and the same
        # weights (already rounded to bf16) computed in fp32: what bf16 costs transformers itself.
        ids_long = torch.randint(0, vocab, (4, 32), generator=gen)
        with torch.no_grad():
            tensors["input_ids_long"] = ids_long
            tensors["logits_long"] = model(ids_long, use_cache=False).logits.float().contiguous()
            exact = copy.deepcopy(model).float()
            tensors["logits_long_fp32"] = exact(ids_long, use_cache=False).logits.contiguous()
    if name in DECODE_REFERENCE:
        decoded = cached_greedy(model, ids, 16)
        # The fixture must tell the two paths apart, else it would not catch a clamped decode step.
        if torch.equal(decoded, tensors["greedy"]):
            sys.exit(f"{name}: transformers' decode gives the full-forward greedy tokens; pick a tighter limit")
        tensors["greedy_decode"] = decoded
    save_file(tensors, out / f"{name}.expected.safetensors")
    print(f"{name}: {folder}", file=sys.stderr)


class NoSharedExperts(torch.nn.Module):
    """DeepSeekMoE with n_shared_experts 0 (or null): its remote code adds no shared experts."""

    def forward(self, x):
        return torch.zeros_like(x)


def deepseek_model(cfg):
    """DeepSeekMoE (DeepseekForCausalLM) built from transformers' own modules.

    transformers ships no DeepSeekMoE (its modeling code is remote code on the Hub), but it has
    both halves: the remote code's attention, norms, dense MLPs and layer loop are Llama's, and
    its MoE layer (softmax router, greedy top-k, no renormalisation with norm_topk_prob false,
    experts weighted by their scores, shared experts of width moe_intermediate_size x
    n_shared_experts added) is DeepseekV2Moe with topk_method "greedy" and routed_scaling_factor 1.
    The one difference, DeepSeek-V2's router softmax in fp32 where the remote code's runs in the
    model dtype, does not arise in fp32. A LlamaForCausalLM gets a DeepseekV2Moe in each layer the
    remote code makes MoE (i >= first_k_dense_replace and i % moe_layer_freq == 0), and is saved
    under the remote code's tensor names (experts.E.gate_proj/up_proj/down_proj, gate.weight,
    shared_experts.*) with the DeepSeek config.json.
    """
    from transformers import DeepseekV2Config, LlamaConfig, LlamaForCausalLM
    from transformers.models.deepseek_v2.modeling_deepseek_v2 import DeepseekV2Moe

    llama = LlamaConfig(
        vocab_size=cfg["vocab_size"], hidden_size=cfg["hidden_size"], intermediate_size=cfg["intermediate_size"],
        num_hidden_layers=cfg["num_hidden_layers"], num_attention_heads=cfg["num_attention_heads"],
        num_key_value_heads=cfg.get("num_key_value_heads") or cfg["num_attention_heads"],
        hidden_act=cfg.get("hidden_act", "silu"), max_position_embeddings=cfg.get("max_position_embeddings", 2048),
        rms_norm_eps=cfg.get("rms_norm_eps", 1e-6), rope_theta=cfg.get("rope_theta", 10000.0),
        rope_scaling=copy.deepcopy(cfg.get("rope_scaling")), attention_bias=cfg.get("attention_bias", False),
        tie_word_embeddings=cfg.get("tie_word_embeddings", False), initializer_range=cfg.get("initializer_range", 0.02))
    model = LlamaForCausalLM(llama)
    shared = cfg.get("n_shared_experts") or 0
    moe = DeepseekV2Config(
        hidden_size=cfg["hidden_size"], moe_intermediate_size=cfg["moe_intermediate_size"],
        n_routed_experts=cfg["n_routed_experts"], num_experts_per_tok=cfg["num_experts_per_tok"],
        n_shared_experts=max(shared, 1), routed_scaling_factor=1.0, topk_method="greedy", norm_topk_prob=False,
        hidden_act=cfg.get("hidden_act", "silu"))
    moe._experts_implementation = "eager"  # transformers' plain loop over the experts
    first, freq = cfg.get("first_k_dense_replace", 0), cfg.get("moe_layer_freq", 1)
    moe_layers = [i for i in range(cfg["num_hidden_layers"]) if i >= first and i % freq == 0]
    with torch.no_grad():
        for i in moe_layers:
            block = DeepseekV2Moe(moe)
            for p in block.parameters():
                p.normal_(0.0, llama.initializer_range)
            if shared == 0:
                block.shared_experts = NoSharedExperts()
            model.model.layers[i].mlp = block

    def save(model, folder):
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {}
        for key, t in model.state_dict().items():
            if key == "lm_head.weight" and llama.tie_word_embeddings:
                continue
            if key.endswith("mlp.experts.gate_up_proj"):  # [E, 2 x I, H]: gate rows first
                prefix = key[: -len("gate_up_proj")]
                gate, up = t.chunk(2, dim=1)
                for e in range(t.shape[0]):
                    tensors[f"{prefix}{e}.gate_proj.weight"] = gate[e].contiguous()
                    tensors[f"{prefix}{e}.up_proj.weight"] = up[e].contiguous()
            elif key.endswith("mlp.experts.down_proj"):  # [E, H, I]
                prefix = key[: -len("down_proj")]
                for e in range(t.shape[0]):
                    tensors[f"{prefix}{e}.down_proj.weight"] = t[e].contiguous()
            else:
                tensors[key] = t.contiguous()
        save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
        (folder / "config.json").write_text(json.dumps(cfg, indent=2))

    return model, save


def cached_greedy(model, ids, steps):
    """Greedy tokens through transformers' own cache: a prefill, then one-token forwards."""
    with torch.no_grad():
        out = model(ids, use_cache=True)
        cache_key = "cache_params" if getattr(out, "cache_params", None) is not None else "past_key_values"
        tokens = [out.logits[:, -1].float().argmax(-1, keepdim=True)]
        for _ in range(steps - 1):
            out = model(tokens[-1], use_cache=True, **{cache_key: getattr(out, cache_key)})
            tokens.append(out.logits[:, -1].float().argmax(-1, keepdim=True))
    return torch.cat(tokens, dim=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=pathlib.Path)
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--bf16", action="store_true",
                    help="only the bf16 fixtures (NAME-bf16*: what a GPU session carries, tools/gpu/prebuild.sh)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    names = args.only or [n for n in FIXTURES if not args.bf16 or "-bf16" in n]
    for name in names:
        build(name, args.out)
    json.dump({"torch": torch.__version__, "transformers": transformers.__version__, "fixtures": names},
              open(args.out / "versions.json", "w"), indent=2)


if __name__ == "__main__":
    main()
