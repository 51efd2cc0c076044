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
