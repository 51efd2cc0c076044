// Mamba-1 mixer (MambaForCausalLM, Falcon-Mamba, Jamba's Mamba layers): in_proj -> causal conv +
// hidden_act (SiLU) -> x_proj -> (dt, B, C) [-> RMSNorms] -> dt_proj -> selective scan gated by SiLU(z) ->
// out_proj. Prefill runs the chunked scan; decode one recurrence step on the cached state.

#include <ATen/ATen.h>

#include "blocks.h"
#include "effarch/ops/activation.h"
#include "effarch/ops/causal_conv1d.h"
#include "effarch/ops/norm.h"
#include "effarch/ops/selective_scan.h"

namespace effarch::model {
namespace {

class Mamba1Mixer final : public Mixer {
 public:
  Mamba1Mixer(const ModelConfig& c, const Weights& w, int layer)
      : m_(*c.mamba),
        in_proj_(w.linear(layer, "mamba.in_proj.")),
        conv_w_(w.get(layer, "mamba.conv.weight")),
        conv_b_(optional_weight(w, layer, "mamba.conv.bias")),
        x_proj_(w.linear(layer, "mamba.x_proj.")),
        dt_proj_(w.linear(layer, "mamba.dt_proj.", /*with_bias=*/false)),  // its bias goes to the scan (delta_bias), in fp32
        out_proj_(w.linear(layer, "mamba.out_proj.")) {
    args_.A = -at::exp(w.get(layer, "mamba.A_log").to(at::kFloat));
    // D and the dt bias in fp32, as the scan computes (and as mamba_ssm keeps them): the CUDA kernels
    // read them so, with no cast per call (one less launch per layer in a CUDA-graph decode step).
    args_.D = w.get(layer, "mamba.D").to(at::kFloat);
    args_.delta_bias = w.get(layer, "mamba.dt_proj.bias").to(at::kFloat);
    args_.delta_softplus = true;
    if (m_.dt_bc_norm == MambaConfig::DtBCNorm::Learned) {
      dt_norm_ = w.get(layer, "mamba.dt_norm.weight");
      b_norm_ = w.get(layer, "mamba.b_norm.weight");
      c_norm_ = w.get(layer, "mamba.c_norm.weight");
    }
  }

  at::Tensor forward(const ops::NormedInput& in, LayerCache& cache, const ForwardContext& ctx) const override {
    const int64_t di = m_.d_inner, n = m_.d_state, r = m_.dt_rank;
    const bool fresh = ctx.start_pos == 0;
    const bool one_token = !fresh && in.size(1) == 1;
    // SiLU fuses into the conv; any other hidden_act runs after a conv without activation.
    const bool silu = m_.activation == Activation::SiLU;
    at::Tensor u, z;  // [B, Di, T]: the conv's output, the gate
    if (one_token) {
      // A decode step: the conv update runs inside in_proj's GEMV where the kernel takes it
      // (ops::linear_conv_update: one launch instead of two), else after it; a pending input's
      // add + norm in that GEMV's prologue too, where it runs one.
      const ops::ProjectedConv pc = ops::linear_conv_update(in.view({in.size(0), in.size(2)}), in_proj_, 0,
                                                            cache.conv_state, conv_w_, conv_b_, silu, ctx.backend);
      u = pc.conv.unsqueeze(2);
      z = pc.projection.narrow(1, di, di).unsqueeze(2);
    } else {
      const at::Tensor xz = ops::linear(in.tensor(), in_proj_, ctx.backend);  // [B, T, 2 Di]
      const at::Tensor xs = xz.narrow(2, 0, di).transpose(1, 2);  // [B, Di, T] views, channel-last
      z = xz.narrow(2, di, di).transpose(1, 2);
      u = fresh ? ops::causal_conv1d(xs, conv_w_, conv_b_, silu, &cache.conv_state, ctx.backend)
                : ops::causal_conv1d_update(xs, cache.conv_state, conv_w_, conv_b_, silu, ctx.backend);
    }
    if (!silu) u = ops::activate(m_.activation, u);
    // Tensor parallel: this rank's channels' share of the product, summed over the ranks.
    const at::Tensor proj = all_reduce(ops::linear(u.transpose(1, 2), x_proj_, ctx.backend), ctx.tp);  // [B, T, R + 2N]
    at::Tensor dt_low = proj.narrow(2, 0, r), bmat = proj.narrow(2, r, n), cmat = proj.narrow(2, r + n, n);
    if (m_.dt_bc_norm == MambaConfig::DtBCNorm::Learned) {  // Jamba
      dt_low = ops::rms_norm(dt_low, dt_norm_, m_.dt_bc_norm_eps);
      bmat = ops::rms_norm(bmat, b_norm_, m_.dt_bc_norm_eps);
      cmat = ops::rms_norm(cmat, c_norm_, m_.dt_bc_norm_eps);
    } else if (m_.dt_bc_norm == MambaConfig::DtBCNorm::Weightless) {  // Falcon-Mamba
      dt_low = weightless_rms_norm(dt_low);
      bmat = weightless_rms_norm(bmat);
      cmat = weightless_rms_norm(cmat);
    }
    at::Tensor y;  // [B, Di, T]
    if (one_token) {
      // One token: dt_proj runs inside the update where the CUDA kernel takes it (one launch
      // instead of two), else as its own projection; the bias is added in fp32 by the update.
      y = ops::selective_state_update_dt_proj(u.select(2, 0), dt_low.select(1, 0), dt_proj_, bmat.select(1, 0),
                                              cmat.select(1, 0), z.select(2, 0), args_, cache.ssm_state, ctx.backend)
              .unsqueeze(2);
    } else {
      // [B, T, Di]; the bias is added in fp32 by the scan
      const at::Tensor delta = ops::linear(dt_low, dt_proj_, ctx.backend);
      ops::SelectiveScanArgs args = args_;  // with the CUDA prefill's variant (--selective-scan)
      if (ctx.selective_scan) ctx.selective_scan->apply(args);
      y = ops::selective_scan(u, delta.transpose(1, 2), bmat.transpose(1, 2), cmat.transpose(1, 2), z, args,
                              cache.ssm_state, /*from_state=*/!fresh, ctx.backend);
    }
    return all_reduce(ops::linear(y.transpose(1, 2), out_proj_, ctx.backend), ctx.tp);
  }

  void allocate(LayerCache& cache, int64_t batch, int64_t /*max_len*/, at::ScalarType dtype,
                at::Device device) const override {
    cache.conv_state = at::zeros({batch, m_.conv_dim(), m_.d_conv}, at::TensorOptions().dtype(dtype).device(device));
    cache.ssm_state = at::zeros({batch, m_.d_inner, m_.d_state}, at::TensorOptions().dtype(at::kFloat).device(device));
  }

 private:
  // Falcon-Mamba's weightless RMSNorm: normalise in fp32, back to the input dtype.
  at::Tensor weightless_rms_norm(const at::Tensor& t) const {
    const at::Tensor f = t.to(at::kFloat);
    return (f * at::rsqrt(f.pow(2).mean(-1, /*keepdim=*/true) + m_.dt_bc_norm_eps)).to(t.scalar_type());
  }

  MambaConfig m_;
  ops::Linear in_proj_;
  at::Tensor conv_w_;
  std::optional<at::Tensor> conv_b_;
  ops::Linear x_proj_, dt_proj_, out_proj_;
  at::Tensor dt_norm_, b_norm_, c_norm_;
  ops::SelectiveScanArgs args_;
};

}  // namespace

std::unique_ptr<Mixer> make_mamba1(const ModelConfig& config, const Weights& weights, int layer) {
  return std::make_unique<Mamba1Mixer>(config, weights, layer);
}

}  // namespace effarch::model
