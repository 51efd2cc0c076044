// __half x and W: the rows GEMM's instantiation for this element type.
#include "rows_gemm/rows_gemm.cuh"

namespace effarch::kernels {

LaunchStatus rows_gemm_fp16(const RowsGemmParams& params, cudaStream_t stream) {
  return rows_gemm_cuda<__half>(params, stream);
}

}  // namespace effarch::kernels
