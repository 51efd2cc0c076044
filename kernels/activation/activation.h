#pragma once
// The fused activation of an MLP's hidden layer: SiLU(gate) * up from the fused gate/up product
// (one kernel instead of at::silu and a product) and Phi's gelu_new (one kernel instead of eight
// ATen ops), each step rounded as the unfused ops round (activation_math.h). One thread per
// output element. No torch types: src/ops/activation_launch.cpp fills the params.

#include "activation/activation_params.h"
#include "common/element_type.h"

namespace effarch::kernels {

LaunchStatus activation_fp32(const ActivationParams& params, cudaStream_t stream);
LaunchStatus activation_bf16(const ActivationParams& params, cudaStream_t stream);
LaunchStatus activation_fp16(const ActivationParams& params, cudaStream_t stream);

inline LaunchStatus activation(const ActivationParams& params, cudaStream_t stream) {
  return dispatch_element_type<ActivationParams>(params.type, {activation_fp32, activation_bf16, activation_fp16},
                                                 params, stream, "activation: unknown element type");
}

}  // namespace effarch::kernels
