#pragma once
// The dense GEMV kernel (gemv.h has the contract, gemv_math.h the plan and the per-lane math),
// templated on the element type and the row count; instantiated per element type in
// gemv_<dtype>.cu. This file is the thin GPU shell: thread indices, the warp's shuffle sum, the
// split warps' shared-memory sum, the stores (and a fused conv update's, gemv_math.h), a gated
// activation's pairing of gate and up rows in shared memory.

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "common/convert.cuh"
#include "common/grid_dependency.h"
#include "common/launch.h"
#include "gemv/gemv.h"
#include "gemv/gemv_math.h"

namespace effarch::kernels {
namespace gemv_detail {

// kGated: a gated activation (GemvActivation::gated), its own instantiation so that the plain
// kernel keeps its registers (40 at one row on sm_90; the pairing's barrier and bookkeeping in the
// same body took 44-46), and only for the rows a decode step fuses (kGemvGatedMaxRows).
// kUnroll: weight loads in flight a lane (kGemvUnroll; kGemvUnrollWide in the measuring variant).
template <typename T, int R, bool kVectorized, bool kGated, int kUnroll = kGemvUnroll>
__global__ void __launch_bounds__(kGemvThreads) gemv_kernel(const GemvParams p, const int split, const int prefetch) {
  __shared__ float partial[kGemvWarps][R];
  __shared__ float pair_value[kGated ? kGemvWarps : 1][R];  // gated: each row's stored value, for its pair
  allow_dependent_launch();
  const GemvLane l = gemv_lane_of(split, static_cast<int>(blockIdx.x), static_cast<int>(threadIdx.x),
                                  kGated ? p.out / 2 : 0);
  const T* x = static_cast<const T*>(p.x);
  float acc[R];
#pragma unroll
  for (int r = 0; r < R; ++r) acc[r] = 0.f;
  const bool active = l.out_row < p.out;  // the last block's spare warps still reach the barriers
  if (active) {
    const T* w_row = static_cast<const T*>(p.w) + static_cast<int64_t>(l.out_row) * p.in;
    if constexpr (kVectorized) {
      gemv_lane_vectorized<T, R, kUnroll>(w_row, x, p.x_row_stride, p.rows, p.in / GemvUnpack<T>::kVec, l.t,
                                          l.stride, acc, prefetch);
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
  // The output (row r, weight row o) from its sum: stored (with a fused activation or conv), or,
  // gated, kept in shared memory for its pair (a gate row's activated).
  const auto finish = [&](int r, float sum) {
    const T v = gemv_output<T>(sum, gemv_row_activates(p.activation, l.out_row, p.out), p.activation.act);
    if constexpr (kGated) {
      pair_value[l.warp / split][r] = to_float(v);
    } else {
      y[r * p.y_row_stride + l.out_row] = v;
      if (p.conv.dim > 0) gemv_conv_update<T>(p.conv, r, l.out_row, v);
    }
  };
  if (split == 1) {
    if (active && l.lane == 0) {
      const float b = bias != nullptr ? to_float(bias[l.out_row]) : 0.f;
#pragma unroll
      for (int r = 0; r < R; ++r) {
        if (r < p.rows) finish(r, gemv_combine(&acc[r], 1, 1, b));
      }
    }
  } else {
    if (l.lane == 0) {
#pragma unroll
      for (int r = 0; r < R; ++r) partial[l.warp][r] = acc[r];
    }
    __syncthreads();
    // Lane r of the group's first warp finishes row r.
    if (active && l.part == 0 && l.lane < R && l.lane < p.rows) {
      const float b = bias != nullptr ? to_float(bias[l.out_row]) : 0.f;
      finish(l.lane, gemv_combine(&partial[l.warp][l.lane], R, split, b));
    }
  }
  if constexpr (kGated) {
    __syncthreads();
    // Lane r of a gate row's first warp stores act(gate) * up for row r; its up row is h slots on.
    const GemvPair q = gemv_pair_of(l, split, p.out / 2);
    if (active && q.gate && l.part == 0 && l.lane < R && l.lane < p.rows) {
      y[l.lane * p.y_row_stride + q.column] = gemv_gated_output<T>(pair_value[q.slot][l.lane], pair_value[q.up_slot][l.lane]);
    }
  }
}

template <typename T, int R>
LaunchStatus gemv_launch(const GemvParams& p, cudaStream_t stream) {
  if (p.conv.dim > 0 && (p.conv.width < 2 || p.conv.width > 4 || p.conv.begin < 0 || p.conv.begin + p.conv.dim > p.out)) {
    return {cudaErrorInvalidValue, "gemv: the fused conv update needs width 2..4 and channels inside the outputs"};
  }
  if (p.conv.dim > 0 && p.activation.on) return {cudaErrorInvalidValue, "gemv: a conv update or an activation, not both"};
  const bool gated = p.activation.gated;
  if (gated && (!p.activation.on || p.out % 2 != 0 || p.rows > kGemvGatedMaxRows)) {
    return {cudaErrorInvalidValue, "gemv: a gated activation needs the activation on, an even number of rows (gate "
                                   "then up) and at most kGemvGatedMaxRows rows of x"};
  }
  if (p.activation.on && (p.activation.from < 0 || p.activation.from >= p.out || (gated && p.activation.from != 0))) {
    return {cudaErrorInvalidValue, "gemv: an activation's first row must lie inside the outputs (0 for a gated one)"};
  }
  if (p.unroll != 0 && p.unroll != kGemvUnroll && p.unroll != kGemvUnrollWide) {
    return {cudaErrorInvalidValue, "gemv: unroll must be 0, 4 or 8"};
  }
  const GemvPlan plan = gemv_plan(p.out, p.in, GemvUnpack<T>::kVec, p.sm_count, gated);
  const bool vectorized = gemv_vectorized(p.in, static_cast<int>(sizeof(T)), reinterpret_cast<uintptr_t>(p.w),
                                          reinterpret_cast<uintptr_t>(p.x), p.x_row_stride);
  // The measuring variant: one row of x, the 16-byte path, no gated activation (else the default).
  const bool wide = R == 1 && vectorized && !gated && p.unroll == kGemvUnrollWide;
  // Weights asked into L2 before the wait only when the kernel may start early (--pdl): with the
  // switch off the wait returns at once and the kernel is the one measured before the prefetch.
  const int prefetch = vectorized && programmatic_launch_enabled()
                           ? gemv_prefetch_vectors(plan, p.in / GemvUnpack<T>::kVec, p.sm_count, p.l2_bytes,
                                                   wide ? kGemvUnrollWide : kGemvUnroll)
                           : 0;
  constexpr const char* kWhat = "gemv kernel launch";
  if constexpr (R == 1) {
    if (wide) {
      return launch_kernel(gemv_kernel<T, 1, true, false, kGemvUnrollWide>, dim3(plan.blocks), dim3(kGemvThreads), 0,
                           stream, kWhat, p, plan.split, prefetch);
    }
  }
  if constexpr (R <= kGemvGatedMaxRows) {
    if (gated) {
      return launch_kernel(vectorized ? gemv_kernel<T, R, true, true> : gemv_kernel<T, R, false, true>,
                           dim3(plan.blocks), dim3(kGemvThreads), 0, stream, kWhat, p, plan.split, prefetch);
    }
  }
  return launch_kernel(vectorized ? gemv_kernel<T, R, true, false> : gemv_kernel<T, R, false, false>, dim3(plan.blocks),
                       dim3(kGemvThreads), 0, stream, kWhat, p, plan.split, prefetch);
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
