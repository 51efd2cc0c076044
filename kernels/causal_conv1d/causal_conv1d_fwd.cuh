#pragma once
// Prefill: out[b, c, t] = act(bias[c] + sum_k w[c, k] x[b, c, t - (W - 1) + k]), zeros before t = 0,
// and the final conv_state when asked for. Two mappings, picked by x's layout:
//
// * channel-first (time contiguous, L >= 32): one warp per (batch, channel), grid (dim-blocks,
//   batch). The warp walks the sequence in rows of 32 timesteps (lane = timestep in the row, so a
//   row is one coalesced load) with kRows rows in flight; the W - 1 inputs before each timestep
//   come from neighbouring lanes by shuffle, and for the first lanes from the row before, which
//   each lane carries in a register from one chunk to the next (the halo).
// * channel-last (channels contiguous, e.g. a transposed [B, L, D] view; also any short L): one
//   thread per channel, so a warp reads 32 neighbouring channels of one timestep; blocks also
//   split time into chunks of kChunk steps, each reading its W - 1 halo inputs from global memory.

#include <algorithm>

#include "causal_conv1d/causal_conv1d_common.cuh"
#include "common/launch.h"
#include "common/row8.h"

namespace effarch::kernels {

namespace conv1d {

struct ChannelFirstTraits {
  static constexpr int kWarps = 4;  // channels per block
  static constexpr int kRows = 4;   // rows of 32 timesteps loaded together
  static constexpr int kThreads = kWarps * 32;
};

struct ChannelLastTraits {
  static constexpr int kThreads = 128;  // channels per block
  static constexpr int kChunk = 64;     // timesteps per block (grid.y strides over the chunks)
  static constexpr int kLoads = 8;      // timesteps loaded together
};

// The vector variant (CausalConv1dParams::vector): 8 channels a thread, read and written as one
// 16-byte vector a timestep (two for fp32), so a warp moves 512 bytes an instruction where the
// thread-per-channel kernel moves 64; shorter chunks keep as many threads.
struct ChannelLastVecTraits {
  static constexpr int kVec = 8;        // channels per thread
  static constexpr int kThreads = 128;  // 8-channel groups per block
  static constexpr int kChunk = 16;     // timesteps per block
  static constexpr int kLoads = 8;      // timesteps loaded together
};


}  // namespace conv1d

template <typename input_t, typename weight_t, int kWidth>
__global__ void __launch_bounds__(conv1d::ChannelFirstTraits::kThreads)
    causal_conv1d_fwd_channel_first_kernel(const CausalConv1dParams p) {
  using Traits = conv1d::ChannelFirstTraits;
  constexpr unsigned kFullMask = 0xffffffffu;
  const int lane = threadIdx.x % 32;
  const int channel = blockIdx.x * Traits::kWarps + threadIdx.x / 32;
  const int batch = blockIdx.y;
  if (channel >= p.dim) return;  // whole warps leave: the shuffles below always see 32 lanes

  const auto* x = static_cast<const input_t*>(p.x) + batch * p.x_batch_stride + channel * p.x_dim_stride;
  auto* out = static_cast<input_t*>(p.out) + batch * p.out_batch_stride + channel * p.out_dim_stride;
  float w[kWidth];
  float bias;
  conv1d::load_weights<weight_t, kWidth>(p, channel, w, bias);

  const int64_t seqlen = p.seqlen;
  float prev_row = 0.0f;  // this lane's input one row (32 steps) back: zeros before t = 0
  for (int64_t t0 = 0; t0 < seqlen; t0 += 32 * Traits::kRows) {
    float row[Traits::kRows];
#pragma unroll
    for (int r = 0; r < Traits::kRows; ++r) {
      const int64_t t = t0 + r * 32 + lane;
      row[r] = t < seqlen ? conv1d::to_float(x[t * p.x_time_stride]) : 0.0f;
    }
#pragma unroll
    for (int r = 0; r < Traits::kRows; ++r) {
      const float row_before = r == 0 ? prev_row : row[r - 1];
      float window[kWidth];
      window[kWidth - 1] = row[r];
#pragma unroll
      for (int j = 1; j < kWidth; ++j) {  // x[t - j]: lane - j of this row, or of the row before
        const int src = (lane - j) & 31;
        const float same = __shfl_sync(kFullMask, row[r], src);
        const float before = __shfl_sync(kFullMask, row_before, src);
        window[kWidth - 1 - j] = lane >= j ? same : before;
      }
      const float y = conv1d::conv_output<kWidth>(w, window, bias, p.silu);
      const int64_t t = t0 + r * 32 + lane;
      if (t < seqlen) out[t * p.out_time_stride] = conv1d::from_float<input_t>(y);
    }
    prev_row = row[Traits::kRows - 1];
  }
  if (p.conv_state != nullptr && lane < kWidth) {
    conv1d::write_final_state<input_t, kWidth>(p, batch, channel, x, lane);
  }
}

template <typename input_t, typename weight_t, int kWidth>
__global__ void __launch_bounds__(conv1d::ChannelLastTraits::kThreads)
    causal_conv1d_fwd_channel_last_kernel(const CausalConv1dParams p) {
  using Traits = conv1d::ChannelLastTraits;
  const int channel = blockIdx.x * Traits::kThreads + threadIdx.x;
  const int batch = blockIdx.z;
  if (channel >= p.dim) return;

  const auto* x = static_cast<const input_t*>(p.x) + batch * p.x_batch_stride + channel * p.x_dim_stride;
  auto* out = static_cast<input_t*>(p.out) + batch * p.out_batch_stride + channel * p.out_dim_stride;
  float w[kWidth];
  float bias;
  conv1d::load_weights<weight_t, kWidth>(p, channel, w, bias);

  const int64_t seqlen = p.seqlen;
  const int64_t num_chunks = (seqlen + Traits::kChunk - 1) / Traits::kChunk;
  for (int64_t chunk = blockIdx.y; chunk < num_chunks; chunk += gridDim.y) {
    const int64_t t_begin = chunk * Traits::kChunk;
    const int64_t t_end = t_begin + Traits::kChunk < seqlen ? t_begin + Traits::kChunk : seqlen;
    // window[k] = x[t - (W - 1) + k]; before the first step it holds the halo in window[1..W-1].
    float window[kWidth];
    window[0] = 0.0f;
#pragma unroll
    for (int k = 1; k < kWidth; ++k) {
      const int64_t t = t_begin - kWidth + k;
      window[k] = t >= 0 ? conv1d::to_float(x[t * p.x_time_stride]) : 0.0f;
    }
    for (int64_t t_load = t_begin; t_load < t_end; t_load += Traits::kLoads) {
      float in[Traits::kLoads];
#pragma unroll
      for (int i = 0; i < Traits::kLoads; ++i) {
        in[i] = t_load + i < t_end ? conv1d::to_float(x[(t_load + i) * p.x_time_stride]) : 0.0f;
      }
#pragma unroll
      for (int i = 0; i < Traits::kLoads; ++i) {
        if (t_load + i >= t_end) break;
#pragma unroll
        for (int k = 0; k + 1 < kWidth; ++k) window[k] = window[k + 1];
        window[kWidth - 1] = in[i];
        const float y = conv1d::conv_output<kWidth>(w, window, bias, p.silu);
        out[(t_load + i) * p.out_time_stride] = conv1d::from_float<input_t>(y);
      }
    }
  }
  if (p.conv_state != nullptr && blockIdx.y == 0) {
#pragma unroll
    for (int k = 0; k < kWidth; ++k) conv1d::write_final_state<input_t, kWidth>(p, batch, channel, x, k);
  }
}

// The channel-last kernel's arithmetic for 8 channels a thread: channel c0 + j's window, weights
// and output are the thread-per-channel kernel's for channel c0 + j (conv_output), so the results
// are the same bits.
template <typename input_t, typename weight_t, int kWidth>
__global__ void __launch_bounds__(conv1d::ChannelLastVecTraits::kThreads)
    causal_conv1d_fwd_channel_last_vec_kernel(const CausalConv1dParams p) {
  using Traits = conv1d::ChannelLastVecTraits;
  constexpr int kVec = Traits::kVec;
  const int c0 = (blockIdx.x * Traits::kThreads + threadIdx.x) * kVec;
  const int batch = blockIdx.z;
  if (c0 >= p.dim) return;

  const auto* x = static_cast<const input_t*>(p.x) + batch * p.x_batch_stride + c0;
  auto* out = static_cast<input_t*>(p.out) + batch * p.out_batch_stride + c0;
  float w[kVec][kWidth];
  float bias[kVec];
#pragma unroll
  for (int j = 0; j < kVec; ++j) conv1d::load_weights<weight_t, kWidth>(p, c0 + j, w[j], bias[j]);

  const int64_t seqlen = p.seqlen;
  const int64_t num_chunks = (seqlen + Traits::kChunk - 1) / Traits::kChunk;
  for (int64_t chunk = blockIdx.y; chunk < num_chunks; chunk += gridDim.y) {
    const int64_t t_begin = chunk * Traits::kChunk;
    const int64_t t_end = t_begin + Traits::kChunk < seqlen ? t_begin + Traits::kChunk : seqlen;
    float window[kVec][kWidth];  // window[j][k] = x[t - (W - 1) + k] of channel c0 + j
#pragma unroll
    for (int k = 1; k < kWidth; ++k) {
      const int64_t t = t_begin - kWidth + k;
      float halo[kVec] = {};
      if (t >= 0) load8(x + t * p.x_time_stride, 1, true, halo);
#pragma unroll
      for (int j = 0; j < kVec; ++j) window[j][k] = halo[j];
    }
#pragma unroll
    for (int j = 0; j < kVec; ++j) window[j][0] = 0.0f;
    for (int64_t t_load = t_begin; t_load < t_end; t_load += Traits::kLoads) {
      float in[Traits::kLoads][kVec];
#pragma unroll
      for (int i = 0; i < Traits::kLoads; ++i) {
        if (t_load + i < t_end) load8(x + (t_load + i) * p.x_time_stride, 1, true, in[i]);
      }
#pragma unroll
      for (int i = 0; i < Traits::kLoads; ++i) {
        if (t_load + i >= t_end) break;
        float y[kVec];
#pragma unroll
        for (int j = 0; j < kVec; ++j) {
#pragma unroll
          for (int k = 0; k + 1 < kWidth; ++k) window[j][k] = window[j][k + 1];
          window[j][kWidth - 1] = in[i][j];
          y[j] = conv1d::conv_output<kWidth>(w[j], window[j], bias[j], p.silu);
        }
        store8(out + (t_load + i) * p.out_time_stride, 1, true, y);
      }
    }
  }
  if (p.conv_state != nullptr && blockIdx.y == 0) {
    for (int j = 0; j < kVec; ++j) {
#pragma unroll
      for (int k = 0; k < kWidth; ++k) conv1d::write_final_state<input_t, kWidth>(p, batch, c0 + j, x + j, k);
    }
  }
}

template <typename input_t, typename weight_t, int kWidth>
LaunchStatus causal_conv1d_fwd_channel_first_launch(const CausalConv1dParams& p, cudaStream_t stream) {
  using Traits = conv1d::ChannelFirstTraits;
  const dim3 grid((p.dim + Traits::kWarps - 1) / Traits::kWarps, p.batch);
  return launch_plain(causal_conv1d_fwd_channel_first_kernel<input_t, weight_t, kWidth>, grid,
                      dim3(Traits::kThreads), 0, stream, "causal_conv1d_fwd_channel_first_kernel", p);
}

template <typename input_t, typename weight_t, int kWidth>
LaunchStatus causal_conv1d_fwd_channel_last_launch(const CausalConv1dParams& p, cudaStream_t stream) {
  using Traits = conv1d::ChannelLastTraits;
  const int64_t num_chunks = (static_cast<int64_t>(p.seqlen) + Traits::kChunk - 1) / Traits::kChunk;
  const int grid_y = static_cast<int>(std::clamp<int64_t>(num_chunks, 1, conv1d::kMaxGridYZ));
  const dim3 grid((p.dim + Traits::kThreads - 1) / Traits::kThreads, grid_y, p.batch);
  return launch_plain(causal_conv1d_fwd_channel_last_kernel<input_t, weight_t, kWidth>, grid,
                      dim3(Traits::kThreads), 0, stream, "causal_conv1d_fwd_channel_last_kernel", p);
}

template <typename input_t, typename weight_t, int kWidth>
LaunchStatus causal_conv1d_fwd_channel_last_vec_launch(const CausalConv1dParams& p, cudaStream_t stream) {
  using Traits = conv1d::ChannelLastVecTraits;
  const int64_t num_chunks = (static_cast<int64_t>(p.seqlen) + Traits::kChunk - 1) / Traits::kChunk;
  const int grid_y = static_cast<int>(std::clamp<int64_t>(num_chunks, 1, conv1d::kMaxGridYZ));
  const int groups = p.dim / Traits::kVec;
  const dim3 grid((groups + Traits::kThreads - 1) / Traits::kThreads, grid_y, p.batch);
  return launch_plain(causal_conv1d_fwd_channel_last_vec_kernel<input_t, weight_t, kWidth>, grid,
                      dim3(Traits::kThreads), 0, stream, "causal_conv1d_fwd_channel_last_vec_kernel", p);
}

template <typename input_t, typename weight_t>
LaunchStatus causal_conv1d_fwd_cuda(const CausalConv1dParams& p, cudaStream_t stream) {
  if (p.batch == 0 || p.dim == 0) return {};
  if (p.batch > conv1d::kMaxGridYZ) {
    return {cudaErrorInvalidConfiguration, "causal_conv1d_fwd: batch above 65535"};
  }
  // Short sequences leave most lanes of a channel-first warp idle: map threads to channels.
  const bool channel_first = p.x_time_stride == 1 && p.seqlen >= 32;
  const bool vector = p.vector && causal_conv1d_vector_applies(p);
  return conv1d::dispatch_width(p.width, [&](auto width) -> LaunchStatus {
    constexpr int kWidth = decltype(width)::value;
    if (vector) return causal_conv1d_fwd_channel_last_vec_launch<input_t, weight_t, kWidth>(p, stream);
    return channel_first ? causal_conv1d_fwd_channel_first_launch<input_t, weight_t, kWidth>(p, stream)
                         : causal_conv1d_fwd_channel_last_launch<input_t, weight_t, kWidth>(p, stream);
  });
}

}  // namespace effarch::kernels
