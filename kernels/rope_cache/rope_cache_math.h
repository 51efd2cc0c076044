#pragma once
// The math of the fused RoPE + KV-cache write (EFFARCH_HD: the kernel and the host emulation in
// tests/ops/rope_cache_test.cpp run it). It repeats the reference's roundings one by one
// (ops::apply_rope_at: cos and sin cast to the activation dtype, then x * cos and
// rotate_half(x) * sin each rounded, then their sum rounded), so the fused kernel is bitwise equal
// to the unfused ops in every dtype. `round` rounds a float to the element type and back.

#include <cstdint>

#include "../common/host_device.h"

namespace effarch::kernels::rope_write {

// mul_rn, add_rn: common/host_device.h.

// Element d of a head x rotated at one position: cos_d and sin_d from the fp32 tables, the pair
// element x[d +- rotary_dim / 2]. Elements at or past rotary_dim pass through unchanged.
template <typename Round>
EFFARCH_HD float rotate_element(const float* x, int d, int rotary_dim, float cos_d, float sin_d, Round round) {
  if (d >= rotary_dim) return x[d];
  const int half = rotary_dim / 2;
  const float rotated_half = d < half ? -x[d + half] : x[d - half];  // rotate_half: cat(-x2, x1)
  const float c = round(cos_d), s = round(sin_d);
  return round(add_rn(round(mul_rn(x[d], c)), round(mul_rn(rotated_half, s))));
}

}  // namespace effarch::kernels::rope_write
