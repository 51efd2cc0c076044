#pragma once
// Element types the kernels are instantiated for, and what a launcher reports. Plain C++ and the
// CUDA runtime API only: the ops bindings (src/ops/*_cuda.cpp) map torch dtypes onto these.

#include <cstddef>

#include <cuda_runtime.h>

#include "common/element_enum.h"

namespace effarch::kernels {

// What a launcher reports: cudaSuccess, or the error and which launch (or check) it came from.
struct LaunchStatus {
  cudaError_t error = cudaSuccess;
  const char* what = "";  // a static string
  bool ok() const { return error == cudaSuccess; }
};

// The status of the launch just made (cudaGetLastError), naming `what` when it failed.
inline LaunchStatus check_launch(const char* what) {
#ifdef EFFARCH_CUDA_SIM
  (void)what;
  return {};  // the CPU executor throws where a launch fails (tests/sim/cuda_sim.h)
#else
  const cudaError_t error = cudaGetLastError();
  return {error, error == cudaSuccess ? "" : what};
#endif
}

// Dynamic shared memory above the 48 KiB default needs the kernel's opt-in (cudaFuncSetAttribute);
// nothing to do below it. `what` (a static string) names the launch when the opt-in fails.
template <typename Kernel>
LaunchStatus allow_dynamic_shared(Kernel kernel, size_t bytes, const char* what) {
  if (bytes <= 48 * 1024) return {};
#ifdef EFFARCH_CUDA_SIM
  (void)kernel, (void)what;
  return {};  // the CPU executor checks the bytes against an H100's limit at the launch
#else
  const cudaError_t error =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
  if (error != cudaSuccess) return {error, what};
  return {};
#endif
}

// One kernel's launchers, one per element type, each defined in its own <op>_<dtype>.cu so that
// every translation unit instantiates one dtype (no combinatorial template switch).
template <typename Params>
struct PerElementType {
  using Launcher = LaunchStatus (*)(const Params&, cudaStream_t);
  Launcher fp32 = nullptr;
  Launcher bf16 = nullptr;
  Launcher fp16 = nullptr;
};

// Calls the launcher for `type`. A type without a launcher, or outside the enum, is an error
// reported as `unsupported` (a static string naming the kernel), never a silent no-op.
template <typename Params>
LaunchStatus dispatch_element_type(ElementType type, const PerElementType<Params>& launchers, const Params& params,
                                   cudaStream_t stream, const char* unsupported) {
  typename PerElementType<Params>::Launcher launch = nullptr;
  switch (type) {
    case ElementType::kFloat32: launch = launchers.fp32; break;
    case ElementType::kBFloat16: launch = launchers.bf16; break;
    case ElementType::kFloat16: launch = launchers.fp16; break;
  }
  if (launch == nullptr) return {cudaErrorInvalidValue, unsupported};
  return launch(params, stream);
}

}  // namespace effarch::kernels
