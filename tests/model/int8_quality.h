#pragma once
// How far --weights int8 moves a model's logits from the same model's dense weights: one
// definition for the test's bounds (int8_model_test.cpp) and the figures in docs/int8.md
// (effarch_int8_quality). Both models get the same random weights (same seed) and the same
// prompt; then the dense model's greedy tokens are fed to both (teacher-forced), so every step
// compares the two on the same history.

#include <algorithm>
#include <cstdint>

#include <ATen/ATen.h>

#include "effarch/common/device.h"
#include "effarch/model/model.h"

namespace effarch::model::int8_quality {

struct Figures {
  double max_rel = 0;   // max over steps of max |int8 - dense| / max |dense| (that step's logits)
  double mean_rel = 0;  // mean over steps of mean |int8 - dense| / mean |dense|
  double top1 = 0;      // fraction of steps whose argmax agrees
  int steps = 0;        // the prefill's last position plus each decode step
};

inline Figures measure(const ModelSource& source, at::ScalarType dtype, int64_t prompt_len, int64_t decode_steps,
                       uint64_t seed) {
  ModelOptions opt;
  opt.dtype = dtype;
  opt.seed = seed;
  const auto dense = Model::load(source, opt);
  opt.weights = ops::WeightFormat::Int8;
  const auto q = Model::load(source, opt);
  at::Generator gen = make_generator(at::kCPU, seed);
  const at::Tensor ids = at::randint(0, source.config.vocab_size, {1, prompt_len}, gen, at::kLong);
  dense->allocate_cache(1, prompt_len + decode_steps + 1);
  q->allocate_cache(1, prompt_len + decode_steps + 1);
  at::Tensor ld = dense->prefill_last(ids), lq = q->prefill_last(ids);
  Figures f;
  for (int64_t step = 0;; ++step) {
    const at::Tensor d = ld.to(at::kDouble), e = (lq.to(at::kDouble) - d).abs();
    f.max_rel = std::max(f.max_rel, (e.max() / d.abs().max()).item<double>());
    f.mean_rel += (e.mean() / d.abs().mean()).item<double>();
    const at::Tensor next = ld.argmax(-1).reshape({1});
    f.top1 += at::equal(next, lq.argmax(-1).reshape({1})) ? 1 : 0;
    ++f.steps;
    if (step == decode_steps) break;
    ld = dense->decode(next);
    lq = q->decode(next);
  }
  f.mean_rel /= f.steps;
  f.top1 /= f.steps;
  return f;
}

}  // namespace effarch::model::int8_quality
