#pragma once
// Portable 8-lane fp32 vectors for the CPU kernels (internal), from the compiler's vector
// extensions: SSE2/NEON pairs on the baseline target, one AVX register in the clones that
// EFFARCH_CPU_CLONES builds for x86-64-v3 (AVX2 + FMA), picked at load time by the CPU; and
// 16-lane ones for EFFARCH_CPU_CLONES_V4 functions (one AVX-512 register in their v4 clone).

#include <cstdint>
#include <cstring>

#include <c10/util/BFloat16.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define EFFARCH_CPU_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
// Also an x86-64-v4 (AVX-512) clone, for loops written on 16-lane vectors (v16f).
#define EFFARCH_CPU_CLONES_V4 __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define EFFARCH_CPU_CLONES
#define EFFARCH_CPU_CLONES_V4
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
// 16 weights as two fp32 vectors; for int8 (exact) one 16-byte load. Each byte is moved to the top
// of a 32-bit lane by a byte shuffle and sign-extended by an arithmetic shift: GCC turns that into
// vpshufb + vpsrad, where converting the bytes directly is scalarised.
EFFARCH_INLINE void load8x2(const int8_t* p, v8f& lo, v8f& hi) {
  typedef int8_t v16i8 __attribute__((vector_size(16)));
  typedef int8_t v32i8 __attribute__((vector_size(32)));
  typedef int32_t v8i32 __attribute__((vector_size(32)));
  v16i8 b;
  std::memcpy(&b, p, sizeof b);
  const v16i8 z = {};
  const v32i8 l = __builtin_shufflevector(b, z, 16, 16, 16, 0, 16, 16, 16, 1, 16, 16, 16, 2, 16, 16, 16, 3, 16, 16, 16, 4,
                                          16, 16, 16, 5, 16, 16, 16, 6, 16, 16, 16, 7);
  const v32i8 h = __builtin_shufflevector(b, z, 16, 16, 16, 8, 16, 16, 16, 9, 16, 16, 16, 10, 16, 16, 16, 11, 16, 16, 16,
                                          12, 16, 16, 16, 13, 16, 16, 16, 14, 16, 16, 16, 15);
  v8i32 wl, wh;
  std::memcpy(&wl, &l, sizeof wl);
  std::memcpy(&wh, &h, sizeof wh);
  lo = __builtin_convertvector(wl >> 24, v8f);
  hi = __builtin_convertvector(wh >> 24, v8f);
}
// 8 int8 weights (the tail under 16).
EFFARCH_INLINE v8f load8(const int8_t* p) {
  int8_t b[16] = {};
  std::memcpy(b, p, 8);
  v8f lo, hi;
  load8x2(b, lo, hi);
  return lo;
}
EFFARCH_INLINE void load8x2(const float* p, v8f& lo, v8f& hi) {
  lo = load8(p);
  hi = load8(p + 8);
}
EFFARCH_INLINE void load8x2(const c10::BFloat16* p, v8f& lo, v8f& hi) {
  lo = load8(p);
  hi = load8(p + 8);
}
EFFARCH_INLINE void store8(float* p, v8f v) { std::memcpy(p, &v, sizeof v); }
EFFARCH_INLINE v8f splat(float x) { return v8f{x, x, x, x, x, x, x, x}; }
EFFARCH_INLINE float hsum(v8f v) {
  return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

}  // namespace effarch::ops::cpu::simd

namespace effarch::ops::cpu::simd {

typedef int32_t v8i __attribute__((vector_size(32)));
// 16 lanes: one AVX-512 register in an x86-64-v4 clone, two AVX registers in an x86-64-v3 one.
typedef float v16f __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));

EFFARCH_INLINE v16f load16(const float* p) {
  v16f v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
EFFARCH_INLINE void store16(float* p, v16f v) { std::memcpy(p, &v, sizeof v); }

template <class V> struct IntOf;
template <> struct IntOf<v8f> { using type = v8i; };
template <> struct IntOf<v16f> { using type = v16i; };
// Any lane count: V{} + x broadcasts the scalar.
template <class V> EFFARCH_INLINE V splat_as(float x) { return V{} + x; }

// exp(x) lane by lane: x = n ln2 + r with |r| <= ln2/2, exp(r) by a degree-7 polynomial (the
// classic Cephes expf coefficients), 2^n by the exponent bits; about 1 ulp in fp32. Inputs are
// clamped to [-87, 88]: below, the result (< 2e-38) stands in for anything smaller.
template <class V>
EFFARCH_INLINE V exp_v(V x) {
  using I = typename IntOf<V>::type;
  const V lo = splat_as<V>(-87.0f), hi = splat_as<V>(88.0f);
  x = x < lo ? lo : x;
  x = x > hi ? hi : x;
  const V fx = x * splat_as<V>(1.44269504088896341f) + splat_as<V>(0.5f);
  I n = __builtin_convertvector(fx, I);  // truncation; floor for negative values below
  V fn = __builtin_convertvector(n, V);
  const I fix = fn > fx;  // -1 where truncation rounded up
  n += fix;
  fn = __builtin_convertvector(n, V);
  const V r = (x - fn * splat_as<V>(0.693359375f)) - fn * splat_as<V>(-2.12194440e-4f);
  V p = splat_as<V>(1.9875691500e-4f);
  p = p * r + splat_as<V>(1.3981999507e-3f);
  p = p * r + splat_as<V>(8.3334519073e-3f);
  p = p * r + splat_as<V>(4.1665795894e-2f);
  p = p * r + splat_as<V>(1.6666665459e-1f);
  p = p * r + splat_as<V>(5.0000001201e-1f);
  p = p * (r * r) + r + splat_as<V>(1.0f);
  const I bits = (n + 127) << 23;
  V scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

// log(x) lane by lane for x > 0 (normal): x = m 2^e with m in [sqrt(1/2), sqrt(2)), log(m) by
// the classic Cephes logf polynomial in m - 1; about 1 ulp.
template <class V>
EFFARCH_INLINE V log_v(V x) {
  using I = typename IntOf<V>::type;
  I bits;
  std::memcpy(&bits, &x, sizeof bits);
  I e = ((bits >> 23) & 0xff) - 126;  // x = f 2^e, f in [0.5, 1)
  const I mbits = (bits & 0x007fffff) | 0x3f000000;
  V f;
  std::memcpy(&f, &mbits, sizeof f);
  const I small = f < splat_as<V>(0.70710678118654752f);  // f < sqrt(1/2): use 2f, e - 1
  e += small;
  f = small ? f + f : f;
  const V m = f - splat_as<V>(1.0f);
  const V fe = __builtin_convertvector(e, V);
  const V z = m * m;
  V p = splat_as<V>(7.0376836292e-2f);
  p = p * m + splat_as<V>(-1.1514610310e-1f);
  p = p * m + splat_as<V>(1.1676998740e-1f);
  p = p * m + splat_as<V>(-1.2420140846e-1f);
  p = p * m + splat_as<V>(1.4249322787e-1f);
  p = p * m + splat_as<V>(-1.6668057665e-1f);
  p = p * m + splat_as<V>(2.0000714765e-1f);
  p = p * m + splat_as<V>(-2.4999993993e-1f);
  p = p * m + splat_as<V>(3.3333331174e-1f);
  V y = m * z * p + fe * splat_as<V>(-2.12194440e-4f) - splat_as<V>(0.5f) * z;
  return m + y + fe * splat_as<V>(0.693359375f);
}

// PyTorch's softplus (threshold 20): x above 20 passes through, else log1p(exp(x)), with log1p
// kept accurate for small exp(x) by log(u) * y / (u - 1), u = 1 + y.
template <class V>
EFFARCH_INLINE V softplus_v(V x) {
  const V one = splat_as<V>(1.0f), zero = splat_as<V>(0.0f);
  const V y = exp_v(x);
  const V u = one + y;
  const V d = u - one;
  const V l = d == zero ? y : log_v(u) * (y / (d == zero ? one : d));
  return x > splat_as<V>(20.0f) ? x : l;
}

// SiLU(z) = z / (1 + exp(-z)).
template <class V>
EFFARCH_INLINE V silu_v(V z) { return z / (splat_as<V>(1.0f) + exp_v(-z)); }

EFFARCH_INLINE v8f exp8(v8f x) { return exp_v(x); }
EFFARCH_INLINE v8f log8(v8f x) { return log_v(x); }
EFFARCH_INLINE v8f softplus8(v8f x) { return softplus_v(x); }
EFFARCH_INLINE v8f silu8(v8f z) { return silu_v(z); }

}  // namespace effarch::ops::cpu::simd
