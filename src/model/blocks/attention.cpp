// Attention mixer: q/k/v projections (one product over their weights concatenated at load, where
// the checkpoint allows: one GEMM or GEMV instead of three per layer), RoPE where the config has it, the new K/V written into the
// preallocated cache, causal attention over the cache prefix (only its last sliding_window keys
// where the config has one: Mistral, Mixtral), output projection. A decode step (one new token)
// attends through ops::decode_attention: the CUDA decode kernel, or its SDPA reference. Under
// tensor parallelism the config holds this rank's heads (q/k/v column shards) and the output
// projection's partial sums are all-reduced.

#include <cmath>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include <ATen/ATen.h>

#include "blocks.h"
#include "effarch/ops/decode_attention.h"
#include "effarch/ops/rope_cache.h"

namespace effarch::model {
namespace {

class AttentionMixer final : public Mixer {
 public:
  AttentionMixer(const ModelConfig& c, const Weights& w, int layer)
      : a_(*c.attention), o_(w.linear(layer, "attn.o.")), scale_(1.0 / std::sqrt(static_cast<double>(a_.head_dim))) {
    const std::vector<std::string> parts{"attn.q.", "attn.k.", "attn.v."};
    if (w.can_fuse(layer, parts)) {
      qkv_ = w.fused_linear(layer, parts);
    } else {
      q_ = w.linear(layer, "attn.q.");
      k_ = w.linear(layer, "attn.k.");
      v_ = w.linear(layer, "attn.v.");
    }
  }

  at::Tensor forward(const ops::NormedInput& in, LayerCache& cache, const ForwardContext& ctx) const override {
    const int64_t b = in.size(0), t = in.size(1);
    at::Tensor q, k, v;
    if (qkv_) {  // a pending input's add + norm in the product's GEMV where it runs one
      std::tie(q, k, v) = split_heads(ops::linear(in, *qkv_, ctx.backend));
    } else {
      const at::Tensor x = in.tensor();
      q = heads(ops::linear(x, *q_, ctx.backend), a_.num_heads);
      k = heads(ops::linear(x, *k_, ctx.backend), a_.num_kv_heads);
      v = heads(ops::linear(x, *v_, ctx.backend), a_.num_kv_heads);
    }
    // [B, Hq, T, D] -> [B, T, Hq*D], the output projection, its partial sums all-reduced (tp).
    const at::Tensor out = attend(q, k, v, cache, ctx, nullptr);
    return all_reduce(
        ops::linear(out.transpose(1, 2).reshape({b, t, a_.num_heads * a_.head_dim}), o_, ctx.backend), ctx.tp);
  }

  void attend_step(const at::Tensor& qkv, LayerCache& cache, const ForwardContext& ctx,
                   const at::Tensor& out) const override {
    const auto [q, k, v] = split_heads(qkv);
    // [B, 1, Hq*D] -> the [B, Hq, 1, D] view the attention writes.
    const at::Tensor o = out.view({out.size(0), out.size(1), a_.num_heads, a_.head_dim}).transpose(1, 2);
    attend(q, k, v, cache, ctx, &o);
  }

  // [B, T, n*D] (a view of a wider product) -> [B, n, T, D], a view.
  at::Tensor heads(const at::Tensor& y, int64_t n) const {
    return y.view({y.size(0), y.size(1), n, a_.head_dim}).transpose(1, 2);
  }

  // q, k and v as head views of the fused product's column ranges.
  std::tuple<at::Tensor, at::Tensor, at::Tensor> split_heads(const at::Tensor& y) const {
    const int64_t q_features = a_.num_heads * a_.head_dim, kv_features = a_.num_kv_heads * a_.head_dim;
    return {heads(y.narrow(-1, 0, q_features), a_.num_heads), heads(y.narrow(-1, q_features, kv_features), a_.num_kv_heads),
            heads(y.narrow(-1, q_features + kv_features, kv_features), a_.num_kv_heads)};
  }

  // RoPE, the new K/V into the cache, attention over the cache: [B, Hq, T, D], written into `out`
  // (a view of that shape) where given.
  at::Tensor attend(at::Tensor q, const at::Tensor& k, const at::Tensor& v, LayerCache& cache, const ForwardContext& ctx,
                    const at::Tensor* out) const {
    const int64_t t = q.size(2);
    if (ctx.position != nullptr) {  // static decode: the position lives on the device
      // RoPE on q and k and the cache write in one op (one kernel on a GPU).
      q = ops::rope_cache_write(q, k, v, a_.rope ? ctx.rope : nullptr, *ctx.position, cache.k, cache.v, ctx.backend);
      // The decode kernel (or its masked-SDPA reference) over the whole buffer; it reads the
      // position on the device and only the keys up to it.
      return ops::decode_attention(q, cache.k, cache.v, *ctx.position, scale_, a_.sliding_window, ctx.backend,
                                   ctx.attention, out);
    }
    // RoPE on q and k and the new rows into the caches, in one op (one kernel on a GPU).
    q = ops::rope_cache_prefill(q, k, v, a_.rope ? ctx.rope : nullptr, ctx.start_pos, cache.k, cache.v, ctx.backend);
    const int64_t s = ctx.start_pos + t;
    if (t == 1) {  // an eager decode step: one query over the cache (causal_attention as its reference)
      return ops::decode_attention(q, cache.k, cache.v, ctx.start_pos, scale_, a_.sliding_window, ctx.backend,
                                   ctx.attention, out);
    }
    const at::Tensor o = ops::causal_attention(q, cache.k.narrow(2, 0, s), cache.v.narrow(2, 0, s), ctx.start_pos,
                                               scale_, ctx.attention, a_.sliding_window);
    if (out == nullptr) return o;
    out->copy_(o);
    return *out;
  }

  void allocate(LayerCache& cache, int64_t batch, int64_t max_len, at::ScalarType dtype,
                at::Device device) const override {
    const auto opts = at::TensorOptions().dtype(dtype).device(device);
    cache.k = at::zeros({batch, a_.num_kv_heads, max_len, a_.head_dim}, opts);
    cache.v = at::zeros({batch, a_.num_kv_heads, max_len, a_.head_dim}, opts);
  }

 private:
  AttentionConfig a_;
  std::optional<ops::Linear> qkv_;  // q, k and v side by side, or each on its own
  std::optional<ops::Linear> q_, k_, v_;
  ops::Linear o_;
  double scale_;
};

}  // namespace

std::unique_ptr<Mixer> make_attention(const ModelConfig& config, const Weights& weights, int layer) {
  return std::make_unique<AttentionMixer>(config, weights, layer);
}

}  // namespace effarch::model
