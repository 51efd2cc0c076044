#!/usr/bin/env python3
"""The sweep of `effarch bench`, run with Hugging Face transformers, written in effarch's results schema.

Usage (the project's Python environment: tools/setup.sh makes it, torch + transformers):

    hf_bench.py MODEL... [--prompt-lengths 128,512] [--batch 1] [--gen-tokens 32] [--reps 3]
                [--warmup 1] [--dtype auto] [--device auto] [--attention sdpa|eager]
                [--cache dynamic|static] [--compile auto|on|off] [--threads N] [--seed S]
                [-o hf-bench.json] [--no-progress]
    hf_bench.py --suite NAME|FILE [any option above, which overrides the suite's]
    hf_bench.py MODEL... [--save-checkpoint DIR] [--greedy-ids 1,2,3] [--gen-tokens N]
        the models as the sweep builds them saved to DIR/NAME (save_pretrained), and/or their
        greedy tokens from the benchmark's own decode loop: one JSON line per model

MODEL is what `effarch bench` takes: a built-in config name (configs/models/NAME.json), a
config.json, or a checkpoint folder (config.json + safetensors: its weights are loaded). Random
weights come from `AutoModelForCausalLM.from_config` after `torch.manual_seed(seed)`, in the run's
dtype. Lists take effarch's syntax: "512,1024", "512-8192*2", "1-8+1", mixed.

What one run of a point does (the same steps as effarch's runner, so the figures mean the same):
  * prefill: one forward over the prompt (logits of the last position only), timed between two
    device synchronisations; TTFT also includes the argmax and the token's copy to the host;
  * decode: gen_tokens - 1 steps of `model(input_ids=token, past_key_values=cache)` (Mamba:
    `cache_params`), each timed on its own from before the call to its token on the host, so
    decode tokens/s = batch x steps / (sum of the steps) is not diluted by the prefill;
  * --warmup W untimed runs (they absorb torch.compile's compilation), then --reps R timed runs;
    statistics over the R runs (mean, sample stddev, median, min, max, samples), the step
    percentiles p50/p90/p99 per run, then summarised over the runs.
  * memory: CUDA: the caching allocator's peaks (reset before the point); CPU: the process's
    peak RSS (VmHWM, reset through /proc/self/clear_refs before the point) minus its RSS when the
    point started, plus the weights (source "process_peak_rss": not the same measure as effarch's
    counting allocator, which sees only tensor memory).

Modes: --attention sdpa|eager (transformers' attn_implementation); --cache dynamic (the default
DynamicCache, grown per step) or static (a StaticCache sized to prompt + generated tokens) where
--compile auto compiles the decode step with torch.compile (HF's fastest path: mode
"reduce-overhead" on CUDA, the default mode on a CPU). A point whose compile or run fails is
recorded with status "error" and the message; an out-of-memory point with "oom"; the sweep goes
on. Models transformers does not ship (DeepSeekMoE's remote code) are error points.

The results document is effarch's schema (docs/bench.md), read by `effarch compare`; the engine
is named in environment.engine ({"name": "transformers", "version", "attention", "cache",
"compile", "mamba_ssm", "causal_conv1d", ...}). Point keys are effarch's for the same model,
dtype, batch, prompt, generated tokens and device; the fields that describe effarch's own
execution are filled as: cuda_graphs "off", pdl "off", backend "auto", implementations {} (none of
effarch's op families ran) and weights = the dtype. `effarch compare` pairs points of files of
different engines by the workload (docs/bench.md, "Against transformers").

Exit status: 0, 1 if any point failed (after everything is written), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import re
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_VERSION = 2


class UsageError(Exception):
    pass


# ---- lists and suites (effarch's syntax) ----


def parse_int_list(text: str, option: str) -> list[int]:
    """"512,1024", "512-32768*2" (geometric), "1-8+1" (arithmetic), or a mix; as given, no duplicates."""
    out: list[int] = []

    def add(v: int):
        if v < 1:
            raise UsageError(f"{option}: values must be >= 1 (got {v})")
        if v not in out:
            out.append(v)

    for part in str(text).replace(" ", "").split(","):
        m = re.fullmatch(r"(\d+)-(\d+)([*+])(\d+)", part)
        try:
            if m:
                a, b, op, step = int(m.group(1)), int(m.group(2)), m.group(3), int(m.group(4))
                if (op == "*" and step < 2) or (op == "+" and step < 1) or b < a:
                    raise ValueError
                v = a
                while v <= b:
                    add(v)
                    v = v * step if op == "*" else v + step
            else:
                add(int(part))
        except ValueError:
            raise UsageError(f"{option}: '{text}' is not a list (512,1024), range (512-32768*2, 1-8+1) or a mix")
    return out


SUITE_KEYS = {"name", "description", "models", "prompt_lengths", "batch", "gen_tokens", "reps", "warmup", "dtype",
              "cuda_graphs", "pdl", "attention", "backend", "threads", "mode"}


def load_suite(name_or_path: str) -> dict:
    p = Path(name_or_path)
    if not p.exists():
        p = ROOT / "configs" / "suites" / f"{name_or_path}.json"
    if not p.exists():
        raise UsageError(f"--suite: no suite '{name_or_path}' (a file, or a name in configs/suites/)")
    doc = json.loads(p.read_text())
    unknown = sorted(set(doc) - SUITE_KEYS)
    if unknown:
        raise UsageError(f"{p}: unknown key '{unknown[0]}'")
    return doc


# ---- models ----


def resolve_model(name: str) -> tuple[Path, Path | None]:
    """(config.json, checkpoint folder or None): effarch's rules for MODEL."""
    p = Path(name)
    if p.is_dir():
        cfg = p / "config.json"
        if not cfg.exists():
            raise FileNotFoundError(f"{name}: a folder without config.json")
        has_weights = any(p.glob("*.safetensors"))
        return cfg, (p if has_weights else None)
    if p.is_file():
        return p, None
    builtin = ROOT / "configs" / "models" / f"{name}.json"
    if builtin.exists():
        return builtin, None
    raise FileNotFoundError(f"{name}: not a checkpoint folder, a config.json or a built-in config name")


FAMILY = {"mamba": "mamba", "mamba2": "mamba", "falcon_mamba": "mamba", "mixtral": "moe", "deepseek": "moe",
          "jamba": "hybrid"}


def build_config(raw: dict, attention: str):
    from transformers import CONFIG_MAPPING

    d = {k: v for k, v in raw.items() if k != "auto_map"}  # remote code is never run
    model_type = d.get("model_type")
    if model_type not in CONFIG_MAPPING:
        raise NotImplementedError(
            f"model_type '{model_type}' is not shipped with transformers (remote code, not run here)")
    return CONFIG_MAPPING[model_type].from_dict(d)


def load_model(name: str, dtype, device, attention: str, seed: int):
    import torch
    from transformers import AutoModelForCausalLM

    cfg_path, ckpt = resolve_model(name)
    raw = json.loads(cfg_path.read_text())
    cfg = build_config(raw, attention)
    # Attention-free models (Mamba, Mamba-2) refuse an attention implementation.
    attn = {} if FAMILY.get(raw.get("model_type")) == "mamba" else {"attn_implementation": attention}
    if ckpt is not None:
        model = AutoModelForCausalLM.from_pretrained(str(ckpt), config=cfg, dtype=dtype, **attn)
    else:
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype, **attn)
    model = model.to(device).eval()
    info = {
        "model_path": str(ckpt if ckpt is not None else cfg_path),
        "weights_source": "checkpoint" if ckpt is not None else "random",
        "architecture": (raw.get("architectures") or [type(model).__name__])[0],
        "family": FAMILY.get(raw.get("model_type"), "transformer"),
    }
    total = sum(p.numel() for p in model.parameters())
    active = total
    k = getattr(cfg, "num_experts_per_tok", None)
    e = getattr(cfg, "num_local_experts", None) or getattr(cfg, "num_experts", None)
    if isinstance(k, int) and isinstance(e, int) and e > 0:
        # Routed experts' parameters count k/E of theirs (fused [E, ...] tensors or experts.N.* modules).
        routed = sum(p.numel() for n, p in model.named_parameters() if ".experts." in n and "shared_expert" not in n)
        active = total - round(routed * (e - k) / e)
    info["params_total"] = total
    info["params_active"] = active
    mpe = getattr(cfg, "max_position_embeddings", None)
    info["max_position_embeddings"] = mpe if isinstance(mpe, int) and info["family"] != "mamba" else None
    return model, info


def cache_kwarg(model) -> str:
    import inspect

    return "cache_params" if "cache_params" in inspect.signature(model.forward).parameters else "past_key_values"


def cache_bytes(cache) -> tuple[int, int]:
    """(kv bytes, recurrent-state bytes) of every tensor a cache object holds."""
    import torch

    seen: set[int] = set()
    kv = state = 0

    def walk(obj, name: str, depth: int):
        nonlocal kv, state
        if depth > 5 or obj is None:
            return
        if torch.is_tensor(obj):
            if id(obj) in seen or obj.numel() <= 1:
                return
            seen.add(id(obj))
            n = obj.numel() * obj.element_size()
            if "conv" in name or "recurrent" in name or "ssm" in name:
                state += n
            else:
                kv += n
        elif isinstance(obj, (list, tuple)):
            for x in obj:
                walk(x, name, depth + 1)
        elif isinstance(obj, dict):
            for x in obj.values():
                walk(x, name, depth + 1)
        elif hasattr(obj, "__dict__") and not isinstance(obj, (type, torch.device, torch.dtype)):
            for k, v in vars(obj).items():
                walk(v, k, depth + 1)

    walk(cache, "cache", 0)
    return kv, state


# ---- timing ----


def percentile(values: list[float], q: float) -> float:
    v = sorted(values)
    if not v:
        return 0.0
    pos = (len(v) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def summarize(samples: list[float]) -> dict:
    n = len(samples)
    mean = sum(samples) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in samples) / (n - 1)) if n > 1 else 0.0
    return {"mean": mean, "stddev": sd, "median": percentile(samples, 50), "min": min(samples), "max": max(samples),
            "samples": list(samples)}


class Runner:
    """One model's runs: a cache per run, the prefill, then the decode steps."""

    def __init__(self, model, device, cache_mode: str, compile_mode: str):
        import torch

        self.torch = torch
        self.model = model
        self.device = device
        self.cache_mode = cache_mode
        self.kw = cache_kwarg(model)
        self.step = model.forward
        if cache_mode == "static" and compile_mode != "off":
            mode = "reduce-overhead" if device.type == "cuda" else None
            self.step = torch.compile(model.forward, mode=mode, fullgraph=False, dynamic=False)

    def sync(self):
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)

    def new_cache(self, batch: int, max_len: int):
        if self.cache_mode == "static":
            from transformers import StaticCache

            return StaticCache(config=self.model.config, max_cache_len=max_len)
        return None  # the model makes its DynamicCache

    def run(self, ids, gen_tokens: int, keep_tokens: bool = False):
        torch = self.torch
        batch, length = ids.shape
        cache = self.new_cache(batch, length + gen_tokens)
        steps: list[float] = []
        tokens = []
        with torch.inference_mode():
            self.sync()
            t0 = time.perf_counter()
            kwargs = {"use_cache": True, "logits_to_keep": 1}
            if cache is not None:
                kwargs[self.kw] = cache
                kwargs["cache_position"] = torch.arange(length, device=self.device)
            out = self.model(input_ids=ids, **kwargs)
            self.sync()
            t1 = time.perf_counter()
            tok = out.logits[:, -1, :].argmax(-1, keepdim=True)
            host = tok.cpu()
            ttft = time.perf_counter() - t0
            cache = getattr(out, self.kw, None) if cache is None else cache
            if keep_tokens:
                tokens.append(host)
            del out
            for i in range(1, gen_tokens):
                s = time.perf_counter()
                kwargs = {"use_cache": True, self.kw: cache}
                if self.cache_mode == "static":
                    kwargs["cache_position"] = torch.tensor([length + i - 1], device=self.device)
                out = self.step(input_ids=tok, **kwargs)
                tok = out.logits[:, -1, :].argmax(-1, keepdim=True)
                host = tok.cpu()
                steps.append(time.perf_counter() - s)
                if keep_tokens:
                    tokens.append(host)
                del out
        return {"prefill_s": t1 - t0, "ttft_s": ttft, "steps": steps, "cache": cache,
                "tokens": torch.cat(tokens, 1) if keep_tokens else None}


# ---- memory ----


def rss_bytes(field: str) -> int:
    try:
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# ---- environment ----


def importable(module: str) -> bool:
    try:
        __import__(module)
        return True
    except Exception:
        return False


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10).stdout.strip() or "unknown"
    except Exception:
        return "unknown"


def environment(args, device) -> dict:
    import torch
    import transformers

    dev = {"type": device.type, "string": str(device)}
    if device.type == "cuda":
        prop = torch.cuda.get_device_properties(device)
        dev.update({"name": prop.name, "compute_capability": f"{prop.major}.{prop.minor}",
                    "memory_bytes": prop.total_memory, "multiprocessors": prop.multi_processor_count,
                    "cuda_runtime_version": torch.version.cuda})
    else:
        dev.update({"name": cpu_model(), "memory_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")})
    u = platform.uname()
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "engine": {"name": "transformers", "version": transformers.__version__, "attention": args.attention,
                   "cache": args.cache, "compile": compile_used(args), "torch": torch.__version__,
                   "python": platform.python_version(), "mamba_ssm": importable("mamba_ssm"),
                   "causal_conv1d": importable("causal_conv1d"), "tool": "tools/hf_bench.py",
                   "git_commit": git_commit()},
        "host": {"cpu": cpu_model(), "cores": os.cpu_count(),
                 "ram_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
                 "os": f"{u.system} {u.release} {u.machine}", "hostname": socket.gethostname(),
                 "aten_threads": torch.get_num_threads()},
        "libtorch": torch.__version__,
        "device": dev,
    }


def compile_used(args) -> str:
    if args.compile == "auto":
        return "on" if args.cache == "static" else "off"
    return args.compile


# ---- the sweep ----


def dtype_of(name: str, device):
    import torch

    if name == "auto":
        name = "float32" if device.type == "cpu" else "bfloat16"
    table = {"float32": torch.float32, "fp32": torch.float32, "float": torch.float32, "bfloat16": torch.bfloat16,
             "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16, "half": torch.float16}
    if name not in table:
        raise UsageError(f"--dtype: unknown dtype '{name}' (float32, bfloat16, float16, auto)")
    return table[name], str(table[name]).replace("torch.", "")


def device_of(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda:0") if torch.cuda.is_available() else torch.device("cpu")
    if name == "cpu" or name.startswith("cuda"):
        if name.startswith("cuda") and not torch.cuda.is_available():
            raise UsageError(f"--device {name}: no CUDA device available; use --device cpu")
        return torch.device(name)
    raise UsageError(f"--device: unknown device '{name}' (auto, cpu, cuda, cuda:N)")


def is_oom(e: BaseException) -> bool:
    import torch

    if isinstance(e, (MemoryError, torch.OutOfMemoryError)):
        return True
    text = str(e)
    return "out of memory" in text.lower() or "can't allocate memory" in text or "DefaultCPUAllocator" in text


def measure(runner: Runner, info: dict, batch: int, length: int, args, device, vocab: int, weights_bytes: int):
    import torch

    gen = torch.Generator().manual_seed(args.seed + length * 1315423911 + batch)
    runs = args.warmup + args.reps
    prompts = [torch.randint(0, vocab, (batch, length), generator=gen).to(device) for _ in range(runs)]
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    else:
        reset_peak_rss()
        before = rss_bytes("VmRSS")
    timed = []
    kv = state = 0
    for i in range(runs):
        r = runner.run(prompts[i], args.gen_tokens)
        kv, state = cache_bytes(r.pop("cache"))
        if i >= args.warmup:
            timed.append(r)
    speed = {}
    prefill = [r["prefill_s"] for r in timed]
    speed["prefill_s"] = summarize(prefill)
    speed["prefill_tokens_per_s"] = summarize([batch * length / s for s in prefill])
    speed["ttft_s"] = summarize([r["ttft_s"] for r in timed])
    if args.gen_tokens > 1:
        speed["decode_tokens_per_s"] = summarize([batch * len(r["steps"]) / sum(r["steps"]) for r in timed])
        speed["decode_step_s"] = {f"p{q}": summarize([percentile(r["steps"], q) for r in timed]) for q in (50, 90, 99)}
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
        memory = {"source": "cuda_caching_allocator", "peak_allocated_bytes": peak, "peak_bytes": peak,
                  "peak_reserved_bytes": torch.cuda.max_memory_reserved(device)}
        growth = peak - before
    else:
        growth = max(0, rss_bytes("VmHWM") - before)
        peak = weights_bytes + growth
        memory = {"source": "process_peak_rss", "peak_allocated_bytes": peak, "peak_bytes": peak,
                  "peak_rss_growth_bytes": growth}
    memory.update({"weights_bytes": weights_bytes, "cache_bytes": kv + state, "kv_cache_bytes": kv,
                   "state_bytes": state,
                   "activations_bytes": max(0, peak - weights_bytes - kv - state) if device.type != "cuda"
                   else max(0, growth - kv - state)})
    return speed, memory


def loglog_slope(xy):
    pts = [(math.log(x), math.log(y)) for x, y in xy if x > 0 and y > 0]
    if len({x for x, _ in pts}) < 2:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    den = sum((x - mx) ** 2 for x, _ in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / den


def scaling(points):
    groups = {}
    for p in points:
        if p["status"] != "ok":
            continue
        k = dict(p["key"])
        k.pop("prompt_len")
        k.pop("gen_tokens")
        groups.setdefault(json.dumps(k, sort_keys=True), []).append(p)
    out = []
    for k, ps in groups.items():
        entry = json.loads(k)
        entry["prompt_lengths"] = sorted({p["key"]["prompt_len"] for p in ps})
        for name, get in [("prefill_time_exponent", lambda p: p.get("speed", {}).get("prefill_s", {}).get("median")),
                          ("peak_memory_exponent", lambda p: p.get("memory", {}).get("peak_bytes")),
                          ("cache_exponent", lambda p: p.get("memory", {}).get("cache_bytes"))]:
            xy = [(p["key"]["prompt_len"], get(p)) for p in ps if get(p)]
            entry[name] = loglog_slope(xy)
        out.append(entry)
    return out


def release_memory(device) -> None:
    """What a finished point or model held goes back: Python's garbage, then CUDA's cached blocks."""
    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def run_sweep(args, device, env, jsonl) -> tuple[list[dict], bool]:
    import torch

    dtype, dtype_name = dtype_of(args.dtype, device)
    points = []
    interrupted = False
    total = len(args.models) * len(args.batch) * len(args.prompt_lengths)
    index = 0
    for name in args.models:
        model = runner = None
        info = None
        load_error = None
        load_status = "ok"
        t_load = time.perf_counter()
        try:
            model, info = load_model(name, dtype, device, args.attention, args.seed)
            runner = Runner(model, device, args.cache, compile_used(args))
            weights_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
            vocab = model.config.get_text_config().vocab_size
        except Exception as e:  # the model's points are all recorded with the failure
            load_status = "oom" if is_oom(e) else "error"
            load_error = f"loading {name}: {type(e).__name__}: {e}".strip()
            model = runner = None
        load_s = time.perf_counter() - t_load
        for batch in args.batch:
            for length in args.prompt_lengths:
                index += 1
                if not args.no_progress:
                    print(f"[{index}/{total}] {name} batch {batch} prompt {length} gen {args.gen_tokens}",
                          file=sys.stderr, flush=True)
                key = {"model": name, "dtype": dtype_name, "batch": batch, "prompt_len": length,
                       "gen_tokens": args.gen_tokens, "device": str(device), "cuda_graphs": "off", "pdl": "off",
                       "backend": "auto", "implementations": {}, "weights": dtype_name}
                p = {"key": key}
                t0 = time.perf_counter()
                if runner is None:
                    p.update({"status": load_status, "error": load_error})
                else:
                    try:
                        speed, memory = measure(runner, info, batch, length, args, device, vocab, weights_bytes)
                        p["status"] = "ok"
                        p["speed"] = speed
                        p["memory"] = memory
                    except KeyboardInterrupt:
                        interrupted = True
                    except Exception as e:
                        p["status"] = "oom" if is_oom(e) else "error"
                        msg = str(e).strip().splitlines()
                        p["error"] = f"{type(e).__name__}: {msg[0] if msg else ''}"[:2000]
                if interrupted:
                    break
                if info is not None:
                    p.update(info)
                    mpe = info.get("max_position_embeddings")
                    if mpe is not None and length + args.gen_tokens > mpe:
                        p["beyond_trained_context"] = True
                p["elapsed_s"] = time.perf_counter() - t0 + (load_s if index == 1 else 0.0)
                # Field order as effarch writes it.
                order = ["key", "status", "error", "model_path", "weights_source", "architecture", "family",
                         "params_total", "params_active", "max_position_embeddings", "beyond_trained_context",
                         "speed", "memory", "elapsed_s"]
                p = {k: p[k] for k in order if k in p}
                points.append(p)
                jsonl.write(json.dumps(p) + "\n")
                jsonl.flush()
                line = f"  {p['status']}"
                if p["status"] == "ok":
                    s = p["speed"]
                    line += f": prefill {s['prefill_tokens_per_s']['mean']:.1f} tok/s"
                    if "decode_tokens_per_s" in s:
                        line += f", decode {s['decode_tokens_per_s']['mean']:.2f} tok/s"
                else:
                    line += f": {p['error'][:200]}"
                if not args.no_progress:
                    print(line, file=sys.stderr, flush=True)
                release_memory(device)
            if interrupted:
                break
        del model, runner
        release_memory(device)
        if interrupted:
            break
    return points, interrupted


# ---- the parity helpers ----


def save_and_generate(args, device):
    """--save-checkpoint DIR and/or --greedy-ids IDS, per MODEL: the model as the sweep builds it
    (seeded random weights or the checkpoint) saved to DIR/NAME with save_pretrained, and its
    greedy tokens from the benchmark's own prefill + decode loop, one JSON line per model."""
    import torch

    dtype, _ = dtype_of(args.dtype, device)
    for name in args.models:
        model, _ = load_model(name, dtype, device, args.attention, args.seed)
        line = {"model": name}
        if args.save_checkpoint:
            target = Path(args.save_checkpoint) / Path(name).name.replace(".json", "")
            model.save_pretrained(str(target))
            line["checkpoint"] = str(target)
        if args.greedy_ids:
            runner = Runner(model, device, args.cache, compile_used(args))
            rows = [[int(t) for t in row.split(",") if t.strip()] for row in args.greedy_ids.split(";")]
            ids = torch.tensor(rows, dtype=torch.long, device=device)
            line["prompt_ids"] = rows
            line["tokens"] = runner.run(ids, args.gen_tokens, keep_tokens=True)["tokens"].tolist()
        print(json.dumps(line), flush=True)
        del model


# ---- main ----


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="hf_bench.py", description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", metavar="MODEL")
    ap.add_argument("--suite")
    ap.add_argument("--prompt-lengths")
    ap.add_argument("--batch")
    ap.add_argument("--gen-tokens", type=int)
    ap.add_argument("--reps", type=int)
    ap.add_argument("--warmup", type=int)
    ap.add_argument("--dtype")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--attention", choices=["sdpa", "eager"])
    ap.add_argument("--cache", choices=["dynamic", "static"], default="dynamic")
    ap.add_argument("--compile", choices=["auto", "on", "off"], default="auto",
                    help="torch.compile the decode step (auto: with --cache static)")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-o", "--output", default="hf-bench.json")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--save-checkpoint", metavar="DIR", help="save each MODEL to DIR/NAME (save_pretrained)")
    ap.add_argument("--greedy-ids", metavar="IDS", help="'1,2,3' (';' between batch rows): print greedy tokens")
    args = ap.parse_args(argv)
    suite = load_suite(args.suite) if args.suite else {}

    def pick(attr, key, default):
        v = getattr(args, attr)
        return v if v is not None else suite.get(key, default)

    args.suite_name = suite.get("name", "")
    if not args.models:
        args.models = list(suite.get("models", []))
    if not args.models:
        raise UsageError("no MODEL (give one or more, or --suite)")
    pl = pick("prompt_lengths", "prompt_lengths", "128,512")
    args.prompt_lengths = parse_int_list(",".join(map(str, pl)) if isinstance(pl, list) else pl, "--prompt-lengths")
    b = pick("batch", "batch", "1")
    args.batch = parse_int_list(",".join(map(str, b)) if isinstance(b, list) else b, "--batch")
    args.gen_tokens = pick("gen_tokens", "gen_tokens", 32)
    args.reps = pick("reps", "reps", 3)
    args.warmup = pick("warmup", "warmup", 1)
    args.dtype = pick("dtype", "dtype", "auto")
    args.attention = pick("attention", "attention", "sdpa")
    args.threads = pick("threads", "threads", None)
    if args.gen_tokens < 1 or args.reps < 1 or args.warmup < 0:
        raise UsageError("--gen-tokens and --reps must be >= 1, --warmup >= 0")
    if args.attention not in ("sdpa", "eager"):
        raise UsageError(f"--attention: '{args.attention}' (sdpa, eager)")
    if args.output.endswith(".jsonl"):
        raise UsageError("-o: give the .json name; the points go to the .jsonl beside it")
    return args


def main(argv=None) -> int:
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        warnings.filterwarnings("ignore")
        import torch
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        if args.threads:
            torch.set_num_threads(args.threads)
        device = device_of(args.device)
        dtype_of(args.dtype, device)
    except UsageError as e:
        print(f"hf_bench.py: {e}", file=sys.stderr)
        return 2
    if args.save_checkpoint or args.greedy_ids:
        save_and_generate(args, device)
        return 0
    env = environment(args, device)
    out = Path(args.output)
    if out.parent:
        out.parent.mkdir(parents=True, exist_ok=True)
    jsonl_path = out.with_suffix(".jsonl")
    with open(jsonl_path, "w") as jsonl:
        points, interrupted = run_sweep(args, device, env, jsonl)
    _, dtype_name = dtype_of(args.dtype, device)
    failed = sum(p["status"] != "ok" for p in points)
    doc = {
        "schema": "effarch-bench",
        "schema_version": SCHEMA_VERSION,
        "environment": env,
        "command_line": ["tools/hf_bench.py"] + (sys.argv[1:] if argv is None else list(argv)),
        "settings": {"suite": args.suite_name, "models": args.models, "prompt_lengths": args.prompt_lengths,
                     "batch": args.batch, "gen_tokens": args.gen_tokens, "reps": args.reps, "warmup": args.warmup,
                     "dtype": args.dtype, "device": args.device, "cuda_graphs": "off", "pdl": "off", "attention": args.attention,
                     "backend": "auto", "threads": args.threads, "modes": ["speed", "memory"],
                     "memory_limit_bytes": None, "cache": args.cache, "compile": compile_used(args)},
        "points": points,
        "scaling": scaling(points),
        "interrupted": interrupted,
        "summary": {"points": len(points), "failed": failed},
    }
    tmp = str(out) + ".partial"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1)
    os.replace(tmp, out)
    print(f"wrote {out} ({len(points)} point(s), {failed} failed; engine transformers {env['engine']['version']}, "
          f"{args.attention}, {args.cache} cache, compile {compile_used(args)}, {env['host']['aten_threads']} threads)")
    if interrupted:
        return 130
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
