#pragma once
// Decode: T new tokens per sequence (usually one) through the rolling conv_state [B, D, W].
// One thread per (batch, channel), grid (dim-blocks, batch): the thread keeps the W-wide window
// in registers; per token it shifts the window left, appends the new input and writes
// out = act(bias + sum_k w[k] window[k]); at the end it writes the window back as the new state
// (last column = newest input), exactly HF's roll-then-write-then-conv per token.

#include "causal_conv1d/causal_conv1d_common.cuh"
#include "common/grid_dependency.h"
#include "common/launch.h"

namespace effarch::kernels {

namespace conv1d {
struct UpdateTraits {
  static constexpr int kThreads = 128;  // channels per block
};
}  // namespace conv1d

template <typename input_t, typename weight_t, int kWidth>
__global__ void __launch_bounds__(conv1d::UpdateTraits::kThreads)
    causal_conv1d_update_kernel(const CausalConv1dParams p) {
  using Traits = conv1d::UpdateTraits;
  allow_dependent_launch();
  grid_dependency_wait();  // x and the conv state come from the kernels before
  const int channel = blockIdx.x * Traits::kThreads + threadIdx.x;
  const int batch = blockIdx.y;
  if (channel >= p.dim) return;

  const auto* x = static_cast<const input_t*>(p.x) + batch * p.x_batch_stride + channel * p.x_dim_stride;
  auto* out = static_cast<input_t*>(p.out) + batch * p.out_batch_stride + channel * p.out_dim_stride;
  auto* state = static_cast<input_t*>(p.conv_state) + batch * p.state_batch_stride + channel * p.state_dim_stride;
  float w[kWidth];
  float bias;
  conv1d::load_weights<weight_t, kWidth>(p, channel, w, bias);

  // input_t -> fp32 -> input_t is exact, so the state entries that survive come back unchanged.
  float window[kWidth];
#pragma unroll
  for (int k = 0; k < kWidth; ++k) window[k] = conv1d::to_float(state[k * p.state_width_stride]);
  for (int64_t t = 0; t < p.seqlen; ++t) {
#pragma unroll
    for (int k = 0; k + 1 < kWidth; ++k) window[k] = window[k + 1];
    window[kWidth - 1] = conv1d::to_float(x[t * p.x_time_stride]);
    const float y = conv1d::conv_output<kWidth>(w, window, bias, p.silu);
    out[t * p.out_time_stride] = conv1d::from_float<input_t>(y);
  }
#pragma unroll
  for (int k = 0; k < kWidth; ++k) state[k * p.state_width_stride] = conv1d::from_float<input_t>(window[k]);
}

template <typename input_t, typename weight_t, int kWidth>
LaunchStatus causal_conv1d_update_launch(const CausalConv1dParams& p, cudaStream_t stream) {
  using Traits = conv1d::UpdateTraits;
  const dim3 grid((p.dim + Traits::kThreads - 1) / Traits::kThreads, p.batch);
  return launch_kernel(causal_conv1d_update_kernel<input_t, weight_t, kWidth>, grid, dim3(Traits::kThreads), 0, stream,
                       "causal_conv1d_update_kernel", p);
}

template <typename input_t, typename weight_t>
LaunchStatus causal_conv1d_update_cuda(const CausalConv1dParams& p, cudaStream_t stream) {
  if (p.batch == 0 || p.dim == 0 || p.seqlen == 0) return {};
  if (p.conv_state == nullptr) return {cudaErrorInvalidValue, "causal_conv1d_update: conv_state is required"};
  if (p.batch > conv1d::kMaxGridYZ) {
    return {cudaErrorInvalidConfiguration, "causal_conv1d_update: batch above 65535"};
  }
  return conv1d::dispatch_width(p.width, [&](auto width) -> LaunchStatus {
    return causal_conv1d_update_launch<input_t, weight_t, decltype(width)::value>(p, stream);
  });
}

}  // namespace effarch::kernels
