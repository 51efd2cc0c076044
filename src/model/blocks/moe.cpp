// MoE feed-forward (Mixtral, DeepSeekMoE, Jamba's MoE layers): route the flattened tokens, run
// each chosen expert on its own tokens, add DeepSeekMoE's shared experts, and report the routing
// to the model's observer when one listens. Under expert parallelism a rank runs only the experts
// it holds (routing is replicated); under tensor parallelism each expert's share of its channels.

#include <ATen/ATen.h>

#include "blocks.h"
#include "effarch/ops/moe.h"

namespace effarch::model {
namespace {

class MoeFeedForward final : public FeedForward {
 public:
  MoeFeedForward(const ModelConfig& c, const Weights& w, int layer)
      : moe_(*c.moe), activation_(c.mlp->activation), layer_(layer), router_(w.get(layer, "moe.router.weight")) {
    for (int64_t e = 0; e < moe_.num_experts; ++e) {
      const std::string p = "moe.expert." + std::to_string(e) + ".";
      ops::ExpertWeights expert;
      if (w.find(layer, p + "gate.weight") == nullptr && !w.shard().whole()) {  // another ep rank's expert
        expert.remote = true;
      } else {
        static_cast<ops::GatedMlpWeights&>(expert) = w.gated_mlp(layer, p);
      }
      experts_.push_back(std::move(expert));
    }
    // The shared experts run on ep rank 0 only (each rank would otherwise add them once more).
    if (moe_.num_shared_experts > 0 && (w.shard().whole() || w.find(layer, "moe.shared.gate.weight") != nullptr)) {
      shared_ = w.gated_mlp(layer, "moe.shared.");
    }
    // The local experts in one [L, 2I, H] and one [L, H, I] allocation for the grouped prefill,
    // this layer's only (the peak grows by one layer's experts): the experts and the weights'
    // roles are re-pointed at views of it, so their old tensors are freed here.
    stack_ = ops::stack_experts(experts_);
    if (stack_.defined()) {
      for (int64_t e = stack_.first; e < stack_.first + stack_.experts(); ++e) {
        const std::string p = "moe.expert." + std::to_string(e) + ".";
        const ops::ExpertWeights& expert = experts_[static_cast<size_t>(e)];
        w.repoint(layer, p + "gate.weight", expert.gate.weight);
        w.repoint(layer, p + "up.weight", expert.up.weight);
        w.repoint(layer, p + "down.weight", expert.down.weight);
      }
    }
    // The device table of the experts' weights the CUDA decode kernel reads (none off CUDA); it
    // points into the stack's views, and into the shared experts' weights, which a one-token step
    // runs inside the dispatch's launches.
    if (ops::runs_cuda_kernels(router_.device())) {
      table_ = ops::make_expert_table(experts_, shared_ ? &*shared_ : nullptr);
    }
  }

  at::Tensor forward(const ops::NormedInput& in, const ForwardContext& ctx) const override {
    const at::Tensor x = in.tensor();  // the router and the experts both read it
    const at::Tensor flat = x.reshape({-1, x.size(-1)});  // [N, H]
    const ops::Routing routing = ops::moe_route(flat, router_, moe_.top_k, moe_.router, ctx.backend);
    if (ctx.routing != nullptr) {
      (*ctx.routing)(RoutingEvent{layer_, routing.expert_ids, routing.weights.to(at::kFloat), routing.probs});
    }
    // DeepSeekMoE's shared experts added after the routed sum, with the same hidden_act.
    const at::Tensor out = ops::moe_dispatch(flat, routing, experts_, activation_, ctx.backend, &table_, &stack_,
                                             shared_ ? &*shared_ : nullptr);
    // Expert / tensor parallel: each rank's experts' (and expert shards') sum, added over the ranks.
    return all_reduce(out, ctx.moe).view(x.sizes());
  }

 private:
  MoeConfig moe_;
  Activation activation_;  // hidden_act, shared by the experts and the shared experts
  int layer_;
  at::Tensor router_;
  std::vector<ops::ExpertWeights> experts_;
  ops::ExpertStack stack_;  // experts_' weights are views of it (undefined: int8, biases, ...)
  ops::ExpertTable table_;  // points into experts_' tensors
  std::optional<ops::GatedMlpWeights> shared_;  // DeepSeekMoE's shared experts (ep rank 0 only)
};

}  // namespace

std::unique_ptr<FeedForward> make_moe(const ModelConfig& config, const Weights& weights, int layer) {
  return std::make_unique<MoeFeedForward>(config, weights, layer);
}

}  // namespace effarch::model
