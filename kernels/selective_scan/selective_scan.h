#pragma once
// The Mamba-1 selective scan (prefill) and its one-token state update (decode), CUDA kernels.
// Per channel d and state n (include/effarch/ops/selective_scan.h has the whole recurrence):
//
//   dt[t]   = softplus(delta[t] + delta_bias)              (bias and softplus optional)
//   h[t, n] = exp(dt[t] A[n]) h[t-1, n] + dt[t] B[t, n] u[t]
//   y[t]    = (sum_n C[t, n] h[t, n] + D u[t]) * SiLU(z[t])   (D and z optional)
//
// fp32 inside; y in the inputs' element type; the state fp32, written in place. Every tensor is a
// pointer with strides in elements, so the mixer's channel-last views (transposes of [B, L, X]
// projections) go in without copies.
//
// Three prefill algorithms (SelectiveScanParams::segment picks): a warp per channel with its lanes
// over time (selective_scan_lanes.h, segment 16, the default), 32 channels on a warp's lanes
// (selective_scan_math.h, segments 4 and 8, and its sequence split), and a thread per channel
// over pieces of the sequence (selective_scan_pieces.h, segment 0).
//
// No torch types: src/ops/selective_scan_launch.cpp fills the params from checked tensors (in every
// build), src/ops/selective_scan_cuda.cpp launches them.

#include "common/element_type.h"
#include "selective_scan/selective_scan_params.h"

namespace effarch::kernels {

// Per element type, defined in selective_scan_<dtype>.cu.
LaunchStatus selective_scan_fwd_fp32(const SelectiveScanParams& params, cudaStream_t stream);
LaunchStatus selective_scan_fwd_bf16(const SelectiveScanParams& params, cudaStream_t stream);
LaunchStatus selective_scan_fwd_fp16(const SelectiveScanParams& params, cudaStream_t stream);
LaunchStatus selective_state_update_fp32(const SelectiveScanParams& params, cudaStream_t stream);
LaunchStatus selective_state_update_bf16(const SelectiveScanParams& params, cudaStream_t stream);
LaunchStatus selective_state_update_fp16(const SelectiveScanParams& params, cudaStream_t stream);

// Prefill: y for every timestep and the final state (from zeros, or from `state` when from_state).
inline LaunchStatus selective_scan_fwd(const SelectiveScanParams& params, cudaStream_t stream) {
  return dispatch_element_type<SelectiveScanParams>(
      params.input_type, {selective_scan_fwd_fp32, selective_scan_fwd_bf16, selective_scan_fwd_fp16}, params, stream,
      "selective_scan_fwd: unknown element type");
}

// Decode: one token per sequence (time strides unused), the state updated in place.
inline LaunchStatus selective_state_update(const SelectiveScanParams& params, cudaStream_t stream) {
  return dispatch_element_type<SelectiveScanParams>(
      params.input_type, {selective_state_update_fp32, selective_state_update_bf16, selective_state_update_fp16},
      params, stream, "selective_state_update: unknown element type");
}

}  // namespace effarch::kernels
