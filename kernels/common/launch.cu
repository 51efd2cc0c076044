// The lowest CUDA architecture the kernels were compiled for (common/launch.h).

#include "common/launch.h"

#ifndef EFFARCH_LOWEST_CUDA_ARCH
#error "kernels/CMakeLists.txt defines EFFARCH_LOWEST_CUDA_ARCH for this file"
#endif

namespace effarch::kernels {

int lowest_compiled_cuda_arch() { return EFFARCH_LOWEST_CUDA_ARCH; }

}  // namespace effarch::kernels
