// float32 x: instantiations of the prefill and update kernels (weights float32).
#include "causal_conv1d/causal_conv1d_fwd.cuh"
#include "causal_conv1d/causal_conv1d_update.cuh"

namespace effarch::kernels {

LaunchStatus causal_conv1d_fwd_fp32(const CausalConv1dParams& params, cudaStream_t stream) {
  if (params.weight_type != ElementType::kFloat32) {
    return {cudaErrorInvalidValue, "causal_conv1d_fwd: float32 x needs float32 weight and bias"};
  }
  return causal_conv1d_fwd_cuda<float, float>(params, stream);
}

LaunchStatus causal_conv1d_update_fp32(const CausalConv1dParams& params, cudaStream_t stream) {
  if (params.weight_type != ElementType::kFloat32) {
    return {cudaErrorInvalidValue, "causal_conv1d_update: float32 x needs float32 weight and bias"};
  }
  return causal_conv1d_update_cuda<float, float>(params, stream);
}

}  // namespace effarch::kernels
