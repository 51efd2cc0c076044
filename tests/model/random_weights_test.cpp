// Random weights: seeded, order-independent, shaped by the tensor table, finite, and each init
// rule doing what it says. The end-to-end `effarch init` -> inspect round trip is in tests/cli.

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "../test_util.h"
#include "effarch/io/checkpoint.h"
#include "effarch/model/config.h"
#include "effarch/generate/sampler.h"
#include "effarch/model/random_weights.h"
#include "effarch/ops/backend.h"

namespace effarch::model {
namespace {

ModelConfig tiny(const std::string& name) {
  return load_config(effarch::testing::configs_dir() / "models" / (name + ".json"));
}

TEST(RandomWeights, SeededAndOrderIndependent) {
  const ModelConfig c = tiny("tiny-llama");
  const auto a = random_weights(c, 7, at::kFloat, at::kCPU);
  const auto b = random_weights(c, 7, at::kFloat, at::kCPU);
  const auto other = random_weights(c, 8, at::kFloat, at::kCPU);
  const auto specs = expected_tensors(c);
  for (const auto& [name, t] : a) EXPECT_TRUE(at::equal(t, b.at(name))) << name;
  EXPECT_FALSE(at::equal(a.at("model.embed_tokens.weight"), other.at("model.embed_tokens.weight")));
  // One tensor drawn on its own equals the same tensor drawn with all the others.
  const auto& spec = specs[5];
  EXPECT_TRUE(at::equal(random_tensor(c, spec, 7, at::kFloat, at::kCPU), a.at(spec.name)));
}

TEST(RandomWeights, ShapesAndInitRules) {
  for (const char* name : {"tiny-llama", "tiny-phi", "tiny-mamba", "tiny-mamba2", "tiny-mixtral", "tiny-jamba",
                           "tiny-deepseek-moe", "tiny-falcon-mamba"}) {
    SCOPED_TRACE(name);
    const ModelConfig c = tiny(name);
    const auto w = random_weights(c, 1, at::kFloat, at::kCPU);
    for (const auto& spec : expected_tensors(c)) {
      if (spec.optional) {
        EXPECT_EQ(w.count(spec.name), 0u);
        continue;
      }
      const at::Tensor& t = w.at(spec.name);
      EXPECT_EQ(t.sizes().vec(), spec.shape) << spec.name;
      EXPECT_TRUE(at::isfinite(t).all().item<bool>()) << spec.name;
      switch (spec.init) {
        case Init::Ones: EXPECT_TRUE(at::equal(t, at::ones_like(t))) << spec.name; break;
        case Init::Zeros: EXPECT_TRUE(at::equal(t, at::zeros_like(t))) << spec.name; break;
        case Init::MambaALog:  // A = -exp(A_log) = -(1..N) in every channel
          EXPECT_TRUE(at::allclose(at::exp(t[0]), at::arange(1, spec.shape[1] + 1, at::kFloat))) << spec.name;
          break;
        case Init::DtBias: {  // softplus(bias) = dt in [1e-3, 1e-1]
          const at::Tensor dt = at::softplus(t);
          EXPECT_GE(dt.min().item<float>(), 0.99e-3f);
          EXPECT_LE(dt.max().item<float>(), 1.01e-1f);
          break;
        }
        case Init::Normal: {
          const double std = t.std().item<double>();
          if (t.numel() > 1000) EXPECT_NEAR(std, c.initializer_range, 0.2 * c.initializer_range) << spec.name;
          break;
        }
        default: break;
      }
    }
  }
}

// Varied draws the constant inits (biases, norm weights, D, A_log's rows) around their constants
// and leaves every other tensor as the transformers init draws it.
TEST(RandomWeights, VariedDrawsOnlyTheConstantInits) {
  for (const char* name : {"tiny-phi", "tiny-mamba", "tiny-mamba2"}) {
    SCOPED_TRACE(name);
    const ModelConfig c = tiny(name);
    const auto plain = random_weights(c, 1, at::kFloat, at::kCPU);
    const auto varied = random_weights(c, 1, at::kFloat, at::kCPU, RandomInit::Varied);
    int drawn = 0;
    for (const auto& spec : expected_tensors(c)) {
      if (spec.optional) continue;
      const at::Tensor& a = plain.at(spec.name);
      const at::Tensor& b = varied.at(spec.name);
      const bool constant = spec.init == Init::Ones || spec.init == Init::Zeros || spec.init == Init::MambaALog;
      if (!constant) {
        EXPECT_TRUE(at::equal(a, b)) << spec.name;
        continue;
      }
      ++drawn;
      const at::Tensor off = b - a;  // N(0, 0.1) around the constant
      EXPECT_GT(off.abs().min().item<double>(), 0.0) << spec.name;
      EXPECT_LT(off.abs().max().item<double>(), 1.0) << spec.name;
      if (spec.init == Init::MambaALog) EXPECT_FALSE(at::equal(b[0], b[1])) << spec.name;  // rows apart
    }
    EXPECT_GT(drawn, 0);
  }
}

TEST(RandomWeights, Bf16) {
  const ModelConfig c = tiny("tiny-mamba");
  const auto w = random_weights(c, 3, at::kBFloat16, at::kCPU);
  for (const auto& [name, t] : w) EXPECT_EQ(t.scalar_type(), at::kBFloat16) << name;
}

// Drawing random weights and sampling use their own generators: ATen's default generator of the
// device (the one every other user of torch draws from) is left as it was. Same seed, same draws.
void expect_default_generator_untouched(at::Device device) {
  at::Generator def = at::globalContext().defaultGenerator(device);
  const uint64_t seed_before = def.current_seed();
  const at::Tensor state_before = def.get_state();
  const ModelConfig c = tiny("tiny-llama");
  const auto a = random_weights(c, 11, at::kFloat, device);
  const auto b = random_weights(c, 11, at::kFloat, device);
  for (const auto& [name, t] : a) EXPECT_TRUE(at::equal(t, b.at(name))) << name;
  generate::SamplingOptions so;
  so.temperature = 1.0;
  so.seed = 5;
  generate::Sampler s1(so, device), s2(so, device);
  const at::Tensor logits = at::arange(256, at::TensorOptions().dtype(at::kFloat).device(device)).view({4, 64}).sin();
  EXPECT_TRUE(at::equal(s1.sample(logits), s2.sample(logits)));
  EXPECT_EQ(def.current_seed(), seed_before) << device;
  EXPECT_TRUE(at::equal(def.get_state(), state_before)) << device;
}

TEST(RandomWeights, LeaveTheDefaultGeneratorAloneOnTheCpu) { expect_default_generator_untouched(at::kCPU); }

TEST(RandomWeights, LeaveTheDefaultGeneratorAloneOnCuda) {
  if (!ops::kBuiltWithCuda || !at::hasCUDA()) GTEST_SKIP() << "needs a CUDA build and a GPU";
  expect_default_generator_untouched(at::Device(at::kCUDA, 0));
}

}  // namespace
}  // namespace effarch::model
