#pragma once
// The inference cache, allocated once per run with fixed shapes and written in place: per layer
// whichever state its mixer needs (K/V for attention; conv and SSM state for Mamba layers).

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace effarch::model {

// The longest sequence (prompt and generated tokens) a run takes: 2^31 - 1 tokens (the kernels'
// sizes are ints). The options that set a length are refused past it by name (a larger one once
// overflowed into a negative length).
constexpr int64_t kMaxSequenceTokens = (int64_t{1} << 31) - 1;
// A UsageError naming `option` when `tokens` is past kMaxSequenceTokens (model.cpp).
void check_sequence_tokens(int64_t tokens, const std::string& option);

struct LayerCache {
  at::Tensor k, v;            // attention: [B, kv_heads, max_len, head_dim]
  at::Tensor conv_state;      // Mamba: [B, conv_dim, d_conv]
  at::Tensor ssm_state;       // Mamba-1: [B, d_inner, d_state]; Mamba-2: [B, heads, head_dim, d_state] (fp32)
  uint64_t bytes() const;
};

struct Cache {
  int64_t batch = 0;
  int64_t max_len = 0;
  int64_t length = 0;  // tokens written so far
  std::vector<LayerCache> layers;
  uint64_t bytes() const;
  bool allocated() const { return !layers.empty(); }
};

}  // namespace effarch::model
