// __half activations: the fused residual add + norm.
#include "add_norm/add_norm_kernel.cuh"

namespace effarch::kernels {

LaunchStatus add_norm_fp16(const AddNormParams& params, cudaStream_t stream) { return add_norm_cuda<__half>(params, stream); }

}  // namespace effarch::kernels
