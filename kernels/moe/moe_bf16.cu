// The MoE dispatch's per-dtype stages instantiated for the bf16 model precision (moe_kernels.cuh).
#include "moe/moe_kernels.cuh"

namespace effarch::kernels {

LaunchStatus moe_expert_gemv_bf16(const MoeExpertGemvParams& params, cudaStream_t stream) {
  return moe_detail::moe_expert_gemv_cuda<moe::Precision::kBf16>(params, stream);
}
LaunchStatus moe_combine_bf16(const MoeCombineParams& params, cudaStream_t stream) {
  return moe_detail::moe_combine_cuda<moe::Precision::kBf16>(params, stream);
}
LaunchStatus moe_token_down_bf16(const MoeTokenDownParams& params, cudaStream_t stream) {
  return moe_detail::moe_token_down_cuda<moe::Precision::kBf16>(params, stream);
}
LaunchStatus moe_route_tokens_bf16(const MoeRouteTokensParams& params, cudaStream_t stream) {
  return moe_detail::moe_route_tokens_cuda<moe::Precision::kBf16>(params, stream);
}

}  // namespace effarch::kernels
