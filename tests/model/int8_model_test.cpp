// --weights int8 on every tiny architecture: the linear weights are int8 with fp32 scales and
// nothing else is, the bytes shrink, and the logits stay within the bounds docs/int8.md states
// of the same model's dense weights (int8_quality.h defines the figures).

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <fmt/format.h>

#include "../test_util.h"
#include "effarch/model/catalog.h"
#include "effarch/model/model.h"
#include "effarch/model/tensor_spec.h"
#include "int8_quality.h"

namespace effarch::model {
namespace {

ModelSource tiny(const std::string& name) {
  return resolve_model((effarch::testing::configs_dir() / "models" / (name + ".json")).string());
}

const char* const kTiny[] = {"tiny-llama", "tiny-phi",         "tiny-mistral",      "tiny-mamba", "tiny-falcon-mamba",
                             "tiny-mamba2", "tiny-mixtral", "tiny-deepseek-moe", "tiny-jamba"};

TEST(Int8Weights, OnlyLinearWeightsAreQuantised) {
  for (const char* name : kTiny) {
    const ModelSource source = tiny(name);
    ModelOptions opt;
    opt.weights = ops::WeightFormat::Int8;
    const auto q = Model::load(source, opt);
    opt.weights = ops::WeightFormat::Dense;
    const auto dense = Model::load(source, opt);
    EXPECT_EQ(q->weight_format(), "int8") << name;
    EXPECT_EQ(dense->weight_format(), "float32") << name;
    for (const TensorSpec& t : expected_tensors(source.config)) {
      const at::Tensor* w = q->weights().find(t.layer, t.role);
      if (w == nullptr) continue;  // optional and absent
      const at::Tensor* scale = q->weights().find(t.layer, t.role + "_scale");
      if (t.linear) {
        EXPECT_EQ(w->scalar_type(), at::kChar) << name << " " << t.name;
        ASSERT_NE(scale, nullptr) << name << " " << t.name;
        EXPECT_EQ(scale->scalar_type(), at::kFloat);
        EXPECT_EQ(scale->sizes(), (std::vector<int64_t>{t.shape[0]})) << name << " " << t.name;
        // Within half a step of the dense weight, channel by channel.
        const at::Tensor d = dense->weights().get(t.layer, t.role);
        const at::Tensor err = (w->to(at::kFloat) * scale->unsqueeze(1) - d).abs();
        EXPECT_TRUE((err <= scale->unsqueeze(1) * 0.5001).all().item<bool>()) << name << " " << t.name;
      } else {
        EXPECT_EQ(w->scalar_type(), at::kFloat) << name << " " << t.name;
        EXPECT_EQ(scale, nullptr) << name << " " << t.name;
      }
    }
    // Linear weights shrink four-fold (fp32 -> int8) plus their scales.
    EXPECT_LT(q->weights().bytes(), dense->weights().bytes() * 7 / 10) << name;
  }
}

TEST(Int8Weights, LogitsStayWithinTheDocumentedBounds) {
  for (const char* name : kTiny) {
    const auto f = int8_quality::measure(tiny(name), at::kFloat, 16, 16, 0);
    // docs/int8.md: max relative error <= 5e-2, mean <= 3e-2, top-1 agreement >= 85%. And not 0:
    // int8 did run (a dense model would give exactly 0).
    EXPECT_GT(f.max_rel, 1e-4) << name;
    EXPECT_LE(f.max_rel, 5e-2) << name;
    EXPECT_LE(f.mean_rel, 3e-2) << name;
    EXPECT_GE(f.top1, 0.85) << name << fmt::format(" top-1 {}/{}", f.top1 * f.steps, f.steps);
  }
}

TEST(Int8Weights, Bf16ModelQuantisesFromItsOwnWeights) {
  const auto f = int8_quality::measure(tiny("tiny-llama"), at::kBFloat16, 16, 8, 1);
  EXPECT_GT(f.max_rel, 1e-4);
  EXPECT_LE(f.max_rel, 8e-2);
  EXPECT_GE(f.top1, 0.85);
}

}  // namespace
}  // namespace effarch::model
