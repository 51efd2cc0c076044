#!/usr/bin/env bash
# Makes .gpu-kit/ at the root of this checkout: the Debian 12 packages of effarch's C++
# dependencies (the offline GPU machine has PyTorch and CUDA but no package manager access) and
# env.sh, which unpacks them there. Run on the development machine, from any directory:
#   bash tools/gpu/fetch-kit.sh
# then send .gpu-kit/ with the working tree (the device run's carry: [".gpu-kit"]) and begin the
# GPU machine's command with `source .gpu-kit/env.sh;` (docs/building.md, On the GPU machine).
# EXTRA_DEBS="pkg ..." adds packages to the default list.
set -euo pipefail
# Resolved before any cd, so a relative path to this script works.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
kit="$root/.gpu-kit"
if ! git -C "$root" check-ignore -q .gpu-kit/ 2>/dev/null; then
  echo "fetch-kit.sh: warning: .gpu-kit/ is not git-ignored in $root (.gitignore lists /.gpu-kit/)" >&2
fi
# Build and test dependencies (headers and the libraries they link), PCRE2 and ICU (the
# tokenizers) included; the versions are Debian 12's, which the GPU machine's glibc runs.
pkgs="libsentencepiece-dev libsentencepiece0 libprotobuf-lite32 nlohmann-json3-dev libcli11-dev \
libgtest-dev libgmock-dev googletest \
libpcre2-dev libpcre2-8-0 libpcre2-16-0 libpcre2-32-0 libpcre2-posix3 libicu-dev libicu72 libgloo-dev"
if [[ -n ${EXTRA_DEBS:-} ]]; then pkgs="$pkgs $EXTRA_DEBS"; fi
mkdir -p "$kit"
cd "$kit"  # apt-get download writes into the current directory
rm -f ./*.deb
# shellcheck disable=SC2086  # the list is meant to split into words
apt-get download $pkgs >/dev/null || { apt-get update -qq && apt-get download $pkgs >/dev/null; }
cp "$here/env.sh" "$kit/env.sh"
ls -1 "$kit"
du -sh "$kit"
