// CUDA path of effarch::ops::activate / gated_activation with a backend: launches the fused
// kernel on the params src/ops/activation_launch.cpp prepared. Built only with CUDA.

#include <c10/cuda/CUDAGuard.h>

#include "activation/activation.h"
#include "activation_launch.h"
#include "cuda_binding.h"

namespace effarch::ops::detail {

at::Tensor activation_cuda(Activation act, const at::Tensor& x, bool gated) {
  const c10::cuda::CUDAGuard device_guard(x.device());
  ActivationLaunch l = prepare_activation(act, x, gated);
  throw_if_failed(kernels::activation(l.params, current_stream()), "activation");
  std::vector<int64_t> sizes = x.sizes().vec();
  sizes.back() = l.params.cols;
  return l.out.view(sizes);
}

}  // namespace effarch::ops::detail
