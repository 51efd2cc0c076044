#pragma once
// The add_norm math's device Io (add_norm_math.h: loads, stores and roundings of the model dtype T
// or of an fp32 residual), shared by the add_norm kernels (add_norm_kernel.cuh) and the dense
// GEMV's norm prologue (gemv/gemv_norm.h).

#include "add_norm/add_norm_params.h"
#include "common/convert.cuh"
#include "common/grid_dependency.h"
#include "common/row8.h"

namespace effarch::kernels::addnorm {

// Loads and stores of T, or of fp32 where the params say so (the residual of residual_in_fp32).
template <typename T>
struct TypedIo {
  __device__ __forceinline__ static float load(const void* base, int64_t offset, ElementType type) {
    if (type == ElementType::kFloat32) return static_cast<const float*>(base)[offset];
    return to_float(static_cast<const T*>(base)[offset]);
  }
  __device__ __forceinline__ static void store(void* base, int64_t offset, ElementType type, float v) {
    if (type == ElementType::kFloat32) {
      static_cast<float*>(base)[offset] = v;
    } else {
      static_cast<T*>(base)[offset] = from_float<T>(v);
    }
  }
  __device__ __forceinline__ static float round_to(ElementType type, float v) {
    return type == ElementType::kFloat32 ? v : to_float(from_float<T>(v));
  }
  // The vector shape's 8 elements at base + offset (common/row8.h): one 16-byte access of a 2-byte
  // T, two of fp32 (vector_applies checked the alignment).
  __device__ __forceinline__ static void load8(const void* base, int64_t offset, ElementType type, float (&out)[8]) {
    if (type == ElementType::kFloat32) {
      kernels::load8(static_cast<const float*>(base) + offset, 1, true, out);
    } else {
      kernels::load8(static_cast<const T*>(base) + offset, 1, true, out);
    }
  }
  __device__ __forceinline__ static void store8(void* base, int64_t offset, ElementType type, const float (&in)[8]) {
    if (type == ElementType::kFloat32) {
      kernels::store8(static_cast<float*>(base) + offset, 1, true, in);
    } else {
      kernels::store8(static_cast<T*>(base) + offset, 1, true, in);
    }
  }
};

// The norm's weight and LayerNorm's bias, which the last phase reads, asked into L1 by thread tid
// of n where p allows it (prefetch_weights: the model's own tensors): before the grid-dependency
// wait, while the kernel before finishes.
__device__ __forceinline__ void prefetch_norm_weights(const AddNormParams& p, int tid, int n) {
  if (!p.prefetch_weights) return;
  const int64_t weight_bytes = static_cast<int64_t>(p.dim) * element_bytes(p.type);
  prefetch_l1_lines(p.weight, weight_bytes, tid, n);
  if (p.norm == NormType::kLayer) prefetch_l1_lines(p.bias, weight_bytes, tid, n);
}

}  // namespace effarch::kernels::addnorm
