// MambaForCausalLM (state-spaces/mamba-*-hf) and FalconMambaForCausalLM: RMSNorm blocks around
// the Mamba-1 selective-scan mixer, no feed-forward, residual stream in fp32, tied head.
// Falcon-Mamba adds weightless RMSNorms on dt, B and C (no tensors).

#include <fmt/format.h>

#include "../architectures.h"

namespace effarch::model::arch {
namespace {

void parse_mamba_family(const ConfigReader& r, ModelConfig& c, bool falcon) {
  c.family = Family::Mamba;
  c.norm = NormKind::RMSNorm;
  c.norm_eps = r.positive_number_or("layer_norm_epsilon", 1e-5);
  c.tie_word_embeddings = r.boolean_or("tie_word_embeddings", true);
  c.residual_in_fp32 = r.boolean_or("residual_in_fp32", true);
  // rms_norm is not read by transformers 5.23 (its blocks are always RMSNorm): ignored here too.
  refuse_prenorm_rescale(r);
  MambaConfig m;
  m.version = 1;
  m.d_state = r.positive_or("state_size", 16);  // MambaConfig's and FalconMambaConfig's default
  m.d_conv = parse_conv_width(r, "conv_kernel", 4);
  const int64_t expand = r.positive_or("expand", 2);
  m.d_inner = r.positive_or("intermediate_size", expand * c.hidden_size);
  if (m.d_inner != expand * c.hidden_size) {
    r.fail("intermediate_size", fmt::format("{} is not expand x hidden_size = {}", m.d_inner, expand * c.hidden_size));
  }
  m.dt_rank = parse_dt_rank(r, "time_step_rank", c.hidden_size);
  m.conv_bias = r.boolean_or("use_conv_bias", true);
  m.proj_bias = r.boolean_or("use_bias", false);
  m.activation = parse_activation(r, "hidden_act", "silu");
  if (falcon) {
    m.dt_bc_norm = MambaConfig::DtBCNorm::Weightless;
    m.dt_bc_norm_eps = r.positive_number_or("mixer_rms_eps", 1e-6);
  }
  c.mamba = m;
  set_layers(c, [](int64_t) { return LayerSpec{MixerKind::Mamba1, FfnKind::None}; });
}

std::vector<TensorSpec> mamba_tensors(const ModelConfig& c) {
  TensorTable t(c);
  t.embedding("backbone.embeddings.weight", {"backbone.embedding.weight"});
  for (int i = 0; i < c.num_layers; ++i) {
    const std::string p = layer_prefix("backbone.layers.", i);
    t.norm(p + "norm.", "mixer_norm.", c.hidden_size, i, false);
    t.mamba1_mixer(p + "mixer.", i);
  }
  t.norm("backbone.norm_f.", "final_norm.", c.hidden_size, -1, false);
  t.lm_head();
  return t.take();
}

}  // namespace

Architecture mamba() {
  return {"MambaForCausalLM", [](const ConfigReader& r, ModelConfig& c) { parse_mamba_family(r, c, false); },
          mamba_tensors};
}
Architecture falcon_mamba() {
  return {"FalconMambaForCausalLM", [](const ConfigReader& r, ModelConfig& c) { parse_mamba_family(r, c, true); },
          mamba_tensors};
}

}  // namespace effarch::model::arch
