#pragma once
// Device helpers shared by the causal conv1d kernels: the per-channel weights, the final-state
// write, and the compile-time dispatch over the width. The dot product (conv_output: one
// summation order for every kernel, so prefill, decode and the GEMV's fused update agree) is in
// causal_conv1d_math.h; conversions and SiLU in kernels/common/convert.cuh.

#include <type_traits>

#include "causal_conv1d/causal_conv1d.h"
#include "causal_conv1d/causal_conv1d_math.h"
#include "common/convert.cuh"

namespace effarch::kernels::conv1d {

using kernels::from_float;
using kernels::silu;
using kernels::to_float;

// weight[channel, :] and bias[channel] (0 without bias) in fp32.
template <typename weight_t, int kWidth>
__device__ __forceinline__ void load_weights(const CausalConv1dParams& p, int channel, float (&w)[kWidth],
                                             float& bias) {
  const auto* weight = static_cast<const weight_t*>(p.weight) + channel * p.weight_dim_stride;
#pragma unroll
  for (int k = 0; k < kWidth; ++k) w[k] = to_float(weight[k * p.weight_width_stride]);
  bias = p.bias != nullptr ? to_float(static_cast<const weight_t*>(p.bias)[channel * p.bias_stride]) : 0.0f;
}

// Prefill's final conv_state[batch, channel, k] = x[t = seqlen - W + k], 0 where t < 0. The raw
// input values are copied, not converted.
template <typename input_t, int kWidth>
__device__ __forceinline__ void write_final_state(const CausalConv1dParams& p, int batch, int channel,
                                                  const input_t* x_channel, int k) {
  const int64_t t = static_cast<int64_t>(p.seqlen) - kWidth + k;
  const input_t value = t >= 0 ? x_channel[t * p.x_time_stride] : from_float<input_t>(0.0f);
  auto* state = static_cast<input_t*>(p.conv_state);
  state[batch * p.state_batch_stride + channel * p.state_dim_stride + k * p.state_width_stride] = value;
}

// Calls fn(std::integral_constant<int, W>{}) for W = width; any other width is an error.
template <typename Fn>
LaunchStatus dispatch_width(int width, Fn&& fn) {
  switch (width) {
    case 2: return fn(std::integral_constant<int, 2>{});
    case 3: return fn(std::integral_constant<int, 3>{});
    case 4: return fn(std::integral_constant<int, 4>{});
    default: return {cudaErrorInvalidValue, "causal_conv1d: width must be 2, 3 or 4"};
  }
}

inline constexpr int kMaxGridYZ = 65535;

}  // namespace effarch::kernels::conv1d
