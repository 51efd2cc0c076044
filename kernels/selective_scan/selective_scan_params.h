#pragma once
// The selective scan kernels' params (see selective_scan.h): plain C++ with no CUDA header, so the
// host emulation in the CPU tests (selective_scan_math.h) builds without the CUDA toolkit.

#include <cstdint>

#include "common/element_enum.h"

namespace effarch::kernels {

inline constexpr int kSelectiveScanMaxStates = 256;

struct SelectiveScanParams {
  int batch = 0;
  int dim = 0;     // D channels
  int seqlen = 0;  // L timesteps (1 for the state update)
  int dstate = 0;  // N states, 1..kSelectiveScanMaxStates
  bool delta_softplus = true;
  bool from_state = false;  // prefill: start from `state` instead of zeros
  // Prefill: timesteps per warp segment, 8 (one block per SM) or 4 (half the registers: two).
  int segment = 8;
  // u, delta, B, C, z and y share one element type; A, D, delta_bias and the state are float32.
  ElementType input_type = ElementType::kFloat32;

  const void* u = nullptr;  // [batch, dim, seqlen]
  int64_t u_batch_stride = 0, u_dim_stride = 0, u_time_stride = 0;
  const void* delta = nullptr;  // [batch, dim, seqlen]
  int64_t delta_batch_stride = 0, delta_dim_stride = 0, delta_time_stride = 0;
  const void* B = nullptr;  // [batch, dstate, seqlen]
  int64_t B_batch_stride = 0, B_state_stride = 0, B_time_stride = 0;
  const void* C = nullptr;  // [batch, dstate, seqlen]
  int64_t C_batch_stride = 0, C_state_stride = 0, C_time_stride = 0;
  const void* z = nullptr;  // [batch, dim, seqlen]; nullptr: no gate
  int64_t z_batch_stride = 0, z_dim_stride = 0, z_time_stride = 0;
  void* y = nullptr;  // [batch, dim, seqlen]
  int64_t y_batch_stride = 0, y_dim_stride = 0, y_time_stride = 0;

  const float* A = nullptr;  // [dim, dstate]
  int64_t A_dim_stride = 0, A_state_stride = 0;
  const float* D = nullptr;  // [dim]; nullptr: no skip
  int64_t D_stride = 0;
  const float* delta_bias = nullptr;  // [dim]; nullptr: no bias
  int64_t delta_bias_stride = 0;

  float* state = nullptr;  // [batch, dim, dstate]
  int64_t state_batch_stride = 0, state_dim_stride = 0, state_state_stride = 0;
};

}  // namespace effarch::kernels
