#pragma once
// The fused activation kernel (activation.h): a grid-stride loop over 16-byte groups of a row
// (activation_vector) where the tensors allow, else over single elements (activation_element);
// the element's math in activation_math.h either way.

#include "activation/activation.h"
#include "activation/activation_math.h"
#include "common/convert.cuh"
#include "common/grid_dependency.h"
#include "common/launch.h"

namespace effarch::kernels {

namespace act {

template <typename T>
struct TypedIo {
  __device__ __forceinline__ static float load(const void* base, int64_t offset) {
    return to_float(static_cast<const T*>(base)[offset]);
  }
  __device__ __forceinline__ static void store(void* base, int64_t offset, float v) {
    static_cast<T*>(base)[offset] = from_float<T>(v);
  }
  __device__ __forceinline__ static float round(float v) { return to_float(from_float<T>(v)); }
  template <int kVec>
  __device__ __forceinline__ static void load_vec(const void* base, int64_t offset, float (&v)[kVec]) {
    static_assert(kVec * sizeof(T) == 16, "one 16-byte load");
    const uint4 raw = *reinterpret_cast<const uint4*>(static_cast<const T*>(base) + offset);
    const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int k = 0; k < kVec; ++k) v[k] = to_float(e[k]);
  }
  template <int kVec>
  __device__ __forceinline__ static void store_vec(void* base, int64_t offset, const float (&v)[kVec]) {
    uint4 raw;
    T* e = reinterpret_cast<T*>(&raw);
#pragma unroll
    for (int k = 0; k < kVec; ++k) e[k] = from_float<T>(v[k]);
    *reinterpret_cast<uint4*>(static_cast<T*>(base) + offset) = raw;
  }
};

inline constexpr int64_t kMaxBlocks = 65535;

}  // namespace act

template <typename T>
__global__ void __launch_bounds__(act::kThreads) activation_kernel(const ActivationParams p) {
  allow_dependent_launch();
  grid_dependency_wait();
  const int64_t total = p.rows * p.cols;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    act::activation_element<act::TypedIo<T>>(p, i / p.cols, i % p.cols);
  }
}

template <typename T>
__global__ void __launch_bounds__(act::kThreads) activation_vector_kernel(const ActivationParams p) {
  constexpr int kVec = act::kVectorElements<T>;
  allow_dependent_launch();
  grid_dependency_wait();
  const int64_t total = p.rows * (p.cols / kVec);
  for (int64_t g = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; g < total;
       g += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    act::activation_vector<act::TypedIo<T>, kVec>(p, g);
  }
}

template <typename T>
LaunchStatus activation_cuda(const ActivationParams& p, cudaStream_t stream) {
  if (p.rows == 0 || p.cols == 0) return {};
  if (p.in == nullptr || p.out == nullptr || p.rows < 0 || p.cols < 0) {
    return {cudaErrorInvalidValue, "activation: in and out are required"};
  }
  if (p.act != ActKind::kSilu && p.act != ActKind::kGeluNew) {
    return {cudaErrorInvalidValue, "activation: no kernel for this activation"};
  }
  const bool vector = act::activation_vectorizes(p, static_cast<int64_t>(sizeof(T)));
  const int64_t steps = vector ? p.rows * (p.cols / act::kVectorElements<T>) : p.rows * p.cols;
  const int64_t blocks = (steps + act::kThreads - 1) / act::kThreads;
  const unsigned grid = static_cast<unsigned>(blocks < act::kMaxBlocks ? blocks : act::kMaxBlocks);
  if (vector) {
    return launch_kernel(activation_vector_kernel<T>, dim3(grid), dim3(act::kThreads), 0, stream,
                         "activation_vector_kernel", p);
  }
  return launch_kernel(activation_kernel<T>, dim3(grid), dim3(act::kThreads), 0, stream, "activation_kernel", p);
}

}  // namespace effarch::kernels
