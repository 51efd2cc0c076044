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
// Tokens up to which the CUDA dispatch runs the expert GEMV kernel (decode) rather than one GEMM
// chain per expert with the counts read on the host (prefill). A step being captured into a CUDA
// graph always runs the GEMV kernel (no host sync), whatever its token count.
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
Routing moe_route(const at::Tensor& x, const at::Tensor& router_weight, int64_t top_k, RouterKind kind,
                  Backend backend = Backend::Auto);

// One gated expert: down(act(gate x) * up x), act the config's hidden_act (SiLU: SwiGLU).
// gate, up [I, H]; down [H, I]; gate_up, where the weights were fused at load, [2I, H].
struct ExpertWeights : GatedMlpWeights {
  // Held by another rank (expert parallelism): its tokens are skipped here and its share of the
  // output comes from that rank's all-reduce. The Linears are then empty.
  bool remote = false;
};

// The experts' weights as the CUDA decode kernel reads them: a device table of pointers, built
// once at load (model/blocks/moe.cpp) from the experts the dispatch is then given (the table
// points into their tensors, which must outlive it). Undefined where the kernel cannot read the
// experts directly: not on CUDA, int8 and dense weights mixed, biases, non-contiguous or
// mixed-dtype weights, or more than kMoeKernelMaxExperts experts; `why` says which. int8 experts
// (--weights int8) come with a second table, of their rows' fp32 scales.
struct ExpertTable {
  at::Tensor pointers;  // [3, E] int64 on the experts' device: gate rows, up rows, down; 0: remote
  at::Tensor scales;    // int8 experts: [3, E] int64, the scales of the same rows; else undefined
  at::Tensor local;     // [E] uint8 on the device: 1 where the expert runs on this rank
  int64_t experts = 0, hidden = 0, inter = 0;
  bool int8 = false;                  // the weights are int8 (then dtype is kChar)
  at::ScalarType dtype = at::kFloat;  // the weights' dtype: the model's, unless int8
  bool aligned = false;  // every weight row 16-byte aligned: the kernel's vector loads
  std::string why;       // why it is undefined
  bool defined() const { return pointers.defined(); }
};
ExpertTable make_expert_table(const std::vector<ExpertWeights>& experts);

// x [N, H]; experts[e] for e < E (weights referenced, never copied or stacked). Returns [N, H] in
// x's dtype: out[n] = sum over the token's experts, in ascending expert id, of
// (expert(x[n]) * weight) rounded to x's dtype and added into a zero buffer of x's dtype. Experts
// that no token chose are not run (their weights are not even read).
// `activation` is the experts' act (hidden_act in every MoE config transformers has).
// backend: on the CPU, auto runs the fused CPU dispatch (src/ops/cpu/moe_dispatch.cpp: a counting
// sort, one gather, grouped products, one weighted sum); reference runs the ATen reference.
// On CUDA, auto and cuda run the dispatch kernels (kernels/moe, src/ops/moe_cuda.cpp) for E <= 256
// and k <= 16: the permute on the device, then
// - with `table` defined and SiLU experts, for up to kMoeDecodeMaxTokens tokens or while a CUDA
//   graph is being captured: the expert GEMV kernel over the table, SwiGLU, the GEMV again, the
//   combine kernel; no host sync. An expert id outside 0..E-1 cannot be reported without one: its
//   slot is dropped (moe_route never makes one);
// - otherwise (prefill, int8 experts): the counts read on the host (one sync), one GEMM chain per
//   expert over the permuted rows, the combine kernel.
at::Tensor moe_dispatch(const at::Tensor& x, const Routing& routing, const std::vector<ExpertWeights>& experts,
                        Activation activation = Activation::SiLU, Backend backend = Backend::Auto,
                        const ExpertTable* table = nullptr);

namespace detail {
#ifdef EFFARCH_WITH_CUDA
// src/ops/moe_cuda.cpp: the CUDA stages on checked arguments.
Routing moe_route_cuda(const at::Tensor& logits, int64_t top_k, RouterKind kind);
at::Tensor moe_dispatch_cuda(const at::Tensor& x, const Routing& routing, const std::vector<ExpertWeights>& experts,
                             Activation activation, const ExpertTable* table,
                             const std::function<void(int64_t)>& check_expert);
#endif
}  // namespace detail

}  // namespace effarch::ops
