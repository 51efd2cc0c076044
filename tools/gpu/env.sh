# Sourced on the GPU machine from the project root, after tools/gpu/fetch-kit.sh copied it into
# .gpu-kit/ beside the .deb files:   source .gpu-kit/env.sh
# Unpacks the carried packages into /opt/effarch-deps (once per machine) and exports what a CUDA
# build needs: libtorch from the machine's PyTorch, the unpacked dependencies, and nvcc.
kit_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
deps=/opt/effarch-deps
if [ ! -f "$deps/.done" ]; then
  mkdir -p "$deps"
  for f in "$kit_dir"/*.deb; do dpkg -x "$f" "$deps"; done
  touch "$deps/.done"
fi
torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
torch_lib=$(python3 -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export CMAKE_PREFIX_PATH="$torch_prefix;$deps/usr"
export LD_LIBRARY_PATH="$deps/usr/lib/x86_64-linux-gnu:$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export CPATH="$deps/usr/include${CPATH:+:$CPATH}"
export PATH="/usr/local/cuda/bin:$PATH"
command -v nvcc >/dev/null && export CUDACXX=$(command -v nvcc)
echo "gpu-kit: torch $(python3 -c 'import torch; print(torch.__version__)') at $torch_prefix; deps in $deps; nvcc: ${CUDACXX:-none}"
