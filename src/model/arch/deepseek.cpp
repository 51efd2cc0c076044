// DeepseekForCausalLM (deepseek-moe-16b, remote code): Llama-style attention; the first
// first_k_dense_replace layers have a dense MLP, later ones (every moe_layer_freq-th) a
// fine-grained MoE with a model-dtype softmax router and always-active shared experts.

#include <fmt/format.h>

#include "../architectures.h"

namespace effarch::model::arch {
namespace {

void parse_deepseek(const ConfigReader& r, ModelConfig& c) {
  parse_llama_style(r, c, Family::MoE, 1e-6, AttentionKeys::with_bias());
  // Its remote code builds linear and dynamic scaled RoPE only (any other type raises there).
  const std::string rope_type = c.attention->rope->type;
  if (rope_type != "default" && rope_type != "linear" && rope_type != "dynamic") {
    r.fail("rope_scaling", fmt::format("rope type '{}' is not supported by DeepSeekMoE (default, linear, dynamic)",
                                       rope_type));
  }
  c.mlp = MlpConfig{r.positive("intermediate_size"), parse_activation(r, "hidden_act", "silu"), true, false};
  const std::string scoring = r.string_or("scoring_func", "softmax");
  if (scoring != "softmax") r.fail("scoring_func", fmt::format("'{}' is not supported (softmax)", scoring));
  MoeConfig moe;
  moe.num_experts = r.positive("n_routed_experts");
  moe.top_k = r.positive("num_experts_per_tok");
  if (moe.top_k > moe.num_experts) {
    r.fail("num_experts_per_tok", fmt::format("{} exceeds n_routed_experts {}", moe.top_k, moe.num_experts));
  }
  moe.expert_intermediate = r.positive("moe_intermediate_size");
  moe.num_shared_experts = r.non_negative_or("n_shared_experts", 0);
  if (r.boolean_or("norm_topk_prob", false)) r.fail("norm_topk_prob", "true is not supported for DeepSeekMoE");
  moe.router = RouterKind::SoftmaxModelDtype;
  c.moe = moe;
  const int64_t first_dense = r.non_negative_or("first_k_dense_replace", 0);
  const int64_t freq = r.positive_or("moe_layer_freq", 1);
  set_layers(c, [&](int64_t i) {
    const bool is_moe = i >= first_dense && i % freq == 0;
    return LayerSpec{MixerKind::Attention, is_moe ? FfnKind::MoE : FfnKind::Dense};
  });
}

std::vector<TensorSpec> deepseek_tensors(const ModelConfig& c) {
  TensorTable t(c);
  const auto& moe = *c.moe;
  t.embedding("model.embed_tokens.weight");
  for (int i = 0; i < c.num_layers; ++i) {
    const std::string p = layer_prefix("model.layers.", i);
    t.llama_attention_half(p, i);
    if (c.layers[static_cast<size_t>(i)].ffn == FfnKind::Dense) {
      t.gated_mlp(p + "mlp.", "mlp.", c.mlp->intermediate, i);
      continue;
    }
    t.router(p + "mlp.gate.", i);
    for (int e = 0; e < moe.num_experts; ++e) {
      t.gated_mlp(fmt::format("{}mlp.experts.{}.", p, e), fmt::format("moe.expert.{}.", e), moe.expert_intermediate,
                  i, e);
    }
    if (moe.num_shared_experts > 0) {
      t.gated_mlp(p + "mlp.shared_experts.", "moe.shared.", moe.expert_intermediate * moe.num_shared_experts, i);
    }
  }
  t.norm("model.norm.", "final_norm.", c.hidden_size, -1, false);
  t.lm_head();
  return t.take();
}

}  // namespace

Architecture deepseek() { return {"DeepseekForCausalLM", parse_deepseek, deepseek_tensors}; }

}  // namespace effarch::model::arch
