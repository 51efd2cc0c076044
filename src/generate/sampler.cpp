#include "effarch/generate/sampler.h"

#include <cmath>

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "effarch/common/device.h"
#include "effarch/common/error.h"

namespace effarch::generate {

Sampler::Sampler(const SamplingOptions& options, at::Device device) : options_(options) {
  // (A NaN compares false both ways: it would sample from NaN scores, and inf from flat ones.)
  if (!(options.temperature >= 0 && std::isfinite(options.temperature))) {
    throw UsageError(fmt::format("--temperature must be a finite number >= 0, got {}", options.temperature));
  }
  if (options.top_k < 0) throw UsageError(fmt::format("--top-k must be >= 0, got {}", options.top_k));
  if (!(options.top_p > 0 && options.top_p <= 1)) throw UsageError(fmt::format("--top-p must be in (0, 1], got {}", options.top_p));
  generator_ = make_generator(device, options.seed);
}

at::Tensor Sampler::sample(const at::Tensor& logits) {
  if (options_.temperature == 0.0) return logits.argmax(-1);
  at::Tensor scores = logits.to(at::kFloat) / options_.temperature;
  if (options_.top_k > 0 && options_.top_k < scores.size(-1)) {
    const at::Tensor kth = std::get<0>(scores.topk(options_.top_k, -1)).narrow(-1, options_.top_k - 1, 1);
    scores = scores.masked_fill(scores < kth, -std::numeric_limits<float>::infinity());
  }
  if (options_.top_p < 1.0) {
    // Keep the smallest set of tokens whose probability reaches top_p (the top token always).
    auto [sorted, order] = scores.sort(-1, /*descending=*/true);
    const at::Tensor cum = sorted.softmax(-1).cumsum(-1);
    const at::Tensor drop_sorted = (cum - sorted.softmax(-1)) >= options_.top_p;
    const at::Tensor drop = at::zeros_like(drop_sorted).scatter(-1, order, drop_sorted);
    scores = scores.masked_fill(drop, -std::numeric_limits<float>::infinity());
  }
  const at::Tensor probs = scores.softmax(-1);
  const at::Tensor noise = at::empty_like(probs).exponential_(1.0, generator_);
  return (probs / noise).argmax(-1);
}

}  // namespace effarch::generate
