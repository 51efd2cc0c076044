#include "effarch/ops/gated_mlp.h"

#include <ATen/ATen.h>

namespace effarch::ops {

at::Tensor gated_mlp(const at::Tensor& x, const GatedMlpWeights& w, Activation activation, Backend backend) {
  if (w.gate_up.defined()) {
    return linear(gated_activation(activation, linear(x, w.gate_up, backend), backend), w.down, backend);
  }
  return linear(activate(activation, linear(x, w.gate, backend)) * linear(x, w.up, backend), w.down, backend);
}

}  // namespace effarch::ops
