// A block: norm -> mixer -> residual, then norm -> feed-forward -> residual; or, for Phi's
// parallel block, one norm feeding both and a single residual sum. Mamba models keep the residual
// stream in fp32 (residual_in_fp32) and feed the norm its model-dtype cast, as HF does.

#include <fmt/format.h>

#include <ATen/ATen.h>

#include "blocks.h"
#include "effarch/common/error.h"
#include "effarch/ops/norm.h"

namespace effarch::model {

Norm::Norm(const ModelConfig& config, const Weights& weights, int layer, const std::string& role_prefix)
    : kind_(config.norm), eps_(config.norm_eps), weight_(weights.get(layer, role_prefix + "weight")) {
  if (kind_ == NormKind::LayerNorm) bias_ = weights.get(layer, role_prefix + "bias");
}

at::Tensor Norm::operator()(const at::Tensor& x) const {
  if (kind_ == NormKind::RMSNorm) return ops::rms_norm(x, weight_, eps_);
  return ops::layer_norm(x, weight_, bias_, eps_);
}

std::vector<ops::OpFamily> op_families(const LayerSpec& layer) {
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
  return ops;
}

Block::Block(const ModelConfig& config, const Weights& weights, int layer)
    : parallel_(config.parallel_block),
      residual_in_fp32_(config.residual_in_fp32),
      dtype_(weights.get(layer, "mixer_norm.weight").scalar_type()),
      mixer_norm_(config, weights, layer, "mixer_norm.") {
  const LayerSpec& spec = config.layers.at(static_cast<size_t>(layer));
  if (spec.ffn != FfnKind::None && !parallel_) ffn_norm_ = Norm(config, weights, layer, "ffn_norm.");
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

at::Tensor Block::forward(const at::Tensor& x, LayerCache& cache, const ForwardContext& ctx) const {
  if (parallel_) {  // Phi: h = attn(a) + mlp(a) + h with a = LN(h)
    const at::Tensor a = mixer_norm_(x);
    if (ctx.tp != nullptr) {  // tensor parallel: both partial sums in one all-reduce instead of two
      ForwardContext local = ctx;
      local.tp = nullptr;
      return all_reduce(mixer_->forward(a, cache, local) + ffn_->forward(a, local), ctx.tp) + x;
    }
    return mixer_->forward(a, cache, ctx) + ffn_->forward(a, ctx) + x;
  }
  if (residual_in_fp32_) {  // Mamba: the residual stream stays fp32; the norm sees the model dtype
    at::Tensor h = x.to(at::kFloat) + mixer_->forward(mixer_norm_(x.to(dtype_)), cache, ctx);
    if (ffn_) h = h + ffn_->forward(ffn_norm_(h.to(dtype_)), ctx);
    return h;
  }
  at::Tensor h = x + mixer_->forward(mixer_norm_(x), cache, ctx);
  if (ffn_) h = h + ffn_->forward(ffn_norm_(h), ctx);
  return h;
}

void Block::allocate(LayerCache& cache, int64_t batch, int64_t max_len, at::ScalarType dtype, at::Device device) const {
  mixer_->allocate(cache, batch, max_len, dtype, device);
}

}  // namespace effarch::model
