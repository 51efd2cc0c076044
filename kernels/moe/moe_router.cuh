#pragma once
// The router's per-token work (kernels/moe/moe.h, stage 1) as a warp-level device function, run by
// the router kernel over logits in global memory (moe_routing.cu) and by the one-token router
// over logits it computed into shared memory (moe_kernels.cuh). Its arithmetic is
// kernels/moe/moe_math.h's, which the CPU host emulation in tests/ops/moe_emulation.h runs.

#include "moe/moe.h"

namespace effarch::kernels::moe_detail {

using namespace moe;

// One warp routes one token: softmax over the E logits held kRouterPerLane per lane, then k
// rounds of a warp arg-max over the lanes' best unchosen candidates; lane 0 writes the ids and
// weights. logit(e): the token's logit of expert e in fp32 (a value of the model dtype).
template <typename Logit>
__device__ __forceinline__ void route_token_warp(const MoeRouterParams& p, int token, int lane, const Logit& logit) {
  constexpr unsigned kFull = 0xffffffffu;
  const int64_t row = static_cast<int64_t>(token) * p.experts;
  float v[kRouterPerLane];
  for (int j = 0; j < kRouterPerLane; ++j) {
    const int e = router_expert(lane, j);
    v[j] = e < p.experts ? logit(e) : 0.f;
  }
  float max = router_lane_max(v, p.experts, lane);
  for (int offset = kWarp / 2; offset > 0; offset /= 2) max = fmaxf(max, __shfl_xor_sync(kFull, max, offset));
  float sum = router_lane_exp(v, p.experts, lane, max);
  for (int offset = kWarp / 2; offset > 0; offset /= 2) sum += __shfl_down_sync(kFull, sum, offset);
  sum = __shfl_sync(kFull, sum, 0);  // lane 0's sum, the order warp_sum_down_emulated adds in
  router_lane_probs(v, p.experts, lane, sum, p.mode, p.model);
  for (int j = 0; j < kRouterPerLane; ++j) {
    const int e = router_expert(lane, j);
    if (e < p.experts) p.probs[row + e] = v[j];
  }
  uint32_t chosen = 0;
  float w[kMaxTopK];
  int ids[kMaxTopK];
  for (int t = 0; t < p.top_k; ++t) {
    Candidate best = router_lane_best(v, p.experts, lane, chosen);
    for (int offset = kWarp / 2; offset > 0; offset /= 2) {
      const Candidate other{__shfl_xor_sync(kFull, best.score, offset), __shfl_xor_sync(kFull, best.expert, offset)};
      if (better(other, best)) best = other;
    }
    if (best.expert % kWarp == lane) chosen |= 1u << (best.expert / kWarp);
    w[t] = best.score;
    ids[t] = best.expert;
  }
  if (lane != 0) return;
  router_weights(w, p.top_k, p.mode, p.model);
  const Precision out = p.mode == RouterMode::kFp32Renormalized ? Precision::kFp32 : p.model;
  for (int t = 0; t < p.top_k; ++t) {
    p.expert_ids[static_cast<int64_t>(token) * p.top_k + t] = ids[t];
    store_f(p.weights, static_cast<int64_t>(token) * p.top_k + t, w[t], out);
  }
}

}  // namespace effarch::kernels::moe_detail
