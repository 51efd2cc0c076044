#pragma once
// The per-element math of the fused activation (activation_params.h), shared by the CUDA kernel
// (activation_kernel.cuh) and its host emulation (tests/ops/activation_kernel_test.cpp).
// EFFARCH_HD functions, no CUDA type.
//
// Each step rounds where the unfused ATen ops round (`round` takes a float to the element type and
// back; the identity in fp32), so on CUDA the fused kernel gives the unfused ops' values:
//   SiLU (at::silu): x / (1 + exp(-x)) in fp32, rounded once.
//   GeluNew (src/ops/activation.cpp, transformers' NewGELUActivation), one ATen kernel per step:
//     c = pow(x, 3.0)        CUDA computes it in the element type: round(round(x * x) * x)
//     t = 0.044715 * c; u = x + t; v = sqrt(2 / pi) * u; w = tanh(v); s = 1.0 + w; h = 0.5 * x;
//     out = h * s            each rounded; the scalars are fp32 (ATen's opmath of a scalar operand)
//   gated: act(gate), rounded, times up, rounded (activate(...) * up).
// Products and sums are __fmul_rn / __fadd_rn on the device: never contracted into an FMA (the
// unfused ops are separate kernels). The host's tanhf and expf may differ from ATen's CPU
// vectorised ones by an ulp of fp32 (tests/ops/activation_kernel_test.cpp measures it).

#include <math.h>

#include <cstdint>

#include "activation/activation_params.h"
#include "common/host_device.h"

namespace effarch::kernels::act {

inline constexpr int kThreads = 256;

// mul_rn, add_rn: common/host_device.h.

// The activation of one value of the element type, rounded to it.
template <typename Round>
EFFARCH_HD float activate(ActKind kind, float x, Round round) {
  if (kind == ActKind::kSilu) return round(x / (1.0f + expf(-x)));
  const float kSqrt2OverPi = 0.7978845608028654f;  // float(sqrt(2 / pi)), the double scalar's opmath
  const float cube = round(mul_rn(round(mul_rn(x, x)), x));
  const float inner = round(mul_rn(kSqrt2OverPi, round(add_rn(x, round(mul_rn(0.044715f, cube))))));
  const float s = round(add_rn(1.0f, round(tanhf(inner))));
  return round(mul_rn(round(mul_rn(0.5f, x)), s));
}

// out[row, col] through `Io` (load(base, offset) -> float, store(base, offset, float), round(float)).
template <class Io>
EFFARCH_HD void activation_element(const ActivationParams& p, int64_t row, int64_t col) {
  const auto round = [](float v) { return Io::round(v); };
  const int64_t in = row * p.in_row_stride + col;
  float y = activate(p.act, Io::load(p.in, in), round);
  if (p.gated) y = round(mul_rn(y, Io::load(p.in, in + p.up_offset)));
  Io::store(p.out, row * p.out_row_stride + col, y);
}

// The kernel's vector path (activation_kernel.cuh): a step takes kVec neighbouring columns of
// one row, kVec = 16 bytes of the element type, with one 16-byte load (two, gated) and one store,
// and one division for its row and column instead of one per element. Each element's math is
// activation_element's, so the bits are the same. Why: one element a thread, with a 64-bit
// division and 2-byte loads each, Phi-2's 4096-token prefill spent 200 us a layer in gelu_new
// over 84 MB (0.42 TB/s, an H100 on 2026-11-27), 6.5 of its 68 ms.
template <typename T>
inline constexpr int kVectorElements = 16 / static_cast<int>(sizeof(T));  // a group of element type T

template <class Io, int kVec>
EFFARCH_HD void activation_vector(const ActivationParams& p, int64_t group) {
  const int64_t groups = p.cols / kVec;
  const int64_t row = group / groups, col = (group - row * groups) * kVec;
  const auto round = [](float v) { return Io::round(v); };
  const int64_t in = row * p.in_row_stride + col;
  float y[kVec], up[kVec];
  Io::template load_vec<kVec>(p.in, in, y);
  if (p.gated) Io::template load_vec<kVec>(p.in, in + p.up_offset, up);
EFFARCH_UNROLL
  for (int k = 0; k < kVec; ++k) {
    y[k] = activate(p.act, y[k], round);
    if (p.gated) y[k] = round(mul_rn(y[k], up[k]));
  }
  Io::template store_vec<kVec>(p.out, row * p.out_row_stride + col, y);
}

// Whether the vector path reads and writes whole aligned 16-byte groups: the columns, the row
// strides and the up half's offset multiples of a group, in and out 16-byte aligned.
inline bool activation_vectorizes(const ActivationParams& p, int64_t element_bytes) {
  const int64_t vec = 16 / element_bytes;  // kVectorElements of the element type
  const auto aligned = [](const void* ptr) { return reinterpret_cast<std::uintptr_t>(ptr) % 16 == 0; };
  return p.cols % vec == 0 && p.in_row_stride % vec == 0 && p.out_row_stride % vec == 0 &&
         (!p.gated || p.up_offset % vec == 0) && aligned(p.in) && aligned(p.out);
}

}  // namespace effarch::kernels::act
