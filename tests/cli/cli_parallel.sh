#!/usr/bin/env bash
# Tensor and expert parallelism over Gloo, two processes on loopback (docs/parallel.md):
# - every tiny model with --tp 2, the MoE ones with --ep 2 (two processes) and --tp 2 --ep 2 (four),
#   random weights and `effarch init` checkpoints (sliced at read time): logits within 1e-5 of the
#   single-process run, identical greedy tokens, cache bytes adding up (effarch_parallel_check);
# - Slurm's variables (as srun sets them) start the same run;
# - a 2-process bench writes results that `effarch report` reads back, with the world size, the
#   backend, each rank's device and memory per rank;
# - a rank killed mid-run: the other exits non-zero naming the lost rank, within the timeout, and
#   no process is left;
# - bad input: --tp 3 on 4 heads, a world size that is not tp x ep: usage errors (exit 2) before
#   any weight loads.
# Called as: cli_parallel.sh EFFARCH SOURCE_DIR SCRATCH PYTHON PARALLEL_CHECK
source "$(dirname "$0")/lib.sh"
CHECK=$5
export EFFARCH_DIST_TIMEOUT=60

free_port() {
  "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# launch N LOGPREFIX command...: the command as ranks 0..N-1 of a world of N (the variables
# torchrun sets), waits for all; returns non-zero when any failed. Output in LOGPREFIX.<rank>.
launch() {
  local n=$1 log=$2
  shift 2
  local port
  port=$(free_port)
  local pids=()
  for ((r = 0; r < n; r++)); do
    RANK=$r WORLD_SIZE=$n LOCAL_RANK=$r MASTER_ADDR=127.0.0.1 MASTER_PORT=$port "$@" > "$log.$r" 2>&1 &
    pids+=($!)
  done
  local rc=0
  for p in "${pids[@]}"; do
    wait "$p" || rc=1
  done
  return $rc
}
launch2() { launch 2 "$@"; }

# --- logits, tokens and caches against the single process ---------------------------------------
check() {
  local n=$1 name=$2
  shift 2
  if launch "$n" "$SCRATCH/$name" "$CHECK" "$@"; then
    cat "$SCRATCH/$name.0"
  else
    fail "$name: $CHECK $* failed:"$'\n'"$(cat "$SCRATCH/$name".*)"
  fi
}
check 2 tp_all tiny-llama tiny-llama3 tiny-mistral tiny-phi tiny-mamba tiny-falcon-mamba tiny-mamba2 tiny-mixtral \
  tiny-deepseek-moe tiny-jamba --tp 2
# A launcher's world of one: the process group and every all-reduce through c10d, at size 1.
check 1 world1 tiny-llama tiny-mamba2 tiny-mixtral --tp 1
check 2 tp_static tiny-llama tiny-phi tiny-mamba tiny-mamba2 tiny-jamba --tp 2 --cuda-graphs static
check 2 ep_moe tiny-mixtral tiny-deepseek-moe tiny-jamba --ep 2
# Both: tp 2 x ep 2 needs four processes (tiny models: cheap even on two cores).
check 4 tp_ep_moe tiny-mixtral tiny-deepseek-moe tiny-jamba --tp 2 --ep 2
# Phi's parallel block in two products a step (--parallel-block fused; the CPU's auto keeps four) under
# --tp 2: fc2's and o's shards side by side, the summed bias on rank 0 only; fp32 tokens equal the
# single process's four products'.
single=$("$EFFARCH" generate tiny-phi --prompt-ids 1,2,3,4,5,6,7,8 -n 12 --dtype float32 --parallel-block separate --json 2> /dev/null)
if launch2 "$SCRATCH/pb" "$EFFARCH" generate tiny-phi --prompt-ids 1,2,3,4,5,6,7,8 -n 12 --dtype float32 --tp 2 \
    --parallel-block fused --json; then
  "$PYTHON" - "$SCRATCH/pb.0" "$single" <<'PY' || fail "generate --tp 2 --parallel-block fused differs from one process"
import json, sys
out = open(sys.argv[1]).read()
doc = json.loads(out[out.index("{"):])
one = json.loads(sys.argv[2])
assert doc["implementations"]["parallel_block_products"] == "fused", doc["implementations"]
assert one["implementations"]["parallel_block_products"] == "separate", one["implementations"]
assert doc["tokens"] == one["tokens"], (doc["tokens"], one["tokens"])
PY
else
  fail "generate --tp 2 --parallel-block fused failed:"$'\n'"$(cat "$SCRATCH/pb.0" "$SCRATCH/pb.1")"
fi

# A checkpoint: each rank reads its slices of the file.
"$EFFARCH" init tiny-jamba "$SCRATCH/ckpt-jamba" --seed 3 > /dev/null 2>&1
"$EFFARCH" init tiny-mamba2 "$SCRATCH/ckpt-mamba2" --seed 3 > /dev/null 2>&1
check 2 tp_ckpt "$SCRATCH/ckpt-jamba" "$SCRATCH/ckpt-mamba2" --tp 2
check 2 ep_ckpt "$SCRATCH/ckpt-jamba" --ep 2

# --- generate: identical tokens, rank 0 prints -----------------------------------------------------
single=$("$EFFARCH" generate tiny-jamba --prompt-ids 1,2,3,4 -n 6 --json 2> /dev/null)
if launch2 "$SCRATCH/gen" "$EFFARCH" generate tiny-jamba --prompt-ids 1,2,3,4 -n 6 --json --tp 2; then
  "$PYTHON" - "$SCRATCH/gen.0" "$SCRATCH/gen.1" "$single" <<'PY' || fail "generate --tp 2 differs from one process"
import json, sys
out = open(sys.argv[1]).read()
doc = json.loads(out[out.index("{"):])
one = json.loads(sys.argv[3])
assert doc["tokens"] == one["tokens"], (doc["tokens"], one["tokens"])
p = doc["parallel"]
assert p["world_size"] == 2 and p["backend"] == "gloo" and p["rank_devices"] == ["cpu", "cpu"], p
assert p["cache_bytes_total"] == one["cache_bytes"], (p, one["cache_bytes"])
assert open(sys.argv[2]).read().strip() == "", "rank 1 printed"
PY
else
  fail "generate --tp 2 failed:"$'\n'"$(cat "$SCRATCH/gen.0" "$SCRATCH/gen.1")"
fi

# --- the variables srun sets (SLURM_PROCID/NTASKS/LOCALID, the job script's MASTER_ADDR/PORT) --
port=$(free_port)
for r in 0 1; do
  SLURM_PROCID=$r SLURM_NTASKS=2 SLURM_LOCALID=$r MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
    "$EFFARCH" generate tiny-mamba2 --prompt-ids 1,2,3,4 -n 6 --json --tp 2 > "$SCRATCH/slurm.$r" 2>&1 &
  eval "spid$r=$!"
done
src=0
wait "$spid0" || src=1
wait "$spid1" || src=1
single=$("$EFFARCH" generate tiny-mamba2 --prompt-ids 1,2,3,4 -n 6 --json 2> /dev/null)
if [[ $src -ne 0 ]]; then
  fail "generate --tp 2 under Slurm's variables failed:"$'\n'"$(cat "$SCRATCH/slurm.0" "$SCRATCH/slurm.1")"
else
  "$PYTHON" - "$SCRATCH/slurm.0" "$single" <<'PY' || fail "generate --tp 2 under Slurm's variables"
import json, sys
out = open(sys.argv[1]).read()
doc = json.loads(out[out.index("{"):])
assert doc["tokens"] == json.loads(sys.argv[2])["tokens"]
assert doc["parallel"]["launcher"] == "slurm" and doc["parallel"]["world_size"] == 2, doc["parallel"]
PY
fi

# --- bench: rank 0 writes results that read back -------------------------------------------------
if launch2 "$SCRATCH/bench" "$EFFARCH" bench tiny-mixtral --tp 2 --prompt-lengths 8,16 --gen-tokens 4 --reps 1 \
    --warmup 1 --threads 1 --no-progress -o "$SCRATCH/bench.json"; then
  "$PYTHON" - "$SCRATCH/bench.json" <<'PY' || fail "bench --tp 2 results"
import json, sys
doc = json.load(open(sys.argv[1]))
p = doc["environment"]["parallel"]
assert p["world_size"] == 2 and p["tp"] == 2 and p["ep"] == 1 and p["backend"] == "gloo", p
assert p["rank_devices"] == ["cpu", "cpu"], p
assert len(doc["points"]) == 2
for pt in doc["points"]:
    assert pt["status"] == "ok", pt
    mem = pt["memory"]
    assert len(mem["ranks"]) == 2, mem
    assert mem["total"]["weights_bytes"] == sum(r["weights_bytes"] for r in mem["ranks"])
    assert mem["weights_bytes"] == mem["ranks"][0]["weights_bytes"]
PY
  expect_exit 0 "" "$EFFARCH" report "$SCRATCH/bench.json"
  [[ ! -e "$SCRATCH/bench.1" || ! -s "$SCRATCH/bench.1" ]] || fail "rank 1 of bench printed: $(cat "$SCRATCH/bench.1")"
else
  fail "bench --tp 2 failed:"$'\n'"$(cat "$SCRATCH/bench.0" "$SCRATCH/bench.1")"
fi

# torchrun, as docs/parallel.md runs it, when the Python environment has it.
TORCHRUN=$(dirname "$PYTHON")/torchrun
if [[ -x $TORCHRUN ]]; then
  if ! "$TORCHRUN" --nproc-per-node 2 --master-port "$(free_port)" --no-python "$EFFARCH" bench tiny-llama --tp 2 \
      --prompt-lengths 8 --gen-tokens 2 --reps 1 --warmup 0 --threads 1 --no-progress \
      -o "$SCRATCH/torchrun.json" > "$SCRATCH/torchrun.log" 2>&1; then
    fail "torchrun bench --tp 2 failed:"$'\n'"$(cat "$SCRATCH/torchrun.log")"
  fi
  "$PYTHON" -c "import json,sys; d=json.load(open(sys.argv[1])); p=d['environment']['parallel']; assert p['world_size']==2 and p['launcher']=='torchrun', p" \
    "$SCRATCH/torchrun.json" || fail "torchrun results"
fi

# --- a rank killed mid-run -----------------------------------------------------------------------
port=$(free_port)
for r in 0 1; do
  RANK=$r WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port EFFARCH_DIST_TIMEOUT=30 \
    "$EFFARCH" bench tiny-llama --tp 2 --prompt-lengths 8-4096*2 --gen-tokens 64 --reps 3 --threads 1 \
    --no-progress -o "$SCRATCH/killed.json" > "$SCRATCH/killed.$r" 2>&1 &
  eval "pid$r=$!"
done
# Once the first point is written, the sweep is under way: kill rank 1.
for _ in $(seq 1 600); do
  [[ -s "$SCRATCH/killed.jsonl" ]] && break
  sleep 0.2
done
kill -9 "$pid1" 2> /dev/null || true
start=$SECONDS
rc=0
wait "$pid0" || rc=$?
elapsed=$((SECONDS - start))
wait "$pid1" 2> /dev/null || true
if [[ $rc -eq 0 ]]; then
  fail "rank 0 exited 0 after rank 1 was killed"
elif ! grep -q "lost rank 1" "$SCRATCH/killed.0"; then
  fail "rank 0's error does not name the lost rank 1:"$'\n'"$(cat "$SCRATCH/killed.0")"
elif [[ $elapsed -gt 45 ]]; then
  fail "rank 0 took ${elapsed} s to exit after rank 1 was killed (timeout 30 s)"
else
  echo "killed rank 1: rank 0 exited $rc after ${elapsed} s: $(grep 'lost rank' "$SCRATCH/killed.0")"
fi
for p in "$pid0" "$pid1"; do
  if kill -0 "$p" 2> /dev/null; then
    fail "process $p still runs"
    kill -9 "$p" 2> /dev/null || true
  fi
done

# --- a rank that fails (a corrupt checkpoint on its node): the other names it and its error -------
cp -r "$SCRATCH/ckpt-jamba" "$SCRATCH/ckpt-bad"
truncate -s 1000 "$SCRATCH/ckpt-bad/model.safetensors"
start=$SECONDS
if EFFARCH_DIST_TIMEOUT=30 launch2 "$SCRATCH/failed" bash -c \
    'if [[ $RANK == 1 ]]; then m=$0/ckpt-bad; else m=$0/ckpt-jamba; fi; exec "$1" generate "$m" --prompt-ids 1,2,3 -n 4 --tp 2' \
    "$SCRATCH" "$EFFARCH"; then
  fail "generate with a corrupt checkpoint on rank 1 succeeded"
elif ! grep -q "rank 1 failed: " "$SCRATCH/failed.0"; then
  fail "rank 0 does not name rank 1's failure:"$'\n'"$(cat "$SCRATCH/failed.0" "$SCRATCH/failed.1")"
else
  echo "failed rank 1 after $((SECONDS - start)) s: $(grep 'rank 1 failed' "$SCRATCH/failed.0")"
fi

# --- bad input: usage errors before any weight loads ---------------------------------------------
expect_exit 2 "num_attention_heads 4 attention heads do not split into 3" "$EFFARCH" bench tiny-llama --tp 3 --no-progress \
  -o "$SCRATCH/bad.json"
expect_exit 2 "num_heads 8 Mamba-2 heads do not split into 3" "$EFFARCH" generate tiny-mamba2 --prompt-ids 1,2 --tp 3
expect_exit 2 "num_key_value_heads 2 is fewer than --tp" "$EFFARCH" generate tiny-llama --prompt-ids 1,2 --tp 4
expect_exit 2 "has no MoE layers" "$EFFARCH" generate tiny-llama --prompt-ids 1,2 --ep 2
expect_exit 2 "world size of 1" "$EFFARCH" generate tiny-llama --prompt-ids 1,2 --tp 2
expect_exit 2 "--tp 2 x --ep 2 = 4 processes, but the launch has a world size of 2" \
  env RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=1 "$EFFARCH" generate tiny-mixtral --prompt-ids 1,2 --tp 2 --ep 2
expect_exit 2 "MASTER_ADDR" env RANK=0 WORLD_SIZE=2 "$EFFARCH" generate tiny-llama --prompt-ids 1,2 --tp 2
expect_exit 2 "n_routed_experts 8 experts do not split into 3" "$EFFARCH" info tiny-deepseek-moe --ep 3
# info: bytes per rank add up to the whole model (plus replicated tensors)
"$EFFARCH" info tiny-mixtral --tp 2 --json > "$SCRATCH/info.json" || fail "info --tp 2"
"$PYTHON" - "$SCRATCH/info.json" <<'PY' || fail "info --tp 2 figures"
import json, sys
row = json.load(open(sys.argv[1]))[0]
ranks = row["per_rank"]["ranks"]
assert len(ranks) == 2
assert all(r["weight_bytes_bf16"] < row["weight_bytes_bf16"] for r in ranks)
assert sum(r["weight_bytes_bf16"] for r in ranks) >= row["weight_bytes_bf16"]
assert sum(r["kv_cache_bytes_per_token"] for r in ranks) == row["kv_cache_bytes_per_token"]
PY
finish
