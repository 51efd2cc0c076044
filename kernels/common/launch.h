#pragma once
// Programmatic dependent launch, the host side: the process-wide switch and the launch that sets
// the attribute (common/grid_dependency.h has the device side and the contract a kernel launched
// this way keeps). The switch is off by default; `--pdl on` (bench, generate, profile, kernels)
// turns it on through ops::set_programmatic_launch, and results record it.

#include <atomic>
#include <cstddef>
#include <utility>

#include "common/element_type.h"

namespace effarch::kernels {

// The one switch of the process (a function-local static: one instance however many translation
// units include this header).
inline std::atomic<bool>& programmatic_launch_switch() {
  static std::atomic<bool> on{false};
  return on;
}
inline bool programmatic_launch_enabled() { return programmatic_launch_switch().load(std::memory_order_relaxed); }
inline void set_programmatic_launch_enabled(bool on) { programmatic_launch_switch().store(on, std::memory_order_relaxed); }

// The lowest of CMAKE_CUDA_ARCHITECTURES the kernels were compiled for, as 90 for sm_90 (0 where
// the list names none, as "native"). Below 90 grid_dependency.h compiles the wait out, and that
// code may run on an H100 (the driver JIT-compiles compute_80 PTX there, or picks sm_80 SASS),
// where a kernel launched early would race the one before it: ops::set_programmatic_launch
// refuses `--pdl on` in such a build.
int lowest_compiled_cuda_arch();

// A prefill kernel's launch: <<<grid, block, shared_bytes, stream>>> and check_launch(what),
// without the programmatic attribute (such a kernel does not keep grid_dependency.h's contract).
// Only kernel sources instantiate it; in the CPU executor the kernel runs there, at once.
template <typename... Params, typename... Args>
LaunchStatus launch_plain(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t stream,
                          const char* what, Args&&... args) {
#if defined(EFFARCH_CUDA_SIM)
  (void)stream;
  ::effarch::sim::name_next_launch(what);
  ::effarch::sim::launch(kernel, grid, block, shared_bytes, std::forward<Args>(args)...);
  return {};
#elif defined(__CUDACC__)
  kernel<<<grid, block, shared_bytes, stream>>>(std::forward<Args>(args)...);
  return check_launch(what);
#else
  (void)kernel, (void)grid, (void)block, (void)shared_bytes, (void)stream, ((void)args, ...);
  return {cudaErrorNotSupported, what};  // not reached: host code launches through the kernels' own files
#endif
}

// Launches `kernel` on `stream` as <<<grid, block, shared_bytes, stream>>> would, with the
// programmatic stream serialization attribute when the switch is on: the kernel may then start
// before the previous kernel of the stream has finished, and must keep grid_dependency.h's
// contract. A stream being captured into a CUDA graph records the relaxed dependency as a
// programmatic edge. `what` (a static string) names the launch when it fails.
// In the CPU executor (EFFARCH_CUDA_SIM, tests/sim/cuda_sim.h) it is launch_plain: no stream to order.
template <typename... Params, typename... Args>
LaunchStatus launch_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t stream,
                           const char* what, Args&&... args) {
#ifdef EFFARCH_CUDA_SIM
  return launch_plain(kernel, grid, block, shared_bytes, stream, what, std::forward<Args>(args)...);
#else
  cudaLaunchAttribute attribute[1];
  attribute[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute[0].val.programmaticStreamSerializationAllowed = programmatic_launch_enabled() ? 1 : 0;
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = shared_bytes;
  config.stream = stream;
  config.attrs = attribute;
  config.numAttrs = 1;
  const cudaError_t error = cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
  if (error != cudaSuccess) {
    (void)cudaGetLastError();  // clear it, as check_launch's read would
    return {error, what};
  }
  return check_launch(what);
#endif
}

}  // namespace effarch::kernels
