#include "effarch/ops/rope.h"

#include <cmath>

#include <ATen/ATen.h>

namespace effarch::ops {

at::Tensor rope_inv_freq(const model::RopeConfig& rope) {
  const int64_t dim = rope.rotary_dim;
  const at::Tensor exponent = at::arange(0, dim, 2, at::kLong).to(at::kFloat) / static_cast<double>(dim);
  at::Tensor inv = 1.0 / at::pow(rope.theta, exponent);  // fp32 like HF
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
  return inv;
}

RopeTables make_rope_tables(const model::RopeConfig& rope, int64_t max_len, at::Device device) {
  const at::Tensor inv = rope_inv_freq(rope);
  const at::Tensor pos = at::arange(max_len, at::kLong).to(at::kFloat);
  const at::Tensor freqs = at::outer(pos, inv);      // [max_len, dim/2]
  const at::Tensor emb = at::cat({freqs, freqs}, -1);  // [max_len, dim]
  return {emb.cos().to(device), emb.sin().to(device), rope.rotary_dim};
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
