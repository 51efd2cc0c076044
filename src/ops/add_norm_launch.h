#pragma once
// The fused residual add + norm's launch, prepared on the host (every build): the tensors it
// reads and writes and the params (kernels/add_norm/add_norm_params.h) pointing at them.
// src/ops/add_norm_cuda.cpp launches it; tests/ops/add_norm_test.cpp runs the kernel's host
// emulation on it, so this code and the kernel's math are tested without a GPU.

#include <ATen/core/Tensor.h>

#include "add_norm/add_norm_params.h"
#include "effarch/ops/add_norm.h"

namespace effarch::ops::detail {

struct AddNormLaunch {
  at::Tensor x, y, z, weight, bias;  // [rows, H] views (copies only where the last dimension is strided)
  at::Tensor residual, normed;       // [rows, H], written by the kernel
  kernels::AddNormParams params;
};

// Over checked arguments (src/ops/add_norm.cpp). The results are launch.residual and
// launch.normed viewed as x's shape. Without `with_normed` (the dense GEMV's norm prologue,
// which keeps the normed rows in shared memory) no normed tensor is made: params.normed is null.
AddNormLaunch prepare_add_norm(const at::Tensor& x, const at::Tensor& y, const at::Tensor* z, const NormParams& norm,
                               bool with_normed = true);
// add_norm's argument checks (OpError naming the argument), for the ops that prepare its launch.
void check_add_norm(const at::Tensor& x, const at::Tensor& y, const at::Tensor* z, const NormParams& norm);

}  // namespace effarch::ops::detail
