// The MoE dispatch's dtype-free stages (kernels/moe/moe.h has the contract): the router (the
// logits' precision is a run-time value: it only changes how E values per token load) and the
// permute. Their arithmetic is kernels/moe/moe_math.h's, which the CPU host emulation in
// tests/ops/moe_cuda_test.cpp runs in the same phase order.

#include "common/grid_dependency.h"
#include "common/launch.h"
#include "moe/moe.h"

namespace effarch::kernels {
namespace moe_detail {

using namespace moe;

inline constexpr unsigned kFull = 0xffffffffu;
inline constexpr int kRouterWarpsPerBlock = 4;

// One warp per token: softmax over the E logits held kRouterPerLane per lane, then k rounds of a
// warp arg-max over the lanes' best unchosen candidates.
__global__ void __launch_bounds__(kRouterWarpsPerBlock* kWarp) moe_router_kernel(const MoeRouterParams p) {
  allow_dependent_launch();
  grid_dependency_wait();  // the gate logits come from the kernel before
  const int lane = static_cast<int>(threadIdx.x) % kWarp;
  const int token = static_cast<int>(blockIdx.x) * kRouterWarpsPerBlock + static_cast<int>(threadIdx.x) / kWarp;
  if (token >= p.tokens) return;  // whole warps leave together
  const int64_t row = static_cast<int64_t>(token) * p.experts;
  float v[kRouterPerLane];
  for (int j = 0; j < kRouterPerLane; ++j) {
    const int e = router_expert(lane, j);
    v[j] = e < p.experts ? load_f(p.logits, row + e, p.model) : 0.f;
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
  const moe::Precision out = p.mode == RouterMode::kFp32Renormalized ? Precision::kFp32 : p.model;
  for (int t = 0; t < p.top_k; ++t) {
    p.expert_ids[static_cast<int64_t>(token) * p.top_k + t] = ids[t];
    store_f(p.weights, static_cast<int64_t>(token) * p.top_k + t, w[t], out);
  }
}

// One block: counts (shared atomics: integer, so any order gives the same), the prefix sums and
// the active list (thread 0), then tiles of kPermuteThreads positions: each position's rank among
// its warp's positions of the same bucket, the per-bucket count of every warp, a running prefix
// over the warps (threads 0..E), and the scatter. Positions keep their order within a bucket.
__global__ void __launch_bounds__(kPermuteThreads) moe_permute_kernel(const MoePermuteParams p) {
  __shared__ int count[kMaxExperts + 1];
  __shared__ int running[kMaxExperts + 1];
  __shared__ int tile[kPermuteThreads];
  __shared__ int warp_count[kPermuteWarps][kMaxExperts + 1];
  allow_dependent_launch();
  grid_dependency_wait();
  const int tid = static_cast<int>(threadIdx.x), warp = tid / kWarp, lane = tid % kWarp;
  const int buckets = p.experts + 1;
  for (int b = tid; b < buckets; b += kPermuteThreads) count[b] = 0;
  __syncthreads();
  for (int i = tid; i < p.entries; i += kPermuteThreads) atomicAdd(&count[permute_bucket(p.expert_ids[i], p.experts)], 1);
  __syncthreads();
  if (tid == 0) {
    int offset = 0, n = 0;
    for (int b = 0; b < buckets; ++b) {
      p.counts[b] = count[b];
      p.offsets[b] = offset;
      running[b] = offset;
      if (b < p.experts && count[b] > 0) p.active[n++] = b;
      offset += count[b];
    }
    p.offsets[buckets] = offset;
    *p.num_active = n;
  }
  __syncthreads();
  for (int base = 0; base < p.entries; base += kPermuteThreads) {
    const int i = base + tid;
    const int bucket = i < p.entries ? permute_bucket(p.expert_ids[i], p.experts) : -1;
    tile[tid] = bucket;
    for (int b = lane; b < buckets; b += kWarp) warp_count[warp][b] = 0;
    __syncthreads();
    const int* warp_buckets = tile + warp * kWarp;
    const int rank = permute_rank_in_warp(warp_buckets, lane);
    if (bucket >= 0 && permute_last_in_warp(warp_buckets, lane)) warp_count[warp][bucket] = rank + 1;
    __syncthreads();
    if (tid < buckets) {
      int acc = running[tid];
      for (int w = 0; w < kPermuteWarps; ++w) {
        const int c = warp_count[w][tid];
        warp_count[w][tid] = acc;
        acc += c;
      }
      running[tid] = acc;
    }
    __syncthreads();
    if (bucket >= 0) {
      const int row = warp_count[warp][bucket] + rank;
      p.order[row] = i;
      p.row_of[i] = row;
    }
    __syncthreads();  // the next tile reuses tile[] and warp_count[]
  }
}

}  // namespace moe_detail

LaunchStatus moe_router(const MoeRouterParams& p, cudaStream_t stream) {
  using namespace moe_detail;
  if (p.experts < 1 || p.experts > moe::kMaxExperts || p.top_k < 1 || p.top_k > p.experts ||
      p.top_k > moe::kMaxTopK) {
    return {cudaErrorInvalidValue, "moe_router: experts must be 1..256 and top_k 1..min(experts, 16)"};
  }
  if (p.tokens == 0) return {};
  const dim3 grid((p.tokens + kRouterWarpsPerBlock - 1) / kRouterWarpsPerBlock), block(kRouterWarpsPerBlock * moe::kWarp);
  return launch_kernel(moe_router_kernel, grid, block, 0, stream, "moe_router kernel launch", p);
}

LaunchStatus moe_permute(const MoePermuteParams& p, cudaStream_t stream) {
  using namespace moe_detail;
  if (p.experts < 1 || p.experts > moe::kMaxExperts || p.entries < 0) {
    return {cudaErrorInvalidValue, "moe_permute: experts must be 1..256"};
  }
  // also for 0 entries: counts and offsets
  return launch_kernel(moe_permute_kernel, dim3(1), dim3(moe::kPermuteThreads), 0, stream, "moe_permute kernel launch", p);
}

}  // namespace effarch::kernels
