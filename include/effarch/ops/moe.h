#pragma once
// Mixture-of-Experts on flattened tokens (docs/models.md, MoE): the router (softmax + top-k,
// normalised per model) and the dispatch (tokens grouped by expert, each expert run only on its
// own tokens, results combined in ascending expert order).

#include <functional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "effarch/ops/activation.h"
#include "effarch/ops/router_kind.h"
#include "effarch/ops/backend.h"
#include "effarch/ops/gated_mlp.h"
#include "effarch/ops/linear.h"

namespace effarch::ops {

struct Routing {
  at::Tensor expert_ids;  // [N, k] int64, in topk's order (descending probability)
  at::Tensor weights;     // [N, k] combine weights: fp32 (Mixtral) or the model dtype (Jamba, DeepSeekMoE)
  at::Tensor probs;       // [N, E] fp32: the router's softmax over all experts (for analysis)
};

// The CUDA dispatch kernels' limits (kernels/moe/moe_math.h): beyond them the reference runs.
inline constexpr int64_t kMoeKernelMaxExperts = 256;
inline constexpr int64_t kMoeKernelMaxTopK = 16;
inline constexpr int64_t kMoeKernelMaxSharedSlots = 16;  // shared experts folded, in experts' widths
// Tokens up to which the CUDA dispatch runs the expert GEMV kernel (decode) rather than a prefill
// path (grouped GEMMs over the expert stack, or one GEMM chain per expert with the counts read on
// the host). A step being captured into a CUDA graph always runs the GEMV kernel when it has the
// table (no host sync), whatever its token count.
inline constexpr int64_t kMoeDecodeMaxTokens = 16;

// x [N, H] (model dtype), router_weight [E, H]. Router logits are x W^T in the model dtype, then
//   SoftmaxFp32Renormalized (Mixtral): softmax in fp32, top-k, divided by their sum, kept in fp32;
//   SoftmaxFp32 (Jamba): softmax in fp32, top-k, cast to the model dtype, no renormalisation;
//   SoftmaxModelDtype (DeepSeekMoE): softmax in the model dtype, top-k, no renormalisation.
// backend (the MoeDispatch family's): on CUDA, auto and cuda run the router kernel
// (kernels/moe) after the logits' GEMM, for E <= 256 and top_k <= 16: the same softmax, top-k and
// rounding in one pass, ties at the k-th score going to the lower expert id (as at::topk on CUDA
// selects them; on the CPU at::topk defines no order among equal scores); its fp32 softmax may
// differ from ATen's by an ulp (another exp and summation order).
// For up to kMoeDecodeMaxTokens tokens (a decode step) with a contiguous router_weight of x's
// dtype, the CUDA path computes the logits in the router kernel's launch too (a block per token,
// each logit an fp32 dot product rounded to the model dtype, then the same routing): one launch
// where cuBLAS's GEMV and the router kernel were two. `logits` Separate keeps cuBLAS's product
// (the measuring row moe_route_staged, docs/perf/pending.md entry 51).
enum class RouterLogits { Auto, Separate };
Routing moe_route(const at::Tensor& x, const at::Tensor& router_weight, int64_t top_k, RouterKind kind,
                  Backend backend = Backend::Auto, RouterLogits logits = RouterLogits::Auto);

// One gated expert: down(act(gate x) * up x), act the config's hidden_act (SiLU: SwiGLU).
// gate, up [I, H]; down [H, I]; gate_up, where the weights were fused at load, [2I, H].
struct ExpertWeights : GatedMlpWeights {
  // Held by another rank (expert parallelism): its tokens are skipped here and its share of the
  // output comes from that rank's all-reduce. The Linears are then empty.
  bool remote = false;
};

// The experts' weights as the CUDA decode kernel reads them: a device table of pointers, built
// once at load (model/blocks/moe.cpp, for weights on CUDA) from the experts the dispatch is then
// given (the table points into their tensors, which must outlive it), on the weights' device (a
// host table of host weights is what the CPU executor's tests run the dispatch on: tests/sim).
// Undefined where the kernel cannot read the experts directly: int8 and dense weights mixed,
// biases, non-contiguous or mixed-dtype weights, or more than kMoeKernelMaxExperts experts; `why`
// says which. int8 experts
// (--weights int8) come with a second table, of their rows' fp32 scales.
// With DeepSeekMoE's shared experts given, a one-token step runs them inside the dispatch's two
// launches: their MLP, of S experts' width, is S more columns of the table (column E + j: gate and
// up rows j I .. (j + 1) I - 1, and the whole down [H, S I]). Folded where they are dense like the
// experts, with no bias, contiguous, and S I wide for a whole S of 1..16; else `shared_why` says why
// and the dispatch runs them apart.
struct ExpertTable {
  at::Tensor pointers;  // [3, E + S] int64 on the experts' device: gate rows, up rows, down; 0: remote
  at::Tensor scales;    // int8 experts: [3, E] int64, the scales of the same rows; else undefined
  at::Tensor local;     // [E] uint8 on the device: 1 where the expert runs on this rank
  int64_t experts = 0, hidden = 0, inter = 0;
  int64_t shared_slots = 0;  // S: the shared experts folded in, in experts' widths; 0: none
  int64_t shared_key = 0;    // the folded shared gate rows' address: the dispatch folds only those
  std::string shared_why;    // why shared experts given were not folded
  // A one-token step's dispatch in two launches (the gate/up GEMV finding the token's experts
  // itself, then down with the combine and the shared experts: kernels/moe/moe.h); false runs the
  // staged kernels instead (permute, GEMV, GEMV, combine, the shared MLP apart): the measuring
  // row moe_decode_staged (docs/perf/pending.md, entry 51).
  bool fused_token = true;
  bool int8 = false;                  // the weights are int8 (then dtype is kChar)
  at::ScalarType dtype = at::kFloat;  // the weights' dtype: the model's, unless int8
  bool aligned = false;  // every weight row 16-byte aligned: the kernel's vector loads
  // Measuring knobs of the decode GEMV (kernels/moe/moe.h, MoeExpertGemvParams): one_row, its
  // one-token kernel (taken only for a dispatch of one token), and loads_in_flight (0: 4, or 8
  // with one_row). `effarch kernels` times them as moe_decode_r1 and moe_decode_r1l8
  // (docs/perf/pending.md, entry 44).
  bool one_row = false;
  int loads_in_flight = 0;
  std::string why;       // why it is undefined
  bool defined() const { return pointers.defined(); }
};
ExpertTable make_expert_table(const std::vector<ExpertWeights>& experts, const GatedMlpWeights* shared = nullptr);

// Every local expert's weights in two allocations, for the grouped prefill (at::_grouped_mm over
// the permuted rows, group boundaries on the device). Made at load by stack_experts, which copies
// the experts in and re-points their Linears at views of the stack, so the experts' own tensors
// (and the decode table made from them) alias it and nothing is held twice.
struct ExpertStack {
  at::Tensor gate_up;  // [L, 2I, H]: slot j holds expert first + j's gate rows, then its up rows
  at::Tensor down;     // [L, H, I]
  at::Tensor local;    // [E] uint8 on the stack's device: 1 for the experts first .. first + L - 1
  int64_t first = 0;   // the expert id of slot 0 (expert parallelism: this rank's contiguous range)
  std::string why;     // why it is undefined
  bool defined() const { return gate_up.defined(); }
  int64_t experts() const { return gate_up.defined() ? gate_up.size(0) : 0; }
  int64_t hidden() const { return gate_up.defined() ? gate_up.size(2) : 0; }
  int64_t inter() const { return down.defined() ? down.size(2) : 0; }
};
// Stacks the local (non-remote) experts and re-points them at views of the stack. Undefined (the
// experts untouched, `why` set) where they cannot be stacked: int8 weights, biases, experts of
// differing shape, dtype or device, undefined weights, or local experts that are not one
// contiguous range of ids. Works on any device (the tests stack CPU experts).
ExpertStack stack_experts(std::vector<ExpertWeights>& experts);

// x [N, H]; experts[e] for e < E (weights referenced, never copied; stacked at load by the model). Returns [N, H] in
// x's dtype: out[n] = sum over the token's experts, in ascending expert id, of
// (expert(x[n]) * weight) rounded to x's dtype and added into a zero buffer of x's dtype. Experts
// that no token chose are not run (their weights are not even read). With `shared` (DeepSeekMoE's
// shared experts), that sum + gated_mlp(x, *shared, activation, backend), rounded to x's dtype.
// `activation` is the experts' act (hidden_act in every MoE config transformers has).
// backend: on the CPU, auto runs the fused CPU dispatch (src/ops/cpu/moe_dispatch.cpp: a counting
// sort, one gather, grouped products, one weighted sum); reference runs the ATen reference.
// On CUDA, auto and cuda run the dispatch kernels (kernels/moe, src/ops/moe_cuda.cpp) for E <= 256
// and k <= 16: the permute on the device, then
// - with `table` defined and SiLU experts, for one token (table->fused_token): no permute; the
//   gate/up GEMV over the token's experts and the table's shared columns, then one kernel for
//   down, the combine and the shared experts' down and add (kernels/moe/moe.h); no host sync;
// - with `table` defined and SiLU experts, for up to kMoeDecodeMaxTokens tokens or while a CUDA
//   graph is being captured: the expert GEMV kernel over the table, SwiGLU, the GEMV again, the
//   combine kernel; no host sync. An expert id outside 0..E-1 cannot be reported without one: its
//   slot is dropped (moe_route never makes one);
// - otherwise, with `stack` defined (stack_experts over these experts), bf16 and a GPU of compute
//   capability 9.x or 10.x (where at::_grouped_mm runs CUTLASS with its group ends read on the
//   device): the grouped prefill (detail::moe_grouped_experts: one gather, a grouped GEMM for
//   gate/up, act * up, a grouped GEMM for down), then the combine kernel; no host sync. An
//   expert id outside 0..E-1 is dropped, as on the decode path;
// - otherwise (fp32/fp16, other GPUs, int8 experts, no stack): the counts read on the host (one
//   sync), one GEMM chain per expert over the permuted rows, the combine kernel.
// detail::moe_grouped_refusal says why a prefill does not take the grouped path.
at::Tensor moe_dispatch(const at::Tensor& x, const Routing& routing, const std::vector<ExpertWeights>& experts,
                        Activation activation = Activation::SiLU, Backend backend = Backend::Auto,
                        const ExpertTable* table = nullptr, const ExpertStack* stack = nullptr,
                        const GatedMlpWeights* shared = nullptr);

// The CUDA dispatch's prefill path for experts loaded with this dtype and format on `device`, as
// Model::implementations() records it under "moe_prefill": "grouped" where the grouped prefill
// runs (dense bf16 experts, hidden and intermediate sizes multiples of 8, a GPU of compute
// capability 9.x or 10.x), else "per_expert" (detail::grouped_mm_refusal, which
// detail::moe_grouped_refusal asks too, on the model's options instead of its tensors). Only
// meaningful where the dispatch resolves to cuda.
std::string moe_prefill_path(at::ScalarType dtype, WeightFormat format, const c10::Device& device, int64_t hidden,
                             int64_t inter);

namespace detail {
// The address ExpertTable::shared_key records for these shared experts: their gate rows'.
int64_t shared_key(const GatedMlpWeights& shared);

// Why the grouped prefill cannot run for these arguments ("" when it can): the stack undefined,
// not matching x (dtype, hidden size, device) or the experts' count, a dtype other than bf16, a
// GPU outside compute capability 9.x/10.x (`sm_major`: at::_grouped_mm elsewhere reads the group
// ends on the host, as the per-expert path does), or rows not 16-byte aligned (H, I multiples of
// 8). Host-only: decided before any call.
std::string moe_grouped_refusal(const ExpertStack* stack, const at::Tensor& x, int64_t num_experts, int sm_major);
// Its conditions on the experts' dtype, the device (`cuda`: a GPU of compute capability
// `sm_major`) and the sizes alone, shared with moe_prefill_path so the recorded path is the one run.
std::string grouped_mm_refusal(at::ScalarType dtype, bool cuda, int sm_major, int64_t hidden, int64_t inter);

// The grouped prefill's expert stage, on any device: x [N, H]; order [M] int32 (grouped row ->
// flat position token * k + slot, ascending expert id, as the permute writes it); offsets
// [>= E + 1] int32 (offsets[e]: expert e's first grouped row). The stack's experts' rows are the
// device-side range offsets[first] .. offsets[first + L]; rotated to start at row 0, they are
// gathered from x, run through one grouped GEMM for gate/up, act(gate) * up in x's dtype and one
// grouped GEMM for down. Returns y [M, H] (rows may be padded) with grouped row r at row
// (r - start) mod M, start = offsets[first] (a device scalar, undefined when first == 0: no
// rotation), and the rows past the stack's experts unspecified. Nothing is read on the host.
struct GroupedExperts {
  at::Tensor y;
  at::Tensor start;  // [1] int32, or undefined for first == 0
};
GroupedExperts moe_grouped_experts(const at::Tensor& x, const at::Tensor& order, const at::Tensor& offsets,
                                   int64_t top_k, const ExpertStack& stack, Activation activation);
// row_of [M] int32 (flat position -> grouped row) rotated as moe_grouped_experts rotated y:
// (row_of - start) mod M, on the device; row_of itself when start is undefined.
at::Tensor moe_grouped_row_of(const at::Tensor& row_of, const at::Tensor& start);

#ifdef EFFARCH_WITH_CUDA
// src/ops/moe_cuda.cpp: the CUDA stages on checked arguments.
Routing moe_route_cuda(const at::Tensor& logits, int64_t top_k, RouterKind kind);
// The router with its logits' product in one launch (x [N, H], router_weight [E, H] contiguous,
// both of one dtype).
Routing moe_route_tokens_cuda(const at::Tensor& x, const at::Tensor& router_weight, int64_t top_k, RouterKind kind);
// The routed sum, and whether it holds the shared experts too (the one-token path with `shared`
// folded in the table); otherwise moe_dispatch adds them.
struct CudaDispatch {
  at::Tensor out;
  bool with_shared = false;
};
CudaDispatch moe_dispatch_cuda(const at::Tensor& x, const Routing& routing, const std::vector<ExpertWeights>& experts,
                               Activation activation, const ExpertTable* table, const ExpertStack* stack,
                               const GatedMlpWeights* shared, const std::function<void(int64_t)>& check_expert);
#endif
}  // namespace detail

}  // namespace effarch::ops
