#pragma once
// Rotary position embedding as HF computes it: inv_freq in fp32 (scaled per rope type), cos/sin
// of position x inv_freq in fp32 (times yarn's attention factor), cast to the activation dtype,
// half-split pairs (rotate_half), applied to the first rotary_dim dims of each head (Phi rotates
// 32 of 80).

#include <cstdint>
#include <optional>
#include <string>

#include <ATen/core/Tensor.h>

namespace effarch::ops {

// The RoPE parameters of a config (rope_theta, rope_scaling / rope_parameters), as transformers
// 5.23's modeling_rope_utils reads them. The model layer fills it; the ops layer knows no config.
struct RopeParams {
  double theta = 10000.0;
  int64_t rotary_dim = 0;        // dims of each head that rotate (Phi: a fraction of head_dim)
  std::string type = "default";  // default, linear, dynamic, yarn, llama3
  double factor = 1.0;           // linear, dynamic, yarn, llama3
  double low_freq_factor = 1.0;  // llama3
  double high_freq_factor = 4.0; // llama3
  int64_t original_max_position = 0;  // llama3, yarn
  int64_t max_position = 0;           // dynamic: max_position_embeddings, where scaling starts
  // yarn
  std::optional<double> attention_factor;  // absent: from factor, mscale and mscale_all_dim
  std::optional<double> mscale, mscale_all_dim;
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  bool truncate = true;
};

struct RopeTables {
  at::Tensor cos;  // [max_len, rotary_dim] fp32
  at::Tensor sin;
  int64_t rotary_dim = 0;
};

// [rotary_dim / 2] fp32 on the CPU: the frequencies of a forward over at most max_position
// tokens (for dynamic, the unscaled ones).
at::Tensor rope_inv_freq(const RopeParams& rope);
// Yarn's factor on cos and sin (1 for the other types).
double rope_attention_factor(const RopeParams& rope);
// Rows 0 .. max_len - 1. Dynamic NTK: rows below max_position use the plain frequencies, as
// transformers does for every sequence that fits the context; row p beyond it uses the
// frequencies transformers' decode step at position p recomputes (seq_len = p + 1).
RopeTables make_rope_tables(const RopeParams& rope, int64_t max_len, at::Device device);

// x: [B, H, T, D]; the T positions are start_pos .. start_pos + T - 1.
at::Tensor apply_rope(const at::Tensor& x, const RopeTables& tables, int64_t start_pos);
// x: [B, H, 1, D] at the position held by `position` ([1] int64 on x's device): no host value,
// so a CUDA graph can replay it at any position.
at::Tensor apply_rope_at(const at::Tensor& x, const RopeTables& tables, const at::Tensor& position);

}  // namespace effarch::ops
