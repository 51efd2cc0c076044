// fp32 x: instantiations of the Mamba-2 decode step, the chunked scan and the gated RMSNorm (y in fp32).
#include "ssd/gated_rms_norm.cuh"
#include "ssd/ssd_chunk_scan.cuh"
#include "ssd/ssd_state_update.cuh"

namespace effarch::kernels {

LaunchStatus ssd_state_update_fp32(const SsdUpdateParams& params, cudaStream_t stream) {
  return ssd_state_update_cuda<float>(params, stream);
}

LaunchStatus ssd_chunk_scan_fp32(const SsdScanParams& params, cudaStream_t stream) {
  return ssd_chunk_scan_cuda<float>(params, stream);
}

LaunchStatus gated_rms_norm_fp32(const GatedRmsNormParams& params, cudaStream_t stream) {
  return gated_rms_norm_cuda<float>(params, stream);
}

}  // namespace effarch::kernels
