#pragma once
// Causal depthwise conv1d over time (the short conv of Mamba and Mamba-2), CUDA kernels.
//
//   out[b, c, t] = act(bias[c] + sum_k weight[c, k] * x[b, c, t - (W - 1) + k])
//
// with zeros before t = 0 (prefill) or the rolling conv_state as the past (decode update); act is
// SiLU or the identity; fp32 accumulation. Width W is 2, 3 or 4. Every tensor is given by a
// pointer and strides in elements, so x may be channel-first ([B, D, L], L contiguous) or a
// transposed view of [B, L, D].
//
// No torch types: src/ops/causal_conv1d_cuda.cpp fills the params from checked tensors.

#include <cstdint>

#include "common/element_type.h"

namespace effarch::kernels {

inline constexpr int kCausalConv1dMinWidth = 2;
inline constexpr int kCausalConv1dMaxWidth = 4;

struct CausalConv1dParams {
  int batch = 0;
  int dim = 0;     // D channels
  int seqlen = 0;  // L timesteps (prefill) or T new tokens (update)
  int width = 0;   // W, 2..4
  bool silu = false;
  // Element types of x, out and conv_state; weight and bias are either the same or kFloat32.
  ElementType x_type = ElementType::kFloat32;       // x, out, conv_state
  ElementType weight_type = ElementType::kFloat32;  // weight, bias: x_type or kFloat32

  const void* x = nullptr;  // [batch, dim, seqlen]
  int64_t x_batch_stride = 0, x_dim_stride = 0, x_time_stride = 0;

  const void* weight = nullptr;  // [dim, width]
  int64_t weight_dim_stride = 0, weight_width_stride = 0;

  const void* bias = nullptr;  // [dim]; nullptr: no bias
  int64_t bias_stride = 0;

  void* out = nullptr;  // [batch, dim, seqlen]
  int64_t out_batch_stride = 0, out_dim_stride = 0, out_time_stride = 0;

  // [batch, dim, width], last column = newest input. Prefill: written when non-null (the last W
  // inputs, zero-padded on the left when seqlen < W). Update: required; read, then rolled in place.
  void* conv_state = nullptr;
  int64_t state_batch_stride = 0, state_dim_stride = 0, state_width_stride = 0;

  // Prefill only, a measuring variant: the channel-last kernel with 8 channels a thread (16-byte
  // loads and stores of x and out) where causal_conv1d_vector_applies; elsewhere the usual kernels.
  // The same arithmetic per output: bitwise the same results.
  bool vector = false;
};

// Whether the prefill's vector kernel can run p: x and out channel-last (channels contiguous),
// whole 8-channel groups (dim, every batch and time stride a multiple of 8) and 16-byte aligned
// bases. Host side, no CUDA (the CPU tests check it).
inline bool causal_conv1d_vector_applies(const CausalConv1dParams& p) {
  const auto whole = [](int64_t v) { return v % 8 == 0; };
  const auto aligned = [](const void* base) { return reinterpret_cast<uintptr_t>(base) % 16 == 0; };
  return p.x_dim_stride == 1 && p.out_dim_stride == 1 && whole(p.dim) && whole(p.x_batch_stride) &&
         whole(p.x_time_stride) && whole(p.out_batch_stride) && whole(p.out_time_stride) && aligned(p.x) &&
         aligned(p.out);
}

// Per element type, defined in causal_conv1d_<dtype>.cu.
LaunchStatus causal_conv1d_fwd_fp32(const CausalConv1dParams& params, cudaStream_t stream);
LaunchStatus causal_conv1d_fwd_bf16(const CausalConv1dParams& params, cudaStream_t stream);
LaunchStatus causal_conv1d_fwd_fp16(const CausalConv1dParams& params, cudaStream_t stream);
LaunchStatus causal_conv1d_update_fp32(const CausalConv1dParams& params, cudaStream_t stream);
LaunchStatus causal_conv1d_update_bf16(const CausalConv1dParams& params, cudaStream_t stream);
LaunchStatus causal_conv1d_update_fp16(const CausalConv1dParams& params, cudaStream_t stream);

// Prefill: out for every timestep, and the final conv_state when params.conv_state is set.
inline LaunchStatus causal_conv1d_fwd(const CausalConv1dParams& params, cudaStream_t stream) {
  return dispatch_element_type<CausalConv1dParams>(
      params.x_type, {causal_conv1d_fwd_fp32, causal_conv1d_fwd_bf16, causal_conv1d_fwd_fp16}, params, stream,
      "causal_conv1d_fwd: unknown element type");
}

// Decode: params.seqlen new tokens per sequence, fed one after another through conv_state.
inline LaunchStatus causal_conv1d_update(const CausalConv1dParams& params, cudaStream_t stream) {
  return dispatch_element_type<CausalConv1dParams>(
      params.x_type, {causal_conv1d_update_fp32, causal_conv1d_update_bf16, causal_conv1d_update_fp16}, params,
      stream, "causal_conv1d_update: unknown element type");
}

}  // namespace effarch::kernels
