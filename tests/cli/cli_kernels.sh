#!/usr/bin/env bash
# effarch kernels and effarch profile on the CPU with tiny configs: the JSON documents' fields, every
# time positive, bytes as the formulas in docs/kernels.md give them, the JSON Lines rows, skipped
# rows under --memory-limit, SIGINT keeping the finished rows, the profile's kinds adding up to the
# step, and bad flags.
source "$(dirname "$0")/lib.sh"
cd "$SCRATCH"

TINY=(--mamba1 tiny-mamba --mamba2 tiny-mamba2 --transformer tiny-phi --moe tiny-mixtral --device cpu --dtype float32)

expect_exit 0 "selective_scan" "$EFFARCH" kernels --list
expect_exit 0 "Scan vs attention" "$EFFARCH" kernels "${TINY[@]}" --lengths 16,48 --reps 2 --warmup 1 -o k.json
"$PYTHON" - "$SRC" <<'PY' || fail "kernels results"
import json, sys
doc = json.load(open("k.json"))
bad = []
assert doc["schema"] == "effarch-kernels" and doc["schema_version"] == 2
assert doc["settings"]["timing"] == {"timer": "steady_clock"}, doc["settings"].get("timing")
env = doc["environment"]
for k in ["time", "effarch", "host", "device"]:
    if k not in env: bad.append(f"environment lacks {k}")
bw = env["device"]["copy_bandwidth_bytes_per_s"]
if not bw > 0: bad.append("no copy bandwidth")
s = doc["settings"]
if s["lengths"] != [16, 48] or s["models"]["mamba1"] != "tiny-mamba": bad.append(f"settings {s}")
cfg = {n: json.load(open(f"{sys.argv[1]}/configs/models/{n}.json")) for n in ["tiny-mamba", "tiny-mamba2", "tiny-phi", "tiny-mixtral"]}
m1, m2, ph, mx = cfg["tiny-mamba"], cfg["tiny-mamba2"], cfg["tiny-phi"], cfg["tiny-mixtral"]
Hm, Em, Im, Km = mx["hidden_size"], mx["num_local_experts"], mx["intermediate_size"], mx["num_experts_per_tok"]
D, N, W = m1["intermediate_size"], m1["state_size"], m1["conv_kernel"]
H, P, G, N2 = m2["num_heads"], m2["head_dim"], m2["n_groups"], m2["state_size"]
D2 = m2["expand"] * m2["hidden_size"]
Hq, Hkv = ph["num_attention_heads"], ph["num_key_value_heads"]
Dh = ph["hidden_size"] // Hq
Hd, I = ph["hidden_size"], ph["intermediate_size"]  # tiny-phi: LayerNorm, parallel block, fc1 + gelu_new
# The dense GEMV cases' [O, K]: Mamba in_proj, x_proj, out_proj and the head on tiny-mamba; fc1, fc2 and
# q, k, v on tiny-phi; in_proj and out_proj on tiny-mamba2.
gemv = {"dense_gemv_in_proj": (2*D, m1["hidden_size"]), "dense_gemv_x_proj": (m1["time_step_rank"] + 2*N, D),
        "dense_gemv_lm_head": (m1["vocab_size"], m1["hidden_size"]), "dense_gemv_out_proj": (m1["hidden_size"], D),
        "dense_gemv_mlp_down": (Hd, I), "dense_gemv_mlp_up": (I, Hd), "dense_gemv_qkv": ((Hq + 2*Hkv) * Dh, Hd),
        "dense_gemv_parallel_in": ((Hq + 2*Hkv) * Dh + I, Hd), "dense_gemv_parallel_out": (Hd, I + Hq * Dh),
        "dense_gemv_mamba2_in_proj": (2*D2 + 2*G*N2 + H, m2["hidden_size"]), "dense_gemv_mamba2_out_proj": (m2["hidden_size"], D2)}
u8 = ["dense_gemv_in_proj", "dense_gemv_out_proj", "dense_gemv_mlp_down", "dense_gemv_mlp_up", "dense_gemv_qkv", "dense_gemv_mamba2_out_proj"]
gemv.update({op + v: gemv[op] for op in u8 for v in ("_u8", "_s1", "_s2", "_s4")})  # the measuring twins: the same matrices
e = 4  # float32
def expected(op, B, L):  # docs/kernels.md, "Bytes each op must move"
    if op in ("causal_conv1d", "causal_conv1d_vec"): return e * (B*D*L + D*W + D) + e * (B*D*L + B*D*W)
    if op == "causal_conv1d_update": return e * (B*D + B*D*W + D*W + D) + e * (B*D + B*D*W)
    if op in ("selective_scan", "selective_scan_lanes8", "selective_scan_pieces", "selective_scan_seg8", "selective_scan_split", "selective_scan_seg4"): return e * (3*B*D*L + 2*B*N*L) + 4*(D*N + 2*D) + e*B*D*L + 4*B*D*N
    if op == "selective_state_update": return e * (3*B*D + 2*B*N) + 4*(D*N + 2*D) + 4*B*D*N + e*B*D + 4*B*D*N
    if op == "selective_state_update_dt_proj":
        R = m1["time_step_rank"]
        return e * (2*B*D + B*R + D*R + 2*B*N) + 4*(D*N + 2*D) + 4*B*D*N + e*B*D + 4*B*D*N
    if op in ("ssd_chunk_scan", "ssd_chunk_scan_fma"): return e * (B*L*H*P + B*L*H + 2*B*L*G*N2 + 2*H) + 4*H + 4 * (B*L*H*P + B*H*P*N2)
    if op == "ssd_state_update": return e * (B*H*P + B*H + 2*B*G*N2 + 2*H) + 4*H + 4*B*H*P*N2 + 4*B*H*P + 4*B*H*P*N2
    if op == "gated_rms_norm": return 4*B*L*D2 + e*(B*L*D2 + D2) + 4*B*L*D2
    if op == "attention": return e * (B*Hq*L*Dh + 2*B*Hkv*L*Dh) + e*B*Hq*L*Dh
    if op in ("attention_decode", "decode_attention", "decode_attention_b4", "decode_attention_b6"): return e * (B*Hq*Dh + 2*B*Hkv*L*Dh) + e*B*Hq*Dh
    if op in ("add_norm", "add_norm_element", "add_norm_t32", "add_norm_t128", "add_norm_vec"): return e * (3*B*Hd + 2*Hd) + e * 2*B*Hd
    if op == "activation": return e * B*I + e * B*I
    if op in gemv: O, K = gemv[op]; return e * (O*K + B*K) + e * B*O
    if op == "dense_gemv_mlp_up_act":  # tiny-phi's fc1 with its bias, gelu_new(fc1) written
        O, K = gemv["dense_gemv_mlp_up"]; return e * (O*K + B*K + O) + e * B*I
    if op == "add_norm_gemv_in_proj":  # tiny-mamba: x (fp32 here anyway), y, RMSNorm's weight, W; y and the residual written
        O, K = gemv["dense_gemv_in_proj"]; return e * (O*K + B*K + K) + e * B*K + e * B*O + e * B*K
    if op == "add_norm_gemv_qkv":  # tiny-phi: x, y and z (a parallel block), LayerNorm's weight and bias, W
        O, K = gemv["dense_gemv_qkv"]; return e * (O*K + 2*B*K + 2*K) + e * B*K + e * B*O + e * B*K
    if op == "dense_gemv_in_proj_conv":  # the in_proj GEMV, the conv state read and written, its weights, its output
        O, K = gemv["dense_gemv_in_proj"]; return e * (O*K + B*K) + e * B*O + e * (2*B*D*W + D*W + D + B*D)
    if op in ("moe_prefill", "moe_prefill_per_expert"): return e * (B*L*Hm + Em*Hm + 3*Em*Im*Hm) + e*B*L*Hm
    if op in ("moe_decode", "moe_decode_staged", "moe_decode_r1", "moe_decode_r1l8"):  # the min(E, B k) experts the made routing names, x, ids (8 bytes), fp32 weights
        return e * (min(Em, B*Km)*3*Im*Hm + B*Hm) + B*Km*(8 + 4) + e*B*Hm
    if op == "moe_dense_gemm": return e * (B*L*Hm + Hm*Km*3*Im) + e*B*L*Km*3*Im
    raise KeyError(op)
Q2 = m2["chunk_size"]
def pairs(L, Q): return (L // Q) * Q * (Q + 1) // 2 + (L % Q) * (L % Q + 1) // 2
def flops(op, B, L):  # docs/kernels.md, "FLOPs"
    if op == "moe_dense_gemm": return 2*B*L*Hm*Km*3*Im
    if op in ("moe_decode", "moe_decode_staged", "moe_decode_r1", "moe_decode_r1l8"): return 2*B*Km*3*Hm*Im  # one step's tokens, no router
    if op in ("ssd_chunk_scan", "ssd_chunk_scan_fma"): return B * (4*L*H*P*N2 + 2*G*N2*pairs(L, Q2) + 2*H*P*pairs(L, Q2))
    if op == "attention": return 4*B*Hq*Dh*pairs(L, L)
    return 2*B*L*Km*3*Hm*Im + 2*B*L*Hm*Em
rows = doc["rows"]
ops = sorted({r["op"] for r in rows})
if ops != sorted(["causal_conv1d", "causal_conv1d_vec", "causal_conv1d_update", "selective_scan", "selective_scan_lanes8", "selective_scan_pieces", "selective_scan_seg8", "selective_scan_split", "selective_scan_seg4", "selective_state_update", "selective_state_update_dt_proj", "ssd_chunk_scan",
                  "ssd_chunk_scan_fma", "ssd_state_update", "gated_rms_norm", "attention", "attention_decode", "decode_attention", "decode_attention_b4", "decode_attention_b6", "add_norm", "add_norm_element", "add_norm_t32", "add_norm_t128", "add_norm_vec",
                  "activation", "dense_gemv_in_proj", "add_norm_gemv_in_proj", "add_norm_gemv_qkv", "dense_gemv_in_proj_conv", "dense_gemv_x_proj", "dense_gemv_lm_head", "dense_gemv_out_proj", "dense_gemv_mlp_down", "dense_gemv_mlp_up", "dense_gemv_mlp_up_act", "dense_gemv_qkv", "dense_gemv_parallel_in", "dense_gemv_parallel_out", "dense_gemv_mamba2_in_proj", "dense_gemv_mamba2_out_proj",
                  *[op + v for op in u8 for v in ("_u8", "_s1", "_s2", "_s4")], "moe_decode", "moe_decode_staged", "moe_decode_r1", "moe_decode_r1l8", "moe_prefill", "moe_prefill_per_expert", "moe_dense_gemm"]): bad.append(f"ops {ops}")
for r in rows:
    name = f"{r['op']} {r['implementation']} L{r['length']}"
    if r["status"] != "ok": bad.append(f"{name}: {r['status']} {r.get('error')}"); continue
    if r["bytes"] != expected(r["op"], r["batch"], r["length"]): bad.append(f"{name}: bytes {r['bytes']} != {expected(r['op'], r['batch'], r['length'])}")
    if r["bytes"] != r["bytes_read"] + r["bytes_written"]: bad.append(f"{name}: read + written")
    t = r["time_s"]
    if not (0 < t["min"] <= t["median"] <= t["max"]) or len(t["samples"]) != 2: bad.append(f"{name}: times {t}")
    if abs(r["bytes_per_s"] - r["bytes"] / t["median"]) > 1e-6 * r["bytes_per_s"]: bad.append(f"{name}: GB/s")
    if abs(r["fraction_of_copy_bandwidth"] - r["bytes_per_s"] / bw) > 1e-9: bad.append(f"{name}: fraction")
    if not r["bytes_formula"]: bad.append(f"{name}: no formula")
    # On the CPU the scans run their CPU kernel and their reference; conv and norm the reference; attention SDPA.
    want = {"selective_scan": {"cpu", "reference"}, "selective_scan_lanes8": {"cpu", "reference"}, "selective_scan_pieces": {"cpu", "reference"}, "selective_scan_seg8": {"cpu", "reference"},
            "selective_scan_split": {"cpu", "reference"}, "selective_scan_seg4": {"cpu", "reference"},
            "selective_state_update": {"cpu", "reference"}, "selective_state_update_dt_proj": {"cpu", "reference"},
            "ssd_chunk_scan": {"cpu", "reference"}, "ssd_chunk_scan_fma": {"cpu", "reference"},
            "ssd_state_update": {"cpu", "reference"},
            "attention": {"sdpa"}, "attention_decode": {"sdpa"}, "moe_prefill": {"cpu", "reference"},
            "moe_decode": {"cpu", "reference"}, "moe_decode_staged": {"cpu", "reference"}, "moe_decode_r1": {"cpu", "reference"}, "moe_decode_r1l8": {"cpu", "reference"},
            "moe_prefill_per_expert": {"cpu", "reference"}, "moe_dense_gemm": {"aten"}}.get(r["op"], {"reference"})
    if r["op"].startswith("moe_") or r["op"].startswith("ssd_chunk_scan") or r["op"] == "attention":
        if r["flops"] != flops(r["op"], r["batch"], r["length"]): bad.append(f"{name}: flops {r['flops']} != {flops(r['op'], r['batch'], r['length'])}")
        if abs(r["flops_per_s"] - r["flops"] / t["median"]) > 1e-6 * r["flops_per_s"]: bad.append(f"{name}: FLOP/s")
    if r["implementation"] not in want: bad.append(f"{name}: implementation")
    if "products" in r: bad.append(f"{name}: products on a row that did not run the CUDA scan")
    if "pieces" in r: bad.append(f"{name}: pieces on a row that did not run the CUDA split scan")
    if r["length"] != (1 if r["op"] in ("causal_conv1d_update", "selective_state_update", "selective_state_update_dt_proj", "ssd_state_update", "add_norm", "add_norm_element", "add_norm_t32", "add_norm_t128", "add_norm_vec", "activation", "add_norm_gemv_in_proj", "add_norm_gemv_qkv", "dense_gemv_in_proj_conv", "dense_gemv_mlp_up_act", "moe_decode", "moe_decode_staged", "moe_decode_r1", "moe_decode_r1l8") or r["op"] in gemv else r["length"]): bad.append(name)
impls = {(r["op"], r["implementation"]) for r in rows}
if ("selective_scan", "cpu") not in impls or ("selective_scan", "reference") not in impls: bad.append("scan implementations")
sva = doc["scan_vs_attention"]
if [e["length"] for e in sva] != [16, 48]: bad.append(f"scan vs attention {sva}")
for e in sva:
    if not (e["selective_scan"]["attention_over_scan"] > 0 and e["ssd_chunk_scan"]["attention_over_scan"] > 0): bad.append(str(e))
dva = doc["decode_vs_attention"]
if [e["length"] for e in dva] != [16, 48]: bad.append(f"decode vs attention {dva}")
for e in dva:
    if not (e["selective_state_update"]["attention_over_scan"] > 0 and e["ssd_state_update"]["attention_over_scan"] > 0): bad.append(str(e))
mvd = doc["moe_vs_dense_gemm"]
if [e["length"] for e in mvd] != [16, 48]: bad.append(f"moe vs dense gemm {mvd}")
for e in mvd:
    for op in ("moe_prefill", "moe_prefill_per_expert"):
        f = e[op]["fraction_of_dense_gemm"]
        if not (f > 0 and abs(f - e[op]["flops_per_s"] / e["moe_dense_gemm"]["flops_per_s"]) < 1e-9 * f): bad.append(str(e))
lines = [json.loads(l) for l in open("k.jsonl")]
if lines != rows: bad.append("the JSON Lines rows differ from the document's")
if bad:
    print("\n".join(bad)); sys.exit(1)
PY

# A cap on bytes: the long rows are skipped with a row saying why, the short ones measured.
expect_exit 0 "skipped" "$EFFARCH" kernels "${TINY[@]}" --ops selective_scan,attention --lengths 8,8192 --reps 1 \
  --memory-limit 1MB -o cap.json
"$PYTHON" - <<'PY' || fail "kernels --memory-limit"
import json
rows = json.load(open("cap.json"))["rows"]
st = [(r["op"], r["length"], r["status"]) for r in rows]
assert all(s == ("ok" if l == 8 else "skipped") for _, l, s in st), st
assert all("--memory-limit" in r["error"] for r in rows if r["status"] == "skipped"), rows
PY

# SIGINT once the first row is in the .jsonl: the JSON holds exactly the finished rows, marked
# interrupted; exit 130.
"$EFFARCH" kernels "${TINY[@]}" --ops selective_scan,attention --lengths 64-16384*2 --reps 5 -o int.json > int.out 2>&1 &
pid=$!
for _ in $(seq 1 600); do [[ -s int.jsonl ]] && break; sleep 0.05; done
kill -INT "$pid"
rc=0; wait "$pid" || rc=$?
[[ $rc == 130 ]] || fail "SIGINT: exit $rc, expected 130: $(tail -3 int.out)"
"$PYTHON" - <<'PY' || fail "interrupted kernels results"
import json
d = json.load(open("int.json"))
lines = [json.loads(l) for l in open("int.jsonl")]
assert d["interrupted"] and 1 <= len(d["rows"]) < 3 * 9 and d["rows"] == lines, (d["interrupted"], len(d["rows"]))
assert all(r["status"] == "ok" for r in d["rows"])
PY

mkdir -p k-dir
expect_exit 2 "-o: k-dir is a directory" "$EFFARCH" kernels "${TINY[@]}" --ops selective_scan --lengths 8 -o k-dir
[[ -e k-dir.jsonl ]] && fail "a refused -o left k-dir.jsonl behind"
printf '{"kept": 1}\n' > k-keep.jsonl
expect_exit 2 "--dtype" "$EFFARCH" kernels --mamba1 tiny-mamba --ops selective_scan --lengths 8 --device cpu --dtype float64 \
  -o k-keep.json
grep -q kept k-keep.jsonl || fail "kernels --dtype float64 (a usage error) truncated the last run's .jsonl"
expect_exit 2 "--ops: 'selective_scan' is given twice" "$EFFARCH" kernels "${TINY[@]}" --ops selective_scan,attention,selective_scan
expect_exit 2 "--ops: no op named" "$EFFARCH" kernels "${TINY[@]}" --ops ""
expect_exit 2 "--lengths: an empty list" "$EFFARCH" kernels "${TINY[@]}" --lengths ""
expect_exit 2 "unknown op 'flash'" "$EFFARCH" kernels "${TINY[@]}" --ops selective_scan,flash
# The lane-per-state scan (selective_scan_states) was removed, slower than lanes16 on an H100: an
# old command line naming it is refused with the ops there are.
expect_exit 2 "--ops: unknown op 'selective_scan_states' (ops: causal_conv1d, causal_conv1d_vec, causal_conv1d_update, selective_scan, selective_scan_lanes8, selective_scan_pieces, selective_scan_seg4" \
  "$EFFARCH" kernels "${TINY[@]}" --ops selective_scan,selective_scan_states
expect_exit 2 "--mamba1" "$EFFARCH" kernels --mamba1 tiny-llama --ops selective_scan --device cpu
expect_exit 2 "--lengths" "$EFFARCH" kernels "${TINY[@]}" --lengths 0
expect_exit 2 ".jsonl" "$EFFARCH" kernels "${TINY[@]}" -o rows.jsonl
# A model that names nothing is refused naming its option, before the device is looked at (a
# machine without a GPU rehearses GPU command lines: tests/cli/gpu_session.sh).
expect_exit 2 "--transformer: MODEL 'no-such-model'" "$EFFARCH" kernels --transformer no-such-model --ops attention --device cuda

# effarch profile: a Mamba and a Transformer decode step on the CPU.
for m in tiny-mamba tiny-llama; do
  expect_exit 0 "Host time per kind" "$EFFARCH" profile "$m" --device cpu --context 8 --steps 3 --warmup 1 -o "prof-$m.json"
  "$PYTHON" - "$m" <<'PY' || fail "profile $m"
import json, sys
m = sys.argv[1]
p = json.load(open(f"prof-{m}.json"))
assert p["schema"] == "effarch-profile" and p["model"] == m, p.get("schema")
assert p["time_source"] == "host" and p["step_s"] > 0
k = {e["kind"]: e for e in p["kinds"]}
names = ["gemm", "scan", "conv", "norm", "attention", "elementwise", "copy", "other", "outside ops"]
assert list(k) == names, list(k)
assert abs(sum(e["fraction_of_step"] for e in p["kinds"]) - 1) < 1e-9
assert all(e["seconds_per_step"] >= 0 for e in p["kinds"])
assert k["gemm"]["seconds_per_step"] > 0 and k["norm"]["seconds_per_step"] > 0
if m == "tiny-mamba":
    assert k["scan"]["seconds_per_step"] > 0 and k["conv"]["seconds_per_step"] > 0 and k["attention"]["seconds_per_step"] == 0
    assert p["implementations"]["selective_state_update"] == "cpu", p["implementations"]
else:
    assert k["attention"]["seconds_per_step"] > 0 and k["scan"]["seconds_per_step"] == 0
assert p["settings"]["steps"] == 3 and p["settings"]["cuda_graphs"] == "off"
assert p["top_events"] and all(e["seconds_per_step"] > 0 for e in p["top_events"])
PY
done
expect_exit 0 '"time_source": "host"' "$EFFARCH" profile tiny-mamba2 --device cpu --context 4 --steps 2 --json \
  --trace trace.json
[[ -s trace.json ]] || fail "profile --trace wrote no trace"
# A CPU profile prints nothing of libkineto's look for a GPU (on a machine without an NVIDIA driver
# it logged "gpuGetDeviceCount failed with code 35" as an ERROR); KINETO_LOG_LEVEL set by the user
# still rules.
env -u KINETO_LOG_LEVEL "$EFFARCH" profile tiny-llama --device cpu --context 4 --steps 1 > kineto.out 2> kineto.err \
  || fail "profile for the kineto line: $(cat kineto.err)"
[[ ! -s kineto.err ]] || fail "profile --device cpu wrote on stderr: $(cat kineto.err)"
# Its outputs are checked before it profiles: a trace the profiler could not write was once a
# silent exit 0, and an empty -o was taken as no file.
mkdir -p trace-dir
expect_exit 2 "--trace: cannot write no-dir/t.json: the folder no-dir does not exist" "$EFFARCH" profile tiny-mamba \
  --device cpu --context 4 --steps 1 --trace no-dir/t.json
expect_exit 2 "--trace: trace-dir is a directory" "$EFFARCH" profile tiny-mamba --device cpu --context 4 --steps 1 \
  --trace trace-dir
expect_exit 2 "-o: the path is empty" "$EFFARCH" profile tiny-mamba --device cpu --context 4 --steps 1 -o ""
# Past the model's max_position_embeddings: profiled all the same, as bench does, with a note.
expect_exit 0 "2049 positions (2048 of context + 0 warm-up and 1 profiled decode steps) run past tiny-llama's \
max_position_embeddings (2048)" "$EFFARCH" profile tiny-llama --device cpu --context 2048 --steps 1 --warmup 0
# --phase prefill: the prefill of --context tokens is the profiled step.
expect_exit 0 "one prefill of 32 tokens at batch 1" "$EFFARCH" profile tiny-mamba --phase prefill --device cpu \
  --context 32 --steps 2 -o prof-prefill.json
"$PYTHON" -c '
import json; p = json.load(open("prof-prefill.json"))
assert p["settings"]["phase"] == "prefill" and p["steps"] == 2, p["settings"]
assert any(k["kind"] == "scan" and k["seconds_per_step"] > 0 for k in p["kinds"]), p["kinds"]' || fail "profile --phase prefill"
expect_exit 2 "--phase: unknown phase 'both'" "$EFFARCH" profile tiny-mamba --device cpu --phase both
expect_exit 2 "a prefill is never replayed as a graph" "$EFFARCH" profile tiny-mamba --device cpu --phase prefill --cuda-graphs on
expect_exit 2 "--steps" "$EFFARCH" profile tiny-mamba --device cpu --steps 0
expect_exit 2 "--cuda-graphs" "$EFFARCH" profile tiny-mamba --device cpu --cuda-graphs maybe
expect_exit 2 "not a checkpoint folder, a config file or a built-in config" "$EFFARCH" profile no-such-model --device cpu
expect_exit 2 "MODEL 'no-such-model'" "$EFFARCH" profile no-such-model --device cuda
finish
