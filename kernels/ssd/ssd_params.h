#pragma once
// Params of the Mamba-2 kernels (the SSD decode step, the chunked SSD scan, the gated RMSNorm):
// sizes, strides in elements, plain pointers and flags. No torch and no CUDA header, so the CPU
// tests can fill them and run the kernels' own math (ssd_math.h) on the host.
// The math (include/effarch/ops/ssd.h), per head h of group g = h / (H / G):
//
//   dt[t,h]     = clamp(softplus(dt_raw[t,h] + dt_bias[h]), dt_min, dt_max)
//   S[t,h,p,n]  = exp(dt[t,h] A[h]) S[t-1,h,p,n] + dt[t,h] B[t,g,n] x[t,h,p]
//   y[t,h,p]    = sum_n C[t,g,n] S[t,h,p,n] + D[h] x[t,h,p]

#include <cstdint>

#include "common/element_enum.h"

namespace effarch::kernels {

// The per-head scalars and the dt discretisation, shared by the decode step and the scan.
struct SsdHeadParams {
  const float* A = nullptr;        // [H] fp32
  const float* D = nullptr;        // [H] fp32; nullptr: no D skip
  const float* dt_bias = nullptr;  // [H] fp32; nullptr: no bias
  bool dt_softplus = true;
  bool dt_clamp = false;           // clamp dt to [dt_min, dt_max] (time_step_limit)
  float dt_min = 0.0f;
  float dt_max = 0.0f;
};

// Decode: one token per sequence; the state is updated in place.
struct SsdUpdateParams {
  int batch = 0, heads = 0, head_dim = 0, groups = 0, d_state = 0;  // B, H, P, G, N
  ElementType x_type = ElementType::kFloat32;  // x, dt, B and C (one element type)
  SsdHeadParams head;

  const void* x = nullptr;  // [B, H, P]
  int64_t x_batch_stride = 0, x_head_stride = 0, x_dim_stride = 0;
  const void* dt = nullptr;  // [B, H]
  int64_t dt_batch_stride = 0, dt_head_stride = 0;
  const void* B = nullptr;  // [B, G, N]
  int64_t B_batch_stride = 0, B_group_stride = 0, B_state_stride = 0;
  const void* C = nullptr;  // [B, G, N]
  int64_t C_batch_stride = 0, C_group_stride = 0, C_state_stride = 0;
  float* state = nullptr;  // [B, H, P, N] fp32, read and written in place
  int64_t state_batch_stride = 0, state_head_stride = 0, state_dim_stride = 0, state_state_stride = 0;
  float* y = nullptr;  // [B, H, P] fp32
  int64_t y_batch_stride = 0, y_head_stride = 0, y_dim_stride = 0;
};

// Prefill, chunked (four stages, see ssd_chunk_scan.cuh). The workspaces are fp32, contiguous,
// allocated by the caller: ssd_scan_workspace_floats() floats in all, linear in the length.
struct SsdScanParams {
  int batch = 0, seqlen = 0, heads = 0, head_dim = 0, groups = 0, d_state = 0;  // B, L, H, P, G, N
  int chunk = 0;    // Q tokens per chunk
  int nchunks = 0;  // ceil(L / Q)
  bool from_state = false;  // read `state` as the state before token 0 (else zeros)
  ElementType x_type = ElementType::kFloat32;  // x, dt, B and C (one element type)
  // Stages 2 and 4 on tensor cores (ssd_tc_math.h): bf16 / fp16 x and d_state <= 128 only; else
  // the fp32 FMA loops of ssd_math.h (what fp32 inputs always run).
  bool tensor_cores = false;
  SsdHeadParams head;

  const void* x = nullptr;  // [B, L, H, P]
  int64_t x_batch_stride = 0, x_time_stride = 0, x_head_stride = 0, x_dim_stride = 0;
  const void* dt = nullptr;  // [B, L, H]
  int64_t dt_batch_stride = 0, dt_time_stride = 0, dt_head_stride = 0;
  const void* B = nullptr;  // [B, L, G, N]
  int64_t B_batch_stride = 0, B_time_stride = 0, B_group_stride = 0, B_state_stride = 0;
  const void* C = nullptr;  // [B, L, G, N]
  int64_t C_batch_stride = 0, C_time_stride = 0, C_group_stride = 0, C_state_stride = 0;
  float* state = nullptr;  // [B, H, P, N] fp32: read when from_state, written with the final state
  int64_t state_batch_stride = 0, state_head_stride = 0, state_dim_stride = 0, state_state_stride = 0;
  float* y = nullptr;  // [B, L, H, P] fp32
  int64_t y_batch_stride = 0, y_time_stride = 0, y_head_stride = 0, y_dim_stride = 0;

  // Workspaces (contiguous fp32), [B, H, nchunks, Q] each: dt, dt A, and the inclusive prefix
  // sum of dt A within each chunk; [B, nchunks, H, P, N]: each chunk's own state contribution,
  // then (after the state passing) the state at each chunk's start.
  float* dt_ws = nullptr;
  float* a_ws = nullptr;
  float* cs_ws = nullptr;
  float* states_ws = nullptr;
};

// y [rows, D] (any element type), z [rows, D] (any), weight [D] (any), out [rows, D] in out_type.
struct GatedRmsNormParams {
  int64_t rows = 0;
  int dim = 0;         // D
  int group_size = 0;  // channels per RMS group; divides D
  float eps = 0.0f;
  ElementType y_type = ElementType::kFloat32, z_type = ElementType::kFloat32;
  ElementType weight_type = ElementType::kFloat32, out_type = ElementType::kFloat32;
  const void* y = nullptr;
  int64_t y_row_stride = 0, y_dim_stride = 0;
  const void* z = nullptr;
  int64_t z_row_stride = 0, z_dim_stride = 0;
  // Read before the kernel's grid-dependency wait when weight_stride is 1 (an L1 prefetch under
  // --pdl): it must be memory no kernel of the step writes, the model's weight as loaded, never a
  // copy made for the call (ops::gated_rms_norm passes the mixer's weight through).
  const void* weight = nullptr;
  int64_t weight_stride = 0;
  void* out = nullptr;
  int64_t out_row_stride = 0, out_dim_stride = 0;
};

// Floats of the four scan workspaces together.
inline int64_t ssd_scan_workspace_floats(const SsdScanParams& p) {
  const int64_t per_token = static_cast<int64_t>(p.batch) * p.heads * p.nchunks * p.chunk;
  return 3 * per_token + static_cast<int64_t>(p.batch) * p.nchunks * p.heads * p.head_dim * p.d_state;
}

}  // namespace effarch::kernels
