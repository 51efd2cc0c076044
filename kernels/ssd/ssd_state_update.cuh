#pragma once
// Mamba-2 decode step, fused: for one token per sequence, every (b, h, p) state row of N entries
// is decayed by exp(dt A), gets dt B x added, and is read out through C, in place; y = C . S + D x.
// One warp per row (lane k owns n = k, k + 32, ...: coalesced over the state's contiguous N),
// kUpdateWarps rows per block, grid (P / warps, H, B). dt (bias, softplus, clamp) and the decay
// are per-(b, h) scalars every lane computes; nothing runs on the host. x, dt, B, C are read
// through their strides (the mixer's views of the conv output and in_proj, no copies).

#include "ssd/ssd_common.cuh"
#include "common/grid_dependency.h"
#include "common/launch.h"

namespace effarch::kernels {

template <typename input_t>
__global__ void __launch_bounds__(ssd::kUpdateWarps * ssd::kWarpSize)
    ssd_state_update_kernel(const SsdUpdateParams p) {
  using Io = ssd::StaticIo<input_t>;
  allow_dependent_launch();
  grid_dependency_wait();  // the state, x, dt, B, C come from the kernels before
  const int warp = threadIdx.x / ssd::kWarpSize, lane = threadIdx.x % ssd::kWarpSize;
  const int pd = blockIdx.x * ssd::kUpdateWarps + warp;
  const int h = blockIdx.y, b = blockIdx.z;
  if (pd >= p.head_dim) return;  // whole warps only: the shuffles below stay full-warp
  const ssd::UpdateRow row = ssd::update_row<Io>(p, b, h, pd);
  float sum = ssd::update_lane<Io>(p, b, h, pd, lane, row);
#pragma unroll
  for (int offset = ssd::kWarpSize / 2; offset > 0; offset /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
  if (lane == 0) ssd::update_write_y(p, b, h, pd, row, sum);
}

template <typename input_t>
LaunchStatus ssd_state_update_cuda(const SsdUpdateParams& p, cudaStream_t stream) {
  if (p.batch == 0 || p.heads == 0 || p.head_dim == 0) return {};
  if (p.groups < 1 || p.heads % p.groups != 0) {
    return {cudaErrorInvalidValue, "ssd_state_update: groups must divide heads"};
  }
  if (p.batch > ssd::kMaxGridYZ || p.heads > ssd::kMaxGridYZ) {
    return {cudaErrorInvalidConfiguration, "ssd_state_update: batch or heads above 65535"};
  }
  const dim3 grid((p.head_dim + ssd::kUpdateWarps - 1) / ssd::kUpdateWarps, p.heads, p.batch);
  return launch_kernel(ssd_state_update_kernel<input_t>, grid, dim3(ssd::kUpdateWarps * ssd::kWarpSize), 0, stream,
                       "ssd_state_update_kernel", p);
}

}  // namespace effarch::kernels
