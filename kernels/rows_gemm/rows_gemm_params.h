#pragma once
// The rows GEMM's parameters (rows_gemm.h has the contract): plain C++, no CUDA headers, so the
// host emulation of the kernel's math (rows_gemm_math.h, tests/ops/rows_gemm_test.cpp) reads the
// same struct.

#include <cstdint>

#include "common/element_enum.h"

namespace effarch::kernels {

struct RowsGemmParams {
  int rows = 0;  // R rows of x, kRowsGemmMinRows..kRowsGemmMaxRows
  int in = 0;    // K, a multiple of 16
  int out = 0;   // N, a multiple of 16
  ElementType x_type = ElementType::kBFloat16;  // x, w, bias, y: bf16 or fp16

  const void* x = nullptr;  // [R, K], rows x_row_stride elements apart (a multiple of 8), 16-byte aligned
  int64_t x_row_stride = 0;
  const void* w = nullptr;     // [N, K] contiguous, 32-byte aligned
  const void* bias = nullptr;  // [N] or nullptr
  void* y = nullptr;           // [R, N], rows y_row_stride elements apart
  int64_t y_row_stride = 0;
  // The split-K partial sums, fp32 [splits, rows_pad, N] (rows_pad: R rounded up to 16), 32-byte
  // aligned: every split's block writes its own, the reduce kernel adds them in split order.
  float* partial = nullptr;
  int sm_count = 0;  // the device's multiprocessors (the split plan fills them); 0: assume 132
};

}  // namespace effarch::kernels
