// The MoE dispatch's dtype-free stages (kernels/moe/moe.h has the contract): the router (the
// logits' precision is a run-time value: it only changes how E values per token load) and the
// permute. Their arithmetic is kernels/moe/moe_math.h's, which the CPU host emulation in
// tests/ops/moe_emulation.h runs in the same phase order.

#include "common/grid_dependency.h"
#include "common/launch.h"
#include "moe/moe.h"
#include "moe/moe_router.cuh"

namespace effarch::kernels {
namespace moe_detail {

using namespace moe;

inline constexpr unsigned kFull = 0xffffffffu;
inline constexpr int kRouterWarpsPerBlock = 4;

// One warp per token over the logits in global memory (moe_router.cuh has the warp's work).
__global__ void __launch_bounds__(kRouterWarpsPerBlock* kWarp) moe_router_kernel(const MoeRouterParams p) {
  allow_dependent_launch();
  grid_dependency_wait();  // the gate logits come from the kernel before
  const int lane = static_cast<int>(threadIdx.x) % kWarp;
  const int token = static_cast<int>(blockIdx.x) * kRouterWarpsPerBlock + static_cast<int>(threadIdx.x) / kWarp;
  if (token >= p.tokens) return;  // whole warps leave together
  const int64_t row = static_cast<int64_t>(token) * p.experts;
  route_token_warp(p, token, lane, [&](int e) { return load_f(p.logits, row + e, p.model); });
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
