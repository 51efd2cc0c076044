#pragma once
// Decode attention: the newest token(s) of each sequence attend its KV cache in place. The CUDA
// kernel (kernels/decode_attention/, flash-decoding: the key length split over the grid, GQA
// query heads served by one read of their KV head, fp32 accumulation) or the reference: the
// framework's scaled_dot_product_attention (or the explicit "eager" softmax) under a mask.
//
// q [B, Hq, T, D]: T newest tokens per sequence (T = 1 for a decode step); k_cache, v_cache
// [B, Hkv, S, D]: the whole cache buffer, any strided view whose head dimension is contiguous
// (the model's [B, Hkv, max_len, D] cache as it is). Hkv divides Hq; query head h reads KV head
// h / (Hq / Hkv), as HF's repeat_kv. Query t of sequence b sits at position
// p_t = positions[b] - (T - 1) + t and sees keys 0 .. p_t, with a sliding window W only
// p_t - W + 1 .. p_t; keys after p_t are never read (the cache's unfilled part). Returns
// [B, Hq, T, D] in q's dtype.
//
// The CUDA kernel handles float32, bfloat16 and float16 and head sizes 16, 32, 40, 64, 80 and 128
// (anything else is an OpError that names the sizes); the reference runs anywhere.

#include <cstdint>
#include <optional>

#include <ATen/core/Tensor.h>

#include "effarch/ops/attention.h"
#include "effarch/ops/backend.h"

namespace effarch::ops {

// positions: int64 [B] (one per sequence) or [1] (the same for all), on q's device, read by the
// kernel on the device: nothing goes back to the host, so a CUDA graph replays it as it fills.
// out: where the result goes, a [B, Hq, T, D] view of q's dtype and device with a contiguous head
// dimension and any other strides (the parallel block writes it into a column range of the buffer
// its output product reads: docs/engine.md), which is returned; it must not share an element with
// q (refused where ATen's at::get_overlap_status can tell: the same view, or dense views; strided
// ranges are the caller's to keep apart). Null: a new tensor. The kernel writes it directly; the
// reference copies its result in.
at::Tensor decode_attention(const at::Tensor& q, const at::Tensor& k_cache, const at::Tensor& v_cache,
                            const at::Tensor& positions, double scale, std::optional<int64_t> window,
                            Backend backend = Backend::Auto, AttentionImpl reference = AttentionImpl::Sdpa,
                            const at::Tensor* out = nullptr);

// The same with the newest position known on the host (the eager decode step). The reference is
// causal_attention over the cache prefix 0 .. position.
at::Tensor decode_attention(const at::Tensor& q, const at::Tensor& k_cache, const at::Tensor& v_cache,
                            int64_t position, double scale, std::optional<int64_t> window,
                            Backend backend = Backend::Auto, AttentionImpl reference = AttentionImpl::Sdpa,
                            const at::Tensor* out = nullptr);

namespace detail {
// The reference behind decode_attention (arguments already checked): one masked attention of the
// Hq / Hkv query heads of a KV group as rows of that head, the mask broadcast over the batch when
// positions has one entry.
at::Tensor decode_attention_reference(const at::Tensor& q, const at::Tensor& k_cache, const at::Tensor& v_cache,
                                      const at::Tensor& positions, double scale, std::optional<int64_t> window,
                                      AttentionImpl impl);
#ifdef EFFARCH_WITH_CUDA
// positions: the device tensor, or undefined to use `position` for every sequence.
// split_blocks_per_sm: the split plan's blocks an SM (0: its default, 2), a measuring knob that
// `effarch kernels` times as decode_attention_b4 and decode_attention_b6 (perf/pending.md entry 48).
void decode_attention_cuda(const at::Tensor& q, const at::Tensor& k_cache, const at::Tensor& v_cache,
                           const at::Tensor& positions, int64_t position, double scale, std::optional<int64_t> window,
                           const at::Tensor& out, int split_blocks_per_sm = 0);
#endif
}  // namespace detail

}  // namespace effarch::ops
