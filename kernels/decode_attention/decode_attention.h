#pragma once
// Decode attention over a KV cache (flash-decoding), CUDA kernels.
//
// Per sequence b, KV head h: the num_queries newest tokens (usually one) attend the cache
//   out[b, h*G + g, t] = softmax_s(scale * q[b, h*G + g, t] . k[b, h, s]) v[b, h, s]
// over the keys s the query at position p_t = positions[b] - (num_queries - 1) + t sees: 0 .. p_t,
// and with a sliding window W only p_t - W + 1 .. p_t. G = q_heads / kv_heads query heads share a
// KV head (GQA): one block serves all rows (g, t) of a KV head, so K and V are read once for them.
// The key length is split over the grid (flash-decoding): each block computes a partial softmax
// state in fp32 over its keys; a second kernel combines the splits. positions is read on the
// device, so a CUDA graph captured once replays correctly as the cache fills: the grid is sized
// for the buffer's length and each block finds its keys from the filled length; keys past it are
// never read. fp32 accumulation for every element type.
//
// The math every thread runs is in decode_attention_math.h (shared with the host emulation in
// tests/ops/decode_attention_test.cpp). No torch types: src/ops/decode_attention_cuda.cpp fills
// the params from checked tensors.

#include <cstdint>

#include "common/element_type.h"
#include "decode_attention/decode_attention_math.h"

namespace effarch::kernels {

struct DecodeAttentionParams {
  int batch = 0;
  int q_heads = 0;
  int kv_heads = 0;      // divides q_heads
  int num_queries = 1;   // T newest tokens per sequence, causal among themselves
  int head_dim = 0;      // 16, 32, 40, 64, 80 or 128 (decode_attn::supported_head_dim)
  int64_t max_keys = 0;  // S: the cache buffer's length
  int64_t window = 0;    // sliding window in keys; 0: none
  float scale = 0.0f;    // softmax scale (1/sqrt(head_dim) usually)
  ElementType type = ElementType::kFloat32;  // q, k, v, out

  // Strides in elements; the head dimension is contiguous (stride 1) everywhere, and the K and V
  // rows start 16-byte aligned (the binding checks), so a cache view of any layout is read in place.
  const void* q = nullptr;  // [batch, q_heads, num_queries, head_dim]
  int64_t q_batch_stride = 0, q_head_stride = 0, q_query_stride = 0;
  const void* k = nullptr;  // [batch, kv_heads, max_keys, head_dim]
  int64_t k_batch_stride = 0, k_head_stride = 0, k_key_stride = 0;
  const void* v = nullptr;  // [batch, kv_heads, max_keys, head_dim]
  int64_t v_batch_stride = 0, v_head_stride = 0, v_key_stride = 0;
  void* out = nullptr;      // [batch, q_heads, num_queries, head_dim]
  int64_t out_batch_stride = 0, out_head_stride = 0, out_query_stride = 0;

  // The position of each sequence's newest query, on the device: positions[b * positions_stride]
  // (stride 0: one position for the whole batch). nullptr: `position` for every sequence.
  const int64_t* positions = nullptr;
  int64_t positions_stride = 0;
  int64_t position = 0;

  // Splits of the key length (decode_attn::plan_num_splits). Above 1 the workspace holds the
  // splits' normalised outputs [batch, q_heads, num_queries, num_splits, head_dim] and their
  // log2-sum-exp2 [batch, q_heads, num_queries, num_splits], fp32, contiguous.
  int num_splits = 1;
  float* partial_out = nullptr;
  float* partial_lse = nullptr;
};

// Per element type, defined in decode_attention_<dtype>.cu: the split kernel and, for
// num_splits > 1, the combine kernel, on `stream`.
LaunchStatus decode_attention_fp32(const DecodeAttentionParams& params, cudaStream_t stream);
LaunchStatus decode_attention_bf16(const DecodeAttentionParams& params, cudaStream_t stream);
LaunchStatus decode_attention_fp16(const DecodeAttentionParams& params, cudaStream_t stream);

inline LaunchStatus decode_attention(const DecodeAttentionParams& params, cudaStream_t stream) {
  return dispatch_element_type<DecodeAttentionParams>(
      params.type, {decode_attention_fp32, decode_attention_bf16, decode_attention_fp16}, params, stream,
      "decode_attention: unknown element type");
}

}  // namespace effarch::kernels
