// Dense feed-forward: SwiGLU-style gate/up/down (Llama, Mistral, Jamba, DeepSeek's dense layers)
// or fc1/fc2 with biases (Phi). Tensor parallel: gate/up (fc1) hold this rank's columns, down (fc2)
// its rows; the partial outputs are all-reduced.

#include <ATen/ATen.h>

#include "blocks.h"
#include "effarch/ops/activation.h"

namespace effarch::model {
namespace {

class GatedMlp final : public FeedForward {
 public:
  // gate and up read the same x: one product with their weights fused at load ([2I, H]), split after.
  GatedMlp(const Weights& w, int layer, Activation act)
      : gate_up_(w.fused_linear(layer, {"mlp.gate.", "mlp.up."})),
        inter_(w.get(layer, "mlp.gate.weight").size(0)),
        down_(w.linear(layer, "mlp.down.")),
        act_(act) {}
  at::Tensor forward(const at::Tensor& x, const ForwardContext& ctx) const override {
    const at::Tensor gate_up = ops::linear(x, gate_up_);  // [..., 2I]
    return all_reduce(
        ops::linear(ops::activate(act_, gate_up.narrow(-1, 0, inter_)) * gate_up.narrow(-1, inter_, inter_), down_),
        ctx.tp);
  }

 private:
  ops::Linear gate_up_;
  int64_t inter_;
  ops::Linear down_;
  Activation act_;
};

class FcMlp final : public FeedForward {
 public:
  FcMlp(const Weights& w, int layer, Activation act)
      : fc1_(w.linear(layer, "mlp.fc1.")), fc2_(w.linear(layer, "mlp.fc2.")), act_(act) {}
  at::Tensor forward(const at::Tensor& x, const ForwardContext& ctx) const override {
    return all_reduce(ops::linear(ops::activate(act_, ops::linear(x, fc1_)), fc2_), ctx.tp);
  }

 private:
  ops::Linear fc1_, fc2_;
  Activation act_;
};

}  // namespace

std::unique_ptr<FeedForward> make_dense_mlp(const ModelConfig& config, const Weights& weights, int layer) {
  if (config.mlp->gated) return std::make_unique<GatedMlp>(weights, layer, config.mlp->activation);
  return std::make_unique<FcMlp>(weights, layer, config.mlp->activation);
}

}  // namespace effarch::model
