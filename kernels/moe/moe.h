#pragma once
// The MoE dispatch on the device, in stages (src/ops/moe_cuda.cpp runs them; the ATen reference
// in src/ops/moe.cpp is the oracle; kernels/moe/moe_math.h holds their arithmetic):
//
// 1. router: gate logits [N, E] (cuBLAS, in the model dtype) -> softmax -> top-k -> the router
//    kind's normalisation; one warp per token. Ties at the k-th score go to the lower expert id.
//    For a decode step's few tokens one launch computes the logits too (MoeRouteTokensParams).
// 2. permute: the M = N * k flat positions p = token * k + slot grouped by expert with a stable
//    counting sort in one block: counts, offsets, the experts that have rows (ascending), the
//    grouped order (row -> p) and its inverse (p -> row). Deterministic.
// 3. expert GEMV (decode): for each expert that has rows (found on the device), one warp per output
//    feature reads that feature's weight row once and applies it to the expert's rows, eight at a
//    time; the experts' weights (model dtype, or int8 with per-row scales) come from a device table
//    of pointers built at load, so only the chosen experts' weights are read and nothing is copied
//    to the host. Run twice: gate/up (the rows of x gathered through the order), with silu(gate) *
//    up in the model dtype computed in its epilogue (a block pairs each gate row with its up row),
//    and down (the grouped rows of that SwiGLU output).
// 4. combine: out[token] = sum over the token's slots, in ascending expert id, of
//    round(y[row] * weight), each addition rounded to the model dtype: the reference's rounding.
//
// A step of one token skips the permute: the gate/up GEMV finds the token's experts itself
// (MoeExpertGemvParams::token_ids), with the shared experts' rows as extra slots, and one kernel
// runs down, the combine and the shared experts' down and add (MoeTokenDownParams).
//
// No torch types here: plain pointers and sizes, contiguous rows unless a stride is given.

#include <cstdint>

#include "common/element_type.h"
#include "moe/moe_math.h"

namespace effarch::kernels {

struct MoeRouterParams {
  int tokens = 0;   // N
  int experts = 0;  // E, 1..moe::kMaxExperts
  int top_k = 0;    // 1..min(E, moe::kMaxTopK)
  moe::RouterMode mode = moe::RouterMode::kFp32Renormalized;
  moe::Precision model = moe::Precision::kFp32;  // the logits' (the model's) precision

  const void* logits = nullptr;  // [N, E] contiguous, model dtype
  float* probs = nullptr;        // [N, E] fp32: the softmax over all experts
  int64_t* expert_ids = nullptr;  // [N, k], descending score
  void* weights = nullptr;  // [N, k]: fp32 for kFp32Renormalized, else the model dtype
};

// The router with its logits' product (a decode step's few tokens): block t computes token t's
// logits x_t W^T, each an fp32 dot product rounded to the model dtype (the reference's at::linear),
// one warp per expert at a time (moe::gemv_lane's order, the one-row lane), into shared memory,
// then one warp routes it as moe_router does. W [E, H] contiguous, x rows x_row_stride apart.
// route.logits is unused.
struct MoeRouteTokensParams {
  MoeRouterParams route;
  int hidden = 0;
  const void* x = nullptr;
  int64_t x_row_stride = 0;
  const void* weight = nullptr;  // [E, H]
};

struct MoePermuteParams {
  int entries = 0;  // M = N * k
  int experts = 0;  // E, 1..moe::kMaxExperts
  const int64_t* expert_ids = nullptr;  // [M]
  int* counts = nullptr;      // [E + 1]: rows per expert; [E]: ids outside 0..E-1
  int* offsets = nullptr;     // [E + 2]: exclusive prefix sums of counts
  int* active = nullptr;      // [E]: the experts with rows, ascending (the rest unwritten)
  int* num_active = nullptr;  // [1]
  int* order = nullptr;       // [M]: grouped row -> p
  int* row_of = nullptr;      // [M]: p -> grouped row
};

// y[row, o] = sum_i W_e[o, i] x_row[i] for every grouped row of every active expert e, rounded to
// the model dtype (a layer's output). W_e's rows o < split are w_lo[e] + o * in, the others
// w_hi[e] + (o - split) * in (gate then up, or one matrix with split = out). A null w_lo[e]: an
// expert another rank runs, skipped. int8 experts (s_lo set): the weights are int8 and row o's
// sum is multiplied by its fp32 scale, s_lo[e][o] or s_hi[e][o - split], before the rounding.
// swiglu (gate/up: out = 2 * split): y is [M, split] and y[row, j] = moe::swiglu(the rounded
// y[row, j], the rounded y[row, split + j]): the separate SwiGLU's arithmetic on the outputs the
// plain GEMV would store (moe::expert_gemv_row pairs the rows within a block).
struct MoeExpertGemvParams {
  moe::Precision model = moe::Precision::kFp32;
  int out = 0, in = 0, split = 0;
  bool swiglu = false;
  int top_k = 1;
  int max_slots = 0;  // the grid's experts: min(E, M), an upper bound of *num_active
  bool weights_aligned = false;  // every weight row starts 16-byte aligned (checked at load)
  const void* const* w_lo = nullptr;  // [E] device pointers
  const void* const* w_hi = nullptr;  // [E]
  const float* const* s_lo = nullptr;  // [E] device pointers to int8 rows' scales; null: dense weights
  const float* const* s_hi = nullptr;  // [E]
  const int* counts = nullptr;
  const int* offsets = nullptr;
  const int* active = nullptr;
  const int* num_active = nullptr;
  const int* order = nullptr;
  bool gather = false;  // true: grouped row i reads x's row order[i] / top_k; false: x's row i
  const void* x = nullptr;
  int64_t x_row_stride = 0;
  void* y = nullptr;  // [M, out] (swiglu: [M, split]) rows y_row_stride apart
  int64_t y_row_stride = 0;
  // Measuring variants (docs/perf/pending.md, entry 44), dense weights on the 16-byte path
  // (elsewhere the default runs); the same sums either way. one_row: the kernel for a one-token
  // step, room for one row of x a pass (every expert has at most one row: the caller's promise);
  // loads_in_flight: weight loads a lane has in flight, 0 for moe::kExpertLoadsInFlight, or
  // moe::kExpertLoadsInFlightWide with one_row.
  bool one_row = false;
  int loads_in_flight = 0;
  // The one-token dispatch (a decode step of one token: no permute). With token_ids set, grid slot
  // s < top_k takes the token's s-th expert in ascending id (moe::token_slot; a slot past its
  // experts does nothing), slot top_k + j the tables' column experts + j (a shared-expert slice,
  // j < shared_slots); every slot reads x's row 0 and writes y's row s. counts, offsets, active,
  // num_active, order and gather are then unused, and max_slots is top_k + shared_slots.
  const int64_t* token_ids = nullptr;  // [top_k] on the device
  int experts = 0;                     // E, with token_ids
  int shared_slots = 0;
};

// The one-token dispatch's second product, with the combine and the shared experts in it: one
// warp per output feature o,
//   out[o] = combine over the token's slots i (ascending expert id, moe::token_slot) of
//            moe::combine_add(out, round(W_e[o] . a[i] (* scale)), weight), from 0,
// then with shared_slots S > 0: moe::add_shared(out, W_sh[o] . a[k .. k + S - 1]), a's rows k .. k
// + S - 1 read as one row of S I (the shared experts' intermediate, as the gate/up GEMV's shared
// slots wrote it) and W_sh the shared experts' down [H, S I]. The same values as the staged path
// (GEMV for down, then the combine kernel, then `+ shared` over the separate shared MLP) up to the
// shared down product's summation order.
struct MoeTokenDownParams {
  moe::Precision model = moe::Precision::kFp32;
  moe::Precision weight_precision = moe::Precision::kFp32;  // the routing weights'
  int hidden = 0, inter = 0;  // the output features H; an expert's intermediate width I
  int top_k = 0, experts = 0, shared_slots = 0;
  bool weights_aligned = false;  // every down row (and the shared one) starts 16-byte aligned
  const void* const* w = nullptr;  // [E + 1] device pointers: expert e's down [H, I] (null: another
                                   // rank's); w[E] the shared experts' down [H, S I] when S > 0
  const float* const* s = nullptr;  // [E] int8 experts' down-row scales; null: dense weights
  const int64_t* expert_ids = nullptr;  // [top_k] the token's
  const void* weights = nullptr;        // [top_k] its combine weights (weight_precision)
  const void* a = nullptr;              // [top_k + S, I] contiguous
  void* out = nullptr;                  // [H], the model dtype
  // Weight loads a lane has in flight: 0 for moe::kExpertLoadsInFlight, or
  // moe::kExpertLoadsInFlightWide (dense weights on the 16-byte path; elsewhere the default runs):
  // a measuring variant (ExpertTable::loads_in_flight with one_row, `effarch kernels` row
  // moe_decode_r1l8), the same sums either way.
  int loads_in_flight = 0;
};

struct MoeCombineParams {
  moe::Precision model = moe::Precision::kFp32;
  moe::Precision weight_precision = moe::Precision::kFp32;
  int tokens = 0, hidden = 0, top_k = 0, experts = 0;
  const int64_t* expert_ids = nullptr;  // [N, k]
  const int* row_of = nullptr;          // [N * k]
  const void* weights = nullptr;        // [N, k]
  const uint8_t* local = nullptr;       // [E]: 1 where the expert runs on this rank
  const void* y = nullptr;              // [M, hidden]
  int64_t y_row_stride = 0;
  void* out = nullptr;  // [N, hidden]
  int64_t out_row_stride = 0;
};

// Dtype-free stages (moe_routing.cu).
LaunchStatus moe_router(const MoeRouterParams& params, cudaStream_t stream);
LaunchStatus moe_permute(const MoePermuteParams& params, cudaStream_t stream);

// Per model precision, defined in moe_<dtype>.cu.
LaunchStatus moe_expert_gemv_fp32(const MoeExpertGemvParams& params, cudaStream_t stream);
LaunchStatus moe_expert_gemv_bf16(const MoeExpertGemvParams& params, cudaStream_t stream);
LaunchStatus moe_expert_gemv_fp16(const MoeExpertGemvParams& params, cudaStream_t stream);
LaunchStatus moe_combine_fp32(const MoeCombineParams& params, cudaStream_t stream);
LaunchStatus moe_combine_bf16(const MoeCombineParams& params, cudaStream_t stream);
LaunchStatus moe_combine_fp16(const MoeCombineParams& params, cudaStream_t stream);
LaunchStatus moe_route_tokens_fp32(const MoeRouteTokensParams& params, cudaStream_t stream);
LaunchStatus moe_route_tokens_bf16(const MoeRouteTokensParams& params, cudaStream_t stream);
LaunchStatus moe_route_tokens_fp16(const MoeRouteTokensParams& params, cudaStream_t stream);
LaunchStatus moe_token_down_fp32(const MoeTokenDownParams& params, cudaStream_t stream);
LaunchStatus moe_token_down_bf16(const MoeTokenDownParams& params, cudaStream_t stream);
LaunchStatus moe_token_down_fp16(const MoeTokenDownParams& params, cudaStream_t stream);

namespace moe_detail {
template <typename Params>
LaunchStatus by_precision(moe::Precision p, LaunchStatus (*fp32)(const Params&, cudaStream_t),
                          LaunchStatus (*bf16)(const Params&, cudaStream_t),
                          LaunchStatus (*fp16)(const Params&, cudaStream_t), const Params& params,
                          cudaStream_t stream, const char* unsupported) {
  switch (p) {
    case moe::Precision::kFp32: return fp32(params, stream);
    case moe::Precision::kBf16: return bf16(params, stream);
    case moe::Precision::kFp16: return fp16(params, stream);
  }
  return {cudaErrorInvalidValue, unsupported};
}
}  // namespace moe_detail

inline LaunchStatus moe_expert_gemv(const MoeExpertGemvParams& params, cudaStream_t stream) {
  return moe_detail::by_precision<MoeExpertGemvParams>(params.model, moe_expert_gemv_fp32, moe_expert_gemv_bf16,
                                                       moe_expert_gemv_fp16, params, stream,
                                                       "moe_expert_gemv: unknown precision");
}
inline LaunchStatus moe_combine(const MoeCombineParams& params, cudaStream_t stream) {
  return moe_detail::by_precision<MoeCombineParams>(params.model, moe_combine_fp32, moe_combine_bf16,
                                                    moe_combine_fp16, params, stream,
                                                    "moe_combine: unknown precision");
}

inline LaunchStatus moe_route_tokens(const MoeRouteTokensParams& params, cudaStream_t stream) {
  return moe_detail::by_precision<MoeRouteTokensParams>(params.route.model, moe_route_tokens_fp32,
                                                        moe_route_tokens_bf16, moe_route_tokens_fp16, params, stream,
                                                        "moe_route_tokens: unknown precision");
}
inline LaunchStatus moe_token_down(const MoeTokenDownParams& params, cudaStream_t stream) {
  return moe_detail::by_precision<MoeTokenDownParams>(params.model, moe_token_down_fp32, moe_token_down_bf16,
                                                      moe_token_down_fp16, params, stream,
                                                      "moe_token_down: unknown precision");
}

}  // namespace effarch::kernels
