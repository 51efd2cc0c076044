#!/usr/bin/env bash
# Installs what effarch needs on Debian 12 and builds it. Idempotent and fast when everything is
# already there. Usage: bash tools/setup.sh [--tests] [--no-build]
#   --tests     also install the test references (transformers, tokenizers, safetensors, clang)
#   --no-build  install only
# Environment: EFFARCH_VENV (default ~/.cache/effarch/venv) is the Python environment holding
# PyPI's torch (libtorch for the build); BUILD_DIR (default build) the CMake build folder.
set -euo pipefail

TORCH_VERSION=2.11.0          # the GPU machines run torch 2.11 (CUDA 13): one API for both
TRANSFORMERS_VERSION=5.23.0   # the reference for logits and tensor layouts
TOKENIZERS_VERSION=0.23.3
SAFETENSORS_VERSION=0.8.0
SENTENCEPIECE_VERSION=0.2.3

with_tests=0
build=1
for arg in "$@"; do
  case $arg in
    --tests) with_tests=1 ;;
    --no-build) build=0 ;;
    *) echo "setup.sh: unknown option $arg (use --tests, --no-build)" >&2; exit 2 ;;
  esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
venv=${EFFARCH_VENV:-$HOME/.cache/effarch/venv}
build_dir=${BUILD_DIR:-$root/build}
sudo=""
[[ $(id -u) -eq 0 ]] || sudo=sudo
log() { echo "[setup] $*" >&2; }

# --- Debian packages -------------------------------------------------------------------------
packages=(build-essential cmake ninja-build ccache git pkg-config python3 python3-venv python3-pip
          nlohmann-json3-dev libcli11-dev libgtest-dev libsentencepiece-dev libpcre2-dev
          libicu-dev libgloo-dev)
if [[ $with_tests -eq 1 ]]; then
  packages+=(clang libclang-rt-14-dev python3-matplotlib)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  log "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" > /dev/null
fi

# --- Python environment with PyPI's torch (libtorch) and the test references ------------------
if [[ ! -x $venv/bin/python ]]; then
  log "creating the virtual environment $venv"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv"
fi
pip_want=("torch==$TORCH_VERSION" numpy)
if [[ $with_tests -eq 1 ]]; then
  pip_want+=("transformers==$TRANSFORMERS_VERSION" "tokenizers==$TOKENIZERS_VERSION"
             "safetensors==$SAFETENSORS_VERSION" "sentencepiece==$SENTENCEPIECE_VERSION")
fi
# Ask pip only when a pinned version is not installed (pip itself is slow to start).
need_pip=0
for req in "${pip_want[@]}"; do
  name=${req%%==*}
  want=${req#*==}
  have=$("$venv/bin/python" -c "import importlib.metadata as m; print(m.version('$name'))" 2>/dev/null || true)
  if [[ -z $have ]] || { [[ $want != "$req" ]] && [[ ${have%%+*} != "$want" ]]; }; then need_pip=1; fi
done
if [[ $need_pip -eq 1 ]]; then
  log "installing into $venv: ${pip_want[*]} (torch with its CUDA wheels is ~3 GB the first time)"
  "$venv/bin/pip" install -q --upgrade pip > /dev/null
  "$venv/bin/pip" install -q "${pip_want[@]}"
fi

# --- Build -------------------------------------------------------------------------------------
if [[ $build -eq 1 ]]; then
  if [[ ! -f $build_dir/build.ninja ]]; then
    log "configuring $build_dir"
    cmake -S "$root" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DEFFARCH_PYTHON="$venv/bin/python" > /dev/null
  fi
  log "building (ccache keeps rebuilds fast)"
  cmake --build "$build_dir" -j "$(nproc)"
fi
log "ready: $build_dir/src/effarch"
