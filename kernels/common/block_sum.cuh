#pragma once
// The device side of common/warp_sum.h's block sum: warp butterflies, the warps' sums through
// shared memory, added in warp order. Two barriers a sum (the second lets the caller sum again
// into the same buffer), where a halving tree over the block takes one per level.

#include "common/warp_sum.h"

namespace effarch::kernels {

// Every lane of the warp gets the sum of the lanes' values, by the xor butterfly.
__device__ __forceinline__ float warp_xor_sum(float v) {
#pragma unroll
  for (int offset = kWarpLanes / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Every thread of the block gets the sum of the threads' `partial`s. blockDim.x is a multiple of
// 32; `red` holds a float per warp.
__device__ __forceinline__ float block_sum(float* red, float partial) {
  partial = warp_xor_sum(partial);
  if (threadIdx.x % kWarpLanes == 0) red[threadIdx.x / kWarpLanes] = partial;
  __syncthreads();
  const float total = add_warp_sums(red, static_cast<int>(blockDim.x) / kWarpLanes);
  __syncthreads();
  return total;
}

}  // namespace effarch::kernels
