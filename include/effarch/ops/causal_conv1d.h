#pragma once
// Causal depthwise conv1d over time: the short conv of Mamba and Mamba-2 (docs/models.md, Mamba-1 and Mamba-2).
//
//   out[b, c, t] = act(bias[c] + sum_k weight[c, k] * x[b, c, t - (W - 1) + k])
//
// act is SiLU or the identity, W (conv_kernel) is 2, 3 or 4, and the sum runs in fp32 whatever
// the dtypes (x: float32, bfloat16 or float16; weight and bias: any of those, independently).
// Prefill sees zeros before t = 0; decode sees the rolling conv_state [B, D, W] (last column =
// newest input), kept exactly as HF's Mamba cache keeps it.
//
// x may be channel-first ([B, D, L] contiguous) or any strided view, e.g. the transpose of a
// [B, L, D] projection output; out then has x's layout (channel-last stays channel-last).

#include <optional>

#include <ATen/core/Tensor.h>

#include "effarch/ops/backend.h"
#include "effarch/ops/linear.h"

namespace effarch::ops {

// Prefill. x [B, D, L]; weight [D, W] or [D, 1, W]; bias [D]. Returns out [B, D, L] in x's dtype.
// When final_conv_state is given ([B, D, W], x's dtype and device, written in place) it receives
// the last W inputs x[:, :, L-W:], zero-padded on the left when L < W.
at::Tensor causal_conv1d(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                         bool silu, at::Tensor* final_conv_state = nullptr, Backend backend = Backend::Auto);

// Decode. x [B, D] (one token) or [B, D, T] (T tokens, fed in order); conv_state [B, D, W] in x's
// dtype, rolled in place: per token shift left by one, write the input at the end, convolve.
// Returns out with x's shape.
at::Tensor causal_conv1d_update(const at::Tensor& x, at::Tensor& conv_state, const at::Tensor& weight,
                                const std::optional<at::Tensor>& bias, bool silu, Backend backend = Backend::Auto);

// One decode step through a Mamba mixer's in_proj and its conv: x [B, H] (one token per
// sequence) -> projection = linear(x, in_proj, backend) [B, O], and conv = causal_conv1d_update
// of the projection's outputs begin .. begin + D - 1 (D = conv_state.size(1)) through conv_state
// [B, D, W] [B, D]. Where linear_conv_update_fuses says so the dense GEMV kernel does both in one
// launch, the conv update in its epilogue (docs/mamba.md, "The conv update inside in_proj"), with
// the same results bit for bit; elsewhere (the CPU, the reference, int8 weights, more rows than
// the GEMV takes) the two ops run one after the other.
struct ProjectedConv {
  at::Tensor projection;  // [B, O]
  at::Tensor conv;        // [B, D]
};
ProjectedConv linear_conv_update(const at::Tensor& x, const Linear& in_proj, int64_t begin, at::Tensor& conv_state,
                                 const at::Tensor& weight, const std::optional<at::Tensor>& bias, bool silu,
                                 Backend backend = Backend::Auto);
// The same for a block's normed input ([B, H]): a pending add + norm runs in the fused GEMV's
// prologue where that runs (NormedInput::prologue_for), else first (ops::linear's NormedInput form).
ProjectedConv linear_conv_update(const NormedInput& x, const Linear& in_proj, int64_t begin, at::Tensor& conv_state,
                                 const at::Tensor& weight, const std::optional<at::Tensor>& bias, bool silu,
                                 Backend backend = Backend::Auto);
// Whether linear_conv_update runs as one kernel: the CUDA dense GEMV runs the projection
// (detail::dense_gemv_applies) and the conv resolves to its CUDA kernel for `backend`, with the
// conv state in x's dtype on x's device.
bool linear_conv_update_fuses(const at::Tensor& x, const Linear& in_proj, const at::Tensor& conv_state, Backend backend);

// The two implementations behind the entries above, which check the arguments first and then
// call one of them. Arguments: x [B, D, L], weight [D, W] (strided views allowed), out [B, D, L]
// preallocated, state [B, D, W] or undefined (prefill) / required (update).
namespace detail {
void causal_conv1d_reference(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                             bool silu, const at::Tensor& out, const at::Tensor& final_conv_state);
void causal_conv1d_update_reference(const at::Tensor& x, const at::Tensor& conv_state, const at::Tensor& weight,
                                    const std::optional<at::Tensor>& bias, bool silu, const at::Tensor& out);
#ifdef EFFARCH_WITH_CUDA
// `vector`: the prefill's measuring variant, 8 channels a thread with 16-byte accesses, where x and
// out are channel-last and aligned (kernels/causal_conv1d/causal_conv1d.h); the same bits.
// `effarch kernels` times it as causal_conv1d_vec (docs/perf/pending.md, entry 47).
void causal_conv1d_cuda(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                        bool silu, const at::Tensor& out, const at::Tensor& final_conv_state, bool vector = false);
void causal_conv1d_update_cuda(const at::Tensor& x, const at::Tensor& conv_state, const at::Tensor& weight,
                               const std::optional<at::Tensor>& bias, bool silu, const at::Tensor& out);
// The fused linear_conv_update (checked arguments, weight [D, W]): returns the projection, writes
// conv_out [B, D] and rolls conv_state.
// `norm`: the GEMV's norm prologue, x its stand-in (detail::dense_gemv_cuda).
at::Tensor linear_conv_update_cuda(const at::Tensor& x, const Linear& in_proj, int64_t begin,
                                   const at::Tensor& conv_state, const at::Tensor& weight,
                                   const std::optional<at::Tensor>& bias, bool silu, const at::Tensor& conv_out,
                                   const kernels::AddNormParams* norm = nullptr);
#endif
}  // namespace detail

}  // namespace effarch::ops
