// PhiForCausalLM (Phi-2): one LayerNorm feeding attention and MLP in parallel, biases on every
// linear and on lm_head, partial rotary embedding, gelu_new.

#include "../architectures.h"

namespace effarch::model::arch {
namespace {

void parse_phi(const ConfigReader& r, ModelConfig& c) {
  c.family = Family::Transformer;
  c.norm = NormKind::LayerNorm;
  c.norm_eps = r.positive_number_or("layer_norm_eps", 1e-5);
  c.tie_word_embeddings = r.boolean_or("tie_word_embeddings", false);
  c.lm_head_bias = true;
  c.parallel_block = true;
  if (r.boolean_or("qk_layernorm", false)) r.fail("qk_layernorm", "true is not supported");
  AttentionKeys keys;
  keys.partial_rotary = true;  // Phi-2: 0.4 of each head
  keys.default_partial_rotary = 0.5;  // PhiConfig's, when the key is absent (its max positions: the 2048 default)
  c.max_position_embeddings = r.positive_or("max_position_embeddings", keys.default_max_position);
  c.attention = parse_attention(r, c.hidden_size, keys);
  c.attention->qkv_bias = true;
  c.attention->out_bias = true;
  c.mlp = MlpConfig{r.positive("intermediate_size"), parse_activation(r, "hidden_act", "gelu_new"), false, true};
  set_layers(c, [](int64_t) { return LayerSpec{MixerKind::Attention, FfnKind::Dense}; });
}

std::vector<TensorSpec> phi_tensors(const ModelConfig& c) {
  TensorTable t(c);
  const int64_t h = c.hidden_size;
  t.embedding("model.embed_tokens.weight");
  for (int i = 0; i < c.num_layers; ++i) {
    const std::string p = layer_prefix("model.layers.", i);
    t.norm(p + "input_layernorm.", "mixer_norm.", h, i, true);
    t.attention(p + "self_attn.", i, "dense");
    t.linear(p + "mlp.fc1.", "mlp.fc1.", c.mlp->intermediate, h, true, i);
    t.linear(p + "mlp.fc2.", "mlp.fc2.", h, c.mlp->intermediate, true, i, Init::NormalOut);
  }
  t.norm("model.final_layernorm.", "final_norm.", h, -1, true);
  t.lm_head();
  return t.take();
}

}  // namespace

Architecture phi() { return {"PhiForCausalLM", parse_phi, phi_tensors}; }

}  // namespace effarch::model::arch
