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
// No torch types: src/ops/linear_cuda.cpp fills the params (gemv_params.h) from checked tensors.

#include "common/element_type.h"
#include "gemv/gemv_params.h"

namespace effarch::kernels {

// Per element type, defined in gemv_<dtype>.cu.
LaunchStatus gemv_fp32(const GemvParams& params, cudaStream_t stream);
LaunchStatus gemv_bf16(const GemvParams& params, cudaStream_t stream);
LaunchStatus gemv_fp16(const GemvParams& params, cudaStream_t stream);

inline LaunchStatus gemv(const GemvParams& params, cudaStream_t stream) {
  return dispatch_element_type<GemvParams>(params.x_type, {gemv_fp32, gemv_bf16, gemv_fp16}, params, stream,
                                           "gemv: unknown element type");
}

}  // namespace effarch::kernels
