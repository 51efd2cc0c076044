#pragma once
// Causal attention over a KV cache prefix, through the framework's fused
// scaled_dot_product_attention (flash/efficient kernels on the GPU) or an explicit masked
// softmax ("eager") that materialises the [T, S] score matrix, so its O(n^2) memory shows.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace effarch::ops {

enum class AttentionImpl { Sdpa, Eager };
AttentionImpl parse_attention_impl(const std::string& name, const std::string& option);  // "sdpa", "eager"

// q: [B, Hq, T, D]; k, v: [B, Hkv, S, D] with S = start_pos + T (cache prefix plus the new keys).
// Query t (position i = start_pos + t) sees keys 0 .. i; with a sliding window W only the last W
// of them, i - W + 1 .. i (transformers' sliding_window_overlay: kv_idx > q_idx - W), and keys
// before every query's window are not read at all. Hkv divides Hq (GQA).
// Scores and softmax in fp32; returns [B, Hq, T, D] in q's dtype.
at::Tensor causal_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t start_pos,
                            double scale, AttentionImpl impl, std::optional<int64_t> window = std::nullopt);

// What the last prefill attention call (more than one query, through SDPA) on this thread ran:
// the backend the framework picks for those tensors (at::_fused_sdp_choice, asked with the same
// arguments: "flash_attention", "efficient_attention", "cudnn_attention", "math" or
// "overrideable"), and whether a mask tensor went in (a [T, S] boolean, built only when a
// sliding window cuts a query's keys or a multi-token step continues a cache; a plain causal
// prefill passes is_causal and materialises nothing). The bench records it per point.
struct SdpaChoice {
  std::string backend;
  bool mask = false;
  int64_t queries = 0, keys = 0;
};
std::optional<SdpaChoice> last_prefill_sdpa();
void clear_last_prefill_sdpa();
// The name of an at::SDPBackend value (as an integer, what _fused_sdp_choice returns).
std::string_view sdp_backend_name(int64_t backend);

}  // namespace effarch::ops
