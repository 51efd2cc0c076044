#pragma once
// Mamba-2's gated RMSNorm, fused: h = y * SiLU(z) in fp32, h * rsqrt(mean over the group of h^2
// + eps), rounded to y's type, times weight, stored in out's type (ATen's promotion of weight and
// y). One block of kNormThreads per (row, group): each thread sums the squares of its channels,
// common/block_sum.cuh adds them (warp shuffles, then the warps' sums; the group's weights asked
// into L1 meanwhile), then each thread writes its channels (y and z read twice,
// the second time from cache). Instantiated per type of y; z, weight and out are read and
// written by their runtime type (a branch uniform over the grid).

#include "ssd/ssd_common.cuh"
#include "common/block_sum.cuh"
#include "common/grid_dependency.h"
#include "common/launch.h"

namespace effarch::kernels {

template <typename y_t>
__global__ void __launch_bounds__(ssd::kNormThreads) gated_rms_norm_kernel(const GatedRmsNormParams p) {
  using YIo = ssd::StaticIo<y_t>;
  using Io = ssd::DynamicIo;
  __shared__ float red[ssd::kNormThreads / kWarpLanes];
  const int groups = p.dim / p.group_size;
  const int64_t row = blockIdx.x / groups;
  const int group = static_cast<int>(blockIdx.x % groups);
  allow_dependent_launch();
  if (p.weight_stride == 1) {  // the group's weights (contiguous: the mixer's), into L1 before the wait
    const int bytes = element_bytes(p.weight_type);
    prefetch_l1_lines(static_cast<const char*>(p.weight) + static_cast<int64_t>(group) * p.group_size * bytes,
                      static_cast<int64_t>(p.group_size) * bytes, threadIdx.x, ssd::kNormThreads);
  }
  grid_dependency_wait();  // y and z come from the kernels before
  const float sumsq = block_sum(red, ssd::norm_partial<YIo, Io>(p, row, group, threadIdx.x, ssd::kNormThreads));
  ssd::norm_write<YIo, Io>(p, row, group, threadIdx.x, ssd::kNormThreads, sumsq);
}

template <typename y_t>
LaunchStatus gated_rms_norm_cuda(const GatedRmsNormParams& p, cudaStream_t stream) {
  if (p.rows == 0 || p.dim == 0) return {};
  if (p.group_size < 1 || p.dim % p.group_size != 0) {
    return {cudaErrorInvalidValue, "gated_rms_norm: group_size must divide the channels"};
  }
  const int64_t blocks = p.rows * (p.dim / p.group_size);
  if (blocks > 0x7fffffff) return {cudaErrorInvalidConfiguration, "gated_rms_norm: too many rows"};
  return launch_kernel(gated_rms_norm_kernel<y_t>, dim3(static_cast<unsigned>(blocks)), dim3(ssd::kNormThreads), 0,
                       stream, "gated_rms_norm_kernel", p);
}

}  // namespace effarch::kernels
