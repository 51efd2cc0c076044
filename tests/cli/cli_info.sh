#!/usr/bin/env bash
# effarch info: the table for every built-in config, JSON figures, --help.
source "$(dirname "$0")/lib.sh"

expect_exit 0 "mixtral-8x7b" "$EFFARCH" info
# Nothing on stderr at start: no warning that two libraries define one variable at different sizes
# with the smaller winning (src/cli/main.cpp; linked in the order src/CMakeLists.txt gives).
"$EFFARCH" --version > /dev/null 2> "$SCRATCH/version.err" || fail "effarch --version"
[[ ! -s $SCRATCH/version.err ]] || fail "effarch --version wrote to stderr: $(cat "$SCRATCH/version.err")"
expect_exit 0 "46,702,792,704" "$EFFARCH" info mixtral-8x7b
expect_exit 0 "attention 4 @ 4,12,20,28 + mamba 28; moe 16 + dense 16" "$EFFARCH" info jamba-v0.1
expect_exit 0 "unbounded" "$EFFARCH" info mamba-2.8b
expect_exit 0 "Architecture table" "$EFFARCH" info --help
expect_exit 0 "backbone.layers.0.mixer.A_log [5120, 16]" "$EFFARCH" info mamba-2.8b --tensors
# A config file path works as MODEL too.
expect_exit 0 "8,030,261,248" "$EFFARCH" info "$SRC/configs/models/llama-3-8b.json"

# A folder named like a built-in config: the path wins, and a note says so and how to name the
# built-in (it once won silently). A bare name only: ./tiny-llama is a path, no note. Without
# MODEL, info lists the built-ins themselves. A folder without config.json is refused, saying why.
mkdir -p "$SCRATCH/shadow/tiny-llama" "$SCRATCH/shadow/tiny-mamba"
cp "$SRC/configs/models/tiny-mamba.json" "$SCRATCH/shadow/tiny-llama/config.json"
cd "$SCRATCH/shadow"
"$EFFARCH" info tiny-llama > shadow.out 2> shadow.err || fail "info on a shadowing folder: $(cat shadow.err)"
grep -q "^note: 'tiny-llama' is the folder ./tiny-llama here, not the built-in config of that name: a path that \
exists wins (give .*configs/models/tiny-llama.json for the built-in)$" shadow.err || fail "no shadowing note: $(cat shadow.err)"
grep -q "tiny-llama | mamba" shadow.out || fail "the folder's config was not the one used: $(cat shadow.out)"
"$EFFARCH" info ./tiny-llama > /dev/null 2> path.err || fail "info ./tiny-llama"
[[ ! -s path.err ]] || fail "a path named as one drew a note: $(cat path.err)"
# Under a launcher only rank 0 says it (the environment torchrun gives rank 1 of 2).
RANK=1 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=29500 "$EFFARCH" info tiny-llama > /dev/null 2> rank1.err ||
  fail "info as rank 1: $(cat rank1.err)"
[[ ! -s rank1.err ]] || fail "rank 1 repeated the shadowing note: $(cat rank1.err)"
"$EFFARCH" info > all.out 2> all.err || fail "info with a shadowing folder here"
grep -q "tiny-llama *| transformer" all.out || fail "info without MODEL took the folder for the built-in"
[[ ! -s all.err ]] || fail "info without MODEL: $(cat all.err)"
expect_exit 2 "tiny-mamba: checkpoint folder has no config.json (a folder here named like a built-in config is \
taken for a checkpoint: give" "$EFFARCH" info tiny-mamba
# kernels: for the configs its --ops read, and only those.
K=(kernels --device cpu --lengths 8 --batch 1 --reps 1 --warmup 0 --mamba1 tiny-llama --transformer tiny-phi)
"$EFFARCH" "${K[@]}" --ops causal_conv1d_update -o k1.json > /dev/null 2> k1.err || fail "kernels: $(cat k1.err)"
grep -q "^note: 'tiny-llama' is the folder" k1.err || fail "kernels --mamba1 drew no shadowing note: $(cat k1.err)"
"$EFFARCH" "${K[@]}" --ops attention -o k2.json > /dev/null 2> k2.err || fail "kernels: $(cat k2.err)"
! grep -q "^note:" k2.err || fail "kernels noted a config its --ops do not read: $(cat k2.err)"
# bench too, as it reads its models (before the usage error found after them here).
expect_exit 2 "note: 'tiny-llama' is the folder" "$EFFARCH" bench tiny-llama -o no-such-folder/b.json
cd "$SCRATCH"

"$EFFARCH" info --json mamba-2.8b llama-3-8b mixtral-8x7b > "$SCRATCH/info.json"
"$PYTHON" - "$SCRATCH/info.json" <<'PY' || fail "info --json figures"
import json, sys
rows = {r["model"]: r for r in json.load(open(sys.argv[1]))}
assert rows["mamba-2.8b"]["total_params"] == 2768345600, rows["mamba-2.8b"]["total_params"]
assert rows["llama-3-8b"]["total_params"] == 8030261248
assert rows["mixtral-8x7b"]["total_params"] == 46702792704
assert rows["mixtral-8x7b"]["active_params"] == 12879925248
assert rows["llama-3-8b"]["kv_cache_bytes_per_token"] == 131072
assert rows["mamba-2.8b"]["max_context"] is None
assert rows["mamba-2.8b"]["layer_codes"] == "M-" * 64
PY
finish
