#pragma once
// The architecture table's figures, computed from a config: exact parameter counts (from the
// expected-tensor table), weight bytes, KV-cache bytes per token and recurrent-state bytes.

#include <cstdint>
#include <optional>
#include <string>

#include <c10/core/ScalarType.h>

#include "effarch/model/config.h"

namespace effarch::model {

struct ModelStats {
  int64_t total_params = 0;   // every stored parameter; a tied head counted once
  int64_t active_params = 0;  // used per token: all but the routed experts not in the top-k
  int64_t attention_layers = 0, mamba_layers = 0, moe_layers = 0, dense_layers = 0;
  uint64_t weight_bytes_bf16 = 0;
  uint64_t weight_bytes_checkpoint = 0;  // at the config's torch_dtype
  // --weights int8: every linear weight int8 with an fp32 scale per output channel, the rest
  // (embeddings, norms, routers, biases, SSM parameters) in bf16.
  uint64_t weight_bytes_int8 = 0;
  // K and V of every attention layer for one token of one sequence, at `cache_dtype`.
  uint64_t kv_bytes_per_token = 0;
  // conv_state (at cache_dtype) + ssm_state (fp32) of every Mamba layer, per sequence.
  uint64_t state_bytes_per_sequence = 0;
  std::optional<int64_t> max_context;  // none: no positional limit
  std::string layout;                  // e.g. "attention 4 @ 4,12,20,28 + mamba 28; moe 16 + dense 16"
};

ModelStats compute_stats(const ModelConfig& config, at::ScalarType cache_dtype = at::kBFloat16);

// Per-layer codes: A attention, M Mamba, S Mamba-2 (SSD); then e MoE, d dense, - none.
std::string layer_codes(const ModelConfig& config);

}  // namespace effarch::model
