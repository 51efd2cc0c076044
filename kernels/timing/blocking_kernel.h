#pragma once
// The blocking kernel's launcher (kernels/timing/blocking_kernel.cu): one thread that spins until
// the host-mapped `release` flag is non-zero or `timeout_ns` has passed on the global timer, then
// writes kBlockerReleased or kBlockerTimedOut to `status` (blocking_kernel_params.h); and the L2
// scrub read. Used by `effarch kernels` to time a call's kernels with a cold L2 and without the
// host's launch overhead (src/bench/call_timer.cpp).

#include <cuda_runtime.h>

#include "common/element_type.h"
#include "timing/blocking_kernel_params.h"

namespace effarch::kernels {

// Launches the kernel on `stream` (one block of one thread). Both pointers must be set and the
// timeout non-zero (a zero timeout would never block; none would hang on a host sync): else
// cudaErrorInvalidValue without a launch.
LaunchStatus blocking_kernel_cuda(const BlockingKernelParams& params, cudaStream_t stream);

// Launches the L2 scrub read on `stream`; a null pointer, a size that is zero or not a multiple of
// 16, an unaligned buffer or no blocks: cudaErrorInvalidValue without a launch.
LaunchStatus l2_scrub_cuda(const L2ScrubParams& params, cudaStream_t stream);

}  // namespace effarch::kernels
