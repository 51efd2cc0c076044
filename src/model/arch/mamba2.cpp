// Mamba2ForCausalLM (e.g. Mamba-Codestral-7B): the SSD mixer with heads and grouped B/C, one
// causal conv over x|B|C, a gated RMSNorm before out_proj; RMSNorm blocks, fp32 residual.

#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "../architectures.h"

namespace effarch::model::arch {
namespace {

void parse_mamba2(const ConfigReader& r, ModelConfig& c) {
  c.family = Family::Mamba;
  c.norm = NormKind::RMSNorm;
  c.norm_eps = r.positive_number_or("layer_norm_epsilon", 1e-5);
  c.tie_word_embeddings = r.boolean_or("tie_word_embeddings", false);
  c.residual_in_fp32 = r.boolean_or("residual_in_fp32", true);
  // rms_norm is not read by transformers 5.23 (its blocks are always RMSNorm): ignored here too.
  refuse_prenorm_rescale(r);
  MambaConfig m;
  m.version = 2;
  m.d_state = r.positive_or("state_size", 128);  // Mamba2Config's defaults, here and below
  m.d_conv = parse_conv_width(r, "conv_kernel", 4);
  m.num_heads = r.positive_or("num_heads", 128);
  m.head_dim = r.positive_or("head_dim", 64);
  m.n_groups = r.positive_or("n_groups", 8);
  m.chunk_size = r.positive_or("chunk_size", 256);
  const int64_t expand = r.positive_or("expand", 2);
  m.d_inner = expand * c.hidden_size;
  if (m.num_heads * m.head_dim != m.d_inner) {
    r.fail("num_heads", fmt::format("num_heads x head_dim = {} x {} must equal expand x hidden_size = {}", m.num_heads,
                                    m.head_dim, m.d_inner));
  }
  if (m.num_heads % m.n_groups != 0) {
    r.fail("n_groups", fmt::format("{} groups do not divide {} heads", m.n_groups, m.num_heads));
  }
  m.conv_bias = r.boolean_or("use_conv_bias", true);
  m.proj_bias = r.boolean_or("use_bias", false);
  m.activation = parse_activation(r, "hidden_act", "silu");
  m.gated_norm_eps = c.norm_eps;
  if (r.has("time_step_limit")) {
    const auto& lim = r.doc().at("time_step_limit");
    if (!lim.is_array() || lim.size() != 2) r.fail("time_step_limit", "must be a pair [min, max]");
    auto bound = [&](nlohmann::json v) {
      // transformers 5 writes non-finite floats as {"__float__": "Infinity"}.
      if (v.is_object() && v.size() == 1 && v.contains("__float__")) v = v.at("__float__");
      if (v.is_number()) return v.get<double>();
      if (v.is_string() && (v == "inf" || v == "Infinity")) return std::numeric_limits<double>::infinity();
      if (v.is_string() && v == "NaN") r.fail("time_step_limit", "bounds must not be NaN");
      r.fail("time_step_limit", fmt::format("bounds must be numbers, got {}", v.dump()));
    };
    m.time_step_min = bound(lim[0]);
    m.time_step_max = bound(lim[1]);
    if (!(m.time_step_min >= 0) || !(m.time_step_max > m.time_step_min)) {
      r.fail("time_step_limit", "must satisfy 0 <= min < max");
    }
    m.time_step_clamped = !(m.time_step_min == 0.0 && std::isinf(m.time_step_max));
  }
  c.mamba = m;
  set_layers(c, [](int64_t) { return LayerSpec{MixerKind::Mamba2, FfnKind::None}; });
}

std::vector<TensorSpec> mamba2_tensors(const ModelConfig& c) {
  const auto& m = *c.mamba;
  TensorTable t(c);
  t.embedding("backbone.embeddings.weight", {"backbone.embedding.weight"});
  for (int i = 0; i < c.num_layers; ++i) {
    const std::string p = layer_prefix("backbone.layers.", i) + "mixer.";
    t.norm(layer_prefix("backbone.layers.", i) + "norm.", "mixer_norm.", c.hidden_size, i, false);
    // in_proj rows: z (d_inner) | x B C (conv_dim) | dt (num_heads)
    t.linear(p + "in_proj.", "mamba.in_proj.", m.d_inner + m.conv_dim() + m.num_heads, c.hidden_size, m.proj_bias, i);
    t.add(p + "conv1d.weight", "mamba.conv.weight", {m.conv_dim(), 1, m.d_conv}, Init::ConvWeight, i);
    if (m.conv_bias) t.add(p + "conv1d.bias", "mamba.conv.bias", {m.conv_dim()}, Init::Zeros, i);
    t.add(p + "dt_bias", "mamba.dt_bias", {m.num_heads}, Init::DtBias, i);
    t.add(p + "A_log", "mamba.A_log", {m.num_heads}, Init::Mamba2ALog, i);
    t.add(p + "D", "mamba.D", {m.num_heads}, Init::Ones, i);
    t.add(p + "norm.weight", "mamba.norm.weight", {m.d_inner}, Init::Ones, i);
    t.linear(p + "out_proj.", "mamba.out_proj.", c.hidden_size, m.d_inner, m.proj_bias, i, Init::NormalOut);
  }
  t.norm("backbone.norm_f.", "final_norm.", c.hidden_size, -1, false);
  t.lm_head();
  return t.take();
}

}  // namespace

Architecture mamba2() { return {"Mamba2ForCausalLM", parse_mamba2, mamba2_tensors}; }

}  // namespace effarch::model::arch
