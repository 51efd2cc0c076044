// Dense feed-forward: SwiGLU-style gate/up/down (Llama, Mistral, Jamba, DeepSeek's dense layers)
// or fc1/fc2 with biases (Phi).

#include <ATen/ATen.h>

#include "blocks.h"
#include "effarch/ops/activation.h"

namespace effarch::model {
namespace {

class GatedMlp final : public FeedForward {
 public:
  GatedMlp(const Weights& w, int layer, Activation act)
      : gate_(w.get(layer, "mlp.gate.weight")),
        up_(w.get(layer, "mlp.up.weight")),
        down_(w.get(layer, "mlp.down.weight")),
        gate_b_(optional_weight(w, layer, "mlp.gate.bias")),
        up_b_(optional_weight(w, layer, "mlp.up.bias")),
        down_b_(optional_weight(w, layer, "mlp.down.bias")),
        act_(act) {}
  at::Tensor forward(const at::Tensor& x, const ForwardContext&) const override {
    return at::linear(ops::activate(act_, at::linear(x, gate_, gate_b_)) * at::linear(x, up_, up_b_), down_, down_b_);
  }

 private:
  at::Tensor gate_, up_, down_;
  std::optional<at::Tensor> gate_b_, up_b_, down_b_;
  Activation act_;
};

class FcMlp final : public FeedForward {
 public:
  FcMlp(const Weights& w, int layer, Activation act)
      : fc1_(w.get(layer, "mlp.fc1.weight")),
        fc2_(w.get(layer, "mlp.fc2.weight")),
        fc1_b_(optional_weight(w, layer, "mlp.fc1.bias")),
        fc2_b_(optional_weight(w, layer, "mlp.fc2.bias")),
        act_(act) {}
  at::Tensor forward(const at::Tensor& x, const ForwardContext&) const override {
    return at::linear(ops::activate(act_, at::linear(x, fc1_, fc1_b_)), fc2_, fc2_b_);
  }

 private:
  at::Tensor fc1_, fc2_;
  std::optional<at::Tensor> fc1_b_, fc2_b_;
  Activation act_;
};

}  // namespace

std::unique_ptr<FeedForward> make_dense_mlp(const ModelConfig& config, const Weights& weights, int layer) {
  if (config.mlp->gated) return std::make_unique<GatedMlp>(weights, layer, config.mlp->activation);
  return std::make_unique<FcMlp>(weights, layer, config.mlp->activation);
}

}  // namespace effarch::model
