// MixtralForCausalLM: Llama-style attention blocks whose MLP is a top-k routed mixture of SwiGLU
// experts (router softmax in fp32, top-k weights renormalised).

#include <fmt/format.h>

#include "../architectures.h"

namespace effarch::model::arch {
namespace {

void parse_mixtral(const ConfigReader& r, ModelConfig& c) {
  AttentionKeys keys;
  keys.sliding_window = true;  // default null
  keys.default_kv_heads = 8;
  keys.default_rope_theta = 1e6;  // MixtralConfig.default_theta
  keys.default_max_position = 4096 * 32;
  parse_llama_style(r, c, Family::MoE, 1e-5, keys);
  MoeConfig moe;
  moe.num_experts = r.positive_aliased_or("num_local_experts", "num_experts", 8);  // MixtralConfig's defaults
  moe.top_k = r.positive_or("num_experts_per_tok", 2);
  if (moe.top_k > moe.num_experts) {
    r.fail("num_experts_per_tok", fmt::format("{} exceeds num_local_experts {}", moe.top_k, moe.num_experts));
  }
  moe.expert_intermediate = r.positive("intermediate_size");
  moe.router = RouterKind::SoftmaxFp32Renormalized;
  c.moe = moe;
  c.mlp = MlpConfig{moe.expert_intermediate, parse_activation(r, "hidden_act", "silu"), true, false};
  set_layers(c, [](int64_t) { return LayerSpec{MixerKind::Attention, FfnKind::MoE}; });
}

std::vector<TensorSpec> mixtral_tensors(const ModelConfig& c) {
  TensorTable t(c);
  t.embedding("model.embed_tokens.weight");
  for (int i = 0; i < c.num_layers; ++i) {
    const std::string p = layer_prefix("model.layers.", i);
    t.llama_attention_half(p, i);
    t.router(p + "block_sparse_moe.gate.", i);
    for (int e = 0; e < c.moe->num_experts; ++e) {
      t.gated_mlp(fmt::format("{}block_sparse_moe.experts.{}.", p, e), fmt::format("moe.expert.{}.", e),
                  c.moe->expert_intermediate, i, e, {"w1", "w3", "w2"});
    }
  }
  t.norm("model.norm.", "final_norm.", c.hidden_size, -1, false);
  t.lm_head();
  return t.take();
}

}  // namespace

Architecture mixtral() { return {"MixtralForCausalLM", parse_mixtral, mixtral_tensors}; }

}  // namespace effarch::model::arch
