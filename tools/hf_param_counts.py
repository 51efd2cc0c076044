#!/usr/bin/env python3
"""Reference parameter counts and checkpoint tensor layouts from Hugging Face transformers.

Usage:
    hf_param_counts.py [--verify-save] CONFIG.json [CONFIG.json ...]

Run it with the project venv: /root/.cache/effarch/venv/bin/python (needs torch + transformers).

For every config.json given, prints one JSON object per line on stdout:

    {"config": PATH, "architecture": CLASS, "model_type": TYPE, "transformers_version": V,
     "total_params": N, ["active_params": N,] "tensors": {checkpoint_name: [shape, ...]}}

How it is computed
------------------
* The config dict is read with Python's json module (which accepts the bare `Infinity` that some
  Hub files contain, e.g. Mamba-2 `time_step_limit`), `auto_map` is dropped (remote code is never
  used), and the transformers config class registered for `model_type` is built from it.
* The model is instantiated on the meta device
  (`with torch.device("meta"): AutoModelForCausalLM.from_config(cfg)`): no memory is allocated and
  no weights are initialised, so even Mixtral-8x7B takes well under a second.
* total_params counts unique parameters: a tied lm_head (shared with the input embedding) is
  counted once.
* tensors lists what `save_pretrained` would write, i.e. the names and shapes a loader finds in the
  Hub safetensors files:
    - tied duplicates are dropped (the first name wins, e.g. `model.embed_tokens.weight` stays and
      `lm_head.weight` goes when tie_word_embeddings is true);
    - transformers v5 fuses MoE experts in memory (`...experts.gate_up_proj` [E, 2I, H] holding gate
      then up, and `...experts.down_proj` [E, H, I]) and renames Mixtral's `block_sparse_moe` to
      `mlp`. These are mapped back to the per-expert checkpoint layout:
        mixtral: model.layers.{i}.block_sparse_moe.gate.weight,
                 model.layers.{i}.block_sparse_moe.experts.{e}.w1|w3.weight [I, H], w2.weight [H, I]
        jamba:   model.layers.{i}.feed_forward.experts.{e}.gate_proj|up_proj.weight [I, H],
                 down_proj.weight [H, I]
      The per-expert shapes are derived from the fused shapes (either [E, 2I, H] or the transposed
      [E, H, 2I] orientation is accepted; I and H are checked against the config). With
      transformers v4 the experts are already per-expert modules and nothing is converted.
* active_params (MoE models only) = total_params minus, in every MoE layer, the parameters of the
  (E - top_k) routed experts a token does not use (router, attention, norms, embeddings and any
  dense/shared parts count in full).
* A model_type that transformers does not ship (DeepSeekMoE's "deepseek", which needs
  trust_remote_code) is not built: {"config": PATH, "skipped": "remote code"}.

--verify-save: for models with at most 50M parameters, additionally build the model on the CPU,
run save_pretrained into a temporary directory and check that the safetensors header has exactly
the names and shapes listed above (adds "save_verified": true; exits non-zero on a mismatch).

Exit status: 0 on success, 1 if any config failed (an {"config": PATH, "error": ...} line is printed
for it and the other configs are still processed).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import sys
import tempfile
import warnings
from collections import OrderedDict, defaultdict

# Checkpoint names of the per-expert projections, per model_type: (gate, up, down).
EXPERT_NAMES = {
    "mixtral": ("w1", "w3", "w2"),
    "jamba": ("gate_proj", "up_proj", "down_proj"),
}
# In-memory -> checkpoint module renames (transformers v5 only), per model_type.
MODULE_RENAMES = {
    "mixtral": [(re.compile(r"^(model\.layers\.\d+)\.mlp\."), r"\1.block_sparse_moe.")],
}
FUSED_RE = re.compile(r"^(?P<prefix>.*\.experts)\.(?P<kind>gate_up_proj|down_proj)$")
EXPERT_RE = re.compile(r"^(?P<prefix>.*\.experts)\.(?P<e>\d+)\.")
VERIFY_SAVE_MAX_PARAMS = 50_000_000


def _quiet():
    warnings.filterwarnings("ignore")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except Exception:  # pragma: no cover - logging tweaks are best effort
        pass


def _intermediate_size(cfg) -> int:
    for key in ("moe_intermediate_size", "intermediate_size"):
        v = getattr(cfg, key, None)
        if isinstance(v, int):
            return v
    raise ValueError("cannot determine the expert intermediate size from the config")


def _unfuse(name, shape, model_type, cfg):
    """Map one fused v5 expert tensor to its per-expert checkpoint tensors."""
    m = FUSED_RE.match(name)
    if m is None:
        return None
    if model_type not in EXPERT_NAMES:
        raise ValueError(f"fused expert tensor {name} for unsupported model_type {model_type!r}")
    if len(shape) != 3:
        raise ValueError(f"fused expert tensor {name} has shape {shape}, expected 3 dims")
    gate, up, down = EXPERT_NAMES[model_type]
    hidden, inter = cfg.hidden_size, _intermediate_size(cfg)
    n_exp = shape[0]
    prefix, kind = m.group("prefix"), m.group("kind")
    out = []
    if kind == "gate_up_proj":
        if list(shape[1:]) not in ([2 * inter, hidden], [hidden, 2 * inter]):
            raise ValueError(f"{name} {shape}: expected [E, 2I, H] or [E, H, 2I] with I={inter}, H={hidden}")
        for e in range(n_exp):
            out.append((f"{prefix}.{e}.{gate}.weight", [inter, hidden]))
            out.append((f"{prefix}.{e}.{up}.weight", [inter, hidden]))
    else:
        if list(shape[1:]) not in ([hidden, inter], [inter, hidden]):
            raise ValueError(f"{name} {shape}: expected [E, H, I] or [E, I, H] with I={inter}, H={hidden}")
        for e in range(n_exp):
            out.append((f"{prefix}.{e}.{down}.weight", [hidden, inter]))
    return out


def _rename(name, model_type):
    for pattern, repl in MODULE_RENAMES.get(model_type, []):
        name = pattern.sub(repl, name)
    return name


def _group_experts(layout):
    """Within each run of per-expert tensors, order them expert by expert (gate, up, down of expert
    0, then expert 1, ...) instead of all gates/ups followed by all downs."""
    out, i = [], 0
    while i < len(layout):
        m = EXPERT_RE.match(layout[i][0])
        if m is None:
            out.append(layout[i])
            i += 1
            continue
        j = i
        while j < len(layout) and (mj := EXPERT_RE.match(layout[j][0])) and mj.group("prefix") == m.group("prefix"):
            j += 1
        out.extend(sorted(layout[i:j], key=lambda kv: int(EXPERT_RE.match(kv[0]).group("e"))))
        i = j
    return out


def checkpoint_layout(model, model_type, cfg):
    """Names and shapes save_pretrained would write (tied duplicates dropped, experts unfused)."""
    seen = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        seen.setdefault(id(p), name)
    kept = set(seen.values())
    state = model.state_dict(keep_vars=True)
    param_ids = {id(p) for p in model.parameters()}
    layout = []
    for name, t in state.items():
        if id(t) in param_ids and name not in kept:
            continue  # a tied alias of a parameter listed under another name
        shape = list(t.shape)
        unfused = _unfuse(name, shape, model_type, cfg)
        if unfused is None:
            layout.append((_rename(name, model_type), shape))
        else:
            layout.extend((_rename(n, model_type), s) for n, s in unfused)
    return OrderedDict(_group_experts(layout))


def active_params(total, tensors, cfg):
    top_k = getattr(cfg, "num_experts_per_tok", None)
    per_layer = defaultdict(lambda: defaultdict(int))
    for name, shape in tensors.items():
        m = EXPERT_RE.match(name)
        if m:
            n = 1
            for d in shape:
                n *= d
            per_layer[m.group("prefix")][int(m.group("e"))] += n
    if not per_layer or not isinstance(top_k, int):
        return None
    inactive = 0
    for prefix, experts in per_layer.items():
        sizes = set(experts.values())
        if len(sizes) != 1:
            raise ValueError(f"experts under {prefix} differ in size: {sorted(sizes)}")
        inactive += (len(experts) - top_k) * sizes.pop()
    return total - inactive


def build_config(raw):
    from transformers import CONFIG_MAPPING

    d = {k: v for k, v in raw.items() if k != "auto_map"}
    model_type = d.get("model_type")
    if model_type not in CONFIG_MAPPING:
        return None
    return CONFIG_MAPPING[model_type].from_dict(d)


def verify_save(cfg, tensors):
    import torch
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    with torch.device("cpu"):
        model = AutoModelForCausalLM.from_config(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        saved = {}
        for path in sorted(glob.glob(os.path.join(tmp, "*.safetensors"))):
            with safe_open(path, "pt") as f:
                for k in f.keys():
                    saved[k] = list(f.get_slice(k).get_shape())
    if saved != dict(tensors):
        only_saved = sorted(set(saved) - set(tensors))[:10]
        only_listed = sorted(set(tensors) - set(saved))[:10]
        diff_shape = sorted(k for k in set(saved) & set(tensors) if saved[k] != tensors[k])[:10]
        raise AssertionError(
            f"save_pretrained mismatch: only saved {only_saved}, only listed {only_listed}, shape differs {diff_shape}"
        )


def process(path, do_verify):
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    with open(path) as f:
        raw = json.load(f)
    cfg = build_config(raw)
    if cfg is None:
        if "auto_map" in raw or raw.get("model_type") == "deepseek":
            return {"config": path, "skipped": "remote code"}
        return {"config": path, "skipped": f"model_type {raw.get('model_type')!r} not in transformers"}
    model_type = cfg.model_type
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
    total = sum(p.numel() for p in model.parameters())
    tensors = checkpoint_layout(model, model_type, cfg)
    listed = 0
    for shape in tensors.values():
        n = 1
        for d in shape:
            n *= d
        listed += n
    out = OrderedDict(
        config=path,
        architecture=type(model).__name__,
        model_type=model_type,
        transformers_version=transformers.__version__,
        total_params=total,
    )
    act = active_params(total, tensors, cfg)
    if act is not None:
        out["active_params"] = act
    if listed != total:
        out["listed_params"] = listed  # persistent buffers or an unexpected layout
        print(f"warning: {path}: listed tensors hold {listed} values, parameters {total}", file=sys.stderr)
    if do_verify:
        if total <= VERIFY_SAVE_MAX_PARAMS:
            verify_save(cfg, tensors)
            out["save_verified"] = True
        else:
            out["save_verified"] = False
    out["tensors"] = {k: tensors[k] for k in tensors}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("configs", nargs="+", metavar="CONFIG.json")
    ap.add_argument("--verify-save", action="store_true",
                    help="for small models, cross-check the listing against a real save_pretrained")
    args = ap.parse_args(argv)
    _quiet()
    failed = False
    for path in args.configs:
        try:
            result = process(path, args.verify_save)
        except Exception as exc:  # report and go on with the next config
            failed = True
            result = {"config": path, "error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(result), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
