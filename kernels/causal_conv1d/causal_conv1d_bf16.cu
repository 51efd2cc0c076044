// bfloat16 x: instantiations of the prefill and update kernels, weights in bfloat16 or float32.
#include "causal_conv1d/causal_conv1d_fwd.cuh"
#include "causal_conv1d/causal_conv1d_update.cuh"

namespace effarch::kernels {

LaunchStatus causal_conv1d_fwd_bf16(const CausalConv1dParams& params, cudaStream_t stream) {
  switch (params.weight_type) {
    case ElementType::kBFloat16: return causal_conv1d_fwd_cuda<__nv_bfloat16, __nv_bfloat16>(params, stream);
    case ElementType::kFloat32: return causal_conv1d_fwd_cuda<__nv_bfloat16, float>(params, stream);
    default: return {cudaErrorInvalidValue, "causal_conv1d_fwd: bfloat16 x needs bfloat16 or float32 weight and bias"};
  }
}

LaunchStatus causal_conv1d_update_bf16(const CausalConv1dParams& params, cudaStream_t stream) {
  switch (params.weight_type) {
    case ElementType::kBFloat16: return causal_conv1d_update_cuda<__nv_bfloat16, __nv_bfloat16>(params, stream);
    case ElementType::kFloat32: return causal_conv1d_update_cuda<__nv_bfloat16, float>(params, stream);
    default: return {cudaErrorInvalidValue, "causal_conv1d_update: bfloat16 x needs bfloat16 or float32 weight and bias"};
  }
}

}  // namespace effarch::kernels
