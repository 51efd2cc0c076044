#include "effarch/ops/norm.h"

#include <ATen/ATen.h>
#include <ATen/record_function.h>

namespace effarch::ops {

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  RECORD_USER_SCOPE("effarch::rms_norm");  // names the op in profiles (effarch profile)
  const at::Tensor xf = x.to(at::kFloat);
  const at::Tensor normed = xf * at::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return weight * normed.to(x.scalar_type());
}

at::Tensor layer_norm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, double eps) {
  RECORD_USER_SCOPE("effarch::layer_norm");  // names the op in profiles (effarch profile)
  return at::layer_norm(x, {x.size(-1)}, weight, bias, eps);
}

}  // namespace effarch::ops
