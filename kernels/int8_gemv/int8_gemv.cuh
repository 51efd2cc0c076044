#pragma once
// The int8 GEMV kernel (int8_gemv.h has the contract), templated on x's element type and the
// row count; instantiated per element type in int8_gemv_<dtype>.cu.
//
// A block of 8 warps computes 8 output features, one per warp. Each lane of a warp reads 16
// int8 weights (one 16-byte load) and the matching 16 elements of each row of x, accumulates in
// fp32, and the warp sums its lanes with shuffles. x (a few rows of K elements) is read by every
// warp and stays in L1/L2; the weights are read once, which is what bounds a decode step.
// Rows whose length or alignment does not allow 16-byte loads take a scalar loop instead.

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "common/convert.cuh"
#include "common/grid_dependency.h"
#include "common/launch.h"
#include "int8_gemv/int8_gemv.h"

namespace effarch::kernels {
namespace int8_gemv_detail {

inline constexpr int kWarpsPerBlock = 8;
inline constexpr int kLanes = 32;
inline constexpr int kVec = 16;  // int8 weights per 16-byte load

// 16 elements of x starting at p (16-byte aligned for the vector path) widened to fp32. Plain
// loads, not the read-only path: x is written by the kernel before this one, which under
// programmatic launch (common/grid_dependency.h) may still run when this kernel starts.
template <typename T>
__device__ __forceinline__ void load16(const T* p, float (&v)[kVec]) {
#pragma unroll
  for (int i = 0; i < kVec; ++i) v[i] = to_float(p[i]);
}
template <>
__device__ __forceinline__ void load16<float>(const float* p, float (&v)[kVec]) {
  const float4* p4 = reinterpret_cast<const float4*>(p);
#pragma unroll
  for (int i = 0; i < kVec / 4; ++i) {
    const float4 f = p4[i];
    v[4 * i] = f.x;
    v[4 * i + 1] = f.y;
    v[4 * i + 2] = f.z;
    v[4 * i + 3] = f.w;
  }
}
template <typename Half2, typename T>
__device__ __forceinline__ void load16_pairs(const T* p, float (&v)[kVec]) {
  const uint4* p4 = reinterpret_cast<const uint4*>(p);
#pragma unroll
  for (int i = 0; i < 2; ++i) {  // 2 x 16 bytes = 16 halves
    const uint4 u = p4[i];
    const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      T pair[2];
      memcpy(pair, &w[j], sizeof pair);
      v[8 * i + 2 * j] = to_float(pair[0]);
      v[8 * i + 2 * j + 1] = to_float(pair[1]);
    }
  }
}
template <>
__device__ __forceinline__ void load16<__nv_bfloat16>(const __nv_bfloat16* p, float (&v)[kVec]) {
  load16_pairs<__nv_bfloat162>(p, v);
}
template <>
__device__ __forceinline__ void load16<__half>(const __half* p, float (&v)[kVec]) {
  load16_pairs<__half2>(p, v);
}

template <typename T, int R, bool kVectorized>
__global__ void __launch_bounds__(kWarpsPerBlock* kLanes)
    int8_gemv_kernel(const Int8GemvParams p) {
  allow_dependent_launch();
  grid_dependency_wait();  // x comes from the kernels before (no weight read ahead here, unlike gemv/)
  const int warp = static_cast<int>(threadIdx.x) / kLanes, lane = static_cast<int>(threadIdx.x) % kLanes;
  const int o = static_cast<int>(blockIdx.x) * kWarpsPerBlock + warp;
  if (o >= p.out) return;
  const int8_t* q = p.q + static_cast<int64_t>(o) * p.in;
  const T* x = static_cast<const T*>(p.x);
  float acc[R];
#pragma unroll
  for (int r = 0; r < R; ++r) acc[r] = 0.f;
  // R is a compile-time bound (1, 2, 4 or 8); rows at or past p.rows are skipped.
  if constexpr (kVectorized) {  // p.in is a multiple of 16
    for (int k = lane * kVec; k < p.in; k += kLanes * kVec) {
      const int4 packed = __ldg(reinterpret_cast<const int4*>(q + k));
      int8_t w[kVec];
      memcpy(w, &packed, sizeof w);
#pragma unroll
      for (int r = 0; r < R; ++r) {
        if (r >= p.rows) break;
        float xv[kVec];
        load16<T>(x + r * p.x_row_stride + k, xv);
#pragma unroll
        for (int i = 0; i < kVec; ++i) acc[r] = fmaf(static_cast<float>(w[i]), xv[i], acc[r]);
      }
    }
  } else {
    for (int k = lane; k < p.in; k += kLanes) {
      const float w = static_cast<float>(q[k]);
#pragma unroll
      for (int r = 0; r < R; ++r) {
        if (r < p.rows) acc[r] = fmaf(w, to_float(x[r * p.x_row_stride + k]), acc[r]);
      }
    }
  }
#pragma unroll
  for (int r = 0; r < R; ++r) {
#pragma unroll
    for (int offset = kLanes / 2; offset > 0; offset /= 2) acc[r] += __shfl_xor_sync(0xffffffffu, acc[r], offset);
  }
  if (lane == 0) {
    const float s = p.scale[o];
    const float b = p.bias != nullptr ? to_float(static_cast<const T*>(p.bias)[o]) : 0.f;
    T* y = static_cast<T*>(p.y);
#pragma unroll
    for (int r = 0; r < R; ++r) {
      if (r < p.rows) y[r * p.y_row_stride + o] = from_float<T>(acc[r] * s + b);
    }
  }
}

template <typename T, int R>
LaunchStatus int8_gemv_launch(const Int8GemvParams& p, cudaStream_t stream) {
  const dim3 grid((p.out + kWarpsPerBlock - 1) / kWarpsPerBlock), block(kWarpsPerBlock * kLanes);
  // 16-byte loads need every row of q and x to start 16-byte aligned.
  const bool aligned = p.in % kVec == 0 && reinterpret_cast<uintptr_t>(p.q) % 16 == 0 &&
                       reinterpret_cast<uintptr_t>(p.x) % 16 == 0 &&
                       (p.x_row_stride * static_cast<int64_t>(sizeof(T))) % 16 == 0;
  return launch_kernel(aligned ? int8_gemv_kernel<T, R, true> : int8_gemv_kernel<T, R, false>, grid, block, 0, stream,
                       "int8_gemv kernel launch", p);
}

}  // namespace int8_gemv_detail

template <typename T>
LaunchStatus int8_gemv_cuda(const Int8GemvParams& p, cudaStream_t stream) {
  using namespace int8_gemv_detail;
  if (p.out == 0 || p.rows == 0) return {};
  switch (p.rows) {
    case 1: return int8_gemv_launch<T, 1>(p, stream);
    case 2: return int8_gemv_launch<T, 2>(p, stream);
    case 3: case 4: return int8_gemv_launch<T, 4>(p, stream);
    case 5: case 6: case 7: case 8: return int8_gemv_launch<T, 8>(p, stream);
    default: return {cudaErrorInvalidValue, "int8_gemv: rows must be 1..8"};
  }
}

}  // namespace effarch::kernels
