#pragma once
// Shared plumbing of the CUDA bindings (src/ops/*_cuda.cpp, CUDA builds only): torch dtypes onto
// the kernels' element types, the stream to launch on, and a failed launch turned into an
// effarch::Error that names the op. The kernels themselves (kernels/) see no torch types.

#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <fmt/format.h>

#include "common/element_type.h"
#include "effarch/common/error.h"

namespace effarch::ops::detail {

// The kernels' element type for `type`; an OpError naming `op` for a dtype without kernels.
inline kernels::ElementType element_type(at::ScalarType type, const char* op) {
  switch (type) {
    case at::kFloat: return kernels::ElementType::kFloat32;
    case at::kBFloat16: return kernels::ElementType::kBFloat16;
    case at::kHalf: return kernels::ElementType::kFloat16;
    default: throw OpError(fmt::format("{}: no CUDA kernel for dtype {}", op, c10::toString(type)));
  }
}

// The current stream of the current device (set it with a CUDAGuard first).
inline cudaStream_t current_stream() { return at::cuda::getCurrentCUDAStream(); }

inline void throw_if_failed(const kernels::LaunchStatus& status, const char* op) {
  if (!status.ok()) {
    throw Error(fmt::format("{}: CUDA {} failed: {} ({})", op, status.what, cudaGetErrorName(status.error),
                            cudaGetErrorString(status.error)));
  }
}

}  // namespace effarch::ops::detail
