// The MoE dispatch's per-dtype stages instantiated for the fp16 model precision (moe_kernels.cuh).
#include "moe/moe_kernels.cuh"

namespace effarch::kernels {

LaunchStatus moe_expert_gemv_fp16(const MoeExpertGemvParams& params, cudaStream_t stream) {
  return moe_detail::moe_expert_gemv_cuda<moe::Precision::kFp16>(params, stream);
}
LaunchStatus moe_combine_fp16(const MoeCombineParams& params, cudaStream_t stream) {
  return moe_detail::moe_combine_cuda<moe::Precision::kFp16>(params, stream);
}
LaunchStatus moe_token_down_fp16(const MoeTokenDownParams& params, cudaStream_t stream) {
  return moe_detail::moe_token_down_cuda<moe::Precision::kFp16>(params, stream);
}
LaunchStatus moe_route_tokens_fp16(const MoeRouteTokensParams& params, cudaStream_t stream) {
  return moe_detail::moe_route_tokens_cuda<moe::Precision::kFp16>(params, stream);
}

}  // namespace effarch::kernels
