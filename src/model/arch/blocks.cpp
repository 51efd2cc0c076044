// Shared pieces of the architecture tables: attention and RoPE keys, dt rank, and builders for
// the tensors every family reuses (norms, linears, attention, gated MLPs, the Mamba-1 mixer).

#include <array>
#include <cmath>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "../architectures.h"

namespace effarch::model::arch {

std::string layer_prefix(const std::string& stem, int layer) { return fmt::format("{}{}.", stem, layer); }

AttentionConfig parse_attention(const ConfigReader& r, int64_t hidden, const AttentionKeys& keys) {
  AttentionConfig a;
  a.num_heads = r.positive("num_attention_heads");
  // A key written as null counts as absent: the config classes then use the head count.
  a.num_kv_heads = r.positive_or("num_key_value_heads", r.doc().contains("num_key_value_heads")
                                                            ? a.num_heads
                                                            : keys.default_kv_heads.value_or(a.num_heads));
  if (r.has("head_dim")) {
    a.head_dim = r.positive("head_dim");
  } else {
    if (hidden % a.num_heads != 0) {
      r.fail("num_attention_heads", fmt::format("{} heads do not divide hidden_size {}", a.num_heads, hidden));
    }
    a.head_dim = hidden / a.num_heads;
  }
  if (a.num_heads % a.num_kv_heads != 0) {
    r.fail("num_key_value_heads", fmt::format("{} kv heads do not divide {} attention heads", a.num_kv_heads, a.num_heads));
  }
  if (keys.attention_bias) {
    a.qkv_bias = r.boolean_or("attention_bias", false);
    a.out_bias = a.qkv_bias;
  }
  if (keys.sliding_window) {
    // Absent: the config class's default; null: no window (full causal attention).
    if (r.has("sliding_window")) {
      a.sliding_window = r.positive("sliding_window");
    } else if (!r.doc().contains("sliding_window")) {
      a.sliding_window = keys.default_sliding_window;
    }
  }
  if (!keys.rope) return a;

  RopeConfig rope;
  // transformers 5 may nest rope keys in "rope_parameters"; 4.x keeps rope_theta and rope_scaling.
  // As 5.23's convert_rope_params_to_dict: a non-empty rope_scaling replaces rope_parameters.
  const nlohmann::json empty = nlohmann::json::object();
  const bool scaling_dict = r.has("rope_scaling") && r.doc().at("rope_scaling").is_object() &&
                            !r.doc().at("rope_scaling").empty();
  const std::string params_key = scaling_dict ? "rope_scaling" : "rope_parameters";
  const nlohmann::json& params = r.has(params_key) ? r.doc().at(params_key) : empty;
  if (!params.is_object()) r.fail(params_key, "must be an object");
  ConfigReader p(params, r.source() + " (" + params_key + ")");
  // As transformers' standardize_rope_params: a key inside rope_parameters wins over the top level's.
  rope.theta = p.has("rope_theta") ? p.positive_number_or("rope_theta", keys.default_rope_theta)
                                   : r.positive_number_or("rope_theta", keys.default_rope_theta);
  const double partial = p.has("partial_rotary_factor")
                             ? p.number("partial_rotary_factor")
                             : r.number_or("partial_rotary_factor", keys.default_partial_rotary);
  if (!(partial > 0 && partial <= 1)) r.fail("partial_rotary_factor", fmt::format("must be in (0, 1], got {}", partial));
  if (partial != 1.0 && !keys.partial_rotary) {
    r.fail("partial_rotary_factor",
           fmt::format("{} is not supported for this architecture: transformers 5.23 rotates the whole head here whatever "
                       "the key says (and fails with a rope_type other than default), so no reference computes it; "
                       "of the architectures effarch runs, only Phi rotates part of the head",
                       partial));
  }
  rope.rotary_dim = static_cast<int64_t>(static_cast<double>(a.head_dim) * partial);
  if (rope.rotary_dim <= 0 || rope.rotary_dim % 2 != 0) {
    // RoPE turns pairs of dims. With the whole head rotated the head size is at fault, named as the
    // config gives it; partial_rotary_factor only when a fraction of the head makes the count odd.
    if (partial == 1.0) {
      if (r.has("head_dim")) {
        r.fail("head_dim", fmt::format("{} is odd: RoPE rotates pairs of dims, so the head size must be even",
                                       a.head_dim));
      }
      r.fail("num_attention_heads",
             fmt::format("head_dim = hidden_size / num_attention_heads = {} / {} = {} is odd: RoPE rotates pairs of "
                         "dims, so the head size must be even",
                         hidden, a.num_heads, a.head_dim));
    }
    r.fail("partial_rotary_factor", fmt::format("{} of head_dim {} gives {} rotary dims: must be a positive even number",
                                                partial, a.head_dim, rope.rotary_dim));
  }
  const int64_t max_position = r.positive_or("max_position_embeddings", keys.default_max_position);
  const nlohmann::json* scaling = nullptr;
  std::string scaling_key = "rope_scaling";
  if (r.has("rope_scaling")) {
    scaling = &r.doc().at("rope_scaling");
  } else if (!params.empty() && (params.contains("rope_type") || params.contains("type"))) {
    scaling = &params;
    scaling_key = "rope_parameters";
  }
  if (scaling != nullptr) {
    if (!scaling->is_object()) r.fail(scaling_key, "must be an object or null");
    ConfigReader s(*scaling, r.source() + " (" + scaling_key + ")");
    const std::string type = s.has("rope_type") ? s.string("rope_type") : s.string_or("type", "default");
    // transformers 5.23 (standardize_rope_params): llama3 and yarn take original_max_position_embeddings
    // from the top level when it is there, else from the scaling dict, else max_position_embeddings.
    auto original_max = [&] {
      if (r.has("original_max_position_embeddings")) return r.positive("original_max_position_embeddings");
      return s.positive_or("original_max_position_embeddings", max_position);
    };
    if (type != "default") rope.type = type;
    if (type == "llama3") {
      rope.factor = s.positive_number_or("factor", 8.0);
      rope.low_freq_factor = s.positive_number_or("low_freq_factor", 1.0);
      rope.high_freq_factor = s.positive_number_or("high_freq_factor", 4.0);
      rope.original_max_position = original_max();
      if (rope.high_freq_factor <= rope.low_freq_factor) {
        s.fail("high_freq_factor", "must be greater than low_freq_factor");
      }
    } else if (type == "linear") {
      rope.factor = s.number("factor");
      if (!(rope.factor > 0)) s.fail("factor", fmt::format("must be positive, got {}", rope.factor));
    } else if (type == "dynamic") {
      rope.factor = s.number("factor");
      if (!(rope.factor > 0)) s.fail("factor", fmt::format("must be positive, got {}", rope.factor));
      rope.max_position = max_position;
    } else if (type == "yarn") {
      rope.original_max_position = original_max();
      // A null factor: max_position_embeddings / original_max_position_embeddings.
      rope.factor = s.has("factor") ? s.number("factor")
                                    : static_cast<double>(max_position) /
                                          static_cast<double>(rope.original_max_position);
      if (!(rope.factor > 0)) s.fail("factor", fmt::format("must be positive, got {}", rope.factor));
      if (s.has("attention_factor")) rope.attention_factor = s.number("attention_factor");
      if (s.has("mscale")) rope.mscale = s.number("mscale");
      if (s.has("mscale_all_dim")) rope.mscale_all_dim = s.number("mscale_all_dim");
      // transformers: `beta_fast or 32`, so 0 also means the default.
      rope.beta_fast = s.number_or("beta_fast", 32.0);
      if (rope.beta_fast == 0) rope.beta_fast = 32.0;
      rope.beta_slow = s.number_or("beta_slow", 1.0);
      if (rope.beta_slow == 0) rope.beta_slow = 1.0;
      rope.truncate = s.boolean_or("truncate", true);
    } else if (type != "default") {
      r.fail(scaling_key, fmt::format("rope type '{}' is not supported (supported: default, linear, dynamic, yarn, "
                                      "llama3)", type));
    }
  }
  a.rope = rope;
  return a;
}

int64_t parse_dt_rank(const ConfigReader& r, const std::string& key, int64_t hidden) {
  if (!r.has(key)) return (hidden + 15) / 16;
  const auto& v = r.doc().at(key);
  if (v.is_string()) {
    if (v.get<std::string>() != "auto") r.fail(key, fmt::format("must be \"auto\" or a positive integer, got {}", v.dump()));
    return (hidden + 15) / 16;
  }
  return r.positive(key);
}

int64_t parse_conv_width(const ConfigReader& r, const std::string& key, int64_t fallback) {
  const int64_t w = r.positive_or(key, fallback);
  if (w < 2 || w > 4) r.fail(key, fmt::format("conv width {} is not supported (2, 3 or 4)", w));
  return w;
}

Activation parse_activation(const ConfigReader& r, const std::string& key, const std::string& fallback) {
  const std::string act = r.string_or(key, fallback);
  if (const auto a = ops::activation_from_name(act)) return *a;
  r.fail(key, fmt::format("activation '{}' is not supported (supported: {})", act,
                          fmt::join(ops::activation_names(), ", ")));
}

void refuse_prenorm_rescale(const ConfigReader& r) {
  if (r.boolean_or("rescale_prenorm_residual", false)) {
    r.fail("rescale_prenorm_residual",
           "true is not supported: transformers 5.23 divides a loaded checkpoint's out_proj weights by "
           "sqrt(num_hidden_layers) (its initialisation runs on loaded weights too) and mamba_ssm does not, so the "
           "two references disagree; the released checkpoints set it false");
  }
}

void parse_llama_style(const ConfigReader& r, ModelConfig& c, Family family, double default_eps,
                       const AttentionKeys& keys) {
  c.family = family;
  c.norm = NormKind::RMSNorm;
  c.norm_eps = r.positive_number_or("rms_norm_eps", default_eps);
  c.tie_word_embeddings = r.boolean_or("tie_word_embeddings", false);
  c.max_position_embeddings = r.positive_or("max_position_embeddings", keys.default_max_position);
  c.attention = parse_attention(r, c.hidden_size, keys);
}

void set_layers(ModelConfig& c, const std::function<LayerSpec(int64_t)>& kind_of_layer) {
  c.layers.clear();
  for (int64_t i = 0; i < c.num_layers; ++i) c.layers.push_back(kind_of_layer(i));
}

TensorSpec& TensorTable::add(std::string name, std::string role, std::vector<int64_t> shape, Init init, int layer,
                             int expert) {
  TensorSpec s;
  s.name = std::move(name);
  s.role = std::move(role);
  s.shape = std::move(shape);
  s.init = init;
  s.layer = layer;
  s.expert = expert;
  specs_.push_back(std::move(s));
  return specs_.back();
}

void TensorTable::norm(const std::string& prefix, const std::string& role, int64_t dim, int layer, bool bias) {
  add(prefix + "weight", role + "weight", {dim}, Init::Ones, layer);
  if (bias) add(prefix + "bias", role + "bias", {dim}, Init::Zeros, layer);
}

void TensorTable::linear(const std::string& prefix, const std::string& role, int64_t out, int64_t in, bool bias,
                         int layer, Init init, int expert) {
  add(prefix + "weight", role + "weight", {out, in}, init, layer, expert).linear = true;
  if (bias) add(prefix + "bias", role + "bias", {out}, Init::Zeros, layer, expert);
}

void TensorTable::router(const std::string& prefix, int layer) {
  // A linear layer too, but routing decisions are kept in the model dtype whatever the weight format.
  add(prefix + "weight", "moe.router.weight", {c_.moe->num_experts, c_.hidden_size}, Init::Normal, layer);
}

void TensorTable::attention(const std::string& prefix, int layer, const std::string& out_name) {
  const auto& a = *c_.attention;
  const int64_t h = c_.hidden_size;
  linear(prefix + "q_proj.", "attn.q.", a.num_heads * a.head_dim, h, a.qkv_bias, layer);
  linear(prefix + "k_proj.", "attn.k.", a.num_kv_heads * a.head_dim, h, a.qkv_bias, layer);
  linear(prefix + "v_proj.", "attn.v.", a.num_kv_heads * a.head_dim, h, a.qkv_bias, layer);
  linear(prefix + out_name + ".", "attn.o.", h, a.num_heads * a.head_dim, a.out_bias, layer, Init::NormalOut);
}

void TensorTable::gated_mlp(const std::string& prefix, const std::string& role, int64_t intermediate, int layer,
                            int expert, const std::array<std::string, 3>& names) {
  const int64_t h = c_.hidden_size;
  const bool bias = c_.mlp && c_.mlp->bias && expert < 0;
  linear(prefix + names[0] + ".", role + "gate.", intermediate, h, bias, layer, Init::Normal, expert);
  linear(prefix + names[1] + ".", role + "up.", intermediate, h, bias, layer, Init::Normal, expert);
  linear(prefix + names[2] + ".", role + "down.", h, intermediate, bias, layer, Init::NormalOut, expert);
}

void TensorTable::mamba1_mixer(const std::string& prefix, int layer) {
  const auto& m = *c_.mamba;
  const int64_t h = c_.hidden_size;
  linear(prefix + "in_proj.", "mamba.in_proj.", 2 * m.d_inner, h, m.proj_bias, layer);
  add(prefix + "conv1d.weight", "mamba.conv.weight", {m.d_inner, 1, m.d_conv}, Init::ConvWeight, layer);
  if (m.conv_bias) add(prefix + "conv1d.bias", "mamba.conv.bias", {m.d_inner}, Init::Zeros, layer);
  linear(prefix + "x_proj.", "mamba.x_proj.", m.dt_rank + 2 * m.d_state, m.d_inner, false, layer);
  // dt_proj's bias is added in fp32 by the scan (delta_bias), not by the linear layer.
  linear(prefix + "dt_proj.", "mamba.dt_proj.", m.d_inner, m.dt_rank, false, layer, Init::DtProjWeight);
  add(prefix + "dt_proj.bias", "mamba.dt_proj.bias", {m.d_inner}, Init::DtBias, layer);
  add(prefix + "A_log", "mamba.A_log", {m.d_inner, m.d_state}, Init::MambaALog, layer);
  add(prefix + "D", "mamba.D", {m.d_inner}, Init::Ones, layer);
  linear(prefix + "out_proj.", "mamba.out_proj.", h, m.d_inner, m.proj_bias, layer, Init::NormalOut);
  if (m.dt_bc_norm == MambaConfig::DtBCNorm::Learned) {
    add(prefix + "dt_layernorm.weight", "mamba.dt_norm.weight", {m.dt_rank}, Init::Ones, layer);
    add(prefix + "b_layernorm.weight", "mamba.b_norm.weight", {m.d_state}, Init::Ones, layer);
    add(prefix + "c_layernorm.weight", "mamba.c_norm.weight", {m.d_state}, Init::Ones, layer);
  }
}

void TensorTable::llama_attention_half(const std::string& p, int layer) {
  norm(p + "input_layernorm.", "mixer_norm.", c_.hidden_size, layer, false);
  attention(p + "self_attn.", layer);
  norm(p + "post_attention_layernorm.", "ffn_norm.", c_.hidden_size, layer, false);
}

void TensorTable::embedding(const std::string& name, std::vector<std::string> aliases) {
  add(name, "embed.weight", {c_.vocab_size, c_.hidden_size}, Init::Normal).aliases = std::move(aliases);
}

void TensorTable::lm_head() {
  // A tied head reuses the embedding; checkpoints may still carry a copy, which is accepted.
  TensorSpec& head = add("lm_head.weight", "lm_head.weight", {c_.vocab_size, c_.hidden_size}, Init::Normal);
  head.optional = c_.tie_word_embeddings;
  head.linear = true;
  if (c_.lm_head_bias) add("lm_head.bias", "lm_head.bias", {c_.vocab_size}, Init::Zeros);
}

}  // namespace effarch::model::arch
