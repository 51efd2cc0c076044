#pragma once
// The host mirror of a warp's xor-butterfly sum, for the CPU emulations of kernels that add their
// lanes' values with __shfl_xor_sync at offsets kLanes / 2, ..., 2, 1: at each offset every lane
// adds the value of lane ^ offset, so each lane ends with the same tree of additions. Returns lane
// 0's sum. Host only (a kernel runs the shuffles themselves).

#ifndef __CUDACC__
namespace effarch::kernels {

template <int kLanes = 32>
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

}  // namespace effarch::kernels
#endif
