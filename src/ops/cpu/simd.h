#pragma once
// Portable 8-lane fp32 vectors for the CPU kernels (internal), from the compiler's vector
// extensions: SSE2/NEON pairs on the baseline target, one AVX register in the clones that
// EFFARCH_CPU_CLONES builds for x86-64-v3 (AVX2 + FMA), picked at load time by the CPU.

#include <cstdint>
#include <cstring>

#include <c10/util/BFloat16.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define EFFARCH_CPU_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define EFFARCH_CPU_CLONES
#endif
#define EFFARCH_INLINE inline __attribute__((always_inline))

namespace effarch::ops::cpu::simd {

typedef float v8f __attribute__((vector_size(32)));
typedef uint32_t v8u32 __attribute__((vector_size(32)));
typedef uint16_t v8u16 __attribute__((vector_size(16)));

EFFARCH_INLINE v8f load8(const float* p) {
  v8f v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
EFFARCH_INLINE v8f load8(const c10::BFloat16* p) {  // bf16 is the top half of an fp32
  v8u16 h;
  std::memcpy(&h, p, sizeof h);
  const v8u32 w = __builtin_convertvector(h, v8u32) << 16;
  v8f v;
  std::memcpy(&v, &w, sizeof v);
  return v;
}
EFFARCH_INLINE void store8(float* p, v8f v) { std::memcpy(p, &v, sizeof v); }
EFFARCH_INLINE v8f splat(float x) { return v8f{x, x, x, x, x, x, x, x}; }
EFFARCH_INLINE float hsum(v8f v) {
  return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

}  // namespace effarch::ops::cpu::simd

namespace effarch::ops::cpu::simd {

typedef int32_t v8i __attribute__((vector_size(32)));

// exp(x) lane by lane: x = n ln2 + r with |r| <= ln2/2, exp(r) by a degree-7 polynomial (the
// classic Cephes expf coefficients), 2^n by the exponent bits; about 1 ulp in fp32. Inputs are
// clamped to [-87, 88]: below, the result (< 2e-38) stands in for anything smaller.
EFFARCH_INLINE v8f exp8(v8f x) {
  const v8f lo = splat(-87.0f), hi = splat(88.0f);
  x = x < lo ? lo : x;
  x = x > hi ? hi : x;
  const v8f fx = x * splat(1.44269504088896341f) + splat(0.5f);
  v8i n = __builtin_convertvector(fx, v8i);  // truncation; floor for negative values below
  v8f fn = __builtin_convertvector(n, v8f);
  const v8i fix = fn > fx;  // -1 where truncation rounded up
  n += fix;
  fn = __builtin_convertvector(n, v8f);
  const v8f r = (x - fn * splat(0.693359375f)) - fn * splat(-2.12194440e-4f);
  v8f p = splat(1.9875691500e-4f);
  p = p * r + splat(1.3981999507e-3f);
  p = p * r + splat(8.3334519073e-3f);
  p = p * r + splat(4.1665795894e-2f);
  p = p * r + splat(1.6666665459e-1f);
  p = p * r + splat(5.0000001201e-1f);
  p = p * (r * r) + r + splat(1.0f);
  const v8i bits = (n + 127) << 23;
  v8f scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

}  // namespace effarch::ops::cpu::simd
