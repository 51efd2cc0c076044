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

#ifdef __CUDACC__
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
// t / d by the SFU's reciprocal and one product on the device (__fdividef: 2 ulp for d in
// [2^-126, 2^126]), where `/` is an IEEE division with a slow path; exact division on the host.
EFFARCH_HD float div_approx(float t, float d) {
#ifdef __CUDA_ARCH__
  return __fdividef(t, d);
#else
  return t / d;
#endif
}
// at::softplus(v) with beta 1 and threshold 20 (the Mamba scans' dt), as
//   max(v, 0) + log1p(exp(-|v|)),  log1p(t) = 2 atanh(s) = 2 (s + s^3/3 + s^5/5 + ...), s = t / (2 + t)
// with t in [0, 1], so s in [0, 1/3] and the series to s^13/13 leaves a relative error under
// 2e-8 (the next term, (1/9)^7 / 15 of s). Branch-free, about 20 instructions where log1pf(expf)
// took about 60 with branches; the prefill scan stages one per (step, channel), which in the
// lanes kernel's sm_90 SASS was about a fifth of its instructions (docs/mamba.md). Within a few
// ulp of log1pf(expf(v)) (tests/ops/softplus_test.cpp holds it to at::softplus in double); past
// 20, v itself, as at::softplus's threshold gives (the series' 2e-9 is under half an ulp there).
EFFARCH_HD float softplus(float v) {
  const float t = expf(-fabsf(v));
  const float s = div_approx(t, 2.0f + t), s2 = s * s;
  float series = 1.0f / 13.0f;
  series = series * s2 + 1.0f / 11.0f;
  series = series * s2 + 1.0f / 9.0f;
  series = series * s2 + 1.0f / 7.0f;
  series = series * s2 + 1.0f / 5.0f;
  series = series * s2 + 1.0f / 3.0f;
  series = series * s2 + 1.0f;
  const float r = fmaxf(v, 0.0f) + 2.0f * s * series;
  return v > 20.0f ? v : r;
}
EFFARCH_HD float add_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}

}  // namespace effarch::kernels
