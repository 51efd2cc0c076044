#!/usr/bin/env bash
# Prints one hash of every file that goes into the effarch binaries (CMake files, C++ and CUDA
# sources and headers, tests included), read from the working tree, not from git: on the GPU
# machine the .git that travels can be older than the tree. tools/gpu/prebuild.sh records it
# beside the binaries it packs; tools/gpu/build.sh compares it there before using them.
# Run from the source root.
set -euo pipefail
find CMakeLists.txt CMakePresets.json cmake src include kernels tests -type f \
  \( -name '*.cpp' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' -o -name 'CMakeLists.txt' \
     -o -name '*.cmake' -o -name '*.in' -o -name 'CMakePresets.json' \) -print0 |
  LC_ALL=C sort -z | xargs -0 sha1sum | sha1sum | cut -d' ' -f1
