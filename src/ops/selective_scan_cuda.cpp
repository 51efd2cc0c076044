// CUDA path of effarch::ops::selective_scan / selective_state_update: the launch prepared on the host
// (selective_scan_launch.cpp) goes to the kernels on the current stream; a failed launch becomes
// an effarch::Error. Built only with CUDA (EFFARCH_HAVE_CUDA).

#include <ATen/ATen.h>

#include "cuda_binding.h"
#include "effarch/ops/selective_scan.h"
#include "selective_scan/selective_scan.h"
#include "selective_scan_launch.h"

namespace effarch::ops::detail {

at::Tensor selective_scan_cuda(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& Bmat,
                               const at::Tensor& Cmat, const std::optional<at::Tensor>& z,
                               const SelectiveScanArgs& args, at::Tensor& ssm_state, bool from_state) {
  constexpr const char* op = "selective_scan";
  const DeviceGuard device_guard(u.device());
  // The automatic split sizes its pieces to this GPU's SMs.
  const int sm_count = args.cuda_split == -1 ? device_properties().multiProcessorCount : 0;
  const SelectiveScanLaunch launch =
      prepare_selective_scan(u, delta, Bmat, Cmat, z, args, ssm_state, from_state, op, sm_count);
  throw_if_failed(kernels::selective_scan_fwd(launch.params, current_stream()), op);
  return launch.result();
}

at::Tensor selective_state_update_cuda(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& Bmat,
                                       const at::Tensor& Cmat, const std::optional<at::Tensor>& z,
                                       const SelectiveScanArgs& args, at::Tensor& ssm_state) {
  constexpr const char* op = "selective_state_update";
  const DeviceGuard device_guard(u.device());
  const SelectiveScanLaunch launch = prepare_selective_scan(u, delta, Bmat, Cmat, z, args, ssm_state, false, op);
  throw_if_failed(kernels::selective_state_update(launch.params, current_stream()), op);
  return launch.result();
}

at::Tensor selective_state_update_dt_proj_cuda(const at::Tensor& u, const at::Tensor& dt_low, const at::Tensor& dt_proj,
                                               const at::Tensor& Bmat, const at::Tensor& Cmat,
                                               const std::optional<at::Tensor>& z, const SelectiveScanArgs& args,
                                               at::Tensor& ssm_state) {
  constexpr const char* op = "selective_state_update_dt_proj";
  const DeviceGuard device_guard(u.device());
  const SelectiveScanLaunch launch =
      prepare_selective_state_update_dt_proj(u, dt_low, dt_proj, Bmat, Cmat, z, args, ssm_state, op);
  throw_if_failed(kernels::selective_state_update(launch.params, current_stream()), op);
  return launch.result();
}

}  // namespace effarch::ops::detail
