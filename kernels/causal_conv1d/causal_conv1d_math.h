#pragma once
// The causal conv1d's arithmetic for one output, shared by its kernels (prefill and update), the
// dense GEMV's fused conv update (gemv/gemv_math.h) and the host emulations: one summation order
// everywhere, so every path gives the same bits.

#include "common/host_device.h"

namespace effarch::kernels::conv1d {

// act(bias + sum_k w[k] * window[k]); window[kWidth - 1] is the current timestep.
template <int kWidth>
EFFARCH_HD float conv_output(const float (&w)[kWidth], const float (&window)[kWidth], float bias, bool use_silu) {
  float acc = bias;
  EFFARCH_UNROLL
  for (int k = 0; k < kWidth; ++k) acc += w[k] * window[k];
  return use_silu ? kernels::silu(acc) : acc;
}

}  // namespace effarch::kernels::conv1d
