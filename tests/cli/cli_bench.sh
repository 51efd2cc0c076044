#!/usr/bin/env bash
# effarch bench on the CPU: the quickstart suite end to end (every figure present and sane, the
# scaling table: a Transformer's cache grows, Mamba's does not), every output format, a forced
# out-of-memory point recorded while the others complete, an error point, SIGINT mid-sweep
# leaving valid JSON with the finished points, the plot script, and bad flags.
source "$(dirname "$0")/lib.sh"
cd "$SCRATCH"

expect_exit 0 "Scaling with prompt length" "$EFFARCH" bench --suite quickstart -o qs.json --no-progress
"$PYTHON" - <<'PY' || fail "quickstart results"
import json, sys
doc = json.load(open("qs.json"))
bad = []
assert doc["schema"] == "effarch-bench" and doc["schema_version"] == 2
if doc["settings"]["backend"] != "auto": bad.append(f"settings.backend {doc['settings']['backend']}")
env = doc["environment"]
for k in ["time", "effarch", "host", "device", "libtorch", "harness_timer_overhead_s"]:
    if k not in env: bad.append(f"environment lacks {k}")
if env.get("programmatic_launch") != "off": bad.append(f"programmatic_launch {env.get('programmatic_launch')} on the CPU")
for k in ["copy_bandwidth_bytes_per_s", "gemm_flops_per_s", "name", "memory_bytes"]:
    if not env["device"].get(k): bad.append(f"device lacks {k}")
models = ["tiny-llama", "tiny-mamba", "tiny-mamba2", "tiny-mixtral", "tiny-jamba"]
pts = doc["points"]
if len(pts) != 15: bad.append(f"{len(pts)} points, expected 15")
if [p["key"]["model"] for p in pts] != [m for m in models for _ in range(3)]: bad.append("models not in order, each loaded once")
for p in pts:
    k = p["key"]
    # What ran is part of the key: the backend asked for, each op family's implementation, the weights.
    if k["backend"] != "auto" or k["weights"] != k["dtype"]: bad.append(f"key {k}")
    # On the CPU auto runs the CPU kernel where a family has one (the Mamba-1 and Mamba-2 scans, the MoE dispatch), else the reference.
    # The block boundaries' add + norm stays in its own op (add_norm_in_gemv: separate; the norm in
    # the GEMV's prologue needs the CUDA kernels).
    cpu_ops = {"selective_scan", "selective_state_update", "ssd_scan", "ssd_state_update", "moe_dispatch"}
    if any(v != ("separate" if f == "add_norm_in_gemv" else "cpu" if f in cpu_ops else "reference")
           for f, v in k["implementations"].items()):
        bad.append(f"not the CPU kernel or reference on the CPU: {k}")
    if k["model"] in ("tiny-mamba", "tiny-mamba2", "tiny-jamba") and not k["implementations"]:
        bad.append(f"{k['model']}: no implementations recorded")
    if p["status"] != "ok": bad.append(f"{k}: {p['status']} {p.get('error')}"); continue
    s = p["speed"]
    for m in ["prefill_s", "prefill_tokens_per_s", "ttft_s", "decode_tokens_per_s"]:
        st = s[m]
        if len(st["samples"]) != 3: bad.append(f"{k['model']} {m}: {len(st['samples'])} samples, expected 3 reps")
        if not (st["min"] <= st["median"] <= st["max"]) or st["mean"] <= 0: bad.append(f"{k['model']} {m}: {st}")
    for q in ["p50", "p90", "p99"]:
        if s["decode_step_s"][q]["mean"] <= 0: bad.append(f"{k['model']} {q}")
    if s["decode_step_s"]["p50"]["mean"] > s["decode_step_s"]["p99"]["mean"] * 1.0001: bad.append("p50 > p99")
    # prefill tok/s is batch x prompt / prefill time, and TTFT includes the prefill
    if abs(s["prefill_tokens_per_s"]["samples"][0] - k["batch"] * k["prompt_len"] / s["prefill_s"]["samples"][0]) > 1e-6 * s["prefill_tokens_per_s"]["samples"][0]:
        bad.append("prefill tok/s is not batch x prompt / prefill time")
    if any(t < pf for t, pf in zip(s["ttft_s"]["samples"], s["prefill_s"]["samples"])): bad.append("TTFT below prefill time")
    m = p["memory"]
    if m["source"] != "cpu_counting_allocator": bad.append(m["source"])
    if not (m["peak_bytes"] >= m["weights_bytes"] + m["cache_bytes"]): bad.append(f"{k}: peak below weights + cache")
    if m["cache_bytes"] != m["kv_cache_bytes"] + m["state_bytes"]: bad.append("cache split")
    r = p["roofline"]
    if not (0 < r["decode_fraction_of_bandwidth"] and 0 < r["prefill_fraction_of_gemm"]): bad.append(f"roofline {r}")
    if not (0 <= p["harness_overhead_fraction"] < 0.01): bad.append(f"harness overhead {p['harness_overhead_fraction']}")
sc = {s["model"]: s for s in doc["scaling"]}
if abs(sc["tiny-mamba"]["cache_exponent"]) > 1e-9: bad.append("Mamba's cache grows with the prompt")
if abs(sc["tiny-mamba2"]["cache_exponent"]) > 1e-9: bad.append("Mamba-2's cache grows with the prompt")
if not sc["tiny-llama"]["cache_exponent"] > 0.8: bad.append(f"Transformer cache exponent {sc['tiny-llama']['cache_exponent']}")
jsonl = [json.loads(l) for l in open("qs.jsonl")]
if jsonl != pts: bad.append("the JSON Lines file differs from the final points")
print("\n".join(bad)); sys.exit(1 if bad else 0)
PY

# Issue 16 in the quickstart's results: --cuda-graphs auto ran eager on the CPU (the key records
# the mode that ran), the load time of each model, and the machine's load around each point.
"$PYTHON" - <<'PY' || fail "auto graphs, load time, machine load"
import json, sys
doc = json.load(open("qs.json"))
bad = []
if doc["settings"]["cuda_graphs"] != "auto": bad.append(f"settings.cuda_graphs {doc['settings']['cuda_graphs']}")
# Energy: RAPL where readable (points carry it), else the reason in the environment.
en = doc["environment"].get("energy")
if not en or (en["source"] is None and not en.get("unavailable_reason")) or en["source"] not in (None, "rapl"):
    bad.append(f"environment.energy {en}")
for p in doc["points"]:
    if ("energy" in p) != (en and en["source"] == "rapl"): bad.append(f"{p['key']['model']}: energy {p.get('energy')}")
    elif "energy" in p and not (p["energy"]["prefill_joules"] >= 0 and p["energy"]["average_power_w"] >= 0):
        bad.append(f"energy {p['energy']}")
for p in doc["points"]:
    k = p["key"]
    if k["cuda_graphs"] != "off": bad.append(f"{k['model']}: auto resolved to {k['cuda_graphs']} on the CPU")
    ld = p.get("load")
    if not ld or ld["seconds"] <= 0 or ld["weights_bytes"] != p["memory"]["weights_bytes"]:
        bad.append(f"{k['model']}: load {ld}")
    elif abs(ld["bytes_per_s"] - ld["weights_bytes"] / ld["seconds"]) > 1e-6 * ld["bytes_per_s"]:
        bad.append(f"{k['model']}: load GB/s")
    ml = p.get("machine_load")
    if not ml or ml["cores"] < 1 or ml["threads"] < 1 or "before" not in ml or "after" not in ml:
        bad.append(f"{k['model']}: machine_load {ml}")
    elif ml["busy"] != p.get("busy", False): bad.append("busy flag and machine_load disagree")
print("\n".join(bad)); sys.exit(1 if bad else 0)
PY
# The table fits the terminal: $COLUMNS when stdout is not one, else 120; --wide has every column.
env -u COLUMNS "$EFFARCH" bench tiny-llama --prompt-lengths 16 --gen-tokens 4 --reps 2 --warmup 0 -o w.json > w120.out \
  2>/dev/null || fail "default table run"
grep -q "decode tok/s" w120.out && ! grep -q "TTFT ms" w120.out || fail "default table columns: $(head -3 w120.out)"
"$PYTHON" -c '
import sys
lines = [l for l in open(sys.argv[1]).read().split("\n\n")[0].splitlines() if l.startswith("|")]
sys.exit(0 if lines and max(len(l) for l in lines) <= int(sys.argv[2]) else 1)' w120.out 120 \
  || fail "the default table is wider than 120: $(head -1 w120.out)"
COLUMNS=60 "$EFFARCH" bench tiny-llama --prompt-lengths 16 --gen-tokens 4 --reps 2 --warmup 0 -o w.json > w60.out \
  2>/dev/null || fail "COLUMNS=60 run"
"$PYTHON" -c '
import sys
lines = [l for l in open(sys.argv[1]).read().split("\n\n")[0].splitlines() if l.startswith("|")]
sys.exit(0 if lines and max(len(l) for l in lines) <= int(sys.argv[2]) else 1)' w60.out 60 \
  || fail "COLUMNS=60: $(head -1 w60.out)"
expect_exit 0 "TTFT ms" "$EFFARCH" bench tiny-llama --prompt-lengths 16 --gen-tokens 4 --reps 1 --warmup 0 -o w.json --wide
# A machine too busy to measure (a loadavg fixture with 64 other runnable threads): a warning on
# stderr and "busy": true on the point, its figures kept.
echo "70.00 60.00 50.00 65/900 4242" > busy-loadavg
EFFARCH_LOADAVG=busy-loadavg "$EFFARCH" bench tiny-llama --prompt-lengths 16 --gen-tokens 4 --reps 1 --warmup 0 \
  -o busy.json --no-progress > busy.out 2> busy.err || fail "busy run: $(tail -3 busy.err)"
grep -q "warning: tiny-llama .*too busy to time: other runnable threads before 64.*its timings may be far too low" busy.err \
  || fail "no busy warning: $(cat busy.err)"
grep -q "ran while the machine was too busy" busy.out || fail "no busy note under the table"
"$PYTHON" -c '
import json, sys
p = json.load(open("busy.json"))["points"][0]
ml = p["machine_load"]
ok = p["busy"] is True and ml["busy"] and ml["before"]["others_runnable"] == 64 and ml["before"]["load1"] == 70.0
ok = ok and p["status"] == "ok" and "speed" in p
sys.exit(0 if ok else 1)' || fail "busy point: $(head -c 600 busy.json)"
# Without --threads: the default that leaves other work a core (cores - 1, fewer when the machine
# is already busy; at least 1), recorded as what ATen used.
EFFARCH_LOADAVG=busy-loadavg "$EFFARCH" bench tiny-llama --prompt-lengths 16 --gen-tokens 2 --reps 1 --warmup 0 \
  --mode memory -o busy-threads.json > busy-memory.out 2> busy-memory.err || fail "busy threads run"
"$PYTHON" -c '
import json, sys
d = json.load(open("busy-threads.json"))
sys.exit(0 if d["environment"]["host"]["aten_threads"] == 1 and d["settings"]["threads"] is None else 1)' \
  || fail "default threads on a busy machine are not 1"
# That run measured memory only, which the machine's load does not change: the load is recorded,
# but the point is not flagged busy, and neither the warning nor the note appears.
grep -q "too busy" busy-memory.err && fail "--mode memory warned of a busy machine: $(cat busy-memory.err)"
grep -q "too busy" busy-memory.out && fail "--mode memory noted a busy machine: $(cat busy-memory.out)"
"$PYTHON" -c '
import json, sys
p = json.load(open("busy-threads.json"))["points"][0]
ml = p["machine_load"]
sys.exit(0 if "busy" not in p and not ml["busy"] and ml["before"]["others_runnable"] == 64 and "memory" in p else 1)' \
  || fail "a memory-only point flagged busy: $(head -c 600 busy-threads.json)"

# effarch report on the quickstart's results: every number re-derived from qs.json, the verdict
# lines computed (a crafted copy where tiny-jamba decodes fastest flips one), dashboards.
expect_exit 0 "wrote report.md" "$EFFARCH" report qs.json -o report.md --python /usr/bin/python3
# A --python that cannot run is refused naming it and the option, before anything is written (it
# was reported as a Python without matplotlib); the default python3 missing costs the plots only,
# said in the report and on stderr.
expect_exit 2 "--python: no-such-dir/python3 does not exist (the Python that draws the plots" \
  "$EFFARCH" report qs.json -o no-python.md --python no-such-dir/python3
expect_exit 2 "--python: no-such-python-here is not on PATH" "$EFFARCH" report qs.json -o no-python.md \
  --python no-such-python-here
[[ ! -e no-python.md ]] || fail "report with a --python that cannot run wrote its report"
expect_exit 0 "note: no plots: python3 (the default --python) is not on PATH; give --python PATH" \
  env PATH=/no-such-dir "$EFFARCH" report qs.json -o default-python.md
grep -q "None: python3 (the default --python) is not on PATH" default-python.md \
  || fail "the report does not say why it has no plots: $(tail -3 default-python.md)"
for chart in memory prefill decode; do
  [[ $(head -c 4 report-$chart.png | od -An -c | tr -d ' ') == 211PNG ]] || fail "report-$chart.png is not a PNG"
  grep -q "<svg" report-$chart.svg || fail "report-$chart.svg"
  grep -q "](report-$chart.png)" report.md || fail "report.md does not link report-$chart.png"
done
"$PYTHON" - <<'PY' || fail "report numbers"
import json, math, re, sys
doc = json.load(open("qs.json"))
md = open("report.md").read()
bad = []
pts = [p for p in doc["points"] if p["status"] == "ok"]
models = sorted({p["key"]["model"] for p in pts})
def slope(xy):
    n = len(xy); lx = [math.log(x) for x, _ in xy]; ly = [math.log(y) for _, y in xy]
    mx, my = sum(lx) / n, sum(ly) / n
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)
rows = {l.split("|")[1].strip(): [c.strip() for c in l.split("|")[1:-1]] for l in md.splitlines() if l.startswith("| tiny-")}
for m in models:
    mine = sorted((p for p in pts if p["key"]["model"] == m), key=lambda p: p["key"]["prompt_len"])
    r = rows.get(m)
    if not r: bad.append(f"no row for {m}"); continue
    lens = [p["key"]["prompt_len"] for p in mine]
    if r[2] != ",".join(map(str, lens)): bad.append(f"{m} lengths {r[2]}")
    for col, xy in [(3, [(p["key"]["prompt_len"], p["speed"]["prefill_s"]["median"]) for p in mine]),
                    (4, [(p["key"]["prompt_len"], p["memory"]["peak_bytes"]) for p in mine]),
                    (5, [(p["key"]["prompt_len"], p["memory"]["cache_bytes"]) for p in mine])]:
        want = f"{slope(xy):.2f}"
        if not r[col].startswith(want) and not r[col].startswith(want.replace("-0.00", "0.00")):
            bad.append(f"{m} column {col}: {r[col]} vs {want}")
    if r[7] != f"{mine[0]['speed']['decode_tokens_per_s']['mean']:.1f}": bad.append(f"{m} short decode {r[7]}")
    if r[8] != f"{mine[-1]['speed']['decode_tokens_per_s']['mean']:.1f}": bad.append(f"{m} long decode {r[8]}")
longest = max(p["key"]["prompt_len"] for p in pts)
at = [p for p in pts if p["key"]["prompt_len"] == longest]
best = max(at, key=lambda p: p["speed"]["decode_tokens_per_s"]["mean"])
line = f"**Highest decode rate** at {longest} prompt tokens: **{best['key']['model']}** ({best['speed']['decode_tokens_per_s']['mean']:.1f} tok/s)"
if line not in md: bad.append(f"no line: {line}")
small = min(at, key=lambda p: p["memory"]["cache_bytes"])
if f"**Smallest cache** at {longest} prompt tokens: **{small['key']['model']}**" not in md: bad.append("smallest cache")
fast = max(at, key=lambda p: p["speed"]["prefill_tokens_per_s"]["mean"])
if f"**Fastest prefill** at {longest} prompt tokens: **{fast['key']['model']}**" not in md: bad.append("fastest prefill")
# The crafted copy: tiny-jamba decodes fastest at the longest prompt.
for p in doc["points"]:
    if p["key"]["model"] == "tiny-jamba" and p["key"]["prompt_len"] == longest:
        p["speed"]["decode_tokens_per_s"]["mean"] = 1e9
json.dump(doc, open("crafted.json", "w"))
print("\n".join(bad)); sys.exit(1 if bad else 0)
PY
expect_exit 0 "**Highest decode rate** at 1024 prompt tokens: **tiny-jamba** (1000000000.0 tok/s)" "$EFFARCH" report crafted.json
expect_exit 2 "--format: unknown format 'xml'" "$EFFARCH" report qs.json --format xml
# Dashboards: github-action-benchmark's custom arrays and Bencher's BMF, for bench and report.
"$EFFARCH" report qs.json --format github-bigger > gab-bigger.json || fail "report --format github-bigger"
"$EFFARCH" report qs.json --format github-smaller > gab-smaller.json || fail "report --format github-smaller"
"$EFFARCH" report qs.json --format bmf > bmf.json || fail "report --format bmf"
"$EFFARCH" bench tiny-mamba --prompt-lengths 16 --gen-tokens 4 --reps 2 --warmup 0 -o d.json --format bmf > bench-bmf.json \
  || fail "bench --format bmf"
"$PYTHON" - <<'PY' || fail "dashboard shapes"
import json, sys
bad = []
for f in ["gab-bigger.json", "gab-smaller.json"]:
    d = json.load(open(f))
    if not isinstance(d, list) or not d: bad.append(f"{f}: not a non-empty array"); continue
    for e in d:
        if set(e) - {"name", "unit", "value", "range", "extra"}: bad.append(f"{f}: keys {set(e)}")
        if not (isinstance(e["name"], str) and isinstance(e["unit"], str) and isinstance(e["value"], (int, float))):
            bad.append(f"{f}: {e}")
big = json.load(open("gab-bigger.json"))
if len(big) != 30 or {e["unit"] for e in big} != {"tokens/s"}: bad.append(f"bigger: {len(big)} entries")
q = json.load(open("qs.json"))
keys = {e["name"].rsplit(" | ", 1)[0] for e in big}
if len(keys) != 15: bad.append("the benchmark names are not the 15 point keys")
for f in ["bmf.json", "bench-bmf.json"]:
    d = json.load(open(f))
    for bench, measures in d.items():
        for m, v in measures.items():
            if not isinstance(v.get("value"), (int, float)) or set(v) - {"value", "lower_value", "upper_value"}:
                bad.append(f"{f}: {bench} {m} {v}")
if len(json.load(open("bmf.json"))) != 15: bad.append("bmf: not one benchmark per point")
print("\n".join(bad)); sys.exit(1 if bad else 0)
PY

# MoE decode roofline: one token reads its top-k experts per layer; a batch reads every expert
# any of its tokens picked (counted in the warm-up run), so the bytes a step reads grow with it.
"$EFFARCH" bench tiny-mixtral --batch 1,4 --prompt-lengths 16 --gen-tokens 8 --reps 1 --warmup 1 -o moe.json \
  --no-progress > moe.out 2>&1 || fail "tiny-mixtral batch 1,4: $(tail -3 moe.out)"
"$EFFARCH" bench tiny-mixtral --batch 4 --prompt-lengths 16 --gen-tokens 8 --reps 1 --warmup 0 -o moe0.json \
  --no-progress > moe0.out 2>&1 || fail "tiny-mixtral without warm-up: $(tail -3 moe0.out)"
"$PYTHON" - <<'PY' || fail "MoE decode roofline"
import json, sys
r = {p["key"]["batch"]: p["roofline"] for p in json.load(open("moe.json"))["points"]}
r0 = json.load(open("moe0.json"))["points"][0]["roofline"]
bad = []
if r[1]["decode_experts_per_moe_layer"] != 2 or r[1]["decode_experts_source"] != "measured": bad.append(f"batch 1: {r[1]}")
if not 2 < r[4]["decode_experts_per_moe_layer"] <= 8: bad.append(f"batch 4: {r[4]}")
if not r[4]["decode_bytes_per_step"] > r[1]["decode_bytes_per_step"]: bad.append("batch 4 reads no more than batch 1")
if r0["decode_experts_source"] != "uniform_routing_estimate" or abs(r0["decode_experts_per_moe_layer"] - 8 * (1 - 0.75 ** 4)) > 1e-9:
    bad.append(f"no warm-up: {r0}")
print("\n".join(bad)); sys.exit(1 if bad else 0)
PY
# --backend reference and auto both run on the CPU, recorded in the key and the settings; a suite
# file's "backend" likewise; compare keeps the two backends' points apart.
"$EFFARCH" bench tiny-mamba --backend reference --prompt-lengths 16 --gen-tokens 4 --reps 1 --warmup 0 -o ref.json \
  --no-progress > ref.out 2>&1 || fail "--backend reference: $(tail -3 ref.out)"
"$EFFARCH" bench tiny-mamba --prompt-lengths 16 --gen-tokens 4 --reps 1 --warmup 0 -o auto.json \
  --no-progress > auto.out 2>&1 || fail "--backend auto: $(tail -3 auto.out)"
echo '{"models": ["tiny-mamba"], "prompt_lengths": [16], "gen_tokens": 4, "reps": 1, "warmup": 0, "backend": "reference"}' \
  > ref-suite.json
"$EFFARCH" bench --suite ref-suite.json -o ref-suite-out.json --no-progress > ref-suite.out 2>&1 \
  || fail "suite with a backend: $(tail -3 ref-suite.out)"
"$PYTHON" - <<'PY' || fail "backend in the results"
import json, sys
r, a, s = (json.load(open(f)) for f in ["ref.json", "auto.json", "ref-suite-out.json"])
bad = []
for d, want in [(r, "reference"), (a, "auto"), (s, "reference")]:
    p = d["points"][0]
    if p["status"] != "ok" or p["key"]["backend"] != want or d["settings"]["backend"] != want: bad.append(f"{want}: {p['key']}")
    cpu_ops = {"selective_scan", "selective_state_update", "ssd_scan", "ssd_state_update", "moe_dispatch"}
    if any(v != ("separate" if f == "add_norm_in_gemv" else "cpu" if want == "auto" and f in cpu_ops else "reference")
           for f, v in p["key"]["implementations"].items()):
        bad.append(f"{want}: {p['key']['implementations']}")
print("\n".join(bad)); sys.exit(1 if bad else 0)
PY
# Different backends are different points: nothing matches, so compare lists them and fails (a
# gate that compared nothing must not pass).
expect_exit 1 "0 matched point(s)" "$EFFARCH" compare auto.json ref.json
expect_exit 1 "only in ref.json: tiny-mamba float32 b1 p16 g4 cpu graphs=off backend=reference" "$EFFARCH" compare auto.json ref.json
expect_exit 0 "1 matched point(s)" "$EFFARCH" compare ref.json ref-suite-out.json --metric peak_bytes
expect_exit 2 "--backend" "$EFFARCH" bench tiny-mamba --backend fastest
# --backend cuda for CPU tensors (and where an op tiny-mamba uses has no kernel): its points are errors.
expect_exit 1 "cpu graphs=off backend=cuda weights=float32: error: loading tiny-mamba" "$EFFARCH" bench tiny-mamba \
  --device cpu --backend cuda --prompt-lengths 16 --gen-tokens 2 --reps 1 --warmup 0 -o cuda.json
echo '{"models": ["tiny-llama"], "backend": "fastest"}' > bad-backend-suite.json
expect_exit 2 "bad-backend-suite.json: 'backend'" "$EFFARCH" bench --suite bad-backend-suite.json
echo '{"models": ["tiny-llama"], "mode": ["speed", "fast"]}' > bad-mode-suite.json
expect_exit 2 "bad-mode-suite.json: 'mode': unknown mode 'fast'" "$EFFARCH" bench --suite bad-mode-suite.json

expect_exit 2 "-o: 'x.jsonl' ends in .jsonl" "$EFFARCH" bench tiny-llama -o x.jsonl
# Output paths are checked before anything runs, and a usage error found later (what the device
# allows) leaves the last run's files as they were.
mkdir -p out-dir
expect_exit 2 "-o: out-dir is a directory" "$EFFARCH" bench tiny-llama --prompt-lengths 16 -o out-dir
expect_exit 2 "-o: the path is empty" "$EFFARCH" bench tiny-llama --prompt-lengths 16 -o ""
expect_exit 2 "-o: cannot write no-dir/x.json: the folder no-dir does not exist" "$EFFARCH" bench tiny-llama -o no-dir/x.json
[[ -e out-dir.jsonl || -e out-dir.partial || -e .jsonl || -e .partial ]] && fail "a refused -o left files behind"
printf '{"kept": 1}\n' > keep.jsonl
for bad in "--device cuda" "--dtype float64" "--pdl off,on"; do
  # shellcheck disable=SC2086
  expect_exit 2 "" "$EFFARCH" bench tiny-llama --prompt-lengths 16 --gen-tokens 2 -o keep.json $bad
  grep -q kept keep.jsonl || fail "bench $bad (a usage error) truncated the last run's keep.jsonl"
done

# Formats.
"$EFFARCH" bench tiny-llama --prompt-lengths 16,32 --gen-tokens 4 --reps 1 --warmup 0 -o f.json --format csv > f.csv \
  || fail "csv run"
[[ $(wc -l < f.csv) == 3 && $(head -1 f.csv) == model,dtype,batch,* ]] || fail "csv: $(cat f.csv)"
# A spreadsheet reads every figure as a number: the JSON's values, in units the header names.
"$PYTHON" - <<'PY' || fail "csv figures are not the JSON's numbers: $(cat f.csv)"
import csv, json
rows = list(csv.DictReader(open("f.csv")))
pts = json.load(open("f.json"))["points"]
text = {"model", "dtype", "status", "busy", "backend", "graphs", "pdl"}
for r in rows:
    for k, v in r.items():
        if k not in text and v != "": float(v)
for r, p in zip(rows, pts):
    s = p["speed"]
    assert float(r["prefill tok/s"]) == s["prefill_tokens_per_s"]["mean"], r
    assert float(r["prefill tok/s stddev"]) == s["prefill_tokens_per_s"]["stddev"], r
    assert float(r["TTFT s"]) == s["ttft_s"]["mean"] and float(r["step p99 s"]) == s["decode_step_s"]["p99"]["mean"], r
    assert int(r["peak mem bytes"]) == p["memory"]["peak_bytes"] and int(r["cache bytes"]) == p["memory"]["cache_bytes"], r
PY
"$EFFARCH" bench tiny-llama --prompt-lengths 16 --gen-tokens 4 --reps 1 --warmup 0 -o f.json --format json > f.stdout.json \
  || fail "json run"
"$PYTHON" -c 'import json,sys; d=json.load(open("f.stdout.json")); sys.exit(0 if d["points"][0]["status"]=="ok" else 1)' \
  || fail "--format json is not the document"
expect_exit 0 "| tiny-llama" "$EFFARCH" bench tiny-llama --prompt-lengths 16 --gen-tokens 4 --reps 1 -o f.json --format md
expect_exit 0 '"status":"ok"' "$EFFARCH" bench tiny-llama --prompt-lengths 16 --gen-tokens 4 --reps 1 -o f.json --format jsonl
expect_exit 0 "tiny-mamba" "$EFFARCH" bench tiny-mamba --prompt-lengths 16,64 --gen-tokens 2 --mode memory --threads 1 -o mem.json
"$PYTHON" -c 'import json,sys; d=json.load(open("mem.json")); p=d["points"][0]; sys.exit(0 if "memory" in p and "speed" not in p else 1)' \
  || fail "--mode memory"
"$PYTHON" -c '
import json, sys
m, q = json.load(open("mem.json")), json.load(open("qs.json"))
ok = m["settings"]["threads"] == 1 and m["environment"]["host"]["aten_threads"] == 1
ok = ok and q["settings"]["threads"] is None and q["environment"]["host"]["aten_threads"] >= 1
sys.exit(0 if ok else 1)' || fail "--threads is not applied or not recorded"

# A forced out-of-memory point and an error point (a checkpoint folder without weights); the others
# complete; exit 1 after writing.
mkdir -p no-weights && cp "$SRC/configs/models/tiny-llama.json" no-weights/config.json
expect_exit 1 "oom: CPU out of memory" "$EFFARCH" bench tiny-mamba no-weights --prompt-lengths 16,200000,32 \
  --gen-tokens 4 --reps 1 --warmup 0 --memory-limit 100MB -o limit.json
"$PYTHON" - <<'PY' || fail "oom/error points"
import json, sys
d = json.load(open("limit.json"))
st = [(p["key"]["model"], p["key"]["prompt_len"], p["status"]) for p in d["points"]]
want = [("tiny-mamba", 16, "ok"), ("tiny-mamba", 200000, "oom"), ("tiny-mamba", 32, "ok"),
        ("no-weights", 16, "error"), ("no-weights", 200000, "error"), ("no-weights", 32, "error")]
if st != want: print(st); sys.exit(1)
if "no model.safetensors" not in d["points"][3]["error"]: sys.exit(1)
if d["summary"]["failed"] != 4: sys.exit(1)
PY
# A MODEL that names nothing (a usage error, 2) or a config that does not parse (bad input, 1) is
# refused before anything runs: no point is measured and no results file is written.
echo '{"model_type": "llama",' > broken.json
# The allocator itself refusing (a vocabulary of 2^31 - 1 rows, a terabyte, not --memory-limit): an oom point, the
# sweep goes on, and the next model's peak does not count the refused request. (c10 once aborted
# the whole process here: its fatal-for-enforce flag is found set in this binary.)
"$PYTHON" -c "
import json; c = json.load(open('$SRC/configs/models/tiny-llama.json')); c['vocab_size'] = 2**31 - 1
json.dump(c, open('huge-vocab.json', 'w'))"
expect_exit 1 "oom: loading huge-vocab.json" "$EFFARCH" bench huge-vocab.json tiny-mamba --prompt-lengths 8 --gen-tokens 2 \
  --reps 1 --warmup 0 -o huge.json --no-progress
"$PYTHON" - <<'PY' || fail "a refused allocation: the points"
import json
p = json.load(open("huge.json"))["points"]
assert [x["status"] for x in p] == ["oom", "ok"], [x["status"] for x in p]
assert p[1]["memory"]["peak_bytes"] < 1 << 30, p[1]["memory"]
PY
expect_exit 2 "MODEL 'tiny-nonexistent' is not a checkpoint folder" "$EFFARCH" bench tiny-mamba tiny-nonexistent \
  --prompt-lengths 16 --gen-tokens 2 -o unresolved.json
expect_exit 1 "broken.json: invalid JSON" "$EFFARCH" bench tiny-mamba broken.json --prompt-lengths 16 --gen-tokens 2 -o unresolved.json
[[ ! -e unresolved.json && ! -e unresolved.jsonl ]] || fail "bench wrote results for a MODEL it refused"

# SIGINT after the first point lands in the JSON Lines file: the final JSON holds exactly the
# finished points, marked interrupted; exit 130.
"$EFFARCH" bench tiny-jamba --prompt-lengths 64,1024,2048,4096,8192 --gen-tokens 32 --reps 3 -o int.json --no-progress \
  > int.out 2>&1 &
pid=$!
for _ in $(seq 1 600); do [[ -s int.jsonl ]] && break; sleep 0.05; done
kill -INT "$pid"
rc=0; wait "$pid" || rc=$?
[[ $rc == 130 ]] || fail "SIGINT: exit $rc, expected 130"
"$PYTHON" - <<'PY' || fail "interrupted results"
import json, sys
d = json.load(open("int.json"))
lines = [json.loads(l) for l in open("int.jsonl")]
ok = d["interrupted"] and 1 <= len(d["points"]) < 5 and d["points"] == lines
ok = ok and all(p["status"] == "ok" for p in d["points"])
print(len(d["points"]), "finished points kept"); sys.exit(0 if ok else 1)
PY

# `timeout` signals the child and then its process group: the two SIGINTs arrive together and
# count as one request, so the finished points are still written.
timeout --signal=INT 4 "$EFFARCH" bench tiny-jamba --prompt-lengths 64,1024,4096,16384 --gen-tokens 64 -o to.json \
  --no-progress > to.out 2>&1 || true
"$PYTHON" -c 'import json,sys; d=json.load(open("to.json")); sys.exit(0 if d["interrupted"] else 1)' \
  || fail "under timeout --signal=INT: no interrupted results file: $(tail -3 to.out)"

# SIGTERM (`timeout`'s default signal, a scheduler's) is the same request: the finished points
# written, marked interrupted, exit 143 (it once left only the .jsonl; --preserve-status: timeout's
# own exit is 124).
rc=0
timeout --preserve-status 4 "$EFFARCH" bench tiny-jamba --prompt-lengths 64,1024,4096,16384 --gen-tokens 64 -o term.json \
  --no-progress > term.out 2>&1 || rc=$?
[[ $rc == 143 ]] || fail "under timeout (SIGTERM): exit $rc, expected 143: $(tail -3 term.out)"
"$PYTHON" -c 'import json,sys; d=json.load(open("term.json")); sys.exit(0 if d["interrupted"] else 1)' \
  || fail "under timeout (SIGTERM): no interrupted results file: $(tail -3 term.out)"

# The plot script on these results (Debian's python3-matplotlib).
if /usr/bin/python3 -c 'import matplotlib' 2>/dev/null; then
  /usr/bin/python3 "$SRC/tools/plot_results.py" qs.json limit.json -o curves.png > plot.out || fail "plot_results.py"
  [[ $(head -c 4 curves.png | od -An -c | tr -d ' ') == 211PNG ]] || fail "curves.png is not a PNG"
  /usr/bin/python3 "$SRC/tools/plot_results.py" qs.json -o curves.svg > /dev/null && grep -q "<svg" curves.svg \
    || fail "svg output"
else
  fail "python3-matplotlib is missing (tools/setup.sh installs it)"
fi
# Without matplotlib: a message naming it and how to install it, exit 1, no traceback. A package
# of that name that fails to import stands in for its absence, whatever this machine has.
mkdir -p no-matplotlib/matplotlib
echo 'raise ModuleNotFoundError("No module named '"'"'matplotlib'"'"'", name="matplotlib")' > no-matplotlib/matplotlib/__init__.py
expect_exit 1 "cannot import matplotlib" env PYTHONPATH=no-matplotlib "$PYTHON" "$SRC/tools/plot_results.py" qs.json -o x.png
expect_exit 1 "-m pip install matplotlib" env PYTHONPATH=no-matplotlib "$PYTHON" "$SRC/tools/plot_results.py" qs.json -o x.png
out=$(PYTHONPATH=no-matplotlib "$PYTHON" "$SRC/tools/plot_results.py" qs.json -o x.png 2>&1) || true
[[ $out != *Traceback* ]] || fail "plot_results.py without matplotlib: a traceback:"$'\n'"$out"

# --weights int8: recorded in the key (a point of its own beside the dense one), and the
# roofline's decode bytes are the int8 bytes read (about a quarter of fp32's for the linears).
"$EFFARCH" bench tiny-llama --prompt-lengths 16 --gen-tokens 4 --reps 1 --warmup 0 --mode speed --threads 1 \
  --no-progress -o w8.json > /dev/null 2>&1 || fail "bench --weights dense"
"$EFFARCH" bench tiny-llama --prompt-lengths 16 --gen-tokens 4 --reps 1 --warmup 0 --mode speed --threads 1 \
  --weights int8 --no-progress -o w8q.json > /dev/null 2>&1 || fail "bench --weights int8"
"$PYTHON" - <<'PY' || fail "--weights int8 not recorded in the key, or its decode bytes"
import json
d, q = (json.load(open(f))["points"][0] for f in ("w8.json", "w8q.json"))
assert d["key"]["weights"] == "float32" and q["key"]["weights"] == "int8", (d["key"]["weights"], q["key"]["weights"])
bd, bq = (p["roofline"]["decode_bytes_per_step"] for p in (d, q))
assert bq < 0.6 * bd, (bd, bq)
PY
echo '{"models": ["tiny-llama"], "prompt_lengths": [8], "gen_tokens": 2, "reps": 1, "warmup": 0, "weights": "int4"}' > w4-suite.json
expect_exit 2 "'weights'" "$EFFARCH" bench --suite w4-suite.json
# A suite's norm_prologue: its words, a bad one blamed on the key; separate is recorded in the key.
echo '{"models": ["tiny-llama"], "prompt_lengths": [8], "gen_tokens": 2, "reps": 1, "warmup": 0, "norm_prologue": "on"}' \
  > np-bad-suite.json
expect_exit 2 "'norm_prologue': unknown value 'on'" "$EFFARCH" bench --suite np-bad-suite.json
echo '{"models": ["tiny-llama"], "prompt_lengths": [8], "gen_tokens": 2, "reps": 1, "warmup": 0, "mode": ["speed"],
  "threads": 1, "norm_prologue": "separate"}' > np-suite.json
"$EFFARCH" bench --suite np-suite.json --device cpu -o np.json --no-progress > np.out 2>&1 || fail "suite norm_prologue: $(tail -3 np.out)"
"$PYTHON" - <<'PY' || fail "norm_prologue separate not recorded in the key"
import json
p = json.load(open("np.json"))["points"][0]
assert p["status"] == "ok" and p["key"]["implementations"]["add_norm_in_gemv"] == "separate", p["key"]
PY

# Launch settings side by side in one run: every point under each (eager and the static step on the
# CPU), the table's graphs column, each setting against the first after the tables, and compare of
# the one file (on the peak bytes: the CPU's timings swing, tenfold under the sanitizers; the
# pairing is what is checked).
"$EFFARCH" bench tiny-llama tiny-mamba --prompt-lengths 8,16 --gen-tokens 3 --reps 1 --warmup 0 --threads 1 \
  --cuda-graphs off,static --no-progress -o ab.json > ab.out 2>&1 || fail "bench --cuda-graphs off,static: $(cat ab.out)"
grep -q '| backend | graphs | pdl |' ab.out || fail "no backend, graphs and pdl columns: $(head -3 ab.out)"
grep -q '== backend=auto graphs=static pdl=off vs backend=auto graphs=off pdl=off' ab.out || fail "no side-by-side report: $(cat ab.out)"
"$PYTHON" - <<'PY' || fail "side-by-side results"
import json
doc = json.load(open("ab.json"))
keys = [(p["key"]["model"], p["key"]["prompt_len"], p["key"]["cuda_graphs"], p["key"]["pdl"]) for p in doc["points"]]
want = [(m, n, g, "off") for m in ("tiny-llama", "tiny-mamba") for n in (8, 16) for g in ("off", "static")]
assert keys == want, keys
assert all(p["status"] == "ok" for p in doc["points"])
assert doc["settings"]["cuda_graphs"] == "off,static" and doc["settings"]["pdl"] == "auto", doc["settings"]  # auto: off on the CPU (the keys)
assert len(doc["scaling"]) == 4, doc["scaling"]
PY
expect_exit 0 "4 matched point(s): 0 regression(s)" "$EFFARCH" compare ab.json --metric peak_bytes --max-regression 1000%
"$EFFARCH" bench tiny-llama --prompt-lengths 8 --gen-tokens 2 --reps 1 --warmup 0 --threads 1 --no-progress -o one.json \
  > /dev/null 2>&1 || fail "one-setting run"
expect_exit 2 "one.json: every point ran one launch setting" "$EFFARCH" compare one.json
# --backend reference,auto: the CPU kernels against their references, point by point.
"$EFFARCH" bench tiny-mamba --prompt-lengths 16 --gen-tokens 3 --reps 1 --warmup 0 --threads 1 \
  --backend reference,auto --no-progress -o be.json > be.out 2>&1 || fail "bench --backend reference,auto: $(cat be.out)"
grep -q '== backend=auto graphs=off pdl=off vs backend=reference graphs=off pdl=off' be.out || fail "backends: $(cat be.out)"
"$PYTHON" - <<'PY' || fail "--backend reference,auto results"
import json
doc = json.load(open("be.json"))
ks = [p["key"] for p in doc["points"]]
assert [k["backend"] for k in ks] == ["reference", "auto"], ks
assert {v for f, v in ks[0]["implementations"].items() if f != "add_norm_in_gemv"} == {"reference"}, ks[0]
assert ks[1]["implementations"]["selective_scan"] == "cpu", ks[1]
assert doc["settings"]["backend"] == "reference,auto", doc["settings"]
PY
expect_exit 2 "--backend: 'auto' is given twice" "$EFFARCH" bench tiny-llama --backend auto,reference,auto
expect_exit 2 "--cuda-graphs: auto is a value on its own" "$EFFARCH" bench tiny-llama --cuda-graphs auto,on
expect_exit 2 "'off' is given twice" "$EFFARCH" bench tiny-llama --cuda-graphs off,static,off
# --pdl off,on: a build without the CUDA kernels refuses on; one with them refuses a list on the CPU.
expect_exit 2 "--pdl" "$EFFARCH" bench tiny-llama --device cpu --pdl off,on

# Bad input: exit 2 naming the option or file.
expect_exit 2 "--weights 'int4'" "$EFFARCH" bench tiny-llama --weights int4
expect_exit 2 "--prompt-lengths: 'x'" "$EFFARCH" bench tiny-llama --prompt-lengths 16,x
expect_exit 2 "--batch" "$EFFARCH" bench tiny-llama --batch 0
expect_exit 2 "--threads must be from 1 to 1024, got 0" "$EFFARCH" bench tiny-llama --threads 0
expect_exit 2 "--threads must be from 1 to 1024, got 100000" "$EFFARCH" bench tiny-llama --threads 100000
expect_exit 2 "--mode: unknown mode 'fast'" "$EFFARCH" bench tiny-llama --mode fast
expect_exit 2 "--format: unknown format 'xml'" "$EFFARCH" bench tiny-llama --format xml
expect_exit 2 "--cuda-graphs: unknown value 'yes'" "$EFFARCH" bench tiny-llama --cuda-graphs yes
expect_exit 2 "no suite 'nope'" "$EFFARCH" bench --suite nope
expect_exit 2 "MODEL... or --suite" "$EFFARCH" bench tiny-llama --suite quickstart
expect_exit 2 "at least one MODEL" "$EFFARCH" bench
expect_exit 2 "MODEL 'tiny-llama' is given twice" "$EFFARCH" bench tiny-llama tiny-mamba tiny-llama
# An option given empty is an error, not its default.
expect_exit 2 "--prompt-lengths: an empty list" "$EFFARCH" bench tiny-llama --prompt-lengths ""
expect_exit 2 "--batch: an empty list" "$EFFARCH" bench tiny-llama --batch ""
expect_exit 2 "--mode" "$EFFARCH" bench tiny-llama --mode ""
expect_exit 2 "a seed is a whole number from 0 to 18446744073709551615, got '-1'" "$EFFARCH" bench tiny-llama --seed -1
echo '{"models": ["tiny-llama"], "prompt_length": [1]}' > typo-suite.json
expect_exit 2 "unknown key 'prompt_length'" "$EFFARCH" bench --suite typo-suite.json
# Messages that name the real problem: a negative length is one (it read as a range with no start:
# "'' is not a number"); a suite's empty list is empty (it was "must be a list"); a suite's bad
# dtype is the suite's, not --dtype's, and found before the device is probed.
expect_exit 2 "--prompt-lengths: '-8' in '-8' is negative: each value must be at least 1 (zero and negative values \
are refused)" "$EFFARCH" bench tiny-llama --prompt-lengths -8
expect_exit 2 "--batch: '-2' in '1,-2' is negative" "$EFFARCH" bench tiny-llama --batch 1,-2
expect_exit 2 "--prompt-lengths: 0 in '0' is refused" "$EFFARCH" bench tiny-llama --prompt-lengths 0
echo '{"models": ["tiny-llama"], "batch": []}' > empty-batch-suite.json
expect_exit 2 "empty-batch-suite.json: 'batch' is an empty list" "$EFFARCH" bench --suite empty-batch-suite.json
echo '{"models": ["tiny-llama"], "dtype": "float64"}' > dtype-suite.json
expect_exit 2 "dtype-suite.json: 'dtype': unknown dtype 'float64'" "$EFFARCH" bench --suite dtype-suite.json
out=$("$EFFARCH" bench --suite dtype-suite.json 2>&1) || true
[[ $out != *--dtype* ]] || fail "a suite's dtype blamed on --dtype: $out"
# Numbers past what a field holds: refused by name (a range to 2^63 once looped forever; a suite's
# reps past an int wrapped; a suite's non-string name was an internal error).
expect_exit 2 "--prompt-lengths: 2147483648 tokens is past the longest sequence" \
  "$EFFARCH" bench tiny-llama --prompt-lengths 1-9223372036854775807*2
expect_exit 2 "--gen-tokens: 99999999999 tokens is past" "$EFFARCH" bench tiny-llama --gen-tokens 99999999999
expect_exit 2 "--memory-limit: '1.5.5GB' is not a size" "$EFFARCH" bench tiny-llama --memory-limit 1.5.5GB
expect_exit 2 "--memory-limit: '0.1' is 0.1 bytes" "$EFFARCH" bench tiny-llama --memory-limit 0.1
echo '{"models": ["tiny-llama"], "reps": 4294967296}' > reps-suite.json
expect_exit 2 "reps-suite.json: 'reps' must be an integer from 1 to 2147483647, got 4294967296" \
  "$EFFARCH" bench --suite reps-suite.json
echo '{"name": 5, "models": ["tiny-llama"]}' > name-suite.json
expect_exit 2 "name-suite.json: 'name' must be a string" "$EFFARCH" bench --suite name-suite.json

# -o is written by renaming a new file over it: a path that is a device or pipe is refused before
# anything runs (-o /dev/null as root replaced /dev/null), and a symlink's target is what is replaced.
expect_exit 2 "-o: /dev/null is not a regular file" "$EFFARCH" bench tiny-llama -o /dev/null
small=(tiny-llama --prompt-lengths 16,32 --reps 1 --warmup 0 --gen-tokens 2 --no-progress)
mkdir -p linked && : > linked/target.json && ln -sf linked/target.json link.json
"$EFFARCH" bench "${small[@]}" -o link.json > /dev/null 2>&1 || fail "bench -o through a symlink"
[[ -L link.json && -s linked/target.json ]] || fail "bench -o replaced the symlink instead of writing its target"
ln -sf linked/new.json dangling.json  # a link whose target is yet to be made
"$EFFARCH" bench "${small[@]}" -o dangling.json > /dev/null 2>&1 || fail "bench -o through a dangling symlink"
[[ -L dangling.json && -s linked/new.json ]] || fail "bench -o replaced a dangling symlink instead of making its target"
# A file that cannot be written (a full disk; here the file size limit, its signal ignored so
# writes fail with EFBIG): the figures are printed all the same, the failure is named with the
# system's reason, and the exit code is 1, not a usage error's 2.
rc=0
(trap '' XFSZ; ulimit -f 4; exec "$EFFARCH" bench "${small[@]}" -o full.json > full.out 2> full.err) || rc=$?
[[ $rc -eq 1 ]] || fail "a results file that cannot be written exited $rc, expected 1: $(cat full.err)"
grep -q "writing .*full.json failed: File too large" full.err || fail "the write failure unnamed: $(cat full.err)"
[[ $(grep -c "^| tiny-llama |     1 |" full.out) -eq 2 ]] || fail "the measured points were not printed: $(cat full.out)"
[[ ! -e full.json.partial ]] || fail "a failed write left full.json.partial"
finish
