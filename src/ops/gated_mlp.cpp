#include "effarch/ops/gated_mlp.h"

#include <ATen/ATen.h>

namespace effarch::ops {

at::Tensor gated_mlp(const at::Tensor& x, const GatedMlpWeights& w, Activation activation, Backend backend) {
  if (w.gate_up.defined()) return linear(gated_activation(activation, linear(x, w.gate_up), backend), w.down);
  return linear(activate(activation, linear(x, w.gate)) * linear(x, w.up), w.down);
}

}  // namespace effarch::ops
