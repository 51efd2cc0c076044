#!/usr/bin/env bash
# effarch compare on results crafted from a real run: an unchanged copy passes, a 20% slower
# prefill beyond noise fails with exit 1, the same slowdown inside wide noise passes, an
# improvement passes, missing points are listed, several NEW files go side by side; bad input.
source "$(dirname "$0")/lib.sh"
cd "$SCRATCH"
"$EFFARCH" bench tiny-llama --prompt-lengths 32,64 --gen-tokens 4 --reps 3 -o base.json --no-progress > /dev/null 2>&1 \
  || fail "bench for the base"
"$EFFARCH" bench tiny-mamba --prompt-lengths 32,64 --gen-tokens 4 --reps 3 -o mamba.json --no-progress > /dev/null 2>&1 \
  || fail "bench for mamba"
"$PYTHON" - <<'PY'
import copy, json
base = json.load(open("base.json"))
# Pin the base's prefill spread to 1% of its mean: a real run on a loaded machine can be noisy
# enough to hide a 20% change, and these checks are about compare's logic, not this machine.
for p in base["points"]:
    st = p["speed"]["prefill_tokens_per_s"]
    st["stddev"] = 0.01 * st["mean"]
json.dump(base, open("base.json", "w"))
def variant(name, factor, widen=None, drop_last=False):
    d = copy.deepcopy(base)
    for p in d["points"]:
        st = p["speed"]["prefill_tokens_per_s"]
        for k in ["mean", "median", "min", "max"]: st[k] *= factor
        st["samples"] = [s * factor for s in st["samples"]]
        st["stddev"] = st["mean"] * widen if widen else st["stddev"] * factor
    if drop_last: d["points"] = d["points"][:-1]
    json.dump(d, open(name, "w"))
variant("same.json", 1.0)
variant("slower.json", 0.8)
variant("slower-noisy.json", 0.8, widen=0.5)
variant("faster.json", 1.3)
variant("missing.json", 1.0, drop_last=True)
# A matched point measured in memory mode only on the new side: its speed is missing there.
half = copy.deepcopy(base)
del half["points"][-1]["speed"]
json.dump(half, open("half-speed.json", "w"))
# The same results as schema version 1 wrote them: no backend, implementations or weights in the
# key; the checkpoint/random field called weights.
v1 = copy.deepcopy(base)
v1["schema_version"] = 1
for p in v1["points"]:
    for k in ["backend", "implementations", "weights"]: del p["key"][k]
    p["weights"] = p.pop("weights_source")
json.dump(v1, open("base-v1.json", "w"))
# The same workload run another way (bench --parallel-block fused against separate): its keys differ
# in the implementations record only.
other = copy.deepcopy(base)
for p in other["points"]:
    p["key"]["implementations"]["parallel_block_products"] = "fused"
json.dump(other, open("other-layout.json", "w"))
PY
expect_exit 0 "0 regression(s)" "$EFFARCH" compare base.json same.json
expect_exit 1 "REGRESSION" "$EFFARCH" compare base.json slower.json --max-regression 5%
expect_exit 0 "within noise" "$EFFARCH" compare base.json slower-noisy.json
expect_exit 0 "improved" "$EFFARCH" compare base.json faster.json
expect_exit 0 "only in base.json: tiny-llama float32 b1 p64" "$EFFARCH" compare base.json missing.json
expect_exit 0 "0 regression(s)" "$EFFARCH" compare base.json slower.json --max-regression 25%
# Gates that would pass everything are refused: NaN compared false with every bound.
expect_exit 2 "--noise-sigmas must be a finite number >= 0, got nan" "$EFFARCH" compare base.json slower.json --noise-sigmas nan
expect_exit 2 "--max-regression: 'inf' is not a fraction" "$EFFARCH" compare base.json slower.json --max-regression inf
expect_exit 0 "0 regression(s)" "$EFFARCH" compare base.json slower.json --metric decode_tokens_per_s
expect_exit 0 "side by side: prefill_tokens_per_s" "$EFFARCH" compare base.json mamba.json same.json
# Keys that differ in how effarch ran them pair only when asked (--ignore-launch).
expect_exit 1 "INCOMPLETE: no point of the new file(s) matches" "$EFFARCH" compare base.json other-layout.json
expect_exit 0 "2 matched point(s): 0 regression(s)" "$EFFARCH" compare base.json other-layout.json --ignore-launch
# Version 1 baselines: read (converted), paired with new points of the backend they ran (auto).
expect_exit 0 "2 matched point(s): 0 regression(s)" "$EFFARCH" compare base-v1.json same.json
expect_exit 1 "REGRESSION" "$EFFARCH" compare base-v1.json slower.json
perf="$SRC/docs/perf/2026-11-22-h100"
expect_exit 0 "15 matched point(s): 0 regression(s)" "$EFFARCH" compare "$perf/quickstart.json" "$perf/quickstart.json"
# (a GPU run against this CPU one: nothing matches, so it is listed and the gate fails)
expect_exit 1 "only in base.json: tiny-llama float32" "$EFFARCH" compare "$perf/quickstart.json" base.json
# The points file of a run compares like its results file.
expect_exit 0 "2 matched point(s): 0 regression(s)" "$EFFARCH" compare base.jsonl same.json
# Nothing compared fails a gate: an empty NEW (a run that stopped before its first point), a NEW of
# another model only, and a metric asked for by name that no matched pair has (memory mode).
: > empty.jsonl
expect_exit 1 "INCOMPLETE: no point of the new file(s) matches" "$EFFARCH" compare base.json empty.jsonl
expect_exit 1 "INCOMPLETE: no point of the new file(s) matches" "$EFFARCH" compare base.json mamba.json
"$EFFARCH" bench tiny-llama --prompt-lengths 32,64 --gen-tokens 4 --reps 1 --mode memory -o mem.json --no-progress \
  > /dev/null 2>&1 || fail "bench in memory mode"
expect_exit 1 "INCOMPLETE: no matched pair has a value of decode_tokens_per_s on both sides" \
  "$EFFARCH" compare base.json mem.json --metric decode_tokens_per_s
expect_exit 0 "peak_bytes" "$EFFARCH" compare base.json mem.json --metric peak_bytes
expect_exit 1 "INCOMPLETE: no matched pair has a value of decode_tokens_per_s on both sides (--metric)" \
  "$EFFARCH" compare base.json mem.json --metric peak_bytes --metric decode_tokens_per_s
# A metric measured on one side of a matched pair only: said in its row, and a gate on that metric
# (--metric) is incomplete, not passed (it was skipped without a word).
expect_exit 0 "| decode_tokens_per_s | " "$EFFARCH" compare base.json half-speed.json
expect_exit 0 "missing in new" "$EFFARCH" compare base.json half-speed.json
expect_exit 1 "INCOMPLETE: matched points with a value on one side only (--metric): decode_tokens_per_s (1 pair(s))" \
  "$EFFARCH" compare base.json half-speed.json --metric decode_tokens_per_s
echo '{"schema": "effarch-bench", "schema_version": 0, "points": []}' > v0.json
expect_exit 2 "v0.json: schema_version 0 is unknown" "$EFFARCH" compare v0.json same.json
expect_exit 2 "not an effarch bench results file" "$EFFARCH" compare base.json "$SRC/configs/suites/quickstart.json"
expect_exit 2 "unknown metric 'speed'" "$EFFARCH" compare base.json same.json --metric speed
expect_exit 2 "--max-regression: 'lots'" "$EFFARCH" compare base.json same.json --max-regression lots
expect_exit 2 "base.json: every point ran one launch setting" "$EFFARCH" compare base.json
finish
