// float activations: the fused MLP activation.
#include "activation/activation_kernel.cuh"

namespace effarch::kernels {

LaunchStatus activation_fp32(const ActivationParams& params, cudaStream_t stream) { return activation_cuda<float>(params, stream); }

}  // namespace effarch::kernels
