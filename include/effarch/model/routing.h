#pragma once
// What an MoE layer reports about its routing decisions on each forward call, for analysis
// (`effarch experts`) without touching the forward path when nobody listens.

#include <functional>

#include <ATen/core/Tensor.h>

namespace effarch::model {

struct RoutingEvent {
  int layer = 0;            // index of the block in the stack
  at::Tensor expert_ids;    // [N, top_k] int64, the selected experts of each of the N = B*T tokens (row-major)
  at::Tensor weights;       // [N, top_k] fp32, their combine weights after the model's normalisation
  at::Tensor router_probs;  // [N, num_experts] fp32, the router's softmax over all experts
};

using RoutingObserver = std::function<void(const RoutingEvent&)>;

}  // namespace effarch::model
