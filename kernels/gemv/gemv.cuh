#pragma once
// The dense GEMV kernel (gemv.h has the contract, gemv_math.h the plan and the per-lane math),
// templated on the element type and the row count; instantiated per element type in
// gemv_<dtype>.cu. This file is the thin GPU shell: thread indices, the warp's shuffle sum, the
// split warps' shared-memory sum, the stores (and a fused conv update's, gemv_math.h).

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "common/convert.cuh"
#include "common/grid_dependency.h"
#include "common/launch.h"
#include "gemv/gemv.h"
#include "gemv/gemv_math.h"

namespace effarch::kernels {
namespace gemv_detail {

template <typename T, int R, bool kVectorized>
__global__ void __launch_bounds__(kGemvThreads) gemv_kernel(const GemvParams p, const int split) {
  __shared__ float partial[kGemvWarps][R];
  allow_dependent_launch();
  const GemvLane l = gemv_lane_of(split, static_cast<int>(blockIdx.x), static_cast<int>(threadIdx.x));
  const T* x = static_cast<const T*>(p.x);
  float acc[R];
#pragma unroll
  for (int r = 0; r < R; ++r) acc[r] = 0.f;
  const bool active = l.out_row < p.out;  // the last block's spare warps still reach the barrier
  if (active) {
    const T* w_row = static_cast<const T*>(p.w) + static_cast<int64_t>(l.out_row) * p.in;
    if constexpr (kVectorized) {
      gemv_lane_vectorized<T, R>(w_row, x, p.x_row_stride, p.rows, p.in / GemvUnpack<T>::kVec, l.t, l.stride, acc);
    } else {
      gemv_lane_scalar<T, R>(w_row, x, p.x_row_stride, p.rows, p.in, l.t, l.stride, acc);
    }
  } else {
    grid_dependency_wait();  // the lane functions wait in every active lane; the spare ones too
  }
#pragma unroll
  for (int r = 0; r < R; ++r) {
#pragma unroll
    for (int offset = kGemvLanes / 2; offset > 0; offset /= 2) acc[r] += __shfl_xor_sync(0xffffffffu, acc[r], offset);
  }
  T* y = static_cast<T*>(p.y);
  const T* bias = static_cast<const T*>(p.bias);
  if (split == 1) {
    if (active && l.lane == 0) {
      const float b = bias != nullptr ? to_float(bias[l.out_row]) : 0.f;
#pragma unroll
      for (int r = 0; r < R; ++r) {
        if (r >= p.rows) continue;
        const T v = gemv_output<T>(gemv_combine(&acc[r], 1, 1, b), p.activation);
        y[r * p.y_row_stride + l.out_row] = v;
        if (p.conv.dim > 0) gemv_conv_update<T>(p.conv, r, l.out_row, v);
      }
    }
    return;
  }
  if (l.lane == 0) {
#pragma unroll
    for (int r = 0; r < R; ++r) partial[l.warp][r] = acc[r];
  }
  __syncthreads();
  // Lane r of the group's first warp writes row r.
  if (active && l.part == 0 && l.lane < R && l.lane < p.rows) {
    const float b = bias != nullptr ? to_float(bias[l.out_row]) : 0.f;
    const T v = gemv_output<T>(gemv_combine(&partial[l.warp][l.lane], R, split, b), p.activation);
    y[l.lane * p.y_row_stride + l.out_row] = v;
    if (p.conv.dim > 0) gemv_conv_update<T>(p.conv, l.lane, l.out_row, v);
  }
}

template <typename T, int R>
LaunchStatus gemv_launch(const GemvParams& p, cudaStream_t stream) {
  if (p.conv.dim > 0 && (p.conv.width < 2 || p.conv.width > 4 || p.conv.begin < 0 || p.conv.begin + p.conv.dim > p.out)) {
    return {cudaErrorInvalidValue, "gemv: the fused conv update needs width 2..4 and channels inside the outputs"};
  }
  if (p.conv.dim > 0 && p.activation.on) return {cudaErrorInvalidValue, "gemv: a conv update or an activation, not both"};
  const GemvPlan plan = gemv_plan(p.out, p.in, GemvUnpack<T>::kVec, p.sm_count);
  const bool vectorized = gemv_vectorized(p.in, static_cast<int>(sizeof(T)), reinterpret_cast<uintptr_t>(p.w),
                                          reinterpret_cast<uintptr_t>(p.x), p.x_row_stride);
  return launch_kernel(vectorized ? gemv_kernel<T, R, true> : gemv_kernel<T, R, false>, dim3(plan.blocks),
                       dim3(kGemvThreads), 0, stream, "gemv kernel launch", p, plan.split);
}

}  // namespace gemv_detail

template <typename T>
LaunchStatus gemv_cuda(const GemvParams& p, cudaStream_t stream) {
  using namespace gemv_detail;
  if (p.out == 0 || p.rows == 0) return {};
  switch (p.rows) {
    case 1: return gemv_launch<T, 1>(p, stream);
    case 2: return gemv_launch<T, 2>(p, stream);
    case 3: case 4: return gemv_launch<T, 4>(p, stream);
    case 5: case 6: case 7: case 8: return gemv_launch<T, 8>(p, stream);
    default: return {cudaErrorInvalidValue, "gemv: rows must be 1..8"};
  }
}

}  // namespace effarch::kernels
