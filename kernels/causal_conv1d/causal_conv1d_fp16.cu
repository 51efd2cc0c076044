// float16 x: instantiations of the prefill and update kernels, weights in float16 or float32.
#include "causal_conv1d/causal_conv1d_fwd.cuh"
#include "causal_conv1d/causal_conv1d_update.cuh"

namespace effarch::kernels {

LaunchStatus causal_conv1d_fwd_fp16(const CausalConv1dParams& params, cudaStream_t stream) {
  switch (params.weight_type) {
    case ElementType::kFloat16: return causal_conv1d_fwd_cuda<__half, __half>(params, stream);
    case ElementType::kFloat32: return causal_conv1d_fwd_cuda<__half, float>(params, stream);
    default: return {cudaErrorInvalidValue, "causal_conv1d_fwd: float16 x needs float16 or float32 weight and bias"};
  }
}

LaunchStatus causal_conv1d_update_fp16(const CausalConv1dParams& params, cudaStream_t stream) {
  switch (params.weight_type) {
    case ElementType::kFloat16: return causal_conv1d_update_cuda<__half, __half>(params, stream);
    case ElementType::kFloat32: return causal_conv1d_update_cuda<__half, float>(params, stream);
    default: return {cudaErrorInvalidValue, "causal_conv1d_update: float16 x needs float16 or float32 weight and bias"};
  }
}

}  // namespace effarch::kernels
