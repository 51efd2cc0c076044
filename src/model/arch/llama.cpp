// LlamaForCausalLM (Llama-2/3/3.1) and MistralForCausalLM: pre-norm RMSNorm blocks, GQA attention
// with half-split RoPE (optionally llama3-scaled), SwiGLU MLP.

#include "../architectures.h"

namespace effarch::model::arch {
namespace {

void parse_llama(const ConfigReader& r, ModelConfig& c) {
  parse_llama_style(r, c, Family::Transformer, 1e-6, AttentionKeys::with_bias());
  c.mlp = MlpConfig{r.positive("intermediate_size"), parse_activation(r, "hidden_act", "silu"), true,
                    r.boolean_or("mlp_bias", false)};
  set_layers(c, [](int64_t) { return LayerSpec{MixerKind::Attention, FfnKind::Dense}; });
}

// Mistral: Llama without biases (attention_bias and mlp_bias are not Mistral keys), 8 kv heads
// and a 4096-token sliding window unless the config says otherwise (null: no window).
void parse_mistral(const ConfigReader& r, ModelConfig& c) {
  AttentionKeys keys;
  keys.sliding_window = true;
  keys.default_sliding_window = 4096;
  keys.default_kv_heads = 8;
  keys.default_max_position = 4096 * 32;  // MistralConfig's
  parse_llama_style(r, c, Family::Transformer, 1e-6, keys);
  c.mlp = MlpConfig{r.positive("intermediate_size"), parse_activation(r, "hidden_act", "silu"), true, false};
  set_layers(c, [](int64_t) { return LayerSpec{MixerKind::Attention, FfnKind::Dense}; });
}

std::vector<TensorSpec> llama_tensors(const ModelConfig& c) {
  TensorTable t(c);
  t.embedding("model.embed_tokens.weight");
  for (int i = 0; i < c.num_layers; ++i) {
    const std::string p = layer_prefix("model.layers.", i);
    t.llama_attention_half(p, i);
    t.gated_mlp(p + "mlp.", "mlp.", c.mlp->intermediate, i);
  }
  t.norm("model.norm.", "final_norm.", c.hidden_size, -1, false);
  t.lm_head();
  return t.take();
}

}  // namespace

Architecture llama() { return {"LlamaForCausalLM", parse_llama, llama_tensors}; }
Architecture mistral() { return {"MistralForCausalLM", parse_mistral, llama_tensors}; }

}  // namespace effarch::model::arch
