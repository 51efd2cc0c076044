// __nv_bfloat16 activations: the fused residual add + norm.
#include "add_norm/add_norm_kernel.cuh"

namespace effarch::kernels {

LaunchStatus add_norm_bf16(const AddNormParams& params, cudaStream_t stream) { return add_norm_cuda<__nv_bfloat16>(params, stream); }

}  // namespace effarch::kernels
