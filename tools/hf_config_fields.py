#!/usr/bin/env python3
"""The config-field audit of docs/architectures.md, checked against transformers itself.

Usage:
    hf_config_fields.py DOCS/architectures.md CONFIGS_DIR

Run it with the project venv (torch + transformers). For every architecture of the audit table
that transformers ships (DeepSeekMoE is remote code: skipped):

1. Coverage. Every field of the transformers config class (its defaults' to_dict(), less the
   fields every PretrainedConfig has) and every field of the built-in configs of that model_type
   (CONFIGS_DIR/models/*.json: the Hub's files carry fields the class does not declare) must be
   named in the architecture's row of the table (implemented, no effect, refused; "as Llama" takes
   Llama's row) or in the paragraph of fields common to all. A field missing there is one nobody
   decided about.
2. "No effect on inference", measured. For each field the row (or the common paragraph: with the
   dropouts) says has no effect, and that the architecture's tiny config has: the tiny model is
   built twice, from the config as it is and with that field changed (a bool flipped, a number
   changed, a string swapped), the second loading the first's weights (so a field that only
   shapes the random initialisation cannot hide), and both must give the same logits over a
   batch of prompts, bit for bit (each of the 72 fields checked with transformers 5.23 does, the
   implementation choices among them), and the same greedy tokens from generate() with the cache.

Prints a line per architecture and per checked field; exits 1 listing every field not covered
every field that changed the output, and every no-effect field it could not change (with the
error): a check that did not run is not a pass.
"""

from __future__ import annotations

import copy
import json
import pathlib
import re
import sys

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig

# The table's architecture names: the model_type of transformers' config class, and the tiny
# built-in config the no-effect fields are changed on.
MODEL_TYPES = {
    "Llama": ("llama", "tiny-llama"),
    "Mistral": ("mistral", "tiny-mistral"),
    "Phi": ("phi", "tiny-phi"),
    "Mamba": ("mamba", "tiny-mamba"),
    "Falcon-Mamba": ("falcon_mamba", "tiny-falcon-mamba"),
    "Mamba-2": ("mamba2", "tiny-mamba2"),
    "Mixtral": ("mixtral", "tiny-mixtral"),
    "Jamba": ("jamba", "tiny-jamba"),
    "DeepSeekMoE": (None, None),  # remote code
}


def names_in(cell: str) -> set[str]:
    # `name`, and `name: value` or `name` other than ... as the refused column writes them
    return set(re.findall(r"`([A-Za-z_][A-Za-z_0-9]*)[^`]*`", cell))


def read_audit(doc: str):
    """The table's rows {arch: (implemented, no_effect, refused)} and the common fields."""
    text = pathlib.Path(doc).read_text()
    rows = {}
    lines = text.splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith("| architecture | implemented | no effect on inference"))
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows[cells[0]] = cells[1:4]
    # "as Llama", "as Mamba", "as Mistral": that row's cell too (references resolved in order).
    resolved = {}

    def cell_names(arch: str, col: int, seen=()) -> set[str]:
        cell = rows[arch][col]
        out = names_in(cell)
        for other in re.findall(r"\bas ([A-Z][A-Za-z0-9-]*)", cell):
            if other in rows and other not in seen:
                out |= cell_names(other, col, seen + (arch,))
        return out

    for arch in rows:
        resolved[arch] = tuple(cell_names(arch, col) for col in range(3))
    common = re.search(r"Common to all:(.*?)have\s+no\s+effect\s+on\s+inference", text, re.S)
    if not common:
        raise SystemExit(f"{doc}: no 'Common to all: ... have no effect on inference' paragraph")
    implemented_part, _, no_effect_part = common.group(1).partition("are implemented;")
    return resolved, names_in(implemented_part), names_in(no_effect_part)


def changed(key: str, value, config):
    """A different value of `key` for the no-effect check, or None when there is no sensible one."""
    if key == "sliding_window":
        return 3  # shorter than the prompts below: a window that were used would change the logits
    if isinstance(value, bool):
        return not value
    if key == "pad_token_id":
        return (value + 1) % config.vocab_size if isinstance(value, int) else 1
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 2 if value else 0.5
    if key == "time_step_init_scheme":
        return "constant" if value != "constant" else "random"
    return None


def outputs(model, ids):
    with torch.no_grad():
        logits = model(ids).logits
        tokens = model.generate(ids, max_new_tokens=4, do_sample=False, pad_token_id=0)
    return logits, tokens


def build(config):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return model.eval()


def main() -> int:
    doc, configs_dir = sys.argv[1], pathlib.Path(sys.argv[2])
    audit, common_implemented, common_no_effect = read_audit(doc)
    base = set(PretrainedConfig().to_dict())
    builtin = [json.loads(p.read_text()) for p in sorted((configs_dir / "models").glob("*.json"))]
    problems, checked = [], 0
    print(f"transformers {transformers.__version__}, torch {torch.__version__}")
    for arch, (model_type, tiny_name) in MODEL_TYPES.items():
        if arch not in audit:
            problems.append(f"{arch}: no row in the table")
            continue
        if model_type is None:
            print(f"{arch}: skipped (remote code, not in transformers)")
            continue
        implemented, no_effect, refused = audit[arch]
        named = implemented | no_effect | refused | common_implemented | common_no_effect
        fields = set(AutoConfig.for_model(model_type).to_dict()) - base
        for cfg in builtin:
            if cfg.get("model_type") == model_type:
                fields |= set(cfg) - base - {"auto_map"}
        missing = sorted(f for f in fields if f not in named and not re.search(r"dropout|pdrop", f))
        for f in missing:
            problems.append(f"{arch}: field {f} is not in docs/architectures.md's audit")
        print(f"{arch}: {len(fields)} fields, {len(fields) - len(missing)} named in the audit")

        # The no-effect fields, changed one at a time on the tiny model.
        tiny = configs_dir / "models" / f"{tiny_name}.json"
        if not tiny.exists():
            problems.append(f"{arch}: no tiny config {tiny.name} to check its no-effect fields on")
            continue
        raw = json.loads(tiny.read_text())
        raw.pop("auto_map", None)
        config = AutoConfig.for_model(model_type, **{k: v for k, v in raw.items() if k != "model_type"})
        model = build(config)
        weights = model.state_dict()
        torch.manual_seed(1)
        ids = torch.randint(1, config.vocab_size, (2, 12))
        logits, tokens = outputs(model, ids)
        # (A no-effect cell may name an implemented field in its explanation: that one is not a candidate.)
        present = config.to_dict()
        candidates = sorted((no_effect | common_no_effect | {f for f in present if re.search(r"dropout|pdrop", f)})
                            - implemented - common_implemented)
        for key in candidates:
            if key not in present:
                continue
            value = getattr(config, key, None)
            new = changed(key, value, config)
            if new is None:
                print(f"  {key} = {value!r}: unchecked (no value to change it to)")
                problems.append(f"{arch}: {key} = {value!r}: no value to change it to (changed() needs one)")
                continue
            other = copy.deepcopy(config)
            setattr(other, key, new)
            try:
                twin = build(other)
                twin.load_state_dict(weights, strict=True)
                logits2, tokens2 = outputs(twin, ids)
            except Exception as e:  # noqa: BLE001 (a change this machine cannot make is reported)
                why = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
                print(f"  {key} = {value!r} -> {new!r}: unchecked ({why})")
                problems.append(f"{arch}: {key} could not be changed to {new!r} ({why})")
                continue
            diff = (logits - logits2).abs().max().item()
            scale = logits.abs().max().item()
            same_tokens = torch.equal(tokens, tokens2)
            checked += 1
            ok = diff == 0 and same_tokens
            print(f"  {key} = {value!r} -> {new!r}: logits differ by {diff:.3g} (largest {scale:.3g}), "
                  f"tokens {'the same' if same_tokens else 'DIFFER'}{'' if ok else '  <- CHANGES THE OUTPUT'}")
            if not ok:
                problems.append(f"{arch}: {key} is audited as having no effect, yet changing it "
                                f"{value!r} -> {new!r} changes the output (logits by {diff:.3g})")
    print(f"{checked} no-effect fields changed and checked")
    if checked < 20:
        problems.append(f"only {checked} fields checked")
    for p in problems:
        print("PROBLEM:", p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
