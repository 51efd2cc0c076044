#pragma once
// Seeded random weights for any config, drawn on the CPU or directly on a GPU, with an init that
// keeps activations finite through deep stacks (see Init in tensor_spec.h). Each tensor's stream
// is seeded from (seed, tensor name), so a tensor's values do not depend on the others.

#include <cstdint>
#include <map>
#include <string>

#include <ATen/core/Tensor.h>

#include "effarch/model/config.h"
#include "effarch/model/tensor_spec.h"

namespace effarch::model {

// `init`: RandomInit (tensor_spec.h).
at::Tensor random_tensor(const ModelConfig& config, const TensorSpec& spec, uint64_t seed, at::ScalarType dtype,
                         at::Device device, RandomInit init = RandomInit::Transformers);

// Every non-optional expected tensor.
std::map<std::string, at::Tensor> random_weights(const ModelConfig& config, uint64_t seed, at::ScalarType dtype,
                                                 at::Device device, RandomInit init = RandomInit::Transformers);

}  // namespace effarch::model
