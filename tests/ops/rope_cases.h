#pragma once
// The RoPE + KV-cache write tests' shapes, shared by the op tests (rope_cache_test.cpp, the CPU
// emulation and the GPU) and the CPU executor's binding tests (tests/sim/attention_sim_test.cpp),
// so both hold the kernels to the reference on the same cases.

#include <cstdint>

#include "effarch/ops/rope.h"

namespace effarch::test {

struct RopeShape {
  int64_t batch, q_heads, kv_heads, head_dim, rotary_dim, max_len, position;
  const char* type;  // RoPE type
};

// The shape's RoPE: llama3's scaling with factor 8 over an original context of 64, so that all
// three frequency bands occur.
inline ops::RopeParams rope_params(const RopeShape& s) {
  ops::RopeParams r;
  r.rotary_dim = s.rotary_dim;
  r.type = s.type;
  if (r.type == "llama3") {
    r.factor = 8.0;
    r.original_max_position = 64;
  }
  return r;
}

inline constexpr RopeShape kRopeShapes[] = {
    {2, 4, 2, 32, 32, 20, 7, "default"},      // tiny-llama: full rotary, GQA
    {1, 4, 4, 80, 32, 40, 39, "default"},     // Phi-2's head: 32 of 80 rotate
    {2, 8, 2, 128, 128, 300, 257, "llama3"},  // Llama-3's scaling, past the original context
    {3, 2, 1, 16, 8, 5, 0, "default"},
};

}  // namespace effarch::test
