// The blocking kernel and the L2 scrub (blocking_kernel.h): no element type, so one file.

#include <cstdint>

#include "timing/blocking_kernel.h"

namespace effarch::kernels {
namespace {

// The GPU's global timer in nanoseconds (PTX %globaltimer; its update period is about a
// microsecond on current GPUs, far below any timeout this kernel is given).
__device__ __forceinline__ uint64_t global_timer_ns() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

// One thread: spin on the host-mapped flag (volatile: every read goes to memory, which is the
// host's) until the host releases it or the timeout passes, then report which and make the write
// visible to the host before the kernel ends.
__global__ void blocking_kernel_kernel(BlockingKernelParams p) {
  const uint64_t start = global_timer_ns();
  int32_t outcome = kBlockerReleased;
  while (*p.release == 0) {
    if (global_timer_ns() - start >= p.timeout_ns) {
      outcome = kBlockerTimedOut;
      break;
    }
  }
  *p.status = outcome;
  __threadfence_system();
}

LaunchStatus blocking_kernel_launch(const BlockingKernelParams& p, cudaStream_t stream) {
  blocking_kernel_kernel<<<1, 1, 0, stream>>>(p);
  return check_launch("blocking_kernel launch");
}

constexpr int kScrubThreads = 256;

// Reads every 16-byte word of the buffer once (plain loads: the lines stay in L2 as the timed
// call's would); the sum keeps the loads alive and is written only when non-zero.
__global__ void __launch_bounds__(kScrubThreads) l2_scrub_kernel(L2ScrubParams p) {
  const uint4* words = static_cast<const uint4*>(p.buffer);
  const uint64_t n = p.bytes / sizeof(uint4);
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  uint32_t acc = 0;
  for (uint64_t i = static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const uint4 w = words[i];
    acc += w.x + w.y + w.z + w.w;
  }
  if (acc != 0) *p.sink = static_cast<int32_t>(acc);
}

LaunchStatus l2_scrub_launch(const L2ScrubParams& p, cudaStream_t stream) {
  l2_scrub_kernel<<<p.blocks, kScrubThreads, 0, stream>>>(p);
  return check_launch("l2_scrub launch");
}

}  // namespace

LaunchStatus l2_scrub_cuda(const L2ScrubParams& params, cudaStream_t stream) {
  if (params.buffer == nullptr || params.sink == nullptr || params.bytes == 0 || params.bytes % 16 != 0 ||
      reinterpret_cast<uintptr_t>(params.buffer) % 16 != 0 || params.blocks <= 0) {
    return {cudaErrorInvalidValue, "l2_scrub: a null or unaligned buffer, a size not a multiple of 16, or no blocks"};
  }
  return l2_scrub_launch(params, stream);
}

LaunchStatus blocking_kernel_cuda(const BlockingKernelParams& params, cudaStream_t stream) {
  if (params.release == nullptr || params.status == nullptr || params.timeout_ns == 0) {
    return {cudaErrorInvalidValue, "blocking_kernel: a null flag or a zero timeout"};
  }
  return blocking_kernel_launch(params, stream);
}

}  // namespace effarch::kernels
