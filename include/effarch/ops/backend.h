#pragma once
// Which implementation an op runs: its CUDA kernel or its ATen reference (also the CPU path).

#include <string>
#include <string_view>

#include <c10/core/Device.h>

#include "effarch/common/error.h"

namespace effarch::ops {

enum class Backend {
  Auto,       // the CUDA kernel for CUDA tensors when effarch is built with CUDA, else the reference
  Reference,  // the ATen reference, on any device
  Cuda,       // the CUDA kernel; a UsageError without CUDA support or for non-CUDA tensors
};

// Whether this build has the CUDA kernels (effarch::torch defines EFFARCH_WITH_CUDA in CUDA builds).
inline constexpr bool kBuiltWithCuda =
#ifdef EFFARCH_WITH_CUDA
    true;
#else
    false;
#endif

inline std::string_view backend_name(Backend backend) {
  switch (backend) {
    case Backend::Auto: return "auto";
    case Backend::Reference: return "reference";
    case Backend::Cuda: return "cuda";
  }
  return "?";
}

// True when `op` should run its CUDA kernel on tensors living on `device`.
inline bool use_cuda_kernel(Backend backend, const c10::Device& device, std::string_view op) {
  switch (backend) {
    case Backend::Reference: return false;
    case Backend::Auto: return kBuiltWithCuda && device.is_cuda();
    case Backend::Cuda:
      if (!kBuiltWithCuda) {
        throw UsageError(std::string(op) + ": backend cuda requested, but effarch was built without CUDA");
      }
      if (!device.is_cuda()) {
        throw UsageError(std::string(op) + ": backend cuda requested for tensors on " + device.str() +
                         "; it needs CUDA tensors");
      }
      return true;
  }
  throw UsageError(std::string(op) + ": unknown backend");
}

}  // namespace effarch::ops
