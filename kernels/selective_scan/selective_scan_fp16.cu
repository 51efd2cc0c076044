// fp16 inputs: instantiations of the selective scan's prefill and update kernels.
#include "selective_scan/selective_scan_kernels.cuh"

namespace effarch::kernels {

LaunchStatus selective_scan_fwd_fp16(const SelectiveScanParams& params, cudaStream_t stream) {
  return selective_scan_fwd_cuda<__half>(params, stream);
}

LaunchStatus selective_state_update_fp16(const SelectiveScanParams& params, cudaStream_t stream) {
  return selective_state_update_cuda<__half>(params, stream);
}

}  // namespace effarch::kernels
