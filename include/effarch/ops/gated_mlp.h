#pragma once
// A gated MLP, down(act(gate x) * up x): the dense feed-forward of Llama-style models and every
// MoE expert (SwiGLU when act is SiLU). gate and up read the same x, so where the weights allow
// they are one [2I, H] product (Weights::gated_mlp fuses them at load) split after.

#include <ATen/core/Tensor.h>

#include "effarch/ops/activation.h"
#include "effarch/ops/linear.h"

namespace effarch::ops {

struct GatedMlpWeights {
  Linear gate, up;  // [I, H] each (views of gate_up's rows when it is defined)
  Linear down;      // [H, I]
  Linear gate_up;   // optional: [2I, H], gate's rows then up's; used instead of gate and up when defined

  int64_t inter() const { return gate.out_features(); }
};

// x [..., H] -> [..., H] in x's dtype: linear(act(gate) * up, down), each product rounded to x's
// dtype as separate layers would (the fused product gives the same values, split in two).
// `backend` picks the products' implementation (ops::linear: the dense GEMV kernel for a decode
// step on CUDA) and the activation's (ops::linear_gated_activation: inside that GEMV where it
// runs, else the gated activation kernel on CUDA); the default, the reference, is what the MoE
// references call.
at::Tensor gated_mlp(const at::Tensor& x, const GatedMlpWeights& w, Activation activation,
                     Backend backend = Backend::Reference);
// The same for a block's normed input: with gate and up fused, a pending add + norm runs in the
// gate/up GEMV's prologue where that runs (ops::linear_gated_activation's NormedInput form), else
// first.
at::Tensor gated_mlp(const NormedInput& x, const GatedMlpWeights& w, Activation activation,
                     Backend backend = Backend::Auto);

}  // namespace effarch::ops
