// __nv_bfloat16 x and W: the rows GEMM's instantiation for this element type.
#include "rows_gemm/rows_gemm.cuh"

namespace effarch::kernels {

LaunchStatus rows_gemm_bf16(const RowsGemmParams& params, cudaStream_t stream) {
  return rows_gemm_cuda<__nv_bfloat16>(params, stream);
}

}  // namespace effarch::kernels
