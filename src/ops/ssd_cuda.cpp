// CUDA paths of effarch::ops::ssd_state_update / ssd_chunk_scan / gated_rms_norm: the launch
// prepared on the host (ssd_launch.cpp) goes to the kernels (kernels/ssd/) on the current
// stream; a failed launch becomes an effarch::Error. Built only with CUDA (EFFARCH_HAVE_CUDA).

#include "ssd_cuda.h"

#include <ATen/ATen.h>

#include "cuda_binding.h"
#include "ssd/ssd.h"
#include "ssd_launch.h"

namespace effarch::ops::detail {

at::Tensor ssd_state_update_cuda(const at::Tensor& x, const at::Tensor& dt, const at::Tensor& Bmat,
                                 const at::Tensor& Cmat, const SsdArgs& args, const at::Tensor& state) {
  constexpr const char* op = "ssd_state_update";
  const DeviceGuard device_guard(x.device());
  const SsdUpdateLaunch launch = prepare_ssd_state_update(x, dt, Bmat, Cmat, args, state);
  throw_if_failed(kernels::ssd_state_update(launch.params, current_stream()), op);
  return launch.y;
}

at::Tensor ssd_chunk_scan_cuda(const at::Tensor& x, const at::Tensor& dt, const at::Tensor& Bmat,
                               const at::Tensor& Cmat, const SsdArgs& args, const at::Tensor& state,
                               bool from_state) {
  constexpr const char* op = "ssd_chunk_scan";
  const DeviceGuard device_guard(x.device());
  const SsdScanLaunch launch = prepare_ssd_chunk_scan(x, dt, Bmat, Cmat, args, state, from_state);
  throw_if_failed(kernels::ssd_chunk_scan(launch.params, current_stream()), op);
  return launch.y;
}

at::Tensor gated_rms_norm_cuda(const at::Tensor& y, const at::Tensor& z, const at::Tensor& weight, int64_t group_size,
                               double eps, std::optional<at::ScalarType> out_dtype) {
  constexpr const char* op = "gated_rms_norm";
  const DeviceGuard device_guard(y.device());
  const GatedRmsNormLaunch launch = prepare_gated_rms_norm(y, z, weight, group_size, eps, out_dtype);
  throw_if_failed(kernels::gated_rms_norm(launch.params, current_stream()), op);
  return launch.out.view(y.sizes());
}

}  // namespace effarch::ops::detail
