#pragma once
// Device-side element conversions and activations shared by every kernel: loads widen to fp32,
// stores round to nearest even as ATen's casts do, so kernels and references round alike.

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "common/element_type.h"

namespace effarch::kernels {

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <>
__device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }

__device__ __forceinline__ float silu(float v) { return v / (1.0f + expf(-v)); }

// The CUDA type of each ElementType, for kernels templated on the element.
template <ElementType>
struct ElementOf;
template <>
struct ElementOf<ElementType::kFloat32> { using type = float; };
template <>
struct ElementOf<ElementType::kBFloat16> { using type = __nv_bfloat16; };
template <>
struct ElementOf<ElementType::kFloat16> { using type = __half; };

}  // namespace effarch::kernels
