#pragma once
// Eight consecutive elements as one 16-byte access (two for fp32), widened to or rounded from
// fp32 element by element as common/convert.cuh converts one: the vector paths of add_norm and the
// causal conv's prefill. The address must be 16-byte aligned (their launchers check it).

#include "common/convert.cuh"

namespace effarch::kernels {

template <typename T>
struct alignas(16) Vec8 {
  T e[8];
};

template <typename T>
__device__ __forceinline__ void load8_float(const T* p, float (&out)[8]) {
  const Vec8<T> v = *reinterpret_cast<const Vec8<T>*>(p);
#pragma unroll
  for (int j = 0; j < 8; ++j) out[j] = to_float(v.e[j]);
}

template <typename T>
__device__ __forceinline__ void store8_float(T* p, const float (&in)[8]) {
  Vec8<T> v;
#pragma unroll
  for (int j = 0; j < 8; ++j) v.e[j] = from_float<T>(in[j]);
  *reinterpret_cast<Vec8<T>*>(p) = v;
}

}  // namespace effarch::kernels
