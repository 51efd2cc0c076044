#pragma once
// Shared plumbing of the CUDA bindings (src/ops/*_cuda.cpp, CUDA builds only): the device guard,
// the stream to launch on and the device's properties a plan reads (torch dtypes onto element
// types: kernel_params.h), and a failed launch turned into an effarch::Error that names the op.
// The kernels themselves (kernels/) see no torch types.
//
// The bindings reach the device only through this header. Under EFFARCH_CUDA_SIM the CPU
// executor (tests/sim/cuda_sim.h, included first) stands in for it, so tests/sim runs a binding's
// own parameter filling and plan on host tensors: no device to select, no stream, and the device
// properties and capture state the test sets (sim::device_properties, sim::set_stream_capturing).

#include <ATen/core/Tensor.h>
#include <fmt/format.h>

#ifndef EFFARCH_CUDA_SIM
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#endif

#include "common/element_type.h"
#include "effarch/common/error.h"
#include "kernel_params.h"

namespace effarch::ops::detail {

#ifndef EFFARCH_CUDA_SIM

// Makes the tensors' device current for the binding's scope.
using DeviceGuard = c10::cuda::CUDAGuard;

// The current stream of the current device (set it with a DeviceGuard first).
inline cudaStream_t current_stream() { return at::cuda::getCurrentCUDAStream(); }

// The current device's properties (SM count, L2 size: what the launch plans read).
inline const cudaDeviceProp& device_properties() { return *at::cuda::getCurrentDeviceProperties(); }

// Whether `stream` is being captured into a CUDA graph (no host sync may happen then).
inline bool stream_is_capturing(cudaStream_t stream, const char* op) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  const cudaError_t error = cudaStreamIsCapturing(stream, &status);
  if (error != cudaSuccess) throw Error(fmt::format("{}: cudaStreamIsCapturing: {}", op, cudaGetErrorString(error)));
  return status != cudaStreamCaptureStatusNone;
}

inline void throw_if_failed(const kernels::LaunchStatus& status, const char* op) {
  if (!status.ok()) {
    throw Error(fmt::format("{}: CUDA {} failed: {} ({})", op, status.what, cudaGetErrorName(status.error),
                            cudaGetErrorString(status.error)));
  }
}

#else  // the CPU executor

struct DeviceGuard {
  explicit DeviceGuard(const c10::Device&) {}
};
inline cudaStream_t current_stream() { return nullptr; }
inline const cudaDeviceProp& device_properties() { return ::effarch::sim::device_properties(); }
inline bool stream_is_capturing(cudaStream_t, const char*) { return ::effarch::sim::stream_capturing(); }
// The executor throws where a launch fails; a status it returns is always ok.
inline void throw_if_failed(const kernels::LaunchStatus& status, const char* op) {
  if (!status.ok()) {
    throw Error(fmt::format("{}: CUDA {} failed (error {})", op, status.what, static_cast<int>(status.error)));
  }
}

#endif

}  // namespace effarch::ops::detail
