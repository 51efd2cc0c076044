// The decode GEMV: x [R, K] (R <= kGemvMaxRows) times W^T, W [O, K] fp32, bf16 or int8 (times
// its per-channel scales). A one-token
// at::linear reaches MKL's GEMV, which runs on one thread; a decode step is a pass over every
// weight, bound by memory bandwidth, so here the output features are split across all of
// ATen's threads, each streaming its rows of W once for all R rows of x (held in fp32, in L1).

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "cpu_kernels.h"
#include "simd.h"

namespace effarch::ops::cpu {
namespace {

using simd::v8f;

// One row of x in fp32 up to this many bytes stays in L1 beside the streaming weights (32 KB of
// L1d on the development machine's EPYC); a longer one is read from L2 for every output row.
inline constexpr int64_t kGemvL1RowBytes = 32 * 1024;

// Output row o's value for a row x of x from its two accumulators after the 16-wide steps, which
// ended at k: the 8-wide tail where 8 remain, the sum, the scalar tail, the scale and the bias.
template <typename W>
EFFARCH_INLINE float gemv_finish(const float* x, int64_t K, const W* wo, int64_t k, v8f acc0, v8f acc1,
                                 const float* scale, const float* bias, int64_t o) {
  if (k + 8 <= K) {
    acc0 += simd::load8(wo + k) * simd::load8(x + k);
    k += 8;
  }
  float s = simd::hsum(acc0 + acc1);
  for (int64_t j = k; j < K; ++j) s += static_cast<float>(wo[j]) * x[j];
  if (scale) s *= scale[o];
  return bias ? s + bias[o] : s;
}

// Output features [o0, o1) for R rows of x: y[r * ldy + o] = (x[r] . W[o]) (* scale[o]) (+ bias[o]);
// scale is an int8 weight's per-channel step (null for fp32/bf16 weights).
template <int R, typename W>
EFFARCH_INLINE void gemv_rows(const float* x, int64_t K, const W* w, const float* scale, const float* bias, int64_t o0,
                              int64_t o1, float* y, int64_t ldy) {
  int64_t o = o0;
  if constexpr (R == 1) {
    // A row of x past L1: two output rows a pass, each x vector loaded once for both, so x's
    // reads from L2 halve. One thread of the development machine's EPYC (bf16, 2026-11-27, a
    // quiet machine, the better of two runs each): [2560, 10240] (Phi-2's fc2) 5.66 -> 5.04 ms,
    // [4096, 14336] (Llama's down) 13.0 -> 11.0 ms; but [2560, 5120] 2.27 -> 2.68, [192, 5120]
    // 0.174 -> 0.223 and [4096, 6144] 5.01 -> 5.59, and for K 2560 the pairs took twice as long:
    // hence the threshold at L1's size. Each row's sums run in the same order as alone: the same bits.
    if (K * static_cast<int64_t>(sizeof(float)) > kGemvL1RowBytes) {
      for (; o + 2 <= o1; o += 2) {
        const W* wa = w + o * K;
        const W* wb = wa + K;
        v8f a0 = simd::splat(0.f), a1 = a0, b0 = a0, b1 = a0;
        int64_t k = 0;
        for (; k + 16 <= K; k += 16) {
          v8f wa0, wa1, wb0, wb1;
          simd::load8x2(wa + k, wa0, wa1);
          simd::load8x2(wb + k, wb0, wb1);
          const v8f x0 = simd::load8(x + k), x1 = simd::load8(x + k + 8);
          a0 += wa0 * x0;
          a1 += wa1 * x1;
          b0 += wb0 * x0;
          b1 += wb1 * x1;
        }
        y[o] = gemv_finish(x, K, wa, k, a0, a1, scale, bias, o);
        y[o + 1] = gemv_finish(x, K, wb, k, b0, b1, scale, bias, o + 1);
      }
    }
  }
  for (; o < o1; ++o) {
    const W* wo = w + o * K;
    v8f acc0[R], acc1[R];
    for (int r = 0; r < R; ++r) acc0[r] = acc1[r] = simd::splat(0.f);
    int64_t k = 0;
    for (; k + 16 <= K; k += 16) {
      v8f w0, w1;
      simd::load8x2(wo + k, w0, w1);
      for (int r = 0; r < R; ++r) {
        acc0[r] += w0 * simd::load8(x + r * K + k);
        acc1[r] += w1 * simd::load8(x + r * K + k + 8);
      }
    }
    for (int r = 0; r < R; ++r) y[r * ldy + o] = gemv_finish(x + r * K, K, wo, k, acc0[r], acc1[r], scale, bias, o);
  }
}

template <typename W>
EFFARCH_INLINE void gemv_dispatch(const float* x, int R, int64_t K, const W* w, const float* scale, const float* bias,
                                  int64_t o0, int64_t o1, float* y, int64_t ldy) {
  switch (R) {
    case 1: gemv_rows<1>(x, K, w, scale, bias, o0, o1, y, ldy); break;
    case 2: gemv_rows<2>(x, K, w, scale, bias, o0, o1, y, ldy); break;
    case 3: gemv_rows<3>(x, K, w, scale, bias, o0, o1, y, ldy); break;
    default: gemv_rows<4>(x, K, w, scale, bias, o0, o1, y, ldy); break;
  }
}

EFFARCH_CPU_CLONES void gemv_f32(const float* x, int R, int64_t K, const float* w, const float* bias, int64_t o0,
                                 int64_t o1, float* y, int64_t ldy) {
  gemv_dispatch(x, R, K, w, nullptr, bias, o0, o1, y, ldy);
}

EFFARCH_CPU_CLONES void gemv_bf16(const float* x, int R, int64_t K, const c10::BFloat16* w, const float* bias,
                                  int64_t o0, int64_t o1, float* y, int64_t ldy) {
  gemv_dispatch(x, R, K, w, nullptr, bias, o0, o1, y, ldy);
}

EFFARCH_CPU_CLONES void gemv_i8(const float* x, int R, int64_t K, const int8_t* w, const float* scale,
                                const float* bias, int64_t o0, int64_t o1, float* y, int64_t ldy) {
  gemv_dispatch(x, R, K, w, scale, bias, o0, o1, y, ldy);
}

}  // namespace

bool parallel_build() {
#ifdef _OPENMP
  return true;
#else
  return false;
#endif
}

bool gemv_applies(const at::Tensor& x, const Linear& layer) {
  const at::Tensor& weight = layer.weight;
  if (!x.device().is_cpu() || !weight.device().is_cpu() || weight.dim() != 2 || !weight.is_contiguous()) return false;
  const at::ScalarType wt = weight.scalar_type();
  if (layer.format == WeightFormat::Int8) {
    if (wt != at::kChar || !layer.scale.defined() || !layer.scale.is_contiguous() ||
        layer.scale.scalar_type() != at::kFloat || layer.scale.numel() != weight.size(0)) {
      return false;
    }
  } else if (wt != at::kFloat && wt != at::kBFloat16) {
    return false;
  }
  const at::ScalarType xt = x.scalar_type();
  if (xt != at::kFloat && xt != at::kBFloat16 && xt != at::kHalf) return false;
  if (x.numel() == 0 || x.size(-1) == 0 || x.numel() / x.size(-1) > kGemvMaxRows) return false;
  const auto& bias = layer.bias;
  if (bias && (!bias->device().is_cpu() || bias->dim() != 1 || bias->size(0) != weight.size(0))) return false;
  return true;
}

namespace {

// At least ~64K weights per thread: below that, waking threads costs more than it saves.
int64_t gemv_grain(int64_t K) { return std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(K, 1)); }

void gemv_range(const GemvJob& job, int64_t o0, int64_t o1) {
  const at::Tensor& w = job.layer->weight;
  const int64_t K = w.size(1);
  switch (w.scalar_type()) {
    case at::kFloat: gemv_f32(job.x, job.rows, K, w.data_ptr<float>(), job.bias, o0, o1, job.y, job.ldy); break;
    case at::kBFloat16:
      gemv_bf16(job.x, job.rows, K, w.data_ptr<c10::BFloat16>(), job.bias, o0, o1, job.y, job.ldy);
      break;
    default:  // int8 (gemv_applies checked)
      gemv_i8(job.x, job.rows, K, w.data_ptr<int8_t>(), job.layer->scale.data_ptr<float>(), job.bias, o0, o1, job.y,
              job.ldy);
      break;
  }
}

}  // namespace

void gemv_grouped(const std::vector<GemvJob>& jobs) {
  if (jobs.empty()) return;
  // The jobs' output features laid end to end: one parallel region splits them all, so each
  // thread streams an equal share of the weights whichever products they belong to.
  std::vector<int64_t> first(jobs.size() + 1, 0);
  int64_t max_k = 1;
  for (size_t j = 0; j < jobs.size(); ++j) {
    first[j + 1] = first[j] + jobs[j].layer->out_features();
    max_k = std::max(max_k, jobs[j].layer->in_features());
  }
  at::parallel_for(0, first.back(), gemv_grain(max_k), [&](int64_t begin, int64_t end) {
    size_t j = static_cast<size_t>(std::upper_bound(first.begin(), first.end(), begin) - first.begin()) - 1;
    for (; j < jobs.size() && first[j] < end; ++j) {
      const int64_t o0 = std::max(begin, first[j]) - first[j], o1 = std::min(end, first[j + 1]) - first[j];
      if (o0 < o1) gemv_range(jobs[j], o0, o1);
    }
  });
}

at::Tensor gemv(const at::Tensor& x, const Linear& layer) {
  const int64_t K = layer.in_features(), O = layer.out_features();
  const int R = static_cast<int>(x.numel() / K);
  const at::Tensor xf = x.reshape({R, K}).to(at::kFloat).contiguous();
  const at::Tensor bf = layer.bias ? layer.bias->to(at::kFloat).contiguous() : at::Tensor();
  at::Tensor y = at::empty({R, O}, xf.options());
  gemv_grouped({GemvJob{xf.data_ptr<float>(), R, &layer, layer.bias ? bf.data_ptr<float>() : nullptr,
                         y.data_ptr<float>(), O}});
  std::vector<int64_t> out_shape(x.sizes().begin(), x.sizes().end());
  out_shape.back() = O;
  return y.to(x.scalar_type()).view(out_shape);
}

}  // namespace effarch::ops::cpu
