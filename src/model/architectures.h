#pragma once
// The architecture registry's internals: each supported HF `architectures` string maps to a
// config parser and a table of expected tensors. One file per architecture under arch/, sharing
// the parsers and tensor builders declared here.

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "config_reader.h"
#include "effarch/model/config.h"
#include "effarch/model/tensor_spec.h"

namespace effarch::model {

struct Architecture {
  std::string name;  // HF architectures string
  // Fills the architecture-specific part of `config` (common keys are already read).
  std::function<void(const ConfigReader&, ModelConfig&)> parse;
  std::function<std::vector<TensorSpec>(const ModelConfig&)> tensors;
};

const std::vector<Architecture>& architectures();
const Architecture* find_architecture(const std::string& name);

namespace arch {
// One registration function per file in arch/.
Architecture llama();
Architecture mistral();
Architecture phi();
Architecture mamba();
Architecture falcon_mamba();
Architecture mamba2();
Architecture mixtral();
Architecture deepseek();
Architecture jamba();

// ---- shared config parsing (arch/blocks.cpp) ----
// Which attention keys an architecture's transformers class reads; the others it ignores, and so
// does effarch (a Mistral config's attention_bias changes nothing in transformers).
struct AttentionKeys {
  bool rope = true;            // rope_theta, rope_scaling / rope_parameters, partial_rotary_factor
  // partial_rotary_factor below 1 (Phi). transformers 5.23's Llama, Mistral and Mixtral classes
  // rotate the whole head whatever it says (a rope_type other than default fails), DeepSeekMoE's
  // remote code has no such key: there it is refused, having no reference to match.
  bool partial_rotary = false;
  // The config class's defaults when a key is absent from both rope_parameters and the top level:
  // transformers' default_theta (Mixtral's 1e6) and Phi's partial_rotary_factor (0.5).
  double default_rope_theta = 10000.0;
  double default_partial_rotary = 1.0;
  // max_position_embeddings when absent (the config class's: Llama's and Phi's 2048, Mistral's and
  // Mixtral's 4096 x 32); RoPE's dynamic and yarn scalings read it too.
  int64_t default_max_position = 2048;
  bool attention_bias = false; // q/k/v/o biases (Llama, DeepSeekMoE)
  bool sliding_window = false; // Mistral, Mixtral
  std::optional<int64_t> default_sliding_window;  // when the key is absent (Mistral: 4096)
  std::optional<int64_t> default_kv_heads;        // when absent (Mistral, Mixtral, Jamba: 8); else the heads
  // The keys of a model with q/k/v/o biases (Llama's attention_bias, DeepSeekMoE).
  static AttentionKeys with_bias() {
    AttentionKeys k;
    k.attention_bias = true;
    return k;
  }
};
// heads, kv heads, head_dim and what `keys` names.
AttentionConfig parse_attention(const ConfigReader& r, int64_t hidden, const AttentionKeys& keys);
// "auto" or an integer (Mamba's time_step_rank, Jamba's mamba_dt_rank): auto = ceil(hidden / 16).
int64_t parse_dt_rank(const ConfigReader& r, const std::string& key, int64_t hidden);
// The Mamba conv width (conv_kernel, Jamba's mamba_d_conv): the causal conv op runs 2, 3 and 4,
// anything else is refused here rather than at the first forward.
int64_t parse_conv_width(const ConfigReader& r, const std::string& key, int64_t fallback);
Activation parse_activation(const ConfigReader& r, const std::string& key, const std::string& fallback);
// rescale_prenorm_residual (Mamba, Falcon-Mamba, Mamba-2): refused when true. An initialisation
// scheme, but transformers 5.23's init also runs on a loaded checkpoint and divides its out_proj
// weights by sqrt(num_hidden_layers), where mamba_ssm loads them as they are: no one reference.
void refuse_prenorm_rescale(const ConfigReader& r);
// The keys every Llama-style decoder shares (Llama, Mistral, Mixtral, DeepSeekMoE): RMSNorm with
// rms_norm_eps, tie_word_embeddings (default false), max_position_embeddings, RoPE attention.
void parse_llama_style(const ConfigReader& r, ModelConfig& c, Family family, double default_eps,
                       const AttentionKeys& keys);
// Fills layers[] from per-layer kinds.
void set_layers(ModelConfig& c, const std::function<LayerSpec(int64_t)>& kind_of_layer);

// ---- shared tensor builders (arch/blocks.cpp); `prefix` ends with '.' ----
class TensorTable {
 public:
  explicit TensorTable(const ModelConfig& c) : c_(c) {}
  TensorSpec& add(std::string name, std::string role, std::vector<int64_t> shape, Init init, int layer = -1,
                  int expert = -1);
  // prefix + weight (+ bias); roles role + "weight" (+ "bias").
  void norm(const std::string& prefix, const std::string& role, int64_t dim, int layer, bool bias);
  void linear(const std::string& prefix, const std::string& role, int64_t out, int64_t in, bool bias, int layer,
              Init init = Init::Normal, int expert = -1);
  // An MoE router [num_experts, hidden], role "moe.router.weight" (not marked linear: see TensorSpec).
  void router(const std::string& prefix, int layer);
  // q_proj/k_proj/v_proj/o_proj (Phi calls its output projection "dense").
  void attention(const std::string& prefix, int layer, const std::string& out_name = "o_proj");
  // gate/up/down SwiGLU MLP with the given names, e.g. {"w1", "w3", "w2"} for Mixtral experts;
  // roles role + "gate." / "up." / "down.".
  void gated_mlp(const std::string& prefix, const std::string& role, int64_t intermediate, int layer, int expert = -1,
                 const std::array<std::string, 3>& names = {"gate_proj", "up_proj", "down_proj"});
  void mamba1_mixer(const std::string& prefix, int layer);
  // A Llama-style layer's input_layernorm, self_attn and post_attention_layernorm (prefix
  // "model.layers.{i}."); the feed-forward is the caller's.
  void llama_attention_half(const std::string& layer_prefix, int layer);
  // Embedding, and lm_head (optional when tied).
  void embedding(const std::string& name, std::vector<std::string> aliases = {});
  void lm_head();
  std::vector<TensorSpec> take() { return std::move(specs_); }

 private:
  const ModelConfig& c_;
  std::vector<TensorSpec> specs_;
};

std::string layer_prefix(const std::string& stem, int layer);  // e.g. ("model.layers.", 3) -> "model.layers.3."
}  // namespace arch

}  // namespace effarch::model
