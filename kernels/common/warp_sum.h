#pragma once
// A block's row sum as the norm kernels take it (add_norm, Mamba-2's gated RMSNorm): each warp
// adds its lanes' values with an xor butterfly (__shfl_xor_sync at offsets 16, 8, 4, 2, 1: every
// lane adds the value of lane ^ offset, so each ends with the same tree of additions), lane 0
// puts the warp's sum in shared memory, and after one barrier every thread adds the warps' sums
// in warp order (add_warp_sums). common/block_sum.cuh is the device side; the host mirror of the
// butterfly is here, for the CPU emulations of those kernels and of the GEMV's warp sum.

#include "common/host_device.h"

namespace effarch::kernels {

inline constexpr int kWarpLanes = 32;

// The warps' sums added in warp order: what every thread of the block computes after the barrier.
EFFARCH_HD float add_warp_sums(const float* warp_sums, int warps) {
  float s = warp_sums[0];
  for (int w = 1; w < warps; ++w) s += warp_sums[w];
  return s;
}

#ifndef __CUDACC__
// The host mirror of a warp's xor-butterfly sum over kLanes lanes: lane 0's sum.
template <int kLanes = kWarpLanes>
inline float xor_butterfly_sum_emulated(const float* lanes) {
  float v[kLanes];
  for (int l = 0; l < kLanes; ++l) v[l] = lanes[l];
  for (int offset = kLanes / 2; offset > 0; offset /= 2) {
    float next[kLanes];
    for (int l = 0; l < kLanes; ++l) next[l] = v[l] + v[l ^ offset];
    for (int l = 0; l < kLanes; ++l) v[l] = next[l];
  }
  return v[0];
}

// The block sum of `threads` partials (a multiple of 32) in the kernels' order.
inline float block_sum_emulated(const float* partials, int threads) {
  const int warps = threads / kWarpLanes;
  float sums[1024 / kWarpLanes];
  for (int w = 0; w < warps; ++w) sums[w] = xor_butterfly_sum_emulated<kWarpLanes>(partials + w * kWarpLanes);
  return add_warp_sums(sums, warps);
}
#endif

}  // namespace effarch::kernels
