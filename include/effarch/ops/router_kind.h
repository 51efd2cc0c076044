#pragma once
// How router probabilities become expert weights (the MoE ops' parameter; a model's config picks
// one per architecture, see docs/architectures.md).

namespace effarch::ops {

enum class RouterKind {
  SoftmaxFp32Renormalized,  // Mixtral: softmax in fp32, top-k, divide by the top-k sum
  SoftmaxFp32,              // Jamba: softmax in fp32, top-k, no renormalisation
  SoftmaxModelDtype,        // DeepSeekMoE: softmax in the model dtype, top-k, no renormalisation
};

}  // namespace effarch::ops
