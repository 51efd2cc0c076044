#pragma once
// The fused activation's launch, prepared on the host (every build): its params
// (kernels/activation/activation_params.h) over checked tensors. src/ops/activation_cuda.cpp
// launches it; tests/ops/activation_kernel_test.cpp runs the kernel's host emulation on it.

#include <optional>

#include <ATen/core/Tensor.h>

#include "activation/activation_params.h"
#include "effarch/ops/activation.h"

namespace effarch::ops::detail {

// The kernel's activation kind for `act`; nullopt where the kernel has none.
std::optional<kernels::ActKind> kernel_activation(Activation act);

struct ActivationLaunch {
  at::Tensor in;   // [rows, C] (gated: [rows, 2I]), columns contiguous (a view where the layout allows)
  at::Tensor out;  // [rows, C or I], written by the kernel
  kernels::ActivationParams params;
};

// x [..., C] (gated: [..., 2I], gate columns first) with an activation that has a kernel. The
// result is launch.out viewed as x's shape with the last dimension C (gated: I).
ActivationLaunch prepare_activation(Activation act, const at::Tensor& x, bool gated);

}  // namespace effarch::ops::detail
