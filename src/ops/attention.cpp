#include "effarch/ops/attention.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "effarch/common/error.h"

namespace effarch::ops {

AttentionImpl parse_attention_impl(const std::string& name, const std::string& option) {
  if (name == "sdpa") return AttentionImpl::Sdpa;
  if (name == "eager") return AttentionImpl::Eager;
  throw UsageError(fmt::format("{}: unknown attention '{}' (use sdpa or eager)", option, name));
}

namespace {

// [T, S] boolean: true where query t may attend key s.
at::Tensor causal_mask(int64_t t, int64_t s, int64_t start_pos, at::Device device) {
  const at::Tensor q_pos = at::arange(start_pos, start_pos + t, at::TensorOptions().dtype(at::kLong).device(device));
  const at::Tensor k_pos = at::arange(s, at::TensorOptions().dtype(at::kLong).device(device));
  return k_pos.unsqueeze(0) <= q_pos.unsqueeze(1);
}

}  // namespace

at::Tensor causal_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t start_pos,
                            double scale, AttentionImpl impl) {
  const int64_t hq = q.size(1), hkv = k.size(1), t = q.size(2), s = k.size(2);
  if (hq % hkv != 0 || s != start_pos + t) {
    throw OpError(fmt::format("causal_attention: {} query heads over {} kv heads, {} queries at {} over {} keys",
                                 hq, hkv, t, start_pos, s));
  }
  if (impl == AttentionImpl::Sdpa) {
    std::optional<at::Tensor> mask;
    bool is_causal = false;
    if (t > 1 && start_pos == 0) {
      is_causal = true;
    } else if (t > 1) {
      mask = causal_mask(t, s, start_pos, q.device());
    }  // t == 1: the newest query sees every cached key
    return at::scaled_dot_product_attention(q, k, v, mask, 0.0, is_causal, scale, /*enable_gqa=*/hq != hkv);
  }
  const at::Tensor kr = hq == hkv ? k : k.repeat_interleave(hq / hkv, 1);
  const at::Tensor vr = hq == hkv ? v : v.repeat_interleave(hq / hkv, 1);
  at::Tensor scores = at::matmul(q.to(at::kFloat), kr.to(at::kFloat).transpose(-1, -2)) * scale;  // [B, Hq, T, S]
  scores = scores.masked_fill(causal_mask(t, s, start_pos, q.device()).logical_not(),
                              -std::numeric_limits<float>::infinity());
  const at::Tensor probs = at::softmax(scores, -1).to(v.scalar_type());
  return at::matmul(probs, vr);
}

at::Tensor attention_at_position(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                 const at::Tensor& key_positions, const at::Tensor& position, double scale,
                                 AttentionImpl impl) {
  const int64_t hq = q.size(1), hkv = k.size(1);
  if (hq % hkv != 0 || q.size(2) != 1 || key_positions.numel() != k.size(2)) {
    throw OpError(fmt::format("attention_at_position: {} query heads over {} kv heads, {} queries, {} keys, {} key "
                                 "positions", hq, hkv, q.size(2), k.size(2), key_positions.numel()));
  }
  // GQA without copying the cache: the G = Hq / Hkv query heads that share a kv head become G
  // queries of that head (HF's repeat_kv gives kv head j the query heads j*G .. j*G + G - 1).
  const int64_t b = q.size(0), g = hq / hkv, d = q.size(3);
  const at::Tensor qg = q.reshape({b, hkv, g, d});
  const at::Tensor visible = key_positions.le(position).view({1, 1, 1, -1});  // [1, 1, 1, S]
  at::Tensor out;
  if (impl == AttentionImpl::Sdpa) {
    out = at::scaled_dot_product_attention(qg, k, v, visible, 0.0, false, scale);
  } else {
    at::Tensor scores = at::matmul(qg.to(at::kFloat), k.to(at::kFloat).transpose(-1, -2)) * scale;  // [B, Hkv, G, S]
    scores = scores.masked_fill(visible.logical_not(), -std::numeric_limits<float>::infinity());
    out = at::matmul(at::softmax(scores, -1).to(v.scalar_type()), v);
  }
  return out.reshape({b, hq, 1, d});
}

}  // namespace effarch::ops
