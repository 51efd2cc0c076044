#pragma once
// Dense matrix-vector products for decode (a few rows of x), CUDA kernels:
//
//   y[r, o] = sum_k W[o, k] x[r, k] (+ bias[o])
//
// W [out, in] contiguous, x, bias and y in one float element type; fp32 accumulation, y rounded
// once. A decode step reads every weight once, so the kernel is built to stream W at the copy
// bandwidth: 16-byte loads, four in flight per lane, and split-K (several warps of a block share
// one output row) for matrices with few output rows. gemv_math.h holds the plan and the per-lane
// math (a CPU test runs them); gemv.cuh the kernel.
//
// No torch types: src/ops/linear_cuda.cpp fills the params from checked tensors.

#include <cstdint>

#include "common/element_type.h"

namespace effarch::kernels {

inline constexpr int kGemvMaxRows = 8;

struct GemvParams {
  int rows = 0;  // R rows of x, 1..kGemvMaxRows
  int in = 0;    // K
  int out = 0;   // O
  ElementType x_type = ElementType::kFloat32;  // x, w, bias, y

  const void* x = nullptr;  // [R, K], rows x_row_stride elements apart, k contiguous
  int64_t x_row_stride = 0;
  const void* w = nullptr;     // [O, K] contiguous
  const void* bias = nullptr;  // [O] or nullptr
  void* y = nullptr;           // [R, O], rows y_row_stride elements apart, o contiguous
  int64_t y_row_stride = 0;
  int sm_count = 0;  // the device's multiprocessors (the split-K plan fills them); 0: assume 132
};

// Per element type, defined in gemv_<dtype>.cu.
LaunchStatus gemv_fp32(const GemvParams& params, cudaStream_t stream);
LaunchStatus gemv_bf16(const GemvParams& params, cudaStream_t stream);
LaunchStatus gemv_fp16(const GemvParams& params, cudaStream_t stream);

inline LaunchStatus gemv(const GemvParams& params, cudaStream_t stream) {
  return dispatch_element_type<GemvParams>(params.x_type, {gemv_fp32, gemv_bf16, gemv_fp16}, params, stream,
                                           "gemv: unknown element type");
}

}  // namespace effarch::kernels
