#pragma once
// The fused RoPE + KV-cache write for a prefill's tokens (rope_cache.h, rope_cache_rows): a warp
// per row, one head of one token of q, k or v, rows taken in the fused projection's order (a
// token's heads side by side), over a grid that strides through them. A q or k row goes through
// the warp's slice of shared memory (a rotated element needs its pair) and out rotated, into q_out
// or the k cache row of its position; a v row is copied into the v cache. The arithmetic is the
// one-token kernel's (rope_cache_math.h), so it is bitwise ops::apply_rope on q and k and the
// copies into the caches, which it replaces: on Phi-2's 4096-token prefill on an H100 those ATen
// ops (slices, concatenations, products, sums and copies) took about 10 of its 58 ms.

#include "common/convert.cuh"
#include "common/launch.h"
#include "rope_cache/rope_cache.h"

namespace effarch::kernels {

namespace rope_rows {
inline constexpr int kWarps = 8;  // rows a block holds at a time
inline constexpr int kThreads = kWarps * 32;
inline constexpr int kMaxHeadDim = 1024;       // 32 KiB of shared memory a block
inline constexpr int64_t kMaxBlocks = 16384;  // beyond it the grid strides
}  // namespace rope_rows

template <typename T>
__global__ void __launch_bounds__(rope_rows::kThreads) rope_cache_rows_kernel(const RopeCacheParams p) {
  EFFARCH_DYNAMIC_SHARED(16, float, rope_rows_shared);
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  float* head = rope_rows_shared + warp * p.head_dim;
  const int heads = p.q_heads + 2 * p.kv_heads;
  const int64_t rows = static_cast<int64_t>(p.batch) * p.tokens * heads;
  const auto round = [](float x) { return to_float(from_float<T>(x)); };
  // A row is one warp's: every branch below is the whole warp's.
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * rope_rows::kWarps + warp; row < rows;
       row += static_cast<int64_t>(gridDim.x) * rope_rows::kWarps) {
    const int h = static_cast<int>(row % heads);
    const int64_t token_row = row / heads;
    const int64_t t = token_row % p.tokens;
    const int64_t b = token_row / p.tokens;
    const int64_t position = p.first_position + t;
    const bool is_q = h < p.q_heads;
    const bool is_k = !is_q && h < p.q_heads + p.kv_heads;
    const int64_t kv = is_q ? 0 : (is_k ? h - p.q_heads : h - p.q_heads - p.kv_heads);
    if (!is_q && !is_k) {  // v: its cache row, as it is
      const T* src = static_cast<const T*>(p.v) + b * p.v_batch_stride + kv * p.v_head_stride + t * p.v_token_stride;
      T* dst = static_cast<T*>(p.v_cache) + b * p.v_cache_batch_stride + kv * p.v_cache_head_stride +
               position * p.v_cache_key_stride;
      for (int d = lane; d < p.head_dim; d += 32) dst[d] = src[d];
      continue;
    }
    const T* src = is_q ? static_cast<const T*>(p.q) + b * p.q_batch_stride + h * p.q_head_stride + t * p.q_token_stride
                        : static_cast<const T*>(p.k) + b * p.k_batch_stride + kv * p.k_head_stride + t * p.k_token_stride;
    T* dst = is_q ? static_cast<T*>(p.q_out) + b * p.q_out_batch_stride + h * p.q_out_head_stride +
                        t * p.q_out_token_stride
                  : static_cast<T*>(p.k_cache) + b * p.k_cache_batch_stride + kv * p.k_cache_head_stride +
                        position * p.k_cache_key_stride;
    for (int d = lane; d < p.head_dim; d += 32) head[d] = to_float(src[d]);
    __syncwarp();
    for (int d = lane; d < p.head_dim; d += 32) {
      const bool rotate = d < p.rotary_dim;
      const float c = rotate ? p.cos[position * p.table_row_stride + d] : 1.0f;
      const float s = rotate ? p.sin[position * p.table_row_stride + d] : 0.0f;
      dst[d] = from_float<T>(rope_write::rotate_element(head, d, p.rotary_dim, c, s, round));
    }
    __syncwarp();  // every lane has read the row before the warp's next one overwrites it
  }
}

template <typename T>
LaunchStatus rope_cache_rows_cuda(const RopeCacheParams& p, cudaStream_t stream) {
  if (p.batch == 0 || p.head_dim == 0 || p.tokens == 0) return {};
  if (p.head_dim > rope_rows::kMaxHeadDim || p.rotary_dim < 0 || p.rotary_dim > p.head_dim || p.rotary_dim % 2 != 0) {
    return {cudaErrorInvalidValue, "rope_cache_rows: head_dim above 1024, or rotary_dim odd or above head_dim"};
  }
  if (p.batch < 0 || p.tokens < 0 || p.first_position < 0 || p.first_position + p.tokens > p.max_keys) {
    return {cudaErrorInvalidValue, "rope_cache_rows: every token's position must lie inside the cache"};
  }
  if (p.rotary_dim > 0 && (p.cos == nullptr || p.sin == nullptr)) {
    return {cudaErrorInvalidValue, "rope_cache_rows: rotating needs the cos/sin tables"};
  }
  const int64_t rows = static_cast<int64_t>(p.batch) * p.tokens * (p.q_heads + 2 * p.kv_heads);
  const int64_t blocks = (rows + rope_rows::kWarps - 1) / rope_rows::kWarps;
  const size_t shared = static_cast<size_t>(rope_rows::kWarps) * static_cast<size_t>(p.head_dim) * sizeof(float);
  return launch_plain(rope_cache_rows_kernel<T>,
                      dim3(static_cast<unsigned>(blocks < rope_rows::kMaxBlocks ? blocks : rope_rows::kMaxBlocks)),
                      dim3(rope_rows::kThreads), shared, stream, "rope_cache_rows_kernel", p);
}

}  // namespace effarch::kernels
