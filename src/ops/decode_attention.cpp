// effarch::ops::decode_attention: argument checks, the reference (masked SDPA or eager softmax;
// the CPU path) and the switch to the CUDA kernel (src/ops/decode_attention_cuda.cpp).

#include "effarch/ops/decode_attention.h"

#include <limits>

#include <ATen/ATen.h>
#include <ATen/MemoryOverlap.h>
#include <ATen/record_function.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "effarch/common/error.h"
#include "arg_checks.h"

namespace effarch::ops {
namespace {

constexpr const char* kOp = "decode_attention";

using detail::shape;

// q [B, Hq, T, D], k and v [B, Hkv, S, D]: the same batch, head size, dtype and device.
void check_tensors(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, std::optional<int64_t> window) {
  if (!q.defined() || !k.defined() || !v.defined()) throw OpError(fmt::format("{}: q, k_cache and v_cache are required", kOp));
  if (q.dim() != 4) throw OpError(fmt::format("{}: q has shape {}, expected [B, Hq, T, D]", kOp, shape(q)));
  if (k.dim() != 4 || k.sizes() != v.sizes()) {
    throw OpError(fmt::format("{}: k_cache {} and v_cache {} must both be [B, Hkv, S, D]", kOp, shape(k), shape(v)));
  }
  if (k.size(0) != q.size(0) || k.size(3) != q.size(3)) {
    throw OpError(fmt::format("{}: q {} and k_cache {} differ in batch or head size", kOp, shape(q), shape(k)));
  }
  if (k.size(1) == 0 || q.size(1) % k.size(1) != 0) {
    throw OpError(fmt::format("{}: {} query heads over {} KV heads (k_cache): the KV heads must divide them", kOp,
                              q.size(1), k.size(1)));
  }
  if (q.size(2) < 1) throw OpError(fmt::format("{}: q {} has no query", kOp, shape(q)));
  if (k.scalar_type() != q.scalar_type() || v.scalar_type() != q.scalar_type()) {
    throw OpError(fmt::format("{}: q, k_cache and v_cache must share a dtype, got {}, {}, {}", kOp,
                              c10::toString(q.scalar_type()), c10::toString(k.scalar_type()),
                              c10::toString(v.scalar_type())));
  }
  if (!at::isFloatingType(q.scalar_type())) {
    throw OpError(fmt::format("{}: q has dtype {}, expected a floating type", kOp, c10::toString(q.scalar_type())));
  }
  if (k.device() != q.device() || v.device() != q.device()) {
    throw OpError(fmt::format("{}: q on {}, k_cache on {}, v_cache on {}: one device is needed", kOp, q.device().str(),
                              k.device().str(), v.device().str()));
  }
  if (window && *window < 1) throw OpError(fmt::format("{}: window {} (at least 1 key)", kOp, *window));
}

void check_positions(const at::Tensor& positions, const at::Tensor& q) {
  if (!positions.defined()) throw OpError(fmt::format("{}: positions is required", kOp));
  if (positions.scalar_type() != at::kLong || positions.dim() != 1 ||
      (positions.numel() != 1 && positions.numel() != q.size(0))) {
    throw OpError(fmt::format("{}: positions must be int64 [B] or [1] for a batch of {}, got {} {}", kOp, q.size(0),
                              c10::toString(positions.scalar_type()), shape(positions)));
  }
  if (positions.device() != q.device()) {
    throw OpError(fmt::format("{}: positions on {}, q on {}: positions must be on q's device", kOp,
                              positions.device().str(), q.device().str()));
  }
}

// The caller's output view, checked (q's shape, dtype and device, a contiguous head dimension,
// no element shared with q where ATen can tell), or a new tensor like q.
at::Tensor output_for(const at::Tensor& q, const at::Tensor* out) {
  if (out == nullptr) return at::empty(q.sizes(), q.options());
  if (!out->defined() || out->sizes() != q.sizes() || out->scalar_type() != q.scalar_type() ||
      out->device() != q.device() || (out->size(3) > 1 && out->stride(3) != 1)) {
    throw OpError(fmt::format("{}: out {} must have q's shape {}, dtype and device, with a contiguous head dimension",
                              kOp, out->defined() ? shape(*out) : "undefined", shape(q)));
  }
  // ATen's own test: a shared element, where it can tell (two column ranges of one buffer's rows
  // interleave without sharing one: a span test would call them overlapping).
  const at::MemOverlapStatus overlap = at::get_overlap_status(q, *out);
  if (overlap == at::MemOverlapStatus::Full || overlap == at::MemOverlapStatus::Partial) {
    throw OpError(fmt::format("{}: out overlaps q", kOp));
  }
  return *out;
}

// The reference's result, in `out` where the caller gave one.
at::Tensor place(at::Tensor result, const at::Tensor* out) {
  if (out == nullptr) return result;
  out->copy_(result);
  return *out;
}

}  // namespace

namespace detail {

at::Tensor decode_attention_reference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                      const at::Tensor& positions, double scale, std::optional<int64_t> window,
                                      AttentionImpl impl) {
  const int64_t b = q.size(0), hq = q.size(1), t = q.size(2), d = q.size(3), hkv = k.size(1), s = k.size(2);
  const int64_t g = hq / hkv;
  // The G query heads of KV head j (j*G .. j*G + G - 1) become G * T rows of that head: row g*T + t.
  const at::Tensor qg = q.reshape({b, hkv, g * t, d});
  const auto longs = at::TensorOptions().dtype(at::kLong).device(q.device());
  // Each row's position [B or 1, rows, 1]; with one query every row of a sequence shares it.
  const int64_t mask_rows = t == 1 ? 1 : g * t;
  at::Tensor row_pos = positions.view({-1, 1, 1});
  if (t > 1) row_pos = row_pos + (at::arange(t, longs) - (t - 1)).repeat({g}).view({1, -1, 1});
  const at::Tensor key_pos = at::arange(s, longs).view({1, 1, -1});
  at::Tensor visible = key_pos <= row_pos;  // [B or 1, mask_rows, S], on the device
  if (window) visible = visible & (key_pos > row_pos - *window);
  visible = visible.view({-1, 1, mask_rows, s});
  at::Tensor out;
  if (impl == AttentionImpl::Sdpa) {
    out = at::scaled_dot_product_attention(qg, k, v, visible, 0.0, false, scale);
  } else {
    at::Tensor scores = at::matmul(qg.to(at::kFloat), k.to(at::kFloat).transpose(-1, -2)) * scale;
    scores = scores.masked_fill(visible.logical_not(), -std::numeric_limits<float>::infinity());
    out = at::matmul(at::softmax(scores, -1).to(v.scalar_type()), v);
  }
  return out.reshape({b, hq, t, d});
}

}  // namespace detail

at::Tensor decode_attention(const at::Tensor& q, const at::Tensor& k_cache, const at::Tensor& v_cache,
                            const at::Tensor& positions, double scale, std::optional<int64_t> window, Backend backend,
                            AttentionImpl reference, const at::Tensor* out) {
  RECORD_USER_SCOPE("effarch::decode_attention");  // names the op in profiles
  check_tensors(q, k_cache, v_cache, window);
  check_positions(positions, q);
  const at::Tensor result = output_for(q, out);
  [[maybe_unused]] const bool cuda = use_cuda_kernel(backend, OpFamily::DecodeAttention, q.device());
#ifdef EFFARCH_WITH_CUDA
  if (cuda) {
    detail::decode_attention_cuda(q, k_cache, v_cache, positions, 0, scale, window, result);
    return result;
  }
#endif
  return place(detail::decode_attention_reference(q, k_cache, v_cache, positions, scale, window, reference), out);
}

at::Tensor decode_attention(const at::Tensor& q, const at::Tensor& k_cache, const at::Tensor& v_cache,
                            int64_t position, double scale, std::optional<int64_t> window, Backend backend,
                            AttentionImpl reference, const at::Tensor* out) {
  RECORD_USER_SCOPE("effarch::decode_attention");  // names the op in profiles
  check_tensors(q, k_cache, v_cache, window);
  const int64_t t = q.size(2);
  if (position - (t - 1) < 0 || position >= k_cache.size(2)) {
    throw OpError(fmt::format("{}: {} queries ending at position {} in a cache of {} keys", kOp, t, position,
                              k_cache.size(2)));
  }
  const at::Tensor result = output_for(q, out);
  [[maybe_unused]] const bool cuda = use_cuda_kernel(backend, OpFamily::DecodeAttention, q.device());
#ifdef EFFARCH_WITH_CUDA
  if (cuda) {
    detail::decode_attention_cuda(q, k_cache, v_cache, at::Tensor(), position, scale, window, result);
    return result;
  }
#endif
  const int64_t s = position + 1;
  return place(causal_attention(q, k_cache.narrow(2, 0, s), v_cache.narrow(2, 0, s), position - (t - 1), scale,
                                reference, window),
               out);
}

}  // namespace effarch::ops
