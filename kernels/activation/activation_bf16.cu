// __nv_bfloat16 activations: the fused MLP activation.
#include "activation/activation_kernel.cuh"

namespace effarch::kernels {

LaunchStatus activation_bf16(const ActivationParams& params, cudaStream_t stream) { return activation_cuda<__nv_bfloat16>(params, stream); }

}  // namespace effarch::kernels
