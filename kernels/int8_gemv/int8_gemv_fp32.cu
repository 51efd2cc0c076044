// float x: the int8 GEMV kernel's instantiation for this element type.
#include "int8_gemv/int8_gemv.cuh"

namespace effarch::kernels {

LaunchStatus int8_gemv_fp32(const Int8GemvParams& params, cudaStream_t stream) {
  return int8_gemv_cuda<float>(params, stream);
}

}  // namespace effarch::kernels
