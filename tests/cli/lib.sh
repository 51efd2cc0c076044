# Shared by the CLI tests: each script is called as
#   script.sh EFFARCH_BINARY SOURCE_DIR SCRATCH_DIR PYTHON
set -euo pipefail
EFFARCH=$1
SRC=$2
SCRATCH=$3
PYTHON=${4:-python3}
rm -rf "$SCRATCH"
mkdir -p "$SCRATCH"
failures=0

fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

# expect_exit CODE "substring in stdout+stderr" command...
expect_exit() {
  local want=$1 needle=$2
  shift 2
  local out rc=0
  out=$("$@" 2>&1) || rc=$?
  if [[ $rc -ne $want ]]; then
    fail "'$*' exited $rc, expected $want. Output:"$'\n'"$out"
  elif [[ -n $needle && $out != *"$needle"* ]]; then
    fail "'$*' output lacks '$needle'. Output:"$'\n'"$out"
  fi
}

finish() {
  if [[ $failures -gt 0 ]]; then
    echo "$failures check(s) failed" >&2
    exit 1
  fi
  echo "all checks passed"
}
