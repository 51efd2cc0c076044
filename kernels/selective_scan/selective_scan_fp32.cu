// fp32 inputs: instantiations of the selective scan's prefill and update kernels.
#include "selective_scan/selective_scan_kernels.cuh"

namespace effarch::kernels {

LaunchStatus selective_scan_fwd_fp32(const SelectiveScanParams& params, cudaStream_t stream) {
  return selective_scan_fwd_cuda<float>(params, stream);
}

LaunchStatus selective_state_update_fp32(const SelectiveScanParams& params, cudaStream_t stream) {
  return selective_state_update_cuda<float>(params, stream);
}

}  // namespace effarch::kernels
