// Mamba-2 mixer (Mamba2ForCausalLM): in_proj -> [z | x B C | dt]; causal conv + hidden_act (SiLU) over x B C;
// the SSD scan over heads with grouped B/C (chunked for prefill, one recurrence step for decode);
// gated RMSNorm with z; out_proj. Follows transformers 5.x's torch_forward (docs/models.md, Mamba-2).

#include <algorithm>
#include <limits>
#include <utility>

#include <ATen/ATen.h>

#include "blocks.h"
#include "effarch/ops/activation.h"
#include "effarch/ops/causal_conv1d.h"
#include "effarch/ops/ssd.h"

namespace effarch::model {
namespace {

class Mamba2Mixer final : public Mixer {
 public:
  Mamba2Mixer(const ModelConfig& c, const Weights& w, int layer)
      : m_(*c.mamba),
        in_proj_(w.linear(layer, "mamba.in_proj.")),
        conv_w_(w.get(layer, "mamba.conv.weight")),
        conv_b_(optional_weight(w, layer, "mamba.conv.bias")),
        norm_w_(w.get(layer, "mamba.norm.weight")),
        out_proj_(w.linear(layer, "mamba.out_proj.")) {
    args_.A = -at::exp(w.get(layer, "mamba.A_log").to(at::kFloat));
    // D and dt_bias in fp32 once here: every implementation widens them to fp32 anyway, and the
    // decode step's kernel then reads them in place (no per-token conversion inside a CUDA graph).
    args_.D = w.get(layer, "mamba.D").to(at::kFloat);
    args_.dt_bias = w.get(layer, "mamba.dt_bias").to(at::kFloat);
    args_.dt_softplus = true;
    if (m_.time_step_clamped) {
      args_.dt_min = m_.time_step_min;
      args_.dt_max = m_.time_step_max;
    }
    args_.chunk_size = m_.chunk_size;
    // time_step_limit clamps dt in the chunked scan only: transformers 5.23 (torch_forward and the
    // mamba_ssm kernels it calls) never clamps in the one-token decode step, so neither does effarch.
    decode_args_ = args_;
    decode_args_.dt_min = 0.0;
    decode_args_.dt_max = std::numeric_limits<double>::infinity();
  }

  // A long prompt runs through the mixer in pieces of kPrefillPieceChunks chunks, each continuing
  // from the cache the previous one left (conv window and SSM state): the same chunks, the same
  // state passed between them, so the same result, but the mixer's activations (in_proj output,
  // conv output, fp32 y, the scan's workspace: about 120 KB per token for Codestral) exist for
  // one piece at a time instead of the whole prompt.
  static constexpr int64_t kPrefillPieceChunks = 32;

  at::Tensor forward(const ops::NormedInput& in, LayerCache& cache, const ForwardContext& ctx) const override {
    const int64_t t = in.size(1);
    const bool decode_step = ctx.start_pos != 0 && t == 1;
    const int64_t piece = kPrefillPieceChunks * std::max<int64_t>(m_.chunk_size, 1);
    if (t <= piece) return forward_piece(in, cache, ctx, /*fresh=*/ctx.start_pos == 0, decode_step);
    const at::Tensor x = in.tensor();
    at::Tensor out;
    for (int64_t from = 0; from < t; from += piece) {
      const int64_t len = std::min(piece, t - from);
      const at::Tensor part =
          forward_piece(x.narrow(1, from, len), cache, ctx, /*fresh=*/ctx.start_pos == 0 && from == 0, false);
      if (!out.defined()) out = at::empty({x.size(0), t, part.size(2)}, part.options());
      out.narrow(1, from, len).copy_(part);
    }
    return out;
  }

  void allocate(LayerCache& cache, int64_t batch, int64_t /*max_len*/, at::ScalarType dtype,
                at::Device device) const override {
    cache.conv_state = at::zeros({batch, m_.conv_dim(), m_.d_conv}, at::TensorOptions().dtype(dtype).device(device));
    cache.ssm_state = at::zeros({batch, m_.num_heads, m_.head_dim, m_.d_state},
                                at::TensorOptions().dtype(at::kFloat).device(device));
  }

 private:
  // x [B, T, hidden] through the mixer. fresh: the cache starts empty (prefill from position 0);
  // decode_step: one token of a decode (the one-token update, dt unclamped as transformers does).
  // A pending x (a decode step's block boundary) goes to in_proj's GEMV, its prologue.
  at::Tensor forward_piece(const ops::NormedInput& x, LayerCache& cache, const ForwardContext& ctx, bool fresh,
                           bool decode_step) const {
    const int64_t b = x.size(0), t = x.size(1);
    const int64_t di = m_.d_inner, h = m_.num_heads, p = m_.head_dim, g = m_.n_groups, n = m_.d_state;
    const int64_t conv_dim = m_.conv_dim();
    // SiLU fuses into the conv; any other hidden_act runs after a conv without activation.
    const bool silu = m_.activation == Activation::SiLU;
    at::Tensor proj, decode_conv;  // [B, T, Di + conv_dim + H]; a one-token conv's output [B, conv_dim, 1]
    if (!fresh && t == 1) {
      // One token: the conv update runs inside in_proj's GEMV where the kernel takes it
      // (ops::linear_conv_update: one launch instead of two), else after it; a pending input's
      // add + norm in that GEMV's prologue too, where it runs one.
      ops::ProjectedConv pc = ops::linear_conv_update(x.view({b, x.size(2)}), in_proj_, di, cache.conv_state, conv_w_,
                                                      conv_b_, silu, ctx.backend);
      proj = pc.projection.unsqueeze(1);
      decode_conv = pc.conv.unsqueeze(2);
    } else {
      proj = ops::linear(x.tensor(), in_proj_, ctx.backend);
    }
    const at::Tensor z = proj.narrow(2, 0, di);
    at::Tensor y;  // [B, T, Di] fp32
    {  // the conv output lives only until the scan has read it
      const at::Tensor dt = proj.narrow(2, di + conv_dim, h);  // [B, T, H]
      at::Tensor conv = decode_conv.defined()
                            ? std::move(decode_conv)
                            : prefill_conv(proj.narrow(2, di, conv_dim).transpose(1, 2), cache, fresh, silu, ctx);
      if (!silu) conv = ops::activate(m_.activation, conv);
      const at::Tensor u = conv.transpose(1, 2);  // [B, T, conv_dim]
      const at::Tensor xs = u.narrow(2, 0, di).reshape({b, t, h, p});
      const at::Tensor bm = u.narrow(2, di, g * n).reshape({b, t, g, n});
      const at::Tensor cm = u.narrow(2, di + g * n, g * n).reshape({b, t, g, n});
      if (decode_step) {
        y = ops::ssd_state_update(xs.select(1, 0), dt.select(1, 0), bm.select(1, 0), cm.select(1, 0), decode_args_,
                                  cache.ssm_state, ctx.backend)
                .reshape({b, 1, di});
      } else {
        y = ops::ssd_chunk_scan(xs, dt, bm, cm, args_, cache.ssm_state, /*from_state=*/!fresh, ctx.backend)
                .reshape({b, t, di});
      }
    }
    // The norm writes the model dtype directly (the same rounding as casting its fp32 result).
    const at::Tensor normed =
        ops::gated_rms_norm(y, z, norm_w_, di / g, m_.gated_norm_eps, ctx.backend, proj.scalar_type());
    return all_reduce(ops::linear(normed, out_proj_, ctx.backend), ctx.tp);
  }

  // The conv over several tokens: xbc [B, conv_dim, T] (a view of in_proj's output) from an empty
  // cache (fresh), or after it. Several tokens after the cache (a prompt's later pieces, a
  // continuation): the prefill conv over [the cached window's last K-1 inputs | x], whose first
  // K-1 outputs are dropped; every output left has a full window, the same sum the update
  // computes, in parallel over time rather than token after token, and it writes the new window.
  at::Tensor prefill_conv(const at::Tensor& xbc, LayerCache& cache, bool fresh, bool silu,
                          const ForwardContext& ctx) const {
    if (fresh) return ops::causal_conv1d(xbc, conv_w_, conv_b_, silu, &cache.conv_state, ctx.backend);
    const int64_t k = cache.conv_state.size(2);
    const at::Tensor history = at::cat({cache.conv_state.narrow(2, 1, k - 1), xbc}, 2);
    return ops::causal_conv1d(history, conv_w_, conv_b_, silu, &cache.conv_state, ctx.backend)
        .narrow(2, k - 1, xbc.size(2));
  }

  MambaConfig m_;
  ops::Linear in_proj_;
  at::Tensor conv_w_;
  std::optional<at::Tensor> conv_b_;
  at::Tensor norm_w_;
  ops::Linear out_proj_;
  ops::SsdArgs args_;         // prefill: dt clamped to time_step_limit
  ops::SsdArgs decode_args_;  // decode: no clamp
};

}  // namespace

std::unique_ptr<Mixer> make_mamba2(const ModelConfig& config, const Weights& weights, int layer) {
  return std::make_unique<Mamba2Mixer>(config, weights, layer);
}

}  // namespace effarch::model
