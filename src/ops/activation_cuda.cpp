// CUDA path of effarch::ops::activate / gated_activation with a backend: launches the fused
// kernel on the params src/ops/activation_launch.cpp prepared; and linear_activation's and
// linear_gated_activation's, the dense GEMV with the activation in its epilogue. Built only with
// CUDA.


#include "activation/activation.h"
#include "activation_launch.h"
#include "cuda_binding.h"
#include "effarch/common/error.h"
#include "gemv/gemv_params.h"

namespace effarch::ops::detail {

at::Tensor activation_cuda(Activation act, const at::Tensor& x, bool gated) {
  const DeviceGuard device_guard(x.device());
  ActivationLaunch l = prepare_activation(act, x, gated);
  throw_if_failed(kernels::activation(l.params, current_stream()), "activation");
  std::vector<int64_t> sizes = x.sizes().vec();
  sizes.back() = l.params.cols;
  return l.out.view(sizes);
}

at::Tensor linear_activation_cuda(const at::Tensor& x, const Linear& layer, Activation act, bool gated, int64_t from,
                                  const at::Tensor* out, const kernels::AddNormParams* norm) {
  const auto kind = kernel_activation(act);
  if (!kind) throw OpError("linear_activation: no kernel for this activation (only silu and gelu_new)");
  kernels::GemvActivation a;
  a.on = true;
  a.act = *kind;
  a.gated = gated;
  a.from = static_cast<int>(from);  // linear_activation_tail checked 0 <= from < O
  return dense_gemv_cuda(x, layer, nullptr, &a, out, norm);
}

}  // namespace effarch::ops::detail
