// Dense feed-forward: SwiGLU-style gate/up/down (Llama, Mistral, Jamba, DeepSeek's dense layers)
// or fc1/fc2 with biases (Phi). Tensor parallel: gate/up (fc1) hold this rank's columns, down (fc2)
// its rows; the partial outputs are all-reduced.

#include <ATen/ATen.h>

#include "blocks.h"
#include "effarch/ops/activation.h"
#include "effarch/ops/gated_mlp.h"

namespace effarch::model {
namespace {

class GatedMlp final : public FeedForward {
 public:
  GatedMlp(const Weights& w, int layer, Activation act) : w_(w.gated_mlp(layer, "mlp.")), act_(act) {}
  at::Tensor forward(const ops::NormedInput& x, const ForwardContext& ctx) const override {
    return all_reduce(ops::gated_mlp(x, w_, act_, ctx.backend), ctx.tp);
  }

 private:
  ops::GatedMlpWeights w_;  // gate and up fused at load: one [2I, H] product, split after
  Activation act_;
};

class FcMlp final : public FeedForward {
 public:
  FcMlp(const Weights& w, int layer, Activation act)
      : fc1_(w.linear(layer, "mlp.fc1.")), fc2_(w.linear(layer, "mlp.fc2.")), act_(act) {}
  at::Tensor forward(const ops::NormedInput& x, const ForwardContext& ctx) const override {
    // fc1 and its activation: one GEMV launch in a decode step where the kernel takes both.
    const at::Tensor h = ops::linear_activation(x.tensor(), fc1_, act_, ctx.backend);
    return all_reduce(ops::linear(h, fc2_, ctx.backend), ctx.tp);
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
