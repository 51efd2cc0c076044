// __half x and W: the dense GEMV kernel's instantiation for this element type.
#include "gemv/gemv.cuh"

namespace effarch::kernels {

LaunchStatus gemv_fp16(const GemvParams& params, cudaStream_t stream) {
  return gemv_cuda<__half>(params, stream);
}

}  // namespace effarch::kernels
