#pragma once
// The blocking kernel's params and the status it reports, without CUDA types: the host code that
// decides what a status means (src/bench/call_timer.cpp) is built, and tested, everywhere.
//
// What it is for: a one-thread kernel that holds a stream until the host releases it, so that
// everything the host queues behind it (CUDA events, a call's kernels) reaches the GPU at once and
// the events time the GPU's work without the host's launch overhead (docs/kernels.md, Timing).
// The same idea as NVIDIA nvbench's blocking kernel. Beside it, the L2 scrub: a read of a buffer
// larger than the L2 before each timed call, so the call's inputs come from memory, as in a decode
// step where the other layers' weights have evicted them.

#include <cstdint>

namespace effarch::kernels {

// What the kernel writes to `status` when it ends. The host sets kBlockerPending before each
// launch, so a status still pending after the stream synchronised means the kernel never ran.
enum BlockerStatus : int32_t {
  kBlockerPending = 0,   // set by the host; the kernel has not ended
  kBlockerReleased = 1,  // the host set `release`
  kBlockerTimedOut = 2,  // `timeout_ns` passed first: the host was waiting on the stream (a sync in the call)
};

struct BlockingKernelParams {
  // Device pointers of host-mapped memory (cudaHostAlloc(cudaHostAllocMapped) +
  // cudaHostGetDevicePointer): the host writes `release`, the kernel writes `status`.
  const volatile int32_t* release = nullptr;
  volatile int32_t* status = nullptr;
  // How long the kernel waits for `release`, on the GPU's global timer (ns) from its start.
  uint64_t timeout_ns = 0;
};

// The L2 scrub: every block reads 16-byte words of `buffer` in a grid-stride loop. Reads, not a
// memset: they leave the L2 full of clean lines, as a decode step's weight reads do; a memset's
// dirty lines would be written back while the timed call reads, charging it for traffic that is
// not its own.
struct L2ScrubParams {
  const void* buffer = nullptr;  // device memory, 16-byte aligned, its contents zero
  uint64_t bytes = 0;            // a non-zero multiple of 16
  int32_t* sink = nullptr;       // device memory; written only if the words do not sum to zero, which
                                 // a zeroed buffer never does (the compiler cannot drop the reads)
  int blocks = 0;                // grid size (the host: a few blocks per SM)
};

}  // namespace effarch::kernels
