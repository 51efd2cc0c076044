// CUDA path of effarch::ops::add_norm: launches the fused kernel on the params
// src/ops/add_norm_launch.cpp prepared. Built only with CUDA.


#include "add_norm/add_norm.h"
#include "add_norm_launch.h"
#include "cuda_binding.h"

namespace effarch::ops::detail {

AddNormResult add_norm_cuda(const at::Tensor& x, const at::Tensor& y, const at::Tensor* z, const NormParams& norm) {
  const DeviceGuard device_guard(x.device());
  AddNormLaunch l = prepare_add_norm(x, y, z, norm);
  throw_if_failed(kernels::add_norm(l.params, current_stream()), "add_norm");
  return {l.residual.view(x.sizes()), l.normed.view(x.sizes())};
}

}  // namespace effarch::ops::detail
