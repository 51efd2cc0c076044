// JambaForCausalLM: a per-layer mix of attention (no positional encoding) and Mamba-1 mixers with
// learned dt/B/C RMSNorms, and of dense and MoE feed-forwards (fp32 softmax router, no
// renormalisation), picked by layer index from the config's periods and offsets.

#include <fmt/format.h>

#include "../architectures.h"

namespace effarch::model::arch {
namespace {

void parse_jamba(const ConfigReader& r, ModelConfig& c) {
  c.family = Family::Hybrid;
  c.norm = NormKind::RMSNorm;
  c.norm_eps = r.positive_number_or("rms_norm_eps", 1e-6);
  c.tie_word_embeddings = r.boolean_or("tie_word_embeddings", false);
  c.max_position_embeddings = r.positive_or("max_position_embeddings", 262144);
  AttentionKeys keys;
  keys.rope = false;
  keys.default_kv_heads = 8;
  c.attention = parse_attention(r, c.hidden_size, keys);
  c.mlp = MlpConfig{r.positive("intermediate_size"), parse_activation(r, "hidden_act", "silu"), true, false};

  MambaConfig m;
  m.version = 1;
  m.d_state = r.positive_or("mamba_d_state", 16);  // JambaConfig's defaults, here and below
  m.d_conv = parse_conv_width(r, "mamba_d_conv", 4);
  m.d_inner = r.positive_or("mamba_expand", 2) * c.hidden_size;
  m.dt_rank = parse_dt_rank(r, "mamba_dt_rank", c.hidden_size);
  m.conv_bias = r.boolean_or("mamba_conv_bias", true);
  m.proj_bias = r.boolean_or("mamba_proj_bias", false);
  m.dt_bc_norm = MambaConfig::DtBCNorm::Learned;
  m.activation = c.mlp->activation;  // one hidden_act for the MLPs, the experts and the conv
  m.dt_bc_norm_eps = c.norm_eps;
  c.mamba = m;

  MoeConfig moe;
  moe.num_experts = r.positive_aliased_or("num_experts", "num_local_experts", 16);
  moe.top_k = r.positive_or("num_experts_per_tok", 2);
  if (moe.top_k > moe.num_experts) {
    r.fail("num_experts_per_tok", fmt::format("{} exceeds num_experts {}", moe.top_k, moe.num_experts));
  }
  moe.expert_intermediate = c.mlp->intermediate;
  moe.router = RouterKind::SoftmaxFp32;
  c.moe = moe;

  const int64_t attn_period = r.positive_or("attn_layer_period", 8);
  const int64_t attn_offset = r.non_negative_or("attn_layer_offset", 4);
  const int64_t expert_period = r.positive_or("expert_layer_period", 2);
  const int64_t expert_offset = r.non_negative_or("expert_layer_offset", 1);
  if (attn_offset >= attn_period) r.fail("attn_layer_offset", fmt::format("{} must be < attn_layer_period {}", attn_offset, attn_period));
  if (expert_offset >= expert_period) {
    r.fail("expert_layer_offset", fmt::format("{} must be < expert_layer_period {}", expert_offset, expert_period));
  }
  set_layers(c, [&](int64_t i) {
    const bool attn = i % attn_period == attn_offset;
    // HF builds a dense MLP where num_experts is 1.
    const bool moe_layer = i % expert_period == expert_offset && moe.num_experts > 1;
    return LayerSpec{attn ? MixerKind::Attention : MixerKind::Mamba1, moe_layer ? FfnKind::MoE : FfnKind::Dense};
  });
}

std::vector<TensorSpec> jamba_tensors(const ModelConfig& c) {
  TensorTable t(c);
  t.embedding("model.embed_tokens.weight");
  for (int i = 0; i < c.num_layers; ++i) {
    const auto& layer = c.layers[static_cast<size_t>(i)];
    const std::string p = layer_prefix("model.layers.", i);
    t.norm(p + "input_layernorm.", "mixer_norm.", c.hidden_size, i, false);
    if (layer.mixer == MixerKind::Attention) {
      t.attention(p + "self_attn.", i);
    } else {
      t.mamba1_mixer(p + "mamba.", i);
    }
    t.norm(p + "pre_ff_layernorm.", "ffn_norm.", c.hidden_size, i, false);
    if (layer.ffn == FfnKind::MoE) {
      t.router(p + "feed_forward.router.", i);
      for (int e = 0; e < c.moe->num_experts; ++e) {
        t.gated_mlp(fmt::format("{}feed_forward.experts.{}.", p, e), fmt::format("moe.expert.{}.", e),
                    c.moe->expert_intermediate, i, e);
      }
    } else {
      t.gated_mlp(p + "feed_forward.", "mlp.", c.mlp->intermediate, i);
    }
  }
  t.norm("model.final_layernorm.", "final_norm.", c.hidden_size, -1, false);
  t.lm_head();
  return t.take();
}

}  // namespace

Architecture jamba() { return {"JambaForCausalLM", parse_jamba, jamba_tensors}; }

}  // namespace effarch::model::arch
