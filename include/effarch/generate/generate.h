#pragma once
// The generation loop: prefill the prompts, then decode one token per step until every sequence
// has produced an end-of-sequence token or the token budget is spent. Ids stay on the device;
// the host sees them only when a streaming callback asks for them.

#include <cstdint>
#include <functional>
#include <vector>

#include <ATen/core/Tensor.h>

#include "effarch/generate/sampler.h"
#include "effarch/model/model.h"

namespace effarch::generate {

struct GenerateOptions {
  int64_t max_new_tokens = 32;
  SamplingOptions sampling;
  std::vector<int64_t> eos_ids;  // empty: never stop early
  // Called after each step with the new ids [B] on the host (forces a sync per step; leave
  // empty when only timing matters).
  std::function<void(const std::vector<int64_t>&)> on_token;
};

struct GenerateResult {
  std::vector<std::vector<int64_t>> tokens;  // per sequence, generated ids (up to and including EOS)
  int64_t prompt_tokens = 0;                 // per sequence
  double ttft_s = 0;                          // prefill start to the first token on the host
  double decode_s = 0;                        // the decode steps after the first token
  int64_t steps = 0;                          // decode steps run
};

// prompts: [B, T] int64 (equal-length prompts).
GenerateResult generate(model::Model& model, const at::Tensor& prompts, const GenerateOptions& options);

}  // namespace effarch::generate
