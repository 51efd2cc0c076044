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
EFFARCH_INLINE v8f load8(const int8_t* p) {  // int8 weights, exact in fp32
  typedef int8_t v8i8 __attribute__((vector_size(8)));
  v8i8 b;
  std::memcpy(&b, p, sizeof b);
  return __builtin_convertvector(b, v8f);
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

// log(x) lane by lane for x > 0 (normal): x = m 2^e with m in [sqrt(1/2), sqrt(2)), log(m) by
// the classic Cephes logf polynomial in m - 1; about 1 ulp.
EFFARCH_INLINE v8f log8(v8f x) {
  v8i bits;
  std::memcpy(&bits, &x, sizeof bits);
  v8i e = ((bits >> 23) & 0xff) - 126;  // x = f 2^e, f in [0.5, 1)
  const v8i mbits = (bits & 0x007fffff) | 0x3f000000;
  v8f f;
  std::memcpy(&f, &mbits, sizeof f);
  const v8i small = f < splat(0.70710678118654752f);  // f < sqrt(1/2): use 2f, e - 1
  e += small;
  f = small ? f + f : f;
  const v8f m = f - splat(1.0f);
  const v8f fe = __builtin_convertvector(e, v8f);
  const v8f z = m * m;
  v8f p = splat(7.0376836292e-2f);
  p = p * m + splat(-1.1514610310e-1f);
  p = p * m + splat(1.1676998740e-1f);
  p = p * m + splat(-1.2420140846e-1f);
  p = p * m + splat(1.4249322787e-1f);
  p = p * m + splat(-1.6668057665e-1f);
  p = p * m + splat(2.0000714765e-1f);
  p = p * m + splat(-2.4999993993e-1f);
  p = p * m + splat(3.3333331174e-1f);
  v8f y = m * z * p + fe * splat(-2.12194440e-4f) - splat(0.5f) * z;
  return m + y + fe * splat(0.693359375f);
}

// PyTorch's softplus (threshold 20): x above 20 passes through, else log1p(exp(x)), with log1p
// kept accurate for small exp(x) by log(u) * y / (u - 1), u = 1 + y.
EFFARCH_INLINE v8f softplus8(v8f x) {
  const v8f y = exp8(x);
  const v8f u = splat(1.0f) + y;
  const v8f d = u - splat(1.0f);
  const v8f l = d == splat(0.0f) ? y : log8(u) * (y / (d == splat(0.0f) ? splat(1.0f) : d));
  return x > splat(20.0f) ? x : l;
}

// SiLU(z) = z / (1 + exp(-z)).
EFFARCH_INLINE v8f silu8(v8f z) { return z / (splat(1.0f) + exp8(-z)); }

}  // namespace effarch::ops::cpu::simd
