#pragma once
// Host-side plumbing of the kernels' params that every build has (no CUDA header): torch dtypes
// onto the kernels' element types. A kernel's params are filled by code built everywhere, so CPU
// tests run it and the kernel's host emulation together; src/ops/cuda_binding.h adds the launch.

#include <cstdint>
#include <limits>

#include <ATen/core/Tensor.h>
#include <fmt/format.h>

#include "common/element_enum.h"
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

// A size or count for the kernels' params, which hold them as int (offsets are int64 inside): an
// OpError naming `op` and `what` past INT32_MAX, where a cast would wrap.
inline int to_int(int64_t v, const char* op, const char* what) {
  if (v < 0 || v > std::numeric_limits<int>::max()) {
    throw OpError(fmt::format("{}: {} = {} is beyond the CUDA kernel's 32-bit sizes", op, what, v));
  }
  return static_cast<int>(v);
}

}  // namespace effarch::ops::detail
