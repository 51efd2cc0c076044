#!/usr/bin/env python3
"""Plots effarch bench results: memory vs context and tokens/s vs context, per model.

Usage: plot_results.py RESULTS.json [MORE.json ...] -o curves.png   (or .svg, .pdf)
       plot_results.py RESULTS.json ... --split -o report.png  (report-memory.png, report-prefill.png,
                                                                report-decode.png: one chart each)

Three panels, log-log axes, one line per (model, dtype, batch, generated tokens, device, graphs, pdl,
backend, the ops that ran a CUDA kernel, weights): peak memory and cache bytes against prompt length; prefill tokens/s; decode tokens/s. Points that ran out of memory
are marked with an x at the top of the panel (their model's colour), errors with a + .
Uses only matplotlib (Debian: python3-matplotlib) and the standard library.
"""
import argparse
import json
import sys

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError as e:  # matplotlib, or a module it needs, is not installed for this Python
    missing = getattr(e, "name", None) or "matplotlib"
    sys.exit(f"plot_results.py: {sys.executable} cannot import {missing} ({e}): this script needs matplotlib. "
             f"Install it for this Python ({sys.executable} -m pip install matplotlib; Debian/Ubuntu: "
             "apt install python3-matplotlib), or run the script with a Python that has it.")


def load(paths):
    points = []
    for path in paths:
        with open(path) as f:
            doc = json.load(f)
        if doc.get("schema") != "effarch-bench":
            sys.exit(f"{path}: not an effarch bench results file")
        for p in doc["points"]:
            points.append(p)
    return points


def series_name(key):
    graphs = ", graphs" if key.get("cuda_graphs") == "on" else ""
    graphs += ", pdl" if key.get("pdl") == "on" else ""
    # Schema 2 keys say what ran: a reference run and a kernel run are separate lines.
    backend = f", {key['backend']}" if key.get("backend", "auto") != "auto" else ""
    kernels = sorted(f for f, impl in key.get("implementations", {}).items() if impl == "cuda")
    ops = f", cuda: {'+'.join(kernels)}" if kernels else ""
    weights = f", {key['weights']} weights" if key.get("weights", key["dtype"]) != key["dtype"] else ""
    return (f"{key['model']} ({key['dtype']}, batch {key['batch']}, gen {key['gen_tokens']}, {key['device']}"
            f"{graphs}{backend}{ops}{weights})")


def stat(p, *path):
    v = p
    for k in path:
        if not isinstance(v, dict) or k not in v:
            return None
        v = v[k]
    return v["mean"] if isinstance(v, dict) else v


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+")
    ap.add_argument("-o", "--output", required=True, help="PNG, SVG or PDF")
    ap.add_argument("--split", action="store_true",
                    help="one chart per panel: OUTPUT's stem + -memory, -prefill, -decode")
    args = ap.parse_args()
    points = load(args.results)
    if not points:
        sys.exit("no points to plot")

    series = {}
    for p in points:
        series.setdefault(series_name(p["key"]), []).append(p)
    panels = [("peak memory (bytes; dashed: cache)", ("memory", "peak_bytes"), ("memory", "cache_bytes")),
              ("prefill tokens/s", ("speed", "prefill_tokens_per_s"), None),
              ("decode tokens/s", ("speed", "decode_tokens_per_s"), None)]
    if args.split:
        # One chart per question (effarch report links them): STEM-memory, STEM-prefill, STEM-decode.
        stem, dot, ext = args.output.rpartition(".")
        for panel, suffix in zip(panels, ["memory", "prefill", "decode"]):
            fig, ax = plt.subplots(1, 1, figsize=(8, 5.5))
            draw(series, [ax], [panel], fig)
            out = f"{stem}-{suffix}.{ext}" if dot else f"{args.output}-{suffix}"
            fig.savefig(out)
            plt.close(fig)
            print(f"{out}: {len(points)} points, {len(series)} series")
        return
    fig, axes = plt.subplots(1, 3, figsize=(17, 5))
    draw(series, axes, panels, fig)
    fig.savefig(args.output)
    print(f"{args.output}: {len(points)} points, {len(series)} series")


def draw(series, axes, panels, fig):
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, pts) in enumerate(sorted(series.items())):
        colour = colours[i % len(colours)]
        pts = sorted(pts, key=lambda p: p["key"]["prompt_len"])
        for ax, (title, path, dashed) in zip(axes, panels):
            ok = [(p["key"]["prompt_len"], stat(p, *path)) for p in pts if p["status"] == "ok"]
            ok = [(x, y) for x, y in ok if y]
            if ok:
                ax.plot(*zip(*ok), "o-", color=colour, label=name)
            if dashed:
                extra = [(p["key"]["prompt_len"], stat(p, *dashed)) for p in pts if p["status"] == "ok"]
                extra = [(x, y) for x, y in extra if y]
                if extra:
                    ax.plot(*zip(*extra), "--", color=colour, alpha=0.6)
            for p in pts:
                if p["status"] != "ok":
                    ax.plot([p["key"]["prompt_len"]], [1], "x" if p["status"] == "oom" else "+", color=colour,
                            markersize=12, mew=2, transform=ax.get_xaxis_transform(), clip_on=False,
                            label=f"{name}: {p['status']}")
    for ax, (title, _, _) in zip(axes, panels):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("prompt length (tokens)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    seen = {}
    for ax in axes:
        for h, l in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(l, h)
    fig.legend(list(seen.values()), list(seen.keys()), loc="lower center", ncol=2 if len(axes) == 1 else 3, fontsize=8)
    fig.tight_layout(rect=(0, 0.12 if len(axes) == 3 else 0.22, 1, 1))


if __name__ == "__main__":
    main()
