// __nv_bfloat16 x and W: the dense GEMV kernel's instantiation for this element type.
#include "gemv/gemv.cuh"

namespace effarch::kernels {

LaunchStatus gemv_bf16(const GemvParams& params, cudaStream_t stream) {
  return gemv_cuda<__nv_bfloat16>(params, stream);
}

}  // namespace effarch::kernels
