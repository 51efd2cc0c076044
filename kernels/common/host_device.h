#pragma once
// EFFARCH_HD marks a function that runs both in a kernel and on the host: a kernel's own per-thread
// and per-block math, written once, so that a CPU test can run the same code path (a host
// emulation looping over blocks and threads in the kernel's order) against the ATen reference.
// Plain C++ without nvcc: such headers must not use CUDA-only types.

#if defined(__CUDACC__)
#define EFFARCH_HD __host__ __device__ __forceinline__
#else
#define EFFARCH_HD inline
#endif
