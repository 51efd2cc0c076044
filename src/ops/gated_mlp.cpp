#include "effarch/ops/gated_mlp.h"

#include <ATen/ATen.h>

namespace effarch::ops {

at::Tensor gated_mlp(const at::Tensor& x, const GatedMlpWeights& w, Activation activation) {
  if (w.gate_up.defined()) {
    const int64_t inter = w.gate_up.out_features() / 2;
    const at::Tensor h = linear(x, w.gate_up);  // [..., 2I]
    return linear(activate(activation, h.narrow(-1, 0, inter)) * h.narrow(-1, inter, inter), w.down);
  }
  return linear(activate(activation, linear(x, w.gate)) * linear(x, w.up), w.down);
}

}  // namespace effarch::ops
