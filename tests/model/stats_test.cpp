// The architecture table's figures against independently derived values. The three counts the
// spec fixes (Mamba-2.8B, Llama-3-8B, Mixtral-8x7B) are from the issue; the others are derived
// by hand in the comments. tests/cli/hf_param_counts.sh cross-checks every config against
// transformers' own models.

#include <gtest/gtest.h>

#include "../test_util.h"
#include "effarch/model/config.h"
#include "effarch/model/stats.h"
#include "effarch/model/tensor_spec.h"

namespace effarch::model {
namespace {

ModelStats stats_of(const std::string& name) {
  return compute_stats(load_config(effarch::testing::configs_dir() / "models" / (name + ".json")));
}

TEST(Stats, IssueCounts) {
  EXPECT_EQ(stats_of("mamba-2.8b").total_params, 2768345600);
  EXPECT_EQ(stats_of("llama-3-8b").total_params, 8030261248);
  const ModelStats mixtral = stats_of("mixtral-8x7b");
  EXPECT_EQ(mixtral.total_params, 46702792704);
  EXPECT_EQ(mixtral.active_params, 12879925248);
}

TEST(Stats, Phi2) {
  // emb 51200*2560 + 32 * (ln 2*2560 + qkv 3*(2560^2+2560) + dense 2560^2+2560
  //   + fc1 10240*2560+10240 + fc2 2560*10240+2560) + final ln 2*2560 + lm_head 51200*2560+51200
  const ModelStats s = stats_of("phi-2");
  EXPECT_EQ(s.total_params, 2779683840);
  EXPECT_EQ(s.active_params, s.total_params);
  EXPECT_EQ(s.kv_bytes_per_token, 32u * 2 * 32 * 80 * 2);  // MHA, bf16
  EXPECT_EQ(s.weight_bytes_checkpoint, 2779683840ull * 2);  // float16 checkpoint
}

TEST(Stats, DeepseekMoe16b) {
  // emb + head 2*102400*2048; norm 2048; 28 * (attn 4*2048^2 + 2 norms 2*2048);
  // layer 0 dense 3*2048*10944; 27 MoE layers of gate 64*2048 + 64 experts 3*2048*1408 + shared 3*2048*2816.
  const ModelStats s = stats_of("deepseek-moe-16b");
  EXPECT_EQ(s.total_params, 16375728128);
  // Active: minus the 58 unselected experts per MoE layer: 27*58*3*2048*1408.
  EXPECT_EQ(s.active_params, 16375728128 - 27LL * 58 * 3 * 2048 * 1408);
  EXPECT_EQ(s.moe_layers, 27);
  EXPECT_EQ(s.dense_layers, 1);
}

TEST(Stats, CacheAndStateBytes) {
  const ModelStats llama = stats_of("llama-3-8b");
  EXPECT_EQ(llama.kv_bytes_per_token, 32u * 2 * 8 * 128 * 2);  // 128 KiB per token at bf16
  EXPECT_EQ(llama.state_bytes_per_sequence, 0u);
  EXPECT_EQ(llama.max_context, 8192);

  const ModelStats mamba = stats_of("mamba-2.8b");
  EXPECT_EQ(mamba.kv_bytes_per_token, 0u);
  // 64 layers * (conv 5120*4 at bf16 + ssm 5120*16 at fp32)
  EXPECT_EQ(mamba.state_bytes_per_sequence, 64u * (5120 * 4 * 2 + 5120 * 16 * 4));
  EXPECT_FALSE(mamba.max_context.has_value());

  const ModelStats jamba = stats_of("jamba-v0.1");
  EXPECT_EQ(jamba.attention_layers, 4);
  EXPECT_EQ(jamba.mamba_layers, 28);
  EXPECT_EQ(jamba.kv_bytes_per_token, 4u * 2 * 8 * 128 * 2);  // 8x smaller than Llama-3-8B's
  EXPECT_EQ(jamba.state_bytes_per_sequence, 28u * (8192 * 4 * 2 + 8192 * 16 * 4));
  EXPECT_EQ(jamba.layout, "attention 4 @ 4,12,20,28 + mamba 28; moe 16 + dense 16");

  const ModelStats codestral = stats_of("mamba-codestral-7b");
  // 64 layers * (conv 10240*4 at bf16 + ssm 128 heads*64*128 at fp32)
  EXPECT_EQ(codestral.state_bytes_per_sequence, 64u * (10240 * 4 * 2 + 128 * 64 * 128 * 4));
}

TEST(Stats, TiedHeadCountedOnce) {
  const ModelConfig c = load_config(effarch::testing::configs_dir() / "models" / "mamba-2.8b.json");
  int64_t optional = 0;
  for (const auto& t : expected_tensors(c)) optional += t.optional ? 1 : 0;
  EXPECT_EQ(optional, 1);  // lm_head.weight may be present, is not counted
}

TEST(Stats, LayerCodes) {
  const ModelConfig c = load_config(effarch::testing::configs_dir() / "models" / "jamba-v0.1.json");
  EXPECT_EQ(layer_codes(c).substr(0, 16), "MdMeMdMeAdMeMdMe");
}

}  // namespace
}  // namespace effarch::model
