#pragma once
// A linear layer, y = x W^T (+ b), as every projection of every architecture runs it: attention
// q/k/v/o, dense and expert MLPs, the Mamba projections (in, x, dt, out) and the head. One type
// and one call, so a weight format (today the model's dtype; int8 with per-channel scales is what
// the format is for) changes one place, not every block. Tensor-parallel shards are Dense weights
// of the rank's rows or columns (model/sharding.h), so they need no format of their own.

#include <cstdint>
#include <optional>
#include <string>

#include <ATen/core/Tensor.h>

namespace effarch::ops {

// How a linear layer's weight is stored.
enum class WeightFormat {
  Dense,  // the weight as it is, in the model's dtype ([out, in])
};

struct Linear {
  at::Tensor weight;  // [out, in]
  std::optional<at::Tensor> bias;  // [out]
  WeightFormat format = WeightFormat::Dense;

  Linear() = default;
  Linear(at::Tensor w, std::optional<at::Tensor> b = std::nullopt) : weight(std::move(w)), bias(std::move(b)) {}

  bool defined() const { return weight.defined(); }
  int64_t out_features() const { return weight.size(0); }
  int64_t in_features() const { return weight.size(1); }
  // Bytes a forward pass reads for this layer: the weight as stored (and its bias).
  uint64_t bytes() const;
};

// The format's name as results record it: the weight's dtype for Dense ("bfloat16", "float32").
std::string format_name(const Linear& layer);

// x [..., in] -> [..., out] in x's dtype. Throws OpError naming `x` or the weight for a mismatch.
at::Tensor linear(const at::Tensor& x, const Linear& layer);

}  // namespace effarch::ops
