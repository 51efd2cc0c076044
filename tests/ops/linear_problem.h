#pragma once
// A projection's inputs for the tests of the decode-step kernels (the dense GEMV, the rows GEMM):
// for the CPU emulations fp32 x [R, K] (rows `row_stride` elements apart, k contiguous), W [O, K]
// scaled so the outputs are O(1), an optional bias, and at::linear of them, the reference; for the
// GPU tests the same drawn on the device in a given dtype.

#include <cmath>
#include <cstdint>
#include <optional>

#include <ATen/ATen.h>

#include "effarch/ops/backend.h"
#include "effarch/ops/linear.h"

namespace effarch::test {

struct LinearProblem {
  at::Tensor x;  // [R, K] fp32, k contiguous, rows x.stride(0) apart
  at::Tensor w;  // [O, K] fp32 contiguous
  std::optional<at::Tensor> bias;
};

inline LinearProblem make_linear_problem(int64_t rows, int64_t out, int64_t in, bool bias, int64_t row_stride = 0) {
  LinearProblem pr;
  const int64_t stride = row_stride > 0 ? row_stride : in;
  pr.x = at::randn({rows, stride}).narrow(1, 0, in);
  pr.w = at::randn({out, in}) / std::sqrt(static_cast<double>(in));
  if (bias) pr.bias = at::randn({out});
  return pr;
}

inline at::Tensor linear_reference(const LinearProblem& pr) { return at::linear(pr.x, pr.w, pr.bias); }

// Whether the GPU tests can run: a CUDA build and a GPU.
inline bool have_gpu() { return ops::kBuiltWithCuda && at::hasCUDA(); }

// Drawn on the device (the decode shapes' weights reach 129M elements), then cast to `dtype`.
inline at::Tensor cuda_randn(at::IntArrayRef sizes, at::ScalarType dtype) {
  return at::randn(sizes, at::TensorOptions().device(at::kCUDA)).to(dtype);
}

// A dense [out, in] layer on the device in `dtype`, W scaled as above, with a bias or not.
inline ops::Linear cuda_layer(int64_t out, int64_t in, at::ScalarType dtype, bool bias) {
  const at::Tensor w = (cuda_randn({out, in}, at::kFloat) / std::sqrt(static_cast<double>(in))).to(dtype);
  return bias ? ops::Linear(w, cuda_randn({out}, dtype)) : ops::Linear(w);
}

}  // namespace effarch::test
