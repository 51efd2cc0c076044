// The decode GEMV: x [R, K] (R <= kGemvMaxRows) times W^T, W [O, K] fp32 or bf16. A one-token
// at::linear reaches MKL's GEMV, which runs on one thread; a decode step is a pass over every
// weight, bound by memory bandwidth, so here the output features are split across all of
// ATen's threads, each streaming its rows of W once for all R rows of x (held in fp32, in L1).

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "cpu_kernels.h"
#include "simd.h"

namespace effarch::ops::cpu {
namespace {

using simd::v8f;

// Output features [o0, o1) for R rows of x: y[r * O + o] = x[r] . W[o] (+ bias[o]).
template <int R, typename W>
EFFARCH_INLINE void gemv_rows(const float* x, int64_t K, const W* w, const float* bias, int64_t o0, int64_t o1,
                              float* y, int64_t O) {
  for (int64_t o = o0; o < o1; ++o) {
    const W* wo = w + o * K;
    v8f acc0[R], acc1[R];
    for (int r = 0; r < R; ++r) acc0[r] = acc1[r] = simd::splat(0.f);
    int64_t k = 0;
    for (; k + 16 <= K; k += 16) {
      const v8f w0 = simd::load8(wo + k), w1 = simd::load8(wo + k + 8);
      for (int r = 0; r < R; ++r) {
        acc0[r] += w0 * simd::load8(x + r * K + k);
        acc1[r] += w1 * simd::load8(x + r * K + k + 8);
      }
    }
    if (k + 8 <= K) {
      const v8f w0 = simd::load8(wo + k);
      for (int r = 0; r < R; ++r) acc0[r] += w0 * simd::load8(x + r * K + k);
      k += 8;
    }
    for (int r = 0; r < R; ++r) {
      float s = simd::hsum(acc0[r] + acc1[r]);
      for (int64_t j = k; j < K; ++j) s += static_cast<float>(wo[j]) * x[r * K + j];
      y[r * O + o] = bias ? s + bias[o] : s;
    }
  }
}

template <typename W>
EFFARCH_INLINE void gemv_dispatch(const float* x, int R, int64_t K, const W* w, const float* bias, int64_t o0,
                                  int64_t o1, float* y, int64_t O) {
  switch (R) {
    case 1: gemv_rows<1>(x, K, w, bias, o0, o1, y, O); break;
    case 2: gemv_rows<2>(x, K, w, bias, o0, o1, y, O); break;
    case 3: gemv_rows<3>(x, K, w, bias, o0, o1, y, O); break;
    default: gemv_rows<4>(x, K, w, bias, o0, o1, y, O); break;
  }
}

EFFARCH_CPU_CLONES void gemv_f32(const float* x, int R, int64_t K, const float* w, const float* bias, int64_t o0,
                                 int64_t o1, float* y, int64_t O) {
  gemv_dispatch(x, R, K, w, bias, o0, o1, y, O);
}

EFFARCH_CPU_CLONES void gemv_bf16(const float* x, int R, int64_t K, const c10::BFloat16* w, const float* bias,
                                  int64_t o0, int64_t o1, float* y, int64_t O) {
  gemv_dispatch(x, R, K, w, bias, o0, o1, y, O);
}

}  // namespace

bool parallel_build() {
#ifdef _OPENMP
  return true;
#else
  return false;
#endif
}

bool gemv_applies(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias) {
  if (!x.device().is_cpu() || !weight.device().is_cpu() || weight.dim() != 2 || !weight.is_contiguous()) return false;
  const at::ScalarType wt = weight.scalar_type();
  if (wt != at::kFloat && wt != at::kBFloat16) return false;
  const at::ScalarType xt = x.scalar_type();
  if (xt != at::kFloat && xt != at::kBFloat16 && xt != at::kHalf) return false;
  if (x.numel() == 0 || x.size(-1) == 0 || x.numel() / x.size(-1) > kGemvMaxRows) return false;
  if (bias && (!bias->device().is_cpu() || bias->dim() != 1 || bias->size(0) != weight.size(0))) return false;
  return true;
}

at::Tensor gemv(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias) {
  const int64_t K = weight.size(1), O = weight.size(0);
  const int R = static_cast<int>(x.numel() / K);
  const at::Tensor xf = x.reshape({R, K}).to(at::kFloat).contiguous();
  const at::Tensor bf = bias ? bias->to(at::kFloat).contiguous() : at::Tensor();
  at::Tensor y = at::empty({R, O}, xf.options());
  const float* xp = xf.data_ptr<float>();
  const float* bp = bias ? bf.data_ptr<float>() : nullptr;
  float* yp = y.data_ptr<float>();
  // At least ~64K weights per thread: below that, waking threads costs more than it saves.
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(K, 1));
  if (weight.scalar_type() == at::kFloat) {
    const float* wp = weight.data_ptr<float>();
    at::parallel_for(0, O, grain, [&](int64_t o0, int64_t o1) { gemv_f32(xp, R, K, wp, bp, o0, o1, yp, O); });
  } else {
    const c10::BFloat16* wp = weight.data_ptr<c10::BFloat16>();
    at::parallel_for(0, O, grain, [&](int64_t o0, int64_t o1) { gemv_bf16(xp, R, K, wp, bp, o0, o1, yp, O); });
  }
  std::vector<int64_t> out_shape(x.sizes().begin(), x.sizes().end());
  out_shape.back() = O;
  return y.to(x.scalar_type()).view(out_shape);
}

}  // namespace effarch::ops::cpu
