#pragma once
// Kernel math that a CPU test can run: functions marked EFFARCH_HD are device functions under
// nvcc and plain inline host functions elsewhere, so a test compiled by the host compiler runs
// the kernel's own code (a host emulation that walks the blocks and threads in the kernel's phase
// order) against the ATen reference on a machine without a GPU.
//
// Under nvcc they are device-only: nothing here is compiled twice, and device helpers
// (common/convert.cuh) can be called. On the host, float is the only element type (the stand-ins
// below); the other dtypes are exercised by the GPU tests.

#include <math.h>

#include <cmath>

// EFFARCH_UNROLL before a loop: `#pragma unroll` under nvcc, nothing for the host compiler (which
// warns on the pragma it does not know).
#ifdef __CUDACC__
#define EFFARCH_UNROLL _Pragma("unroll")
#else
#define EFFARCH_UNROLL
#endif

// EFFARCH_KERNEL_BUILD: the kernels' own source is being compiled, by nvcc or by the host compiler
// for the CPU executor (tests/sim/cuda_sim.h, EFFARCH_CUDA_SIM): every element type and the
// device helpers exist. Elsewhere (a CPU test's emulation) only the float stand-ins below.
#if defined(__CUDACC__) || defined(EFFARCH_CUDA_SIM)
#define EFFARCH_KERNEL_BUILD 1
#endif

// A kernel's dynamic shared memory: `extern __shared__` under nvcc, the launch's buffer in the CPU
// executor (which has no extern shared arrays).
#ifdef EFFARCH_CUDA_SIM
#define EFFARCH_DYNAMIC_SHARED(align, type, name) type* name = static_cast<type*>(::effarch::sim::dynamic_shared())
#else
#define EFFARCH_DYNAMIC_SHARED(align, type, name) extern __shared__ __align__(align) type name[]
#endif

// A device function kept out of line (nvcc's __noinline__, which the host compiler's own
// __attribute__((__noinline__)) spelling in its headers keeps the CPU executor from redefining).
#ifdef EFFARCH_CUDA_SIM
#define EFFARCH_NOINLINE __attribute__((noinline))
#else
#define EFFARCH_NOINLINE __noinline__
#endif

#ifdef EFFARCH_KERNEL_BUILD
#define EFFARCH_HD __device__ __forceinline__
#include "common/convert.cuh"
#else
#define EFFARCH_HD inline

namespace effarch::kernels {

// Host stand-ins for common/convert.cuh, float only.
inline float to_float(float v) { return v; }
template <typename T>
inline T from_float(float v);
template <>
inline float from_float<float>(float v) { return v; }
inline float silu(float v) { return v / (1.0f + expf(-v)); }

}  // namespace effarch::kernels
#endif

namespace effarch::kernels {

// A product and a sum rounded on their own, never contracted into an FMA on the device (nvcc
// contracts a * b + c by default): for kernels that must round as ATen's unfused ops do.
EFFARCH_HD float mul_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;  // host builds are ISO C++ (no -ffp-contract=fast)
#endif
}
// 2^x by the SFU's approximation with results below 2^-126 flushed to zero: one instruction
// (ex2.approx.ftz.f32), where exp2f's non-flushing form wraps the same approximation in a range
// fix-up of three more. For decays exp(dt A) in (0, 1], where a flushed 1e-38 is a 0 either way.
// The host computes exp2f.
EFFARCH_HD float exp2_ftz(float x) {
#ifdef __CUDA_ARCH__
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
#else
  return exp2f(x);
#endif
}
// at::softplus(v) with beta 1 and threshold 20 (the Mamba scans' dt), as ATen computes it:
// log1pf(expf(v)). (A branch-free form, max(v, 0) + log1p(exp(-|v|)) by the atanh series with the
// SFU's division, ran 4% fewer instructions in the lanes prefill kernel and no faster on an H100,
// and its few ulp more error took a GPU test past its tolerance: docs/mamba.md.)
EFFARCH_HD float softplus(float v) { return v > 20.0f ? v : log1pf(expf(v)); }
EFFARCH_HD float add_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}

}  // namespace effarch::kernels
