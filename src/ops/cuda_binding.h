#pragma once
// Shared plumbing of the CUDA bindings (src/ops/*_cuda.cpp, CUDA builds only): the stream to launch
// on (torch dtypes onto element types: kernel_params.h), and a failed launch turned into an
// effarch::Error that names the op. The kernels themselves (kernels/) see no torch types.

#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <fmt/format.h>

#include "common/element_type.h"
#include "effarch/common/error.h"
#include "kernel_params.h"

namespace effarch::ops::detail {

// The current stream of the current device (set it with a CUDAGuard first).
inline cudaStream_t current_stream() { return at::cuda::getCurrentCUDAStream(); }

inline void throw_if_failed(const kernels::LaunchStatus& status, const char* op) {
  if (!status.ok()) {
    throw Error(fmt::format("{}: CUDA {} failed: {} ({})", op, status.what, cudaGetErrorName(status.error),
                            cudaGetErrorString(status.error)));
  }
}

}  // namespace effarch::ops::detail
