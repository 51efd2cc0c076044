#!/usr/bin/env python3
"""The config-field audit of docs/architectures.md, checked against transformers itself.

Usage:
    hf_config_fields.py DOCS/architectures.md CONFIGS_DIR

Run it with the project venv (torch + transformers). For every architecture of the audit table
(DeepSeekMoE, remote code that transformers does not ship, has no config class: check 1 reads its
built-in configs' files only, check 2 is skipped, and check 3 runs on the model
make_hf_fixtures.py composes of transformers' Llama and DeepSeek-V2 MoE modules):

1. Coverage. Every field of the transformers config class (its defaults' to_dict(), less the
   fields every PretrainedConfig has) and every field of the built-in configs of that model_type
   (CONFIGS_DIR/models/*.json: the Hub's files carry fields the class does not declare) must be
   named in the architecture's row of the table (implemented, no effect, refused; "as Llama" takes
   Llama's row) or in the paragraph of fields common to all. A field missing there is one nobody
   decided about.
2. "No effect on inference", measured. For each field the row (or the common paragraph: with the
   dropouts) says has no effect, and that the architecture's tiny config has: the tiny model is
   built twice, from the config as it is and with that field changed (a bool flipped, a number
   changed, a string swapped), the second loading the first's saved checkpoint through
   from_pretrained, as a user's model loads (so a field that only
   shapes the random initialisation cannot hide), and both must give the same logits over a
   batch of prompts, bit for bit (each of the 80 fields checked with transformers 5.23 does, the
   implementation choices among them), and the same greedy tokens from generate() with the cache.

3. "Implemented", exercised. For each field the row (or the common paragraph) says is implemented,
   the parity fixtures of tools/make_hf_fixtures.py (those of this model_type) must give it a value
   other than the tiny config's in at least one fixture, and that value must matter there: the
   fixture's model is built again with only this field put back to the tiny config's value, loading
   the fixture's weights, and its logits must differ (or the weights no longer load: the
   checkpoint's shapes depend on the field). A field no fixture varies passes only if changing it
   on the tiny config changes the checkpoint's tensor shapes (effarch could not load a checkpoint
   whose field it misread), or if EXEMPT below gives the reason no fixture can.

Prints a line per architecture and per checked field; exits 1 listing every field not covered,
every field that changed the output, every no-effect field it could not change (with the error),
and every implemented field no fixture exercises: a check that did not run is not a pass.
"""

from __future__ import annotations

import copy
import json
import pathlib
import re
import sys
import tempfile

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # make_hf_fixtures, beside this tool
from make_hf_fixtures import FIXTURES, deepseek_model, fixture_config_dict  # noqa: E402

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
    "DeepSeekMoE": ("deepseek", "tiny-deepseek-moe"),  # remote code: see main()
}


# Implemented fields no parity fixture can exercise, and where they are checked instead.
EXEMPT = {
    "eos_token_id": "where generation stops, not the logits: tests/cli/cli_generate.sh stops at it, "
                    "Config.EosIdsAndDtypeKeys reads both forms",
    "dtype": "the checkpoint's storage type, not a computation: Config.EosIdsAndDtypeKeys reads both names",
    "torch_dtype": "the checkpoint's storage type, not a computation: Config.EosIdsAndDtypeKeys reads both names",
    "residual_in_fp32": "an fp32 model's residual stream is fp32 either way: HfParity.ResidualInFp32 "
                        "(tests/model/hf_parity_test.cpp) tells the two settings apart in bf16",
    # The chunked SSD scan computes the same sums for any chunk length, in another order.
    ("Mamba-2", "chunk_size"): "the chunked scan's block length: the same sums in another order (it moves "
                               "the logits by about 3e-7); the fixtures run chunks of 3, 16 and 256",
    # DeepSeekMoE's remote code builds default, linear and dynamic RoPE only, and dynamic reads the
    # field only for positions past it, where effarch refuses to allocate a cache.
    ("DeepSeekMoE", "max_position_embeddings"): "its RoPE types read it only past it (dynamic), beyond "
                                                "the context limit of Model::allocate_cache (Model.Errors)",
    # Jamba has no positional encoding: the field changes no logit, only the longest cache effarch
    # allocates without being told to go beyond it (Model.Errors tests that limit).
    ("Jamba", "max_position_embeddings"): "no positional encoding: only the context limit of "
                                          "Model::allocate_cache (tests/model/model_test.cpp, Model.Errors)",
}
# Fields transformers derives from another when the file does not give them: put back with it.
DERIVED = {"expand": ("intermediate_size",)}
# hf_parity allows 1e-4 of the largest logit: a fixture where putting the field back moves the
# logits by less than 5 times that could hardly catch a misread field.
MIN_MOVE = 5e-4


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


def load_saved(folder: str, config):
    """The checkpoint in `folder` as from_pretrained loads it with `config`; every tensor must load
    (from_pretrained only warns about missing ones, and draws them)."""
    model, info = AutoModelForCausalLM.from_pretrained(folder, config=config, dtype=torch.float32,
                                                       output_loading_info=True)
    problems = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if problems:
        raise ValueError(f"the checkpoint does not load: {problems}")
    return model.eval()


def build(config):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return model.eval()


def fixture_config(model_type: str, raw: dict):
    # A deep copy: transformers writes rope_theta and the original length into the rope_scaling
    # dict it is given, which would carry one fixture's values into the next config built from it.
    raw = copy.deepcopy({k: v for k, v in raw.items() if k not in ("model_type", "auto_map")})
    return AutoConfig.for_model(model_type, **raw)


def field_value(config, key: str):
    """A field's value as transformers 5 keeps it (RoPE keys live in rope_parameters)."""
    d = config.to_dict()
    rope = d.get("rope_parameters") or {}
    if key in ("rope_scaling", "rope_parameters"):
        return {k: v for k, v in rope.items() if k != "rope_theta"}
    if key in d:
        return d[key]
    return rope.get(key)


def layout(model) -> dict:
    """The checkpoint save_pretrained writes: each tensor's name and shape, tied copies once."""
    out, seen = {}, set()
    for k, v in model.state_dict().items():
        if v.data_ptr() in seen:
            continue
        seen.add(v.data_ptr())
        out[k] = tuple(v.shape)
    return out


class HfReference:
    """A model transformers ships: its config class and AutoModelForCausalLM."""

    def __init__(self, model_type: str):
        self.model_type = model_type

    def config(self, raw: dict):
        return fixture_config(self.model_type, raw)

    def model(self, config):
        return build(config)

    def value(self, config, key: str):
        return field_value(config, key)

    def set(self, config, key: str, value):
        """The field set past the class's own checks (a combination it would refuse)."""
        config = copy.deepcopy(config)
        setattr(config, key, value)
        return config

    def vocab(self, config) -> int:
        return config.vocab_size


class DeepSeekReference:
    """DeepSeekMoE, remote code: the model tools/make_hf_fixtures.py composes of transformers'
    Llama and DeepSeek-V2 MoE modules (deepseek_model), from the config.json dict itself."""

    def config(self, raw: dict):
        return copy.deepcopy(raw)

    def model(self, config):
        torch.manual_seed(0)
        return deepseek_model(copy.deepcopy(config))[0].eval()

    def value(self, config, key: str):
        return config.get(key)

    def set(self, config, key: str, value):
        return {**config, key: value}

    def vocab(self, config) -> int:
        return config["vocab_size"]


def shapes(ref, config) -> dict:
    """The tensor shapes of the reference's model for `config`, built without memory."""
    with torch.device("meta"):
        model = ref.model(config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def shape_field(ref, raw: dict, key: str) -> bool:
    """Whether changing `key` on this config changes the checkpoint's tensor shapes."""
    config = ref.config(raw)
    value = ref.value(config, key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    base = shapes(ref, config)
    for new in (value * 2, value + 1):
        try:
            changed_config = ref.config({**raw, key: type(value)(new)})
        except Exception:  # noqa: BLE001 (the class refuses the combination: set it past its checks)
            changed_config = ref.set(config, key, type(value)(new))
        try:
            if shapes(ref, changed_config) != base:
                return True
        except Exception:  # noqa: BLE001 (no model for this value: try the next)
            continue
    return False


def put_back(ref, raw: dict, key: str, tiny_raw: dict, tiny):
    """A fixture's model against its twin with `key` put back to the tiny config's value.

    Returns ("tensors", None) when the twin's checkpoint differs (names or shapes), ("logits",
    move) with the largest change of the logits over the largest logit, or ("refused", None) when
    no twin runs: the class refuses the field alone put back and the model with it set past the
    class's checks fails too.
    """
    config = ref.config(raw)
    model = ref.model(config)
    restored = dict(raw)
    if key in tiny_raw:
        restored[key] = tiny_raw[key]
    else:
        restored.pop(key, None)
    for derived in DERIVED.get(key, ()):  # dropped, for transformers to derive from the field again
        restored.pop(derived, None)
    refused = False
    try:
        twin_config = ref.config(restored)
    except Exception:  # noqa: BLE001 (the class refuses the mix: set the one field past its checks)
        refused = True
        twin_config = ref.set(config, key, ref.value(tiny, key))
    torch.manual_seed(1)
    ids = torch.randint(1, ref.vocab(config), (2, 12))
    try:
        twin = ref.model(twin_config)
        if layout(twin) != layout(model):
            return "tensors", None
        twin.load_state_dict(model.state_dict(), strict=True)
        with torch.no_grad():
            logits = model(ids).logits
            move = (logits - twin(ids).logits).abs().max().item() / logits.abs().max().item()
    except Exception:  # noqa: BLE001 (no model runs with it put back here)
        return ("refused" if refused else "failed"), None
    return "logits", move


def exercised(arch: str, model_type: str, tiny_raw: dict, implemented: set, no_effect: set, problems: list) -> int:
    """Check 3: every implemented field varied by some parity fixture, and mattering there."""
    ref = DeepSeekReference() if model_type == "deepseek" else HfReference(model_type)
    fixtures = {name: raw for name in FIXTURES if (raw := fixture_config_dict(name)).get("model_type") == model_type}
    tiny = ref.config(tiny_raw)
    known = set(tiny_raw) | {"rope_scaling", "rope_theta", "partial_rotary_factor"}
    if isinstance(ref, HfReference):
        known |= set(tiny.to_dict()) | set(tiny.to_dict().get("rope_parameters") or {})
    # transformers 5 keeps rope_scaling under the name rope_parameters: one field, checked once.
    fields = sorted(f for f in implemented if f in known and f not in no_effect and f != "rope_parameters")
    count = 0
    for key in fields:
        reason = EXEMPT.get((arch, key), EXEMPT.get(key))
        if reason:
            print(f"  {key}: exempt ({reason})")
            continue
        base_value = ref.value(tiny, key)
        varying = [n for n, raw in fixtures.items() if ref.value(ref.config(raw), key) != base_value]
        if not varying:
            if shape_field(ref, tiny_raw, key):
                print(f"  {key}: fixed by the checkpoint's shapes")
                count += 1
            else:
                problems.append(f"{arch}: implemented field {key} is {base_value!r} in every parity fixture, and "
                                f"nothing else checks it (add a fixture to tools/make_hf_fixtures.py that changes it)")
            continue
        found, refused, moves = None, None, {}
        for name in varying:
            outcome, move = put_back(ref, fixtures[name], key, tiny_raw, tiny)
            if outcome == "refused":
                refused = refused or name
            elif outcome == "tensors":
                found = f"{name} (the checkpoint's tensors depend on it)"
                break
            elif outcome == "logits":
                moves[name] = move
                if move > MIN_MOVE:
                    found = f"{name} (logits move by {move:.2g} of the largest without it)"
                    break
        if not found and refused:
            # Mamba-2's head_dim: num_heads x head_dim must equal expand x hidden_size, and
            # num_heads shapes the checkpoint, so the field cannot change alone.
            found = f"{refused} (the class refuses it alone put back: tied to fields that shape the checkpoint)"
        if found:
            print(f"  {key}: varied by {found}")
            count += 1
        else:
            moved = ", ".join(f"{n} {m:.2g}" for n, m in moves.items())
            problems.append(f"{arch}: implemented field {key} is varied by {', '.join(varying)}, but putting it "
                            f"back moves the logits by less than {MIN_MOVE:g} of the largest ({moved}), "
                            f"and the checkpoint not at all")
    return count


def main() -> int:
    doc, configs_dir = sys.argv[1], pathlib.Path(sys.argv[2])
    audit, common_implemented, common_no_effect = read_audit(doc)
    base = set(PretrainedConfig().to_dict())
    builtin = [json.loads(p.read_text()) for p in sorted((configs_dir / "models").glob("*.json"))]
    problems, checked, exercised_count = [], 0, 0
    print(f"transformers {transformers.__version__}, torch {torch.__version__}")
    for arch, (model_type, tiny_name) in MODEL_TYPES.items():
        if arch not in audit:
            problems.append(f"{arch}: no row in the table")
            continue
        implemented, no_effect, refused = audit[arch]
        named = implemented | no_effect | refused | common_implemented | common_no_effect
        remote = model_type == "deepseek"  # no config class in transformers: the Hub files' keys only
        fields = set() if remote else set(AutoConfig.for_model(model_type).to_dict()) - base
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
        print(f"{arch}: implemented fields, exercised by the parity fixtures")
        exercised_count += exercised(arch, model_type, raw, implemented | common_implemented,
                                     no_effect | common_no_effect, problems)
        if remote:
            # The composed reference reads none of the remote code's no-effect fields, so changing
            # them there would prove nothing.
            print(f"{arch}: no-effect fields not checked (remote code: no transformers model reads them)")
            continue
        config = fixture_config(model_type, raw)
        # The twins load the saved checkpoint as a user's would (from_pretrained, which runs the
        # class's init on loaded weights too: rescale_prenorm_residual rescales a checkpoint's
        # out_proj there, which load_state_dict never showed).
        saved = tempfile.TemporaryDirectory()
        build(config).save_pretrained(saved.name)
        model = load_saved(saved.name, config)
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
                twin = load_saved(saved.name, other)
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
    print(f"{exercised_count} implemented fields exercised by the parity fixtures or fixed by the shapes")
    if checked < 20:
        problems.append(f"only {checked} fields checked")
    if exercised_count < 80:
        problems.append(f"only {exercised_count} implemented fields exercised")
    for p in problems:
        print("PROBLEM:", p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
