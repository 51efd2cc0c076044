#pragma once
// How far --weights int8 moves a model's logits from the same model's dense weights: one
// definition for the test's bounds (int8_model_test.cpp) and the figures in docs/int8.md
// (effarch_int8_quality). Both models get the same random weights (same seed) and the same
// prompt; then the first model's greedy tokens are fed to both (teacher-forced), so every step
// compares the two on the same history. bf16 against fp32 is measured the same way, as the
// yardstick: how far a format everyone accepts moves the same model.

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

// How far model `b`'s logits are from model `a`'s (same source, same seed, options apart).
inline Figures compare(const ModelSource& source, const ModelOptions& a_opt, const ModelOptions& b_opt,
                       int64_t prompt_len, int64_t decode_steps, uint64_t seed) {
  const auto a = Model::load(source, a_opt);
  const auto b = Model::load(source, b_opt);
  at::Generator gen = make_generator(at::kCPU, seed);
  const at::Tensor ids = at::randint(0, source.config.vocab_size, {1, prompt_len}, gen, at::kLong);
  a->allocate_cache(1, prompt_len + decode_steps + 1);
  b->allocate_cache(1, prompt_len + decode_steps + 1);
  at::Tensor la = a->prefill_last(ids), lb = b->prefill_last(ids);
  Figures f;
  for (int64_t step = 0;; ++step) {
    const at::Tensor d = la.to(at::kDouble), e = (lb.to(at::kDouble) - d).abs();
    f.max_rel = std::max(f.max_rel, (e.max() / d.abs().max()).item<double>());
    f.mean_rel += (e.mean() / d.abs().mean()).item<double>();
    const at::Tensor next = la.argmax(-1).reshape({1});
    f.top1 += at::equal(next, lb.argmax(-1).reshape({1})) ? 1 : 0;
    ++f.steps;
    if (step == decode_steps) break;
    la = a->decode(next);
    lb = b->decode(next);
  }
  f.mean_rel /= f.steps;
  f.top1 /= f.steps;
  return f;
}

// --weights int8 against dense weights, both in `dtype`.
inline Figures measure(const ModelSource& source, at::ScalarType dtype, int64_t prompt_len, int64_t decode_steps,
                       uint64_t seed) {
  ModelOptions dense;
  dense.dtype = dtype;
  dense.seed = seed;
  ModelOptions q = dense;
  q.weights = ops::WeightFormat::Int8;
  return compare(source, dense, q, prompt_len, decode_steps, seed);
}

// The yardstick: the same dense model in bf16 against fp32 (how far bf16 alone moves it).
inline Figures bf16_against_fp32(const ModelSource& source, int64_t prompt_len, int64_t decode_steps, uint64_t seed) {
  ModelOptions fp32;
  fp32.seed = seed;
  ModelOptions bf16 = fp32;
  bf16.dtype = at::kBFloat16;
  return compare(source, fp32, bf16, prompt_len, decode_steps, seed);
}

}  // namespace effarch::model::int8_quality
