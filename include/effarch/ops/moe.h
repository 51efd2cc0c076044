#pragma once
// Mixture-of-Experts on flattened tokens (docs/models.md, MoE): the router (softmax + top-k,
// normalised per model) and the dispatch (tokens grouped by expert, each expert run only on its
// own tokens, results combined in ascending expert order).

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

// x [N, H] (model dtype), router_weight [E, H]. Router logits are x W^T in the model dtype, then
//   SoftmaxFp32Renormalized (Mixtral): softmax in fp32, top-k, divided by their sum, kept in fp32;
//   SoftmaxFp32 (Jamba): softmax in fp32, top-k, cast to the model dtype, no renormalisation;
//   SoftmaxModelDtype (DeepSeekMoE): softmax in the model dtype, top-k, no renormalisation.
Routing moe_route(const at::Tensor& x, const at::Tensor& router_weight, int64_t top_k, RouterKind kind);

// One gated expert: down(act(gate x) * up x), act the config's hidden_act (SiLU: SwiGLU).
// gate, up [I, H]; down [H, I]; gate_up, where the weights were fused at load, [2I, H].
struct ExpertWeights : GatedMlpWeights {
  // Held by another rank (expert parallelism): its tokens are skipped here and its share of the
  // output comes from that rank's all-reduce. The Linears are then empty.
  bool remote = false;
};

// x [N, H]; experts[e] for e < E (weights referenced, never copied or stacked). Returns [N, H] in
// x's dtype: out[n] = sum over the token's experts, in ascending expert id, of
// (expert(x[n]) * weight) rounded to x's dtype and added into a zero buffer of x's dtype. Experts
// that no token chose are not run (their weights are not even read).
// `activation` is the experts' act (hidden_act in every MoE config transformers has).
// backend: on the CPU, auto runs the fused CPU dispatch (src/ops/cpu/moe_dispatch.cpp: a counting
// sort, one gather, grouped products, one weighted sum); reference runs the ATen reference.
at::Tensor moe_dispatch(const at::Tensor& x, const Routing& routing, const std::vector<ExpertWeights>& experts,
                        Activation activation = Activation::SiLU, Backend backend = Backend::Auto);

}  // namespace effarch::ops
