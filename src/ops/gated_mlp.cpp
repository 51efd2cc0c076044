#include "effarch/ops/gated_mlp.h"

#include <ATen/ATen.h>

namespace effarch::ops {

at::Tensor gated_mlp(const at::Tensor& x, const GatedMlpWeights& w, Activation activation, Backend backend) {
  if (w.gate_up.defined()) {
    return linear(linear_gated_activation(x, w.gate_up, activation, backend), w.down, backend);
  }
  return linear(activate(activation, linear(x, w.gate, backend)) * linear(x, w.up, backend), w.down, backend);
}

at::Tensor gated_mlp(const NormedInput& x, const GatedMlpWeights& w, Activation activation, Backend backend) {
  if (!w.gate_up.defined()) return gated_mlp(x.tensor(), w, activation, backend);
  return linear(linear_gated_activation(x, w.gate_up, activation, backend), w.down, backend);
}

}  // namespace effarch::ops
