#include "effarch/ops/linear.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "arg_checks.h"
#include "cpu/cpu_kernels.h"
#include "effarch/common/dtype.h"
#include "effarch/common/error.h"

namespace effarch::ops {

uint64_t Linear::bytes() const {
  uint64_t n = weight.defined() ? static_cast<uint64_t>(weight.nbytes()) : 0;
  if (bias) n += static_cast<uint64_t>(bias->nbytes());
  return n;
}

std::string format_name(const Linear& layer) {
  switch (layer.format) {
    case WeightFormat::Dense: return layer.weight.defined() ? float_dtype_name(layer.weight.scalar_type()) : "undefined";
  }
  return "?";
}

at::Tensor linear(const at::Tensor& x, const Linear& layer) {
  constexpr const char* op = "linear";
  if (!layer.weight.defined() || layer.weight.dim() != 2) {
    throw OpError(fmt::format("{}: the weight must be a [out, in] tensor, got {}", op,
                              layer.weight.defined() ? detail::shape(layer.weight) : "undefined"));
  }
  if (!x.defined() || x.dim() < 1 || x.size(-1) != layer.in_features()) {
    throw OpError(fmt::format("{}: x {} does not end in the weight's {} input features", op,
                              x.defined() ? detail::shape(x) : "undefined", layer.in_features()));
  }
  // A decode step's few rows: every thread streams its share of the weight (MKL's GEMV uses one).
  if (cpu::gemv_applies(x, layer.weight, layer.bias)) return cpu::gemv(x, layer.weight, layer.bias);
  return at::linear(x, layer.weight, layer.bias);
}

}  // namespace effarch::ops
