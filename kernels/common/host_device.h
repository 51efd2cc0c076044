#pragma once
// EFFARCH_HD marks a function that is both host and device code: __host__ __device__ under nvcc,
// nothing in a plain C++ compiler. A kernel's own per-thread math written this way runs in its
// CPU host emulation (tests/ops/*) as well as on the GPU, so the CPU tests exercise the kernel's
// arithmetic, not a re-implementation of it.

#if defined(__CUDACC__)
#define EFFARCH_HD __host__ __device__
#else
#define EFFARCH_HD
#endif
