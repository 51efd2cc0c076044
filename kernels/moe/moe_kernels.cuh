#pragma once
// The MoE dispatch's per-dtype stages (kernels/moe/moe.h has the contract), templated on the model
// precision; instantiated in moe_<dtype>.cu. The arithmetic is kernels/moe/moe_math.h's.

#include <algorithm>
#include <type_traits>

#include "common/grid_dependency.h"
#include "common/launch.h"
#include "moe/moe.h"
#include "moe/moe_router.cuh"

namespace effarch::kernels {
namespace moe_detail {

using namespace moe;

inline constexpr int kElementwiseThreads = 256;

// The one-token dispatch's slot order a lane per slot: lane j < k holds the token's ids[j] (*id)
// and gets moe::token_rank's value for it (-1 for an id outside 0..E-1 or a lane past k), the
// other ids shuffled in from their lanes. Every lane of the warp must call it.
__device__ __forceinline__ int warp_token_rank(const int64_t* ids, int k, int experts, int lane, int64_t* id) {
  const int64_t mine = lane < k ? ids[lane] : -1;
  int rank = 0;
  for (int j2 = 0; j2 < k; ++j2) {
    const int64_t f = __shfl_sync(0xffffffffu, mine, j2);
    rank += token_precedes(f, j2, mine, lane, experts) ? 1 : 0;
  }
  *id = mine;
  return lane < k && mine >= 0 && mine < experts ? rank : -1;
}

// The token's slot-th expert in that order, or -1, the same in every lane; out of line, so that
// the expert GEMV's registers stay what they were without the one-token mode.
static __device__ EFFARCH_NOINLINE int warp_token_expert(const int64_t* ids, int k, int experts, int slot, int lane) {
  int64_t id;
  const unsigned hit = __ballot_sync(0xffffffffu, warp_token_rank(ids, k, experts, lane, &id) == slot);
  return hit == 0 ? -1 : static_cast<int>(__shfl_sync(0xffffffffu, id, __ffs(hit) - 1));
}

// grid (expert_gemv_blocks, max_slots): block (x, slot) computes 8 weight rows of the slot-th
// active expert for all its rows, kGemvRows at a time; warp w one row (moe::expert_gemv_row), lane
// partial sums added with xor shuffles, lane 0 storing the row's output. kSwiglu (the gate/up
// product, MoeExpertGemvParams::swiglu): the block's 4 gate and 4 up rows meet in shared memory
// and the gate warps store silu(gate) * up; its own instantiation, so that the plain kernel keeps
// its registers (64 for bf16 on sm_90; the pairing in the same body took 71; the SwiGLU
// instantiations take 64 for bf16 and 88 for int8 weights, against the plain int8 kernel's 80,
// and three of their twelve spill 8-16 bytes: bf16 with int8 weights on the scalar path and fp16
// on sm_90's scalar path and sm_121's 16-byte one; asking ptxas for three blocks an SM made more of
// them spill). W: the weights' storage (the model dtype's, or int8_t, then scaled per row).
// The body, for kRows rows of an expert at a time (kGemvRows; 1 for a one-token step, where each
// expert has at most one row: the one-row kernel below) and kIn weight loads in flight a lane.
template <Precision P, int V, typename W, bool kSwiglu, int kIn, int kRows>
__device__ __forceinline__ void moe_expert_gemv_body(const MoeExpertGemvParams& p) {
  using S = typename StorageOf<P>::type;
  __shared__ float pair_value[kSwiglu ? kExpertGemvWarps : 1][kRows];  // each warp's rounded outputs
  allow_dependent_launch();
  grid_dependency_wait();  // the active experts, their rows and x come from the kernels before
  const int slot = static_cast<int>(blockIdx.y);
  const int warp = static_cast<int>(threadIdx.x) / kWarp, lane = static_cast<int>(threadIdx.x) % kWarp;
  // The tables' column this block reads (an expert, or a shared-expert slice) and its rows of y.
  int expert, begin, count;
  if (p.token_ids != nullptr) {  // one token: its slot-th expert by id, then the shared slices
    // every warp finds the lane whose slot has rank `slot`
    expert = slot < p.top_k ? warp_token_expert(p.token_ids, p.top_k, p.experts, slot, lane) : p.experts + slot - p.top_k;
    if (expert < 0) return;  // the whole block: the token has fewer valid experts
    begin = slot;
    count = 1;
  } else {
    if (slot >= *p.num_active) return;  // the whole block
    expert = p.active[slot];
    begin = p.offsets[expert];
    count = p.counts[expert];
  }
  const W* lo = static_cast<const W*>(p.w_lo[expert]);
  if (lo == nullptr) return;  // another rank's expert: the whole block
  const ExpertGemvRow row = expert_gemv_row(static_cast<int>(blockIdx.x), warp, p.out, p.split, kSwiglu);
  if (!kSwiglu && !row.active) return;  // with the SwiGLU, the warp still reaches the barriers
  const int o = row.o;
  const W* w = nullptr;
  float scale = 1.0f;
  if (row.active) {
    w = o < p.split ? lo + static_cast<int64_t>(o) * p.in
                    : static_cast<const W*>(p.w_hi[expert]) + static_cast<int64_t>(o - p.split) * p.in;
    if constexpr (std::is_same<W, int8_t>::value) scale = o < p.split ? p.s_lo[expert][o] : p.s_hi[expert][o - p.split];
  }
  const S* x = static_cast<const S*>(p.x);
  S* y = static_cast<S*>(p.y);
  for (int r0 = 0; r0 < count; r0 += kRows) {
    const int rows = min(kRows, count - r0);
    float acc[kRows] = {};
    if (row.active) {
      const S* xr[kRows];
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        const int i = begin + r0 + min(r, rows - 1);
        const int src = p.token_ids != nullptr ? 0 : p.gather ? p.order[i] / p.top_k : i;
        xr[r] = x + static_cast<int64_t>(src) * p.x_row_stride;
      }
      gemv_lane<P, V, W, kIn, kRows>(w, xr, rows, p.in, lane, acc);
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
#pragma unroll
        for (int offset = kWarp / 2; offset > 0; offset /= 2) acc[r] += __shfl_xor_sync(0xffffffffu, acc[r], offset);
      }
    }
    if constexpr (!kSwiglu) {
      if (lane == 0) {
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
          if (r < rows) y[static_cast<int64_t>(begin + r0 + r) * p.y_row_stride + o] = from_f<P>(acc[r] * scale);
        }
      }
    } else {
      if (row.active && lane == 0) {
#pragma unroll
        for (int r = 0; r < kRows; ++r) pair_value[warp][r] = round_to<P>(acc[r] * scale);
      }
      __syncthreads();
      // Lane r of a gate warp stores row r's silu(gate) * up; its up row is 4 warps on.
      if (row.active && row.gate && lane < rows) {
        y[static_cast<int64_t>(begin + r0 + lane) * p.y_row_stride + row.column] =
            from_f<P>(swiglu<P>(pair_value[warp][lane], pair_value[warp + kExpertGemvWarps / 2][lane]));
      }
      __syncthreads();  // the next rows' values overwrite these
    }
  }
}

template <Precision P, int V, typename W, bool kSwiglu>
__global__ void __launch_bounds__(kExpertGemvWarps* kWarp) moe_expert_gemv_kernel(const MoeExpertGemvParams p) {
  moe_expert_gemv_body<P, V, W, kSwiglu, kExpertLoadsInFlight, kGemvRows>(p);
}

// The one-token variants (MoeExpertGemvParams::one_row: a decode step of one token, each expert
// one row): one row's accumulator and x pointer instead of kGemvRows', fewer registers and more
// warps an SM, with kIn (kExpertLoadsInFlight or kExpertLoadsInFlightWide) loads in flight a lane.
// Dense weights on the 16-byte path only. The same sums in the same order as the kernel above.
template <Precision P, int V, typename W, bool kSwiglu, int kIn>
__global__ void __launch_bounds__(kExpertGemvWarps* kWarp) moe_expert_gemv_one_row_kernel(const MoeExpertGemvParams p) {
  moe_expert_gemv_body<P, V, W, kSwiglu, kIn, 1>(p);
}

// grid (N, column tiles): thread 0 orders the token's slots, then every thread sums its columns.
template <Precision P>
__global__ void __launch_bounds__(kElementwiseThreads) moe_combine_kernel(const MoeCombineParams p) {
  using S = typename StorageOf<P>::type;
  __shared__ int rows[kMaxTopK];
  __shared__ float w[kMaxTopK];
  __shared__ int count;
  allow_dependent_launch();
  grid_dependency_wait();
  const int token = static_cast<int>(blockIdx.x);
  const int64_t first = static_cast<int64_t>(token) * p.top_k;
  if (threadIdx.x == 0) {
    count = combine_slots(p.expert_ids + first, p.row_of + first,
                          static_cast<const char*>(p.weights) +
                              first * (p.weight_precision == Precision::kFp32 ? 4 : 2),
                          p.weight_precision, p.local, p.experts, p.top_k, rows, w);
  }
  __syncthreads();
  const S* y = static_cast<const S*>(p.y);
  S* out = static_cast<S*>(p.out) + static_cast<int64_t>(token) * p.out_row_stride;
  for (int c = static_cast<int>(blockIdx.y * blockDim.x + threadIdx.x); c < p.hidden;
       c += static_cast<int>(gridDim.y * blockDim.x)) {
    out[c] = from_f<P>(combine_value<P>(y, p.y_row_stride, c, rows, w, count));
  }
}

// grid ceil(H / 8), block 8 warps: warp w of block b sums output feature o = 8 b + w over the
// token's slots (MoeTokenDownParams), each slot's dot product as the expert GEMV's one-row lane
// computes it; warp 0 first places the slots in that order in shared memory.
template <Precision P, int V, typename W, int kIn = kExpertLoadsInFlight>
__global__ void __launch_bounds__(kExpertGemvWarps* kWarp) moe_token_down_kernel(const MoeTokenDownParams p) {
  using S = typename StorageOf<P>::type;
  __shared__ int expert_of[kMaxTopK];
  __shared__ float weight_of[kMaxTopK];
  __shared__ int count;
  allow_dependent_launch();
  grid_dependency_wait();  // a and the routing come from the kernels before
  const int warp = static_cast<int>(threadIdx.x) / kWarp, lane = static_cast<int>(threadIdx.x) % kWarp;
  if (warp == 0) {  // lane j places slot j at its rank
    int64_t id;
    const int rank = warp_token_rank(p.expert_ids, p.top_k, p.experts, lane, &id);
    if (rank >= 0) {
      expert_of[rank] = static_cast<int>(id);
      weight_of[rank] = load_f(p.weights, lane, p.weight_precision);
    }
    const unsigned valid = __ballot_sync(0xffffffffu, rank >= 0);
    if (lane == 0) count = __popc(valid);
  }
  __syncthreads();
  const int o = static_cast<int>(blockIdx.x) * kExpertGemvWarps + warp;
  if (o >= p.hidden) return;
  const S* a = static_cast<const S*>(p.a);
  float out = 0.f;
  for (int i = 0; i < count; ++i) {
    const int e = expert_of[i];
    const W* w = static_cast<const W*>(p.w[e]);
    if (w == nullptr) continue;  // another rank's expert: its share comes from that rank
    const S* xr[1] = {a + static_cast<int64_t>(i) * p.inter};
    float acc[1];
    gemv_lane<P, V, W, kIn, 1>(w + static_cast<int64_t>(o) * p.inter, xr, 1, p.inter, lane, acc);
    for (int offset = kWarp / 2; offset > 0; offset /= 2) acc[0] += __shfl_xor_sync(0xffffffffu, acc[0], offset);
    float scale = 1.0f;
    if constexpr (std::is_same<W, int8_t>::value) scale = p.s[e][o];
    out = combine_add<P>(out, round_to<P>(acc[0] * scale), weight_of[i]);
  }
  if constexpr (!std::is_same<W, int8_t>::value) {  // the launcher refuses shared slots with int8 weights
    if (p.shared_slots > 0) {
      const int width = p.shared_slots * p.inter;
      const S* xr[1] = {a + static_cast<int64_t>(p.top_k) * p.inter};
      float acc[1];
      gemv_lane<P, V, W, kIn, 1>(static_cast<const W*>(p.w[p.experts]) + static_cast<int64_t>(o) * width, xr, 1, width,
                                 lane, acc);
      for (int offset = kWarp / 2; offset > 0; offset /= 2) acc[0] += __shfl_xor_sync(0xffffffffu, acc[0], offset);
      out = add_shared<P>(out, acc[0]);
    }
  }
  if (lane == 0) static_cast<S*>(p.out)[o] = from_f<P>(out);
}

// grid N, block 8 warps (MoeRouteTokensParams): warp w computes the logits of experts w, w + 8,
// ..., each rounded to the model dtype into shared memory; then warp 0 routes the token.
inline constexpr int kRouteTokenWarps = 8;
template <Precision P, int V>
__global__ void __launch_bounds__(kRouteTokenWarps* kWarp) moe_route_tokens_kernel(const MoeRouteTokensParams p) {
  using S = typename StorageOf<P>::type;
  __shared__ float logits[kMaxExperts];
  allow_dependent_launch();
  grid_dependency_wait();  // x comes from the kernel before
  const int token = static_cast<int>(blockIdx.x);
  const int warp = static_cast<int>(threadIdx.x) / kWarp, lane = static_cast<int>(threadIdx.x) % kWarp;
  const S* xr[1] = {static_cast<const S*>(p.x) + static_cast<int64_t>(token) * p.x_row_stride};
  for (int e = warp; e < p.route.experts; e += kRouteTokenWarps) {
    float acc[1];
    gemv_lane<P, V, S, kExpertLoadsInFlight, 1>(static_cast<const S*>(p.weight) + static_cast<int64_t>(e) * p.hidden, xr,
                                                1, p.hidden, lane, acc);
    for (int offset = kWarp / 2; offset > 0; offset /= 2) acc[0] += __shfl_xor_sync(0xffffffffu, acc[0], offset);
    if (lane == 0) logits[e] = round_to<P>(acc[0]);
  }
  __syncthreads();
  if (warp == 0) route_token_warp(p.route, token, lane, [&](int e) { return logits[e]; });
}

template <Precision P>
LaunchStatus moe_route_tokens_cuda(const MoeRouteTokensParams& p, cudaStream_t stream) {
  using S = typename StorageOf<P>::type;
  const MoeRouterParams& r = p.route;
  if (r.experts < 1 || r.experts > kMaxExperts || r.top_k < 1 || r.top_k > r.experts || r.top_k > kMaxTopK) {
    return {cudaErrorInvalidValue, "moe_route_tokens: experts must be 1..256 and top_k 1..min(experts, 16)"};
  }
  if (p.hidden <= 0) return {cudaErrorInvalidValue, "moe_route_tokens: bad sizes"};
  if (r.tokens == 0) return {};
  constexpr int kVec = 16 / static_cast<int>(sizeof(S));
  const bool aligned = reinterpret_cast<uintptr_t>(p.x) % 16 == 0 && reinterpret_cast<uintptr_t>(p.weight) % 16 == 0 &&
                       (p.x_row_stride * static_cast<int64_t>(sizeof(S))) % 16 == 0 && p.hidden % kVec == 0;
  return launch_kernel(aligned ? moe_route_tokens_kernel<P, kVec> : moe_route_tokens_kernel<P, 1>, dim3(r.tokens),
                       dim3(kRouteTokenWarps * kWarp), 0, stream, "moe_route_tokens kernel launch", p);
}

template <Precision P>
LaunchStatus moe_expert_gemv_cuda(const MoeExpertGemvParams& p, cudaStream_t stream) {
  using S = typename StorageOf<P>::type;
  if (p.out <= 0 || p.max_slots <= 0) return {};
  if (p.in <= 0 || p.split < 0 || p.split > p.out) return {cudaErrorInvalidValue, "moe_expert_gemv: bad sizes"};
  const bool int8 = p.s_lo != nullptr;
  if (int8 && p.s_hi == nullptr) return {cudaErrorInvalidValue, "moe_expert_gemv: int8 weights need both scale tables"};
  if (p.swiglu && p.out != 2 * p.split) {
    return {cudaErrorInvalidValue, "moe_expert_gemv: the fused SwiGLU needs out = 2 * split (gate rows, then up rows)"};
  }
  if (p.token_ids != nullptr &&
      (p.experts < 1 || p.experts > kMaxExperts || p.top_k < 1 || p.top_k > kMaxTopK || p.shared_slots < 0 ||
       p.shared_slots > kMaxSharedSlots || (int8 && p.shared_slots > 0) || p.max_slots != p.top_k + p.shared_slots)) {
    return {cudaErrorInvalidValue,
            "moe_expert_gemv: one token needs experts 1..256, top_k 1..16, shared_slots 0..16 (0 with int8 weights) "
            "and max_slots = top_k + shared_slots"};
  }
  const dim3 grid(expert_gemv_blocks(p.out, p.split, p.swiglu), p.max_slots), block(kExpertGemvWarps * kWarp);
  // 16-byte loads of weights (kVec of them) need every weight row and every row of x to start
  // 16-byte aligned, and the rows' length to be a multiple of kVec.
  constexpr int kVec = 16 / static_cast<int>(sizeof(S)), kVecInt8 = 16;
  const bool x_aligned = reinterpret_cast<uintptr_t>(p.x) % 16 == 0 &&
                         (p.x_row_stride * static_cast<int64_t>(sizeof(S))) % 16 == 0;
  const bool aligned = p.weights_aligned && x_aligned && p.in % (int8 ? kVecInt8 : kVec) == 0;
  constexpr const char* kWhat = "moe_expert_gemv kernel launch";
  if (p.loads_in_flight != 0 && p.loads_in_flight != kExpertLoadsInFlight &&
      p.loads_in_flight != kExpertLoadsInFlightWide) {
    return {cudaErrorInvalidValue, "moe_expert_gemv: loads_in_flight must be 0, 4 or 8"};
  }
  if (p.loads_in_flight == kExpertLoadsInFlightWide && !p.one_row) {
    return {cudaErrorInvalidValue, "moe_expert_gemv: 8 loads in flight only with one_row"};
  }
  if (int8) {
    if (p.swiglu) {
      return launch_kernel(aligned ? moe_expert_gemv_kernel<P, kVecInt8, int8_t, true>
                                   : moe_expert_gemv_kernel<P, 1, int8_t, true>,
                           grid, block, 0, stream, kWhat, p);
    }
    return launch_kernel(aligned ? moe_expert_gemv_kernel<P, kVecInt8, int8_t, false>
                                 : moe_expert_gemv_kernel<P, 1, int8_t, false>,
                         grid, block, 0, stream, kWhat, p);
  }
  if (aligned && p.one_row) {  // the measuring variants
    if (p.loads_in_flight == kExpertLoadsInFlightWide) {
      return launch_kernel(p.swiglu ? moe_expert_gemv_one_row_kernel<P, kVec, S, true, kExpertLoadsInFlightWide>
                                    : moe_expert_gemv_one_row_kernel<P, kVec, S, false, kExpertLoadsInFlightWide>,
                           grid, block, 0, stream, kWhat, p);
    }
    return launch_kernel(p.swiglu ? moe_expert_gemv_one_row_kernel<P, kVec, S, true, kExpertLoadsInFlight>
                                  : moe_expert_gemv_one_row_kernel<P, kVec, S, false, kExpertLoadsInFlight>,
                         grid, block, 0, stream, kWhat, p);
  }
  if (p.swiglu) {
    return launch_kernel(aligned ? moe_expert_gemv_kernel<P, kVec, S, true> : moe_expert_gemv_kernel<P, 1, S, true>,
                         grid, block, 0, stream, kWhat, p);
  }
  return launch_kernel(aligned ? moe_expert_gemv_kernel<P, kVec, S, false> : moe_expert_gemv_kernel<P, 1, S, false>,
                       grid, block, 0, stream, kWhat, p);
}

template <Precision P>
LaunchStatus moe_token_down_cuda(const MoeTokenDownParams& p, cudaStream_t stream) {
  using S = typename StorageOf<P>::type;
  if (p.top_k < 1 || p.top_k > kMaxTopK || p.experts < 1 || p.experts > kMaxExperts) {
    return {cudaErrorInvalidValue, "moe_token_down: top_k must be 1..16 and experts 1..256"};
  }
  if (p.shared_slots < 0 || p.shared_slots > kMaxSharedSlots || (p.shared_slots > 0 && p.s != nullptr)) {
    return {cudaErrorInvalidValue, "moe_token_down: shared_slots must be 0..16, and 0 with int8 weights"};
  }
  if (p.loads_in_flight != 0 && p.loads_in_flight != kExpertLoadsInFlight && p.loads_in_flight != kExpertLoadsInFlightWide) {
    return {cudaErrorInvalidValue, "moe_token_down: loads_in_flight must be 0, 4 or 8"};
  }
  if (p.hidden <= 0) return {};
  if (p.inter <= 0) return {cudaErrorInvalidValue, "moe_token_down: bad sizes"};
  const dim3 grid((p.hidden + kExpertGemvWarps - 1) / kExpertGemvWarps), block(kExpertGemvWarps * kWarp);
  const bool int8 = p.s != nullptr;
  constexpr int kVec = 16 / static_cast<int>(sizeof(S)), kVecInt8 = 16;
  // a's rows are inter apart from an allocation's start: 16-byte aligned where a row is.
  const bool aligned = p.weights_aligned && reinterpret_cast<uintptr_t>(p.a) % 16 == 0 &&
                       (static_cast<int64_t>(p.inter) * static_cast<int64_t>(sizeof(S))) % 16 == 0 &&
                       p.inter % (int8 ? kVecInt8 : kVec) == 0;
  constexpr const char* kWhat = "moe_token_down kernel launch";
  if (int8) {
    return launch_kernel(aligned ? moe_token_down_kernel<P, kVecInt8, int8_t> : moe_token_down_kernel<P, 1, int8_t>,
                         grid, block, 0, stream, kWhat, p);
  }
  if (aligned && p.loads_in_flight == kExpertLoadsInFlightWide) {  // the measuring variant
    return launch_kernel(moe_token_down_kernel<P, kVec, S, kExpertLoadsInFlightWide>, grid, block, 0, stream, kWhat, p);
  }
  return launch_kernel(aligned ? moe_token_down_kernel<P, kVec, S> : moe_token_down_kernel<P, 1, S>, grid, block, 0,
                       stream, kWhat, p);
}

template <Precision P>
LaunchStatus moe_combine_cuda(const MoeCombineParams& p, cudaStream_t stream) {
  if (p.top_k < 1 || p.top_k > kMaxTopK) return {cudaErrorInvalidValue, "moe_combine: top_k must be 1..16"};
  if (p.tokens == 0 || p.hidden == 0) return {};
  const int tiles = std::min((p.hidden + kElementwiseThreads - 1) / kElementwiseThreads, 8);
  const dim3 grid(p.tokens, tiles);
  return launch_kernel(moe_combine_kernel<P>, grid, dim3(kElementwiseThreads), 0, stream, "moe_combine kernel launch", p);
}

}  // namespace moe_detail
}  // namespace effarch::kernels
