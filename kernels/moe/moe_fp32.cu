// The MoE dispatch's per-dtype stages instantiated for the fp32 model precision (moe_kernels.cuh).
#include "moe/moe_kernels.cuh"

namespace effarch::kernels {

LaunchStatus moe_expert_gemv_fp32(const MoeExpertGemvParams& params, cudaStream_t stream) {
  return moe_detail::moe_expert_gemv_cuda<moe::Precision::kFp32>(params, stream);
}
LaunchStatus moe_combine_fp32(const MoeCombineParams& params, cudaStream_t stream) {
  return moe_detail::moe_combine_cuda<moe::Precision::kFp32>(params, stream);
}
LaunchStatus moe_token_down_fp32(const MoeTokenDownParams& params, cudaStream_t stream) {
  return moe_detail::moe_token_down_cuda<moe::Precision::kFp32>(params, stream);
}
LaunchStatus moe_route_tokens_fp32(const MoeRouteTokensParams& params, cudaStream_t stream) {
  return moe_detail::moe_route_tokens_cuda<moe::Precision::kFp32>(params, stream);
}

}  // namespace effarch::kernels
