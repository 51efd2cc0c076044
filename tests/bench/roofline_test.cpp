// The roofline's decode bytes come from the weights as stored: for today's only format (the
// model's dtype) they equal the parameter count times the element size, and they halve in bf16.

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "../test_util.h"
#include "effarch/bench/roofline.h"
#include "effarch/model/catalog.h"
#include "effarch/model/model.h"
#include "effarch/model/stats.h"

namespace effarch::bench {
namespace {

TEST(Roofline, DecodeBytesComeFromTheStoredWeights) {
  for (const char* name : {"tiny-llama", "tiny-mamba", "tiny-mixtral", "tiny-deepseek-moe", "tiny-jamba"}) {
    const auto source = model::resolve_model((effarch::testing::configs_dir() / "models" / (std::string(name) + ".json")).string());
    const auto& c = source.config;
    const model::ModelStats s = model::compute_stats(c);
    const double embed = static_cast<double>(c.vocab_size * c.hidden_size);
    double fp32_bytes = 0;
    for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
      model::ModelOptions opt;
      opt.dtype = dtype;
      auto m = model::Model::load(source, opt);
      RooflineModel f = roofline_model(c);
      set_weight_bytes(f, m->weights());
      const double elt = static_cast<double>(c10::elementSize(dtype));
      // Active parameters (top-k experts) less the embedding table, unless the head is the embedding.
      const double expected = (static_cast<double>(s.active_params) - (c.tie_word_embeddings ? 0 : embed)) * elt;
      EXPECT_DOUBLE_EQ(f.weight_bytes_per_decode, expected) << name << " " << c10::toString(dtype);
      if (dtype == at::kFloat) fp32_bytes = f.weight_bytes_per_decode;
      else EXPECT_DOUBLE_EQ(f.weight_bytes_per_decode * 2, fp32_bytes) << name;
      if (f.num_experts > 0) {
        EXPECT_GT(f.expert_bytes, 0) << name;
      } else {
        EXPECT_EQ(f.expert_bytes, 0) << name;
      }
    }
  }
}

}  // namespace
}  // namespace effarch::bench
