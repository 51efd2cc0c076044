#pragma once
// The fused RoPE + KV-cache write kernel (rope_cache.h): grid (q_heads + 2 kv_heads, batch), one
// thread per element of the head. A block loads its head into shared memory (a rotated element
// needs its pair), then writes q_out, or the cache row of k or v at the device-held position.

#include "common/convert.cuh"
#include "common/grid_dependency.h"
#include "common/launch.h"
#include "rope_cache/rope_cache.h"

namespace effarch::kernels {

namespace rope_write {
inline constexpr int kMaxHeadDim = 1024;
inline constexpr int kMaxGridY = 65535;
}  // namespace rope_write

template <typename T>
__global__ void rope_cache_kernel(const RopeCacheParams p) {
  __shared__ float head[rope_write::kMaxHeadDim];
  allow_dependent_launch();
  grid_dependency_wait();  // q, k, v and the position come from the kernels before
  const int h = blockIdx.x;
  const int b = blockIdx.y;
  const int d = threadIdx.x;
  const int64_t position = *p.position;
  const bool is_q = h < p.q_heads;
  const bool is_k = !is_q && h < p.q_heads + p.kv_heads;
  const int kv = is_q ? 0 : (is_k ? h - p.q_heads : h - p.q_heads - p.kv_heads);
  const T* src = is_q   ? static_cast<const T*>(p.q) + b * p.q_batch_stride + static_cast<int64_t>(h) * p.q_head_stride
                 : is_k ? static_cast<const T*>(p.k) + b * p.k_batch_stride + static_cast<int64_t>(kv) * p.k_head_stride
                        : static_cast<const T*>(p.v) + b * p.v_batch_stride + static_cast<int64_t>(kv) * p.v_head_stride;
  if (d < p.head_dim) head[d] = to_float(src[d]);
  __syncthreads();
  if (d >= p.head_dim) return;
  const auto round = [](float x) { return to_float(from_float<T>(x)); };
  if (is_q || is_k) {
    const bool rotate = p.rotary_dim > 0 && d < p.rotary_dim && position >= 0 && position < p.max_keys;
    const float c = rotate ? p.cos[position * p.table_row_stride + d] : 1.0f;
    const float s = rotate ? p.sin[position * p.table_row_stride + d] : 0.0f;
    const float y = rope_write::rotate_element(head, d, rotate ? p.rotary_dim : 0, c, s, round);
    if (is_q) {
      static_cast<T*>(p.q_out)[b * p.q_out_batch_stride + static_cast<int64_t>(h) * p.q_out_head_stride + d] =
          from_float<T>(y);
      return;
    }
    if (position < 0 || position >= p.max_keys) return;
    static_cast<T*>(p.k_cache)[b * p.k_cache_batch_stride + static_cast<int64_t>(kv) * p.k_cache_head_stride +
                               position * p.k_cache_key_stride + d] = from_float<T>(y);
    return;
  }
  if (position < 0 || position >= p.max_keys) return;
  static_cast<T*>(p.v_cache)[b * p.v_cache_batch_stride + static_cast<int64_t>(kv) * p.v_cache_head_stride +
                             position * p.v_cache_key_stride + d] = src[d];
}

template <typename T>
LaunchStatus rope_cache_cuda(const RopeCacheParams& p, cudaStream_t stream) {
  if (p.batch == 0 || p.head_dim == 0) return {};
  if (p.head_dim > rope_write::kMaxHeadDim || p.rotary_dim < 0 || p.rotary_dim > p.head_dim || p.rotary_dim % 2 != 0) {
    return {cudaErrorInvalidValue, "rope_cache: head_dim above 1024, or rotary_dim odd or above head_dim"};
  }
  if (p.batch > rope_write::kMaxGridY) return {cudaErrorInvalidConfiguration, "rope_cache: batch above 65535"};
  if (p.position == nullptr || (p.rotary_dim > 0 && (p.cos == nullptr || p.sin == nullptr))) {
    return {cudaErrorInvalidValue, "rope_cache: position (and the cos/sin tables when rotating) are required"};
  }
  const int threads = (p.head_dim + 31) / 32 * 32;
  const dim3 grid(static_cast<unsigned>(p.q_heads + 2 * p.kv_heads), static_cast<unsigned>(p.batch));
  return launch_kernel(rope_cache_kernel<T>, grid, dim3(threads), 0, stream, "rope_cache_kernel", p);
}

}  // namespace effarch::kernels
