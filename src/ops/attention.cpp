#include "effarch/ops/attention.h"

#include <algorithm>
#include <limits>

#include <ATen/ATen.h>
#include <ATen/record_function.h>
#include <fmt/format.h>

#include "effarch/common/error.h"

namespace effarch::ops {

AttentionImpl parse_attention_impl(const std::string& name, const std::string& option) {
  if (name == "sdpa") return AttentionImpl::Sdpa;
  if (name == "eager") return AttentionImpl::Eager;
  throw UsageError(fmt::format("{}: unknown attention '{}' (use sdpa or eager)", option, name));
}

namespace {

// [T, S] boolean: true where query t (position start_pos + t) may attend key s (position
// first_key + s): causal, and inside the sliding window when there is one.
at::Tensor causal_mask(int64_t t, int64_t s, int64_t start_pos, int64_t first_key, std::optional<int64_t> window,
                       at::Device device) {
  const auto longs = at::TensorOptions().dtype(at::kLong).device(device);
  const at::Tensor q_pos = at::arange(start_pos, start_pos + t, longs).unsqueeze(1);
  const at::Tensor k_pos = at::arange(first_key, first_key + s, longs).unsqueeze(0);
  at::Tensor mask = k_pos <= q_pos;
  if (window) mask = mask & (k_pos > q_pos - *window);
  return mask;
}

}  // namespace

namespace {
thread_local std::optional<SdpaChoice> last_sdpa;
}  // namespace

std::optional<SdpaChoice> last_prefill_sdpa() { return last_sdpa; }
void clear_last_prefill_sdpa() { last_sdpa.reset(); }

std::string_view sdp_backend_name(int64_t backend) {
  switch (backend) {
    case 0: return "math";
    case 1: return "flash_attention";
    case 2: return "efficient_attention";
    case 3: return "cudnn_attention";
    case 4: return "overrideable";
    default: return "error";
  }
}

at::Tensor causal_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t start_pos,
                            double scale, AttentionImpl impl, std::optional<int64_t> window) {
  RECORD_USER_SCOPE("effarch::causal_attention");  // names the op in profiles (effarch profile)
  const int64_t hq = q.size(1), hkv = k.size(1), t = q.size(2), s = k.size(2);
  if (hq % hkv != 0 || s != start_pos + t || (window && *window < 1)) {
    throw OpError(fmt::format("causal_attention: {} query heads over {} kv heads, {} queries at {} over {} keys, "
                              "window {}", hq, hkv, t, start_pos, s, window ? *window : 0));
  }
  // Keys before the first query's window are seen by no query: leave them out.
  const int64_t first_key = window ? std::max<int64_t>(0, start_pos - *window + 1) : 0;
  const at::Tensor kw = first_key > 0 ? k.narrow(2, first_key, s - first_key) : k;
  const at::Tensor vw = first_key > 0 ? v.narrow(2, first_key, s - first_key) : v;
  const int64_t sw = s - first_key;
  // Whether the plain causal mask (or, for one query, none) is exact: no window cuts a query's keys.
  const bool window_cuts = window && start_pos + t - 1 - first_key >= *window;
  if (impl == AttentionImpl::Sdpa) {
    std::optional<at::Tensor> mask;
    bool is_causal = false;
    if (window_cuts) {
      mask = causal_mask(t, sw, start_pos, first_key, window, q.device());
    } else if (t > 1 && first_key == 0 && start_pos == 0) {
      is_causal = true;
    } else if (t > 1) {
      mask = causal_mask(t, sw, start_pos, first_key, window, q.device());
    }  // t == 1: the newest query sees every key left
    if (t > 1) {
      last_sdpa = SdpaChoice{std::string(sdp_backend_name(at::_fused_sdp_choice(q, kw, vw, mask, 0.0, is_causal, scale,
                                                                                  /*enable_gqa=*/hq != hkv))),
                             mask.has_value(), t, sw};
    }
    return at::scaled_dot_product_attention(q, kw, vw, mask, 0.0, is_causal, scale, /*enable_gqa=*/hq != hkv);
  }
  const at::Tensor kr = hq == hkv ? kw : kw.repeat_interleave(hq / hkv, 1);
  const at::Tensor vr = hq == hkv ? vw : vw.repeat_interleave(hq / hkv, 1);
  at::Tensor scores = at::matmul(q.to(at::kFloat), kr.to(at::kFloat).transpose(-1, -2)) * scale;  // [B, Hq, T, S]
  scores = scores.masked_fill(causal_mask(t, sw, start_pos, first_key, window, q.device()).logical_not(),
                              -std::numeric_limits<float>::infinity());
  const at::Tensor probs = at::softmax(scores, -1).to(v.scalar_type());
  return at::matmul(probs, vr);
}

}  // namespace effarch::ops
