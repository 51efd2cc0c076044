#pragma once
// Normalisations with Hugging Face's rounding: RMSNorm normalises in fp32, casts back to the
// input dtype, then multiplies by the weight (two roundings in half precision).

#include <ATen/core/Tensor.h>

namespace effarch::ops {

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps);
at::Tensor layer_norm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, double eps);

}  // namespace effarch::ops
