#pragma once
// Rotary position embedding as HF computes it: inv_freq in fp32 (llama3 scaling applied to it),
// cos/sin of position x inv_freq in fp32, cast to the activation dtype, half-split pairs
// (rotate_half), applied to the first rotary_dim dims of each head (Phi rotates 32 of 80).

#include <ATen/core/Tensor.h>

#include "effarch/model/config.h"

namespace effarch::ops {

struct RopeTables {
  at::Tensor cos;  // [max_len, rotary_dim] fp32
  at::Tensor sin;
  int64_t rotary_dim = 0;
};

at::Tensor rope_inv_freq(const model::RopeConfig& rope);  // [rotary_dim / 2] fp32 on the CPU
RopeTables make_rope_tables(const model::RopeConfig& rope, int64_t max_len, at::Device device);

// x: [B, H, T, D]; the T positions are start_pos .. start_pos + T - 1.
at::Tensor apply_rope(const at::Tensor& x, const RopeTables& tables, int64_t start_pos);
// x: [B, H, 1, D] at the position held by `position` ([1] int64 on x's device): no host value,
// so a CUDA graph can replay it at any position.
at::Tensor apply_rope_at(const at::Tensor& x, const RopeTables& tables, const at::Tensor& position);

}  // namespace effarch::ops
