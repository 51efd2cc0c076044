// A block: norm -> mixer -> residual, then norm -> feed-forward -> residual; or, for Phi's
// parallel block, one norm feeding both and a single residual sum. Mamba models keep the residual
// stream in fp32 (residual_in_fp32) and feed the norm its model-dtype cast, as HF does.
// Each residual add and the norm after it are one op (ops::add_norm: one kernel on CUDA instead of
// an add and the norm's several), across blocks too: a block's last add carries the next block's
// mixer norm (docs/engine.md, Fused residual + norm).

#include <fmt/format.h>

#include <ATen/ATen.h>

#include "blocks.h"
#include "effarch/common/error.h"
#include "effarch/ops/activation.h"
#include "effarch/ops/norm.h"

namespace effarch::model {

Norm::Norm(const ModelConfig& config, const Weights& weights, int layer, const std::string& role_prefix) {
  params_.weight = weights.get(layer, role_prefix + "weight");
  params_.eps = config.norm_eps;
  params_.layer_norm = config.norm == NormKind::LayerNorm;
  if (params_.layer_norm) params_.bias = weights.get(layer, role_prefix + "bias");
}

at::Tensor Norm::operator()(const at::Tensor& x) const {
  if (!params_.layer_norm) return ops::rms_norm(x, params_.weight, params_.eps);
  return ops::layer_norm(x, params_.weight, params_.bias, params_.eps);
}

ops::AddNormResult Norm::add(const at::Tensor& x, const at::Tensor& y, const at::Tensor* z, ops::Backend backend) const {
  return ops::add_norm(x, y, z, params_, backend);
}

ops::NormedInput Norm::pending(const at::Tensor& x, const at::Tensor& y, const at::Tensor* z,
                               ops::Backend backend) const {
  return ops::NormedInput::pending(x, y, z, params_, backend);
}

std::vector<ops::OpFamily> op_families(const ModelConfig& config, const LayerSpec& layer) {
  using ops::OpFamily;
  std::vector<OpFamily> ops;
  switch (layer.mixer) {
    case MixerKind::Attention:
      ops = {OpFamily::DecodeAttention, OpFamily::RopeCacheWrite};
      break;
    case MixerKind::Mamba1:
      ops = {OpFamily::CausalConv1d, OpFamily::SelectiveScan, OpFamily::SelectiveStateUpdate};
      break;
    case MixerKind::Mamba2:
      ops = {OpFamily::CausalConv1d, OpFamily::SsdScan, OpFamily::SsdStateUpdate, OpFamily::GatedRmsNorm};
      break;
  }
  if (layer.ffn == FfnKind::MoE) ops.push_back(OpFamily::MoeDispatch);
  // A dense MLP's activation where it has the fused kernel (the others run their reference).
  if (layer.ffn == FfnKind::Dense && config.mlp && ops::has_activation_kernel(config.mlp->activation)) {
    ops.push_back(OpFamily::Activation);
  }
  ops.push_back(OpFamily::AddNorm);  // every block's residual adds (Block::forward_fused)
  ops.push_back(OpFamily::DenseGemv);  // the projections of a decode step (ops::linear, dense weights)
  return ops;
}

void Mixer::attend_step(const at::Tensor&, LayerCache&, const ForwardContext&, const at::Tensor&) const {
  throw OpError("attend_step: only an attention mixer runs a parallel block's fused step");
}

namespace {

const std::vector<std::string> kParallelIn{"attn.q.", "attn.k.", "attn.v.", "mlp.fc1."};
const std::vector<std::string> kParallelOut{"mlp.fc2.", "attn.o."};

// The two products of a parallel block's one-token step, its weights re-pointed at views of them
// (built before the attention and the MLP, which then hold those views: q/k/v stay one view for
// the prefill's product, o and fc2 become column views of `out`), or nullopt where the layer is no
// parallel block of attention and a non-gated dense MLP, or its weights do not allow it: int8
// (a scale per output of each part: fused_linear_inputs refuses it), or a part without the bias
// the others have.
std::optional<ParallelProducts> make_parallel_products(const ModelConfig& config, const LayerSpec& spec,
                                                       const Weights& weights, int layer) {
  if (!config.parallel_block || spec.mixer != MixerKind::Attention || spec.ffn != FfnKind::Dense || !config.mlp ||
      config.mlp->gated) {
    return std::nullopt;
  }
  if (!weights.can_fuse(layer, kParallelIn) || !weights.can_fuse_inputs(layer, kParallelOut)) return std::nullopt;
  ParallelProducts p;
  p.inter = weights.get(layer, "mlp.fc1.weight").size(0);
  p.in = weights.fused_linear(layer, kParallelIn);
  p.out = weights.fused_linear_inputs(layer, kParallelOut);
  p.act = config.mlp->activation;
  return p;
}

}  // namespace

Block::Block(const ModelConfig& config, const Weights& weights, int layer, bool fuse_parallel)
    : parallel_(config.parallel_block),
      residual_in_fp32_(config.residual_in_fp32),
      dtype_(weights.get(layer, "mixer_norm.weight").scalar_type()),
      mixer_norm_(config, weights, layer, "mixer_norm.") {
  const LayerSpec& spec = config.layers.at(static_cast<size_t>(layer));
  if (spec.ffn != FfnKind::None && !parallel_) ffn_norm_ = Norm(config, weights, layer, "ffn_norm.");
  if (fuse_parallel) products_ = make_parallel_products(config, spec, weights, layer);
  switch (spec.mixer) {
    case MixerKind::Attention:
      mixer_ = make_attention(config, weights, layer);
      break;
    case MixerKind::Mamba1:
      mixer_ = make_mamba1(config, weights, layer);
      break;
    case MixerKind::Mamba2:
      mixer_ = make_mamba2(config, weights, layer);
      break;
    default:
      throw ConfigError(fmt::format("{}: layer {}: {} mixers are not implemented yet", config.source, layer,
                                    to_string(spec.mixer)));
  }
  switch (spec.ffn) {
    case FfnKind::Dense:
      ffn_ = make_dense_mlp(config, weights, layer);
      break;
    case FfnKind::MoE:
      ffn_ = make_moe(config, weights, layer);
      break;
    case FfnKind::None:
      break;
    default:
      throw ConfigError(fmt::format("{}: layer {}: {} feed-forwards are not implemented yet", config.source, layer,
                                    to_string(spec.ffn)));
  }
}

at::Tensor Block::mixer_input(const at::Tensor& x) const {
  return mixer_norm_(residual_in_fp32_ && !parallel_ ? x.to(dtype_) : x);
}

namespace {

// A residual add with the norm after it: computed now, or, in a one-token step with
// ctx.norm_prologue, left pending for the product that reads it (its GEMV's prologue).
ResidualStream add_norm(const Norm& norm, const at::Tensor& x, const at::Tensor& y, const at::Tensor* z,
                        const ForwardContext& ctx) {
  if (ctx.norm_prologue && y.dim() == 3 && y.size(1) == 1) return {at::Tensor(), norm.pending(x, y, z, ctx.backend)};
  ops::AddNormResult r = norm.add(x, y, z, ctx.backend);
  return {std::move(r.residual), std::move(r.normed)};
}

// The block's last residual add, with `next` fused into it where there is one.
ResidualStream finish(const Norm* next, const at::Tensor& x, const at::Tensor& y, const at::Tensor* z,
                      const ForwardContext& ctx) {
  if (next != nullptr) return add_norm(*next, x, y, z, ctx);
  return {z != nullptr ? (y + *z) + x : x + y, ops::NormedInput()};
}

}  // namespace

ResidualStream Block::forward_fused(const ResidualStream& in, const Norm* next, LayerCache& cache,
                                    const ForwardContext& ctx) const {
  // A pending in.normed: the residual comes from its add + norm, once the first product (or
  // tensor()) ran it, so in.resolved_residual() only after the first reader.
  const ops::NormedInput& a = in.normed;
  if (parallel_) {  // Phi: h = attn(a) + mlp(a) + h with a = LN(h)
    if (products_ && a.size(1) == 1) return forward_step(in, next, cache, ctx);
    const at::Tensor an = a.tensor();  // two readers: computed once
    if (ctx.tp != nullptr) {  // tensor parallel: both partial sums in one all-reduce instead of two
      ForwardContext local = ctx;
      local.tp = nullptr;
      return finish(next, in.resolved_residual(),
                    all_reduce(mixer_->forward(an, cache, local) + ffn_->forward(an, local), ctx.tp), nullptr, ctx);
    }
    const at::Tensor m = mixer_->forward(an, cache, ctx);
    const at::Tensor f = ffn_->forward(an, ctx);
    return finish(next, in.resolved_residual(), m, &f, ctx);
  }
  const at::Tensor m = mixer_->forward(a, cache, ctx);
  // Mamba (residual_in_fp32): the residual stream stays fp32; each norm reads its model-dtype cast
  // (add_norm casts a fp32 residual to the weights' dtype before the norm).
  const at::Tensor x = in.resolved_residual();
  const at::Tensor r = residual_in_fp32_ ? x.to(at::kFloat) : x;
  if (!ffn_) return finish(next, r, m, nullptr, ctx);
  const ResidualStream h = add_norm(ffn_norm_, r, m, nullptr, ctx);
  const at::Tensor f = ffn_->forward(h.normed, ctx);
  return finish(next, h.resolved_residual(), f, nullptr, ctx);
}

ResidualStream Block::forward_step(const ResidualStream& in, const Norm* next, LayerCache& cache,
                                   const ForwardContext& ctx) const {
  const ParallelProducts& p = *products_;
  const ops::NormedInput& a = in.normed;
  const int64_t b = a.size(0), qkv = p.qkv(), attn = p.attn(), width = qkv + p.inter + attn;
  // One row a sequence: [q | k | v | act(fc1) | attention]. The first product fills the first
  // qkv + inter columns, the attention the last attn; the second product reads the last inter + attn.
  const at::Tensor y = at::empty({b, width}, a.stand_in().options());
  const at::Tensor in_out = y.narrow(1, 0, qkv + p.inter);
  ops::linear_activation_tail(a, p.in, p.act, qkv, ctx.backend, &in_out);
  const at::Tensor x = in.resolved_residual();  // after the first product: a pending one's is computed
  const at::Tensor rows = y.view({b, 1, width});
  mixer_->attend_step(rows.narrow(-1, 0, qkv), cache, ctx, rows.narrow(-1, qkv + p.inter, attn));
  const at::Tensor sum = ops::linear(y.narrow(1, qkv, p.inter + attn), p.out, ctx.backend).view({b, 1, -1});
  return finish(next, x, all_reduce(sum, ctx.tp), nullptr, ctx);
}

void Block::allocate(LayerCache& cache, int64_t batch, int64_t max_len, at::ScalarType dtype, at::Device device) const {
  mixer_->allocate(cache, batch, max_len, dtype, device);
}

}  // namespace effarch::model
