#pragma once
// Typed model configuration parsed from a Hugging Face config.json. One struct serves every
// architecture: a model is a stack of layers whose mixer (attention, Mamba-1, Mamba-2) and
// feed-forward (dense MLP, MoE, none) come from the config, so a hybrid is no special case.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <c10/core/ScalarType.h>
#include <nlohmann/json.hpp>

#include "effarch/ops/activation.h"
#include "effarch/ops/rope.h"
#include "effarch/ops/router_kind.h"

namespace effarch::model {

enum class Family { Transformer, Mamba, MoE, Hybrid };
enum class MixerKind { Attention, Mamba1, Mamba2 };
enum class FfnKind { None, Dense, MoE };
enum class NormKind { RMSNorm, LayerNorm };
using Activation = ops::Activation;  // hidden_act, as transformers' ACT2FN computes it
// How router probabilities become expert weights: the MoE op's own enum.
using RouterKind = ops::RouterKind;

using RopeConfig = ops::RopeParams;  // rope_theta and rope_scaling / rope_parameters

struct AttentionConfig {
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  bool qkv_bias = false;
  bool out_bias = false;
  std::optional<RopeConfig> rope;  // absent: no positional encoding (Jamba)
  std::optional<int64_t> sliding_window;
};

struct MambaConfig {
  int version = 1;  // 1: selective scan (Mamba, Jamba); 2: SSD (Mamba-2)
  int64_t d_inner = 0;
  int64_t d_state = 0;
  int64_t d_conv = 0;
  int64_t dt_rank = 0;  // Mamba-1 only
  bool conv_bias = true;
  bool proj_bias = false;
  enum class DtBCNorm { None, Weightless, Learned } dt_bc_norm = DtBCNorm::None;  // Falcon-Mamba, Jamba
  double dt_bc_norm_eps = 1e-6;
  Activation activation = Activation::SiLU;  // hidden_act: applied to the conv output (the gate z is always SiLU)
  // Mamba-2
  int64_t num_heads = 0;
  int64_t head_dim = 0;
  int64_t n_groups = 1;
  int64_t chunk_size = 256;
  double time_step_min = 0.0;  // time_step_limit clamp of dt
  double time_step_max = 0.0;  // 0 with min 0 and an infinite upper bound means "no clamp"
  bool time_step_clamped = false;
  double gated_norm_eps = 1e-5;

  // Channels that go through the causal conv: x for Mamba-1, x|B|C for Mamba-2.
  int64_t conv_dim() const { return version == 1 ? d_inner : d_inner + 2 * n_groups * d_state; }
};

struct MlpConfig {
  int64_t intermediate = 0;
  Activation activation = Activation::SiLU;
  bool gated = true;  // SwiGLU-style gate/up/down; false: fc1/fc2 (Phi)
  bool bias = false;
};

struct MoeConfig {
  int64_t num_experts = 0;
  int64_t top_k = 0;
  int64_t expert_intermediate = 0;
  int64_t num_shared_experts = 0;   // DeepSeekMoE: one fused shared MLP of shared x expert width
  RouterKind router = RouterKind::SoftmaxFp32Renormalized;
};

struct LayerSpec {
  MixerKind mixer = MixerKind::Attention;
  FfnKind ffn = FfnKind::Dense;
};

struct ModelConfig {
  std::string architecture;  // the HF architectures string, e.g. "LlamaForCausalLM"
  std::string model_type;
  std::string source;        // where it was read from
  Family family = Family::Transformer;
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t num_layers = 0;
  std::optional<int64_t> max_position_embeddings;  // absent: no positional limit (pure SSMs)
  NormKind norm = NormKind::RMSNorm;
  double norm_eps = 1e-5;
  bool tie_word_embeddings = false;
  bool lm_head_bias = false;
  bool residual_in_fp32 = false;
  bool parallel_block = false;  // Phi: attention and MLP read the same normed input
  at::ScalarType torch_dtype = at::kFloat;
  double initializer_range = 0.02;
  std::optional<int64_t> bos_token_id;
  // Where generation stops: config.json's eos_token_id (a checkpoint's generation_config.json,
  // generation_config_eos, replaces it in `generate`), as transformers' generate stops. eos_given:
  // the model says (the key in config.json, null meaning none, or that file); else `generate`
  // falls back on the tokenizer's EOS.
  std::vector<int64_t> eos_token_ids;
  bool eos_given = false;

  std::optional<AttentionConfig> attention;
  std::optional<MambaConfig> mamba;
  std::optional<MlpConfig> mlp;  // the dense feed-forward (also DeepSeekMoE's first dense layers)
  std::optional<MoeConfig> moe;
  std::vector<LayerSpec> layers;

  nlohmann::json raw;  // the config.json as read

  int64_t count_layers(MixerKind kind) const;
  int64_t count_layers(FfnKind kind) const;
};

std::string to_string(Family family);
std::string to_string(MixerKind kind);
std::string to_string(FfnKind kind);

// Parses a config.json document. `source` names the file in errors. Throws ConfigError naming
// the key for an unknown architecture, a missing or ill-typed key or an impossible value.
ModelConfig parse_config(const nlohmann::json& doc, const std::string& source);
ModelConfig load_config(const std::filesystem::path& config_json);
// A checkpoint's generation_config.json's eos_token_id (an id, a list; absent or null: none),
// which replaces the config's, as transformers' generate reads the file alone where there is one.
// Throws FormatError for a file that is not JSON (transformers ignores such a file: `generate`
// warns and keeps the config's) and ConfigError naming the file for ids that are not integers.
std::vector<int64_t> generation_config_eos(const std::filesystem::path& generation_config_json);

}  // namespace effarch::model
