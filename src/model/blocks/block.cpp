// A block: norm -> mixer -> residual, then norm -> feed-forward -> residual; or, for Phi's
// parallel block, one norm feeding both and a single residual sum.

#include <fmt/format.h>

#include <ATen/ATen.h>

#include "blocks.h"
#include "effarch/common/error.h"
#include "effarch/ops/norm.h"

namespace effarch::model {

at::Tensor apply_norm(const ModelConfig& config, const Weights& weights, int layer, const std::string& role_prefix,
                      const at::Tensor& x) {
  const at::Tensor& w = weights.get(layer, role_prefix + "weight");
  if (config.norm == NormKind::RMSNorm) return ops::rms_norm(x, w, config.norm_eps);
  return ops::layer_norm(x, w, weights.get(layer, role_prefix + "bias"), config.norm_eps);
}

Block::Block(const ModelConfig& config, const Weights& weights, int layer)
    : config_(config), weights_(weights), layer_(layer) {
  const LayerSpec& spec = config.layers.at(static_cast<size_t>(layer));
  switch (spec.mixer) {
    case MixerKind::Attention:
      mixer_ = make_attention(config, weights, layer);
      break;
    default:
      throw ConfigError(fmt::format("{}: layer {}: {} mixers are not implemented yet", config.source, layer,
                                    to_string(spec.mixer)));
  }
  switch (spec.ffn) {
    case FfnKind::Dense:
      ffn_ = make_dense_mlp(config, weights, layer);
      break;
    case FfnKind::None:
      break;
    default:
      throw ConfigError(fmt::format("{}: layer {}: {} feed-forwards are not implemented yet", config.source, layer,
                                    to_string(spec.ffn)));
  }
}

at::Tensor Block::forward(const at::Tensor& x, LayerCache& cache, const ForwardContext& ctx) const {
  if (config_.parallel_block) {  // Phi: h = attn(a) + mlp(a) + h with a = LN(h)
    const at::Tensor a = apply_norm(config_, weights_, layer_, "mixer_norm.", x);
    return mixer_->forward(a, cache, ctx) + ffn_->forward(a) + x;
  }
  at::Tensor h = x + mixer_->forward(apply_norm(config_, weights_, layer_, "mixer_norm.", x), cache, ctx);
  if (ffn_) h = h + ffn_->forward(apply_norm(config_, weights_, layer_, "ffn_norm.", h));
  return h;
}

void Block::allocate(LayerCache& cache, int64_t batch, int64_t max_len, at::ScalarType dtype, at::Device device) const {
  mixer_->allocate(cache, batch, max_len, dtype, device);
}

}  // namespace effarch::model
