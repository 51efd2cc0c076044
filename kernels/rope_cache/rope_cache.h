#pragma once
// The static decode step's RoPE and KV-cache write in one kernel: q and k rotated at the position
// held on the device (full or partial rotary, any RoPE type: the cos/sin tables carry the
// scaling), rotated k and v written into the cache row of that position, rotated q returned. It
// replaces ops::apply_rope_at twice (an index_select, casts, slices, a concatenation, three
// element-wise products and sums each) and two index_copy_ calls, bitwise equal to them
// (rope_cache_math.h). One block per (sequence, head of q, k or v), one thread per element.
//
// No torch types: src/ops/rope_cache_cuda.cpp fills the params from checked tensors.

#include <cstdint>

#include "common/element_type.h"
#include "rope_cache/rope_cache_math.h"

namespace effarch::kernels {

struct RopeCacheParams {
  int batch = 0;
  int q_heads = 0;
  int kv_heads = 0;
  int head_dim = 0;    // at most 1024
  int rotary_dim = 0;  // even, at most head_dim; 0: no rotation (a model without RoPE)
  int64_t max_keys = 0;
  ElementType type = ElementType::kFloat32;  // q, k, v, q_out and the caches

  // One token per sequence; strides in elements, the head dimension contiguous.
  const void* q = nullptr;  // [batch, q_heads, head_dim]
  int64_t q_batch_stride = 0, q_head_stride = 0;
  const void* k = nullptr;  // [batch, kv_heads, head_dim]
  int64_t k_batch_stride = 0, k_head_stride = 0;
  const void* v = nullptr;  // [batch, kv_heads, head_dim]
  int64_t v_batch_stride = 0, v_head_stride = 0;
  void* q_out = nullptr;    // [batch, q_heads, head_dim]
  int64_t q_out_batch_stride = 0, q_out_head_stride = 0;
  void* k_cache = nullptr;  // [batch, kv_heads, max_keys, head_dim]
  int64_t k_cache_batch_stride = 0, k_cache_head_stride = 0, k_cache_key_stride = 0;
  void* v_cache = nullptr;
  int64_t v_cache_batch_stride = 0, v_cache_head_stride = 0, v_cache_key_stride = 0;

  const float* cos = nullptr;  // [rows, rotary_dim] fp32 (RopeTables); row `position` is read
  const float* sin = nullptr;
  int64_t table_row_stride = 0;
  const int64_t* position = nullptr;  // [1] on the device; a position outside the cache writes nothing

  // The prefill's kernel (rope_cache_rows, rope_cache_rows.cuh) only: `tokens` tokens a sequence,
  // token t at position first_position + t (host-known: a prefill's start), every one inside the
  // cache and the tables (the op checks); the token strides of q, k, v and q_out, in elements.
  int64_t tokens = 1;
  int64_t first_position = 0;
  int64_t q_token_stride = 0, k_token_stride = 0, v_token_stride = 0, q_out_token_stride = 0;
};

LaunchStatus rope_cache_fp32(const RopeCacheParams& params, cudaStream_t stream);
LaunchStatus rope_cache_bf16(const RopeCacheParams& params, cudaStream_t stream);
LaunchStatus rope_cache_fp16(const RopeCacheParams& params, cudaStream_t stream);

inline LaunchStatus rope_cache(const RopeCacheParams& params, cudaStream_t stream) {
  return dispatch_element_type<RopeCacheParams>(params.type, {rope_cache_fp32, rope_cache_bf16, rope_cache_fp16},
                                                params, stream, "rope_cache: unknown element type");
}

// The same for a prefill's `tokens` tokens a sequence (rope_cache_rows.cuh): a warp per row (one
// head of one token), bitwise the same arithmetic. Replaces ops::apply_rope twice and two copies
// into the caches.
LaunchStatus rope_cache_rows_fp32(const RopeCacheParams& params, cudaStream_t stream);
LaunchStatus rope_cache_rows_bf16(const RopeCacheParams& params, cudaStream_t stream);
LaunchStatus rope_cache_rows_fp16(const RopeCacheParams& params, cudaStream_t stream);

inline LaunchStatus rope_cache_rows(const RopeCacheParams& params, cudaStream_t stream) {
  return dispatch_element_type<RopeCacheParams>(params.type,
                                                {rope_cache_rows_fp32, rope_cache_rows_bf16, rope_cache_rows_fp16},
                                                params, stream, "rope_cache_rows: unknown element type");
}

}  // namespace effarch::kernels
