// __half x: the int8 GEMV kernel's instantiation for this element type.
#include "int8_gemv/int8_gemv.cuh"

namespace effarch::kernels {

LaunchStatus int8_gemv_fp16(const Int8GemvParams& params, cudaStream_t stream) {
  return int8_gemv_cuda<__half>(params, stream);
}

}  // namespace effarch::kernels
