#pragma once
// Weight-only int8 matrix-vector products for decode (a few rows of x), CUDA kernels:
//
//   y[r, o] = (sum_k q[o, k] * x[r, k]) * scale[o] (+ bias[o])
//
// q int8 [out, in] contiguous, scale fp32 [out] (symmetric per output channel, as
// effarch::ops::quantize_int8 makes them); x, bias and y in one float element type; fp32
// accumulation. A decode step reads every weight once: one warp per output row streams its row
// 16 bytes per lane per load, so the bytes read are the int8 weight, a quarter of fp32's.
//
// No torch types: src/ops/linear_cuda.cpp fills the params from checked tensors.

#include <cstdint>

#include "common/element_type.h"

namespace effarch::kernels {

inline constexpr int kInt8GemvMaxRows = 8;

struct Int8GemvParams {
  int rows = 0;  // R rows of x, 1..kInt8GemvMaxRows
  int in = 0;    // K
  int out = 0;   // O
  ElementType x_type = ElementType::kFloat32;  // x, bias, y

  const void* x = nullptr;  // [R, K], rows x_row_stride elements apart, k contiguous
  int64_t x_row_stride = 0;
  const int8_t* q = nullptr;    // [O, K] contiguous
  const float* scale = nullptr;  // [O]
  const void* bias = nullptr;   // [O] or nullptr
  void* y = nullptr;            // [R, O], rows y_row_stride elements apart, o contiguous
  int64_t y_row_stride = 0;
};

// Per element type, defined in int8_gemv_<dtype>.cu.
LaunchStatus int8_gemv_fp32(const Int8GemvParams& params, cudaStream_t stream);
LaunchStatus int8_gemv_bf16(const Int8GemvParams& params, cudaStream_t stream);
LaunchStatus int8_gemv_fp16(const Int8GemvParams& params, cudaStream_t stream);

inline LaunchStatus int8_gemv(const Int8GemvParams& params, cudaStream_t stream) {
  return dispatch_element_type<Int8GemvParams>(params.x_type, {int8_gemv_fp32, int8_gemv_bf16, int8_gemv_fp16},
                                               params, stream, "int8_gemv: unknown element type");
}

}  // namespace effarch::kernels
