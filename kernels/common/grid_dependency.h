#pragma once
// Programmatic dependent launch (PDL, compute capability 9.0 and up), the device side: what a
// kernel of the decode step does so that the next kernel in the stream may start while it runs.
// common/launch.h has the host side (the switch and the launch with the attribute).
//
// The contract of a kernel launched through launch_kernel() (common/launch.h):
// - allow_dependent_launch() first: the next kernel of the stream may be scheduled once every block
//   of this one has issued it (or exited), so its blocks start during this kernel's last wave and
//   its launch latency is hidden. This orders nothing: the next kernel still waits below.
// - grid_dependency_wait() in every thread before the thread reads anything an earlier kernel of
//   the stream may have written (activations, caches, states, positions, expert ids) and before
//   its first global write (a buffer it writes may still be read by the kernel before it). It
//   returns once the previous kernel has completed and its writes are visible; since that kernel
//   waited the same way, so have all before it.
// - Before the wait a kernel may read only what no kernel of the stream writes: the model's
//   weights. The dense GEMV streams its first weights there (gemv/gemv_math.h).
// Without the launch attribute (the switch off, the default) both instructions do nothing: the
// kernel starts after the previous one has finished, as any launch does. On the host (the CPU
// tests' emulation of a kernel's math) they do nothing either.

#include <cstdint>

#include "common/host_device.h"

namespace effarch::kernels {

EFFARCH_HD void allow_dependent_launch() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

EFFARCH_HD void grid_dependency_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Weights a kernel reads late (a norm's weight in its last phase), asked into L1 at its start:
// thread t of `nthreads` takes the 128-byte lines t, t + nthreads, ... of the `bytes` at `base`.
// Weights are written by no kernel, so this may come before grid_dependency_wait: under
// programmatic launch the lines arrive while the kernel before finishes. A hint with no effect on
// results (nothing on the host).
EFFARCH_HD void prefetch_l1_lines(const void* base, int64_t bytes, int tid, int nthreads) {
#ifdef __CUDA_ARCH__
  for (int64_t line = tid; line * 128 < bytes; line += nthreads) {
    asm volatile("prefetch.global.L1 [%0];" ::"l"(static_cast<const char*>(base) + line * 128));
  }
#else
  (void)base, (void)bytes, (void)tid, (void)nthreads;
#endif
}

// A weight line asked into L2 (no register, no wait): the GEMV's weights beyond what a lane loads
// before its grid dependency wait (gemv/gemv_math.h). Like the L1 prefetch above, weights only,
// a hint with no effect on results, nothing on the host.
EFFARCH_HD void prefetch_l2(const void* p) {
#ifdef __CUDA_ARCH__
  asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
#else
  (void)p;
#endif
}

}  // namespace effarch::kernels
