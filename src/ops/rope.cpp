#include "effarch/ops/rope.h"

#include <algorithm>
#include <cmath>

#include <ATen/ATen.h>

namespace effarch::ops {

namespace {

// base ** (arange(0, dim, 2) / dim) in fp32, as transformers writes it.
at::Tensor pos_freqs(double base, int64_t dim) {
  return at::pow(base, at::arange(0, dim, 2, at::kLong).to(at::kFloat) / static_cast<double>(dim));
}

double yarn_mscale(double scale, double mscale) { return scale <= 1 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0; }

// Yarn: interpolated frequencies below the correction range, extrapolated above, a linear ramp
// between (transformers' _compute_yarn_parameters).
at::Tensor yarn_inv_freq(const RopeParams& rope) {
  const int64_t dim = rope.rotary_dim;
  const at::Tensor pf = pos_freqs(rope.theta, dim);
  const at::Tensor extrapolation = 1.0 / pf;
  const at::Tensor interpolation = 1.0 / (rope.factor * pf);
  const double orig = static_cast<double>(rope.original_max_position);
  auto correction_dim = [&](double rotations) {
    return (static_cast<double>(dim) * std::log(orig / (rotations * 2 * M_PI))) / (2 * std::log(rope.theta));
  };
  double low = correction_dim(rope.beta_fast), high = correction_dim(rope.beta_slow);
  if (rope.truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  low = std::max(low, 0.0);
  high = std::min(high, static_cast<double>(dim - 1));
  if (low == high) high += 0.001;  // transformers' guard against a zero-width ramp
  const at::Tensor ramp = at::clamp((at::arange(dim / 2, at::kFloat) - low) / (high - low), 0, 1);
  const at::Tensor extrapolation_factor = 1 - ramp;
  return interpolation * (1 - extrapolation_factor) + extrapolation * extrapolation_factor;
}

}  // namespace

at::Tensor rope_inv_freq(const RopeParams& rope) {
  const int64_t dim = rope.rotary_dim;
  if (rope.type == "yarn") return yarn_inv_freq(rope);
  at::Tensor inv = 1.0 / pos_freqs(rope.theta, dim);  // fp32 like HF
  if (rope.type == "linear") return inv / rope.factor;
  if (rope.type == "llama3") {
    const double orig = static_cast<double>(rope.original_max_position);
    const double low_wavelen = orig / rope.low_freq_factor;
    const double high_wavelen = orig / rope.high_freq_factor;
    const at::Tensor wavelen = 2.0 * M_PI / inv;
    at::Tensor scaled = at::where(wavelen > low_wavelen, inv / rope.factor, inv);
    const at::Tensor smooth = (orig / wavelen - rope.low_freq_factor) / (rope.high_freq_factor - rope.low_freq_factor);
    const at::Tensor smoothed = (1 - smooth) * scaled / rope.factor + smooth * scaled;
    const at::Tensor medium = at::logical_not(wavelen < high_wavelen) & at::logical_not(wavelen > low_wavelen);
    inv = at::where(medium, smoothed, scaled);
  }
  // dynamic within max_position: base * ((factor * L / L) - (factor - 1)) ** ... = base.
  return inv;
}

double rope_attention_factor(const RopeParams& rope) {
  if (rope.type != "yarn") return 1.0;
  if (rope.attention_factor) return *rope.attention_factor;
  if (rope.mscale && rope.mscale_all_dim && *rope.mscale != 0 && *rope.mscale_all_dim != 0) {
    return yarn_mscale(rope.factor, *rope.mscale) / yarn_mscale(rope.factor, *rope.mscale_all_dim);
  }
  return yarn_mscale(rope.factor, 1.0);
}

RopeTables make_rope_tables(const RopeParams& rope, int64_t max_len, at::Device device) {
  const at::Tensor inv = rope_inv_freq(rope);
  const at::Tensor pos = at::arange(max_len, at::kLong).to(at::kFloat);
  at::Tensor freqs = at::outer(pos, inv);  // [max_len, dim/2]
  if (rope.type == "dynamic" && max_len > rope.max_position) {
    // Row p >= max_position: transformers' decode step at p grows the base for seq_len = p + 1.
    const int64_t dim = rope.rotary_dim, first = rope.max_position;
    const at::Tensor seq_len = at::arange(first + 1, max_len + 1, at::kDouble).unsqueeze(1);
    const at::Tensor base = rope.theta * at::pow(rope.factor * seq_len / static_cast<double>(first) - (rope.factor - 1),
                                                 static_cast<double>(dim) / static_cast<double>(dim - 2));
    const at::Tensor exponent = at::arange(0, dim, 2, at::kLong).to(at::kFloat).to(at::kDouble) / static_cast<double>(dim);
    const at::Tensor grown = (1.0 / at::pow(base, exponent.unsqueeze(0))).to(at::kFloat);  // [rows, dim/2]
    freqs.narrow(0, first, max_len - first).copy_(pos.narrow(0, first, max_len - first).unsqueeze(1) * grown);
  }
  const at::Tensor emb = at::cat({freqs, freqs}, -1);  // [max_len, dim]
  const double scale = rope_attention_factor(rope);
  if (scale == 1.0) return {emb.cos().to(device), emb.sin().to(device), rope.rotary_dim};
  return {(emb.cos() * scale).to(device), (emb.sin() * scale).to(device), rope.rotary_dim};
}

namespace {

// cos, sin: [T, rd] in x's dtype.
at::Tensor rotate(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, int64_t rd) {
  const bool partial = rd < x.size(-1);
  const at::Tensor rot = partial ? x.narrow(-1, 0, rd) : x;
  const at::Tensor x1 = rot.narrow(-1, 0, rd / 2);
  const at::Tensor x2 = rot.narrow(-1, rd / 2, rd / 2);
  const at::Tensor rotated = rot * cos + at::cat({-x2, x1}, -1) * sin;
  return partial ? at::cat({rotated, x.narrow(-1, rd, x.size(-1) - rd)}, -1) : rotated;
}

}  // namespace

at::Tensor apply_rope(const at::Tensor& x, const RopeTables& tables, int64_t start_pos) {
  const int64_t t = x.size(2);
  return rotate(x, tables.cos.narrow(0, start_pos, t).to(x.scalar_type()),
                tables.sin.narrow(0, start_pos, t).to(x.scalar_type()), tables.rotary_dim);
}

at::Tensor apply_rope_at(const at::Tensor& x, const RopeTables& tables, const at::Tensor& position) {
  return rotate(x, tables.cos.index_select(0, position).to(x.scalar_type()),
                tables.sin.index_select(0, position).to(x.scalar_type()), tables.rotary_dim);
}

}  // namespace effarch::ops
