#pragma once
// Mamba-2 CUDA kernels: the SSD decode step (ssd_state_update), the chunked SSD scan for prefill
// (ssd_chunk_scan, four stages) and the gated RMSNorm. Params: ssd_params.h (no torch types);
// the per-thread math: ssd_math.h, shared with the CPU tests' host emulation.
// src/ops/ssd_launch.cpp fills the params from checked tensors; src/ops/ssd_cuda.cpp launches.

#include "common/element_type.h"
#include "ssd/ssd_params.h"

namespace effarch::kernels {

// Per element type of x (dt, B, C the same), defined in ssd_<dtype>.cu.
LaunchStatus ssd_state_update_fp32(const SsdUpdateParams& params, cudaStream_t stream);
LaunchStatus ssd_state_update_bf16(const SsdUpdateParams& params, cudaStream_t stream);
LaunchStatus ssd_state_update_fp16(const SsdUpdateParams& params, cudaStream_t stream);
LaunchStatus ssd_chunk_scan_fp32(const SsdScanParams& params, cudaStream_t stream);
LaunchStatus ssd_chunk_scan_bf16(const SsdScanParams& params, cudaStream_t stream);
LaunchStatus ssd_chunk_scan_fp16(const SsdScanParams& params, cudaStream_t stream);
// Per element type of y; z, weight and out may be any element type (read and written by type).
LaunchStatus gated_rms_norm_fp32(const GatedRmsNormParams& params, cudaStream_t stream);
LaunchStatus gated_rms_norm_bf16(const GatedRmsNormParams& params, cudaStream_t stream);
LaunchStatus gated_rms_norm_fp16(const GatedRmsNormParams& params, cudaStream_t stream);

// Decode: one token; state updated in place, y written.
inline LaunchStatus ssd_state_update(const SsdUpdateParams& params, cudaStream_t stream) {
  return dispatch_element_type<SsdUpdateParams>(
      params.x_type, {ssd_state_update_fp32, ssd_state_update_bf16, ssd_state_update_fp16}, params, stream,
      "ssd_state_update: unknown element type");
}

// Prefill: y for every token, the final state written; the workspaces in params are used.
inline LaunchStatus ssd_chunk_scan(const SsdScanParams& params, cudaStream_t stream) {
  return dispatch_element_type<SsdScanParams>(params.x_type,
                                              {ssd_chunk_scan_fp32, ssd_chunk_scan_bf16, ssd_chunk_scan_fp16},
                                              params, stream, "ssd_chunk_scan: unknown element type");
}

inline LaunchStatus gated_rms_norm(const GatedRmsNormParams& params, cudaStream_t stream) {
  return dispatch_element_type<GatedRmsNormParams>(
      params.y_type, {gated_rms_norm_fp32, gated_rms_norm_bf16, gated_rms_norm_fp16}, params, stream,
      "gated_rms_norm: unknown element type");
}

}  // namespace effarch::kernels
