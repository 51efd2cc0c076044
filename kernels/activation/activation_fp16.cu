// __half activations: the fused MLP activation.
#include "activation/activation_kernel.cuh"

namespace effarch::kernels {

LaunchStatus activation_fp16(const ActivationParams& params, cudaStream_t stream) { return activation_cuda<__half>(params, stream); }

}  // namespace effarch::kernels
