// The roofline's decode bytes come from the weights as stored: for today's only format (the
// model's dtype) they equal the parameter count times the element size, and they halve in bf16.

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "../test_util.h"
#include "effarch/bench/roofline.h"
#include "effarch/common/error.h"
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

// The KV bytes a decode step reads: the filled prefix on average (prompt + half the generated
// tokens, of a cache allocated for prompt + generated) or the whole allocated cache; recorded.
// The recurrent state is read and written: twice its bytes.
TEST(Roofline, DecodeCountsTheKvCacheAsTheAttentionReadsIt) {
  RooflineModel m;
  m.weight_bytes_per_decode = 1000;
  RooflineInputs in;
  in.prompt_len = 96;
  in.gen_tokens = 32;
  in.kv_cache_bytes = 1280;  // 10 bytes per position
  in.state_bytes = 7;
  in.prefill_s = 1;
  in.decode_step_s = 0.5;
  in.copy_bandwidth_bytes_per_s = 4000;
  in.kv_read = KvRead::FilledPrefix;
  const Roofline filled = roofline(m, in);
  ASSERT_TRUE(filled.decode);
  EXPECT_DOUBLE_EQ(filled.decode->bytes_per_step, 1000 + 10 * (96 + 16) + 2 * 7);
  EXPECT_DOUBLE_EQ(filled.decode->bytes_per_s, (1000 + 10 * (96 + 16) + 2 * 7) / 0.5);
  EXPECT_EQ(filled.decode->kv_read, KvRead::FilledPrefix);
  in.kv_read = KvRead::Allocated;
  const Roofline whole = roofline(m, in);
  EXPECT_DOUBLE_EQ(whole.decode->bytes_per_step, 1000 + 1280 + 2 * 7);
  EXPECT_EQ(whole.decode->kv_read, KvRead::Allocated);
  // A model without a KV cache records no KV read.
  in.kv_cache_bytes = 0;
  EXPECT_FALSE(roofline(m, in).decode->kv_read.has_value());
  // Through the JSON and back.
  const nlohmann::json j = whole;
  EXPECT_EQ(j.at("decode_kv_read"), "allocated");
  EXPECT_EQ(j.get<Roofline>(), whole);
  nlohmann::json bad = j;
  bad["decode_kv_read"] = "some";
  EXPECT_THROW(bad.get<Roofline>(), UsageError);
}

}  // namespace
}  // namespace effarch::bench
