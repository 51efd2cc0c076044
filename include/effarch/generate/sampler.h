#pragma once
// Token sampling that stays on the device: greedy argmax, or temperature / top-k / top-p sampling
// drawn as argmax(probs / Exponential(1) noise) from a seeded generator (equivalent to sampling
// from probs, with no multinomial and no host sync).

#include <cstdint>

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

namespace effarch::generate {

struct SamplingOptions {
  double temperature = 0.0;  // 0: greedy
  int64_t top_k = 0;         // 0: off
  double top_p = 1.0;        // 1: off
  uint64_t seed = 0;
};

class Sampler {
 public:
  Sampler(const SamplingOptions& options, at::Device device);
  // logits [B, V] (any float dtype) -> ids [B] int64 on the same device.
  at::Tensor sample(const at::Tensor& logits);

 private:
  SamplingOptions options_;
  at::Generator generator_;
};

}  // namespace effarch::generate
