#pragma once
// The dense projection of a batched decode step on tensor cores, CUDA kernels:
//
//   y[r, n] = sum_k W[n, k] x[r, k] (+ bias[n])     R = 9..64 rows of x
//
// W [N, K] contiguous, x, bias and y bf16 or fp16; fp32 accumulation, y rounded once. Between the
// dense GEMV's few rows (kernels/gemv) and a prefill's many, a decode step at batch 16-64 still
// reads every weight once and computes little per byte; cuBLAS's kernels for these shapes can tile
// the rows so that the weight is read more than once (Mamba-2.8B's in_proj at batch 32 on an H200:
// 107 us a call in 128x8 tiles, for 52 MB). This kernel reads each weight tile once, straight
// from global memory into the tensor cores, with x staged in shared memory; split-K fills the
// GPU, a second kernel adds the splits in a fixed order. rows_gemm_math.h holds the plan and the
// per-block math (a CPU test runs them); rows_gemm.cuh the kernels.
//
// No torch types: src/ops/linear_cuda.cpp fills the params (rows_gemm_params.h) from checked
// tensors and allocates the partial buffer.

#include "common/element_type.h"
#include "rows_gemm/rows_gemm_params.h"

namespace effarch::kernels {

// Per element type, defined in rows_gemm_<dtype>.cu (wmma has no fp32 inputs: fp32 keeps cuBLAS).
LaunchStatus rows_gemm_bf16(const RowsGemmParams& params, cudaStream_t stream);
LaunchStatus rows_gemm_fp16(const RowsGemmParams& params, cudaStream_t stream);

inline LaunchStatus rows_gemm(const RowsGemmParams& params, cudaStream_t stream) {
  return dispatch_element_type<RowsGemmParams>(params.x_type, {nullptr, rows_gemm_bf16, rows_gemm_fp16}, params,
                                               stream, "rows_gemm: bf16 or fp16 only");
}

}  // namespace effarch::kernels
