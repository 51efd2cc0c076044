#pragma once
// The dense GEMV's norm prologue (GemvParams::norm): a decode step's block-boundary residual add
// and RMSNorm / LayerNorm (add_norm_params.h) computed by every block of the GEMV that reads the
// normed row, into shared memory, before its products; the first block also writes the residual.
// One launch where there were two (the add_norm kernel, then the GEMV), and the norm's latency
// (a lone row's reads, two or three barriers) overlaps the weights the block has already asked
// into L2.
//
// The arithmetic is the add_norm kernel's element shape (add_norm_math.h) with that kernel's
// threads a row (addnorm::threads_of: a power of two from 32 to 512, here "virtual" threads), in
// its order: GEMV thread tid runs the virtual threads tid, tid + kGemvThreads, ... (their phases
// from add_norm_math.h), and the block sums add the virtual threads' partials warp by warp, in
// virtual warp order, as block_sum does over the add_norm kernel's block. So the normed row is bit
// for bit what the add_norm kernel stores, and the product the unfused GEMV's
// (DenseGemvCuda.NormPrologueGivesTheUnfusedBits). Rows whose norm inputs fit the element shape's
// register cache only (addnorm::caches_row: dim <= kRowCache x threads, 4096 at 512): a virtual
// thread reads its elements in one batch, as there. Only the first block writes the residual.
//
// Plain C++ (EFFARCH_HD): the kernel (gemv.cuh) adds the shared memory, the butterflies and the
// barriers; the CPU test (tests/ops/gemv_norm_test.cpp) runs the same functions thread by thread.

#include <cstdint>

#include "add_norm/add_norm_math.h"
#include "add_norm/add_norm_params.h"
#include "common/host_device.h"
#include "gemv/gemv_math.h"

namespace effarch::kernels::gemvnorm {

// Rows of x the prologue takes: a decode step's one or two, the GEMV's rows under --backend auto.
inline constexpr int kMaxRows = 2;
// Virtual threads a GEMV thread runs at most (add_norm's 512 threads over the GEMV's 256).
inline constexpr int kPerThread = addnorm::kMaxThreads / kGemvThreads;
static_assert(addnorm::kMaxThreads % kGemvThreads == 0 && kGemvThreads % kWarpLanes == 0,
              "a GEMV warp runs whole virtual warps");

// Why the prologue cannot compute `a` for a GEMV of `rows` rows of x, `in` inputs, element type
// `type`: nullptr where it can. What the launcher refuses and the op checks before it asks.
inline const char* refusal(const AddNormParams& a, int rows, int in, ElementType type) {
  if (rows < 1 || rows > kMaxRows) return "gemv: the norm prologue takes 1 or 2 rows of x";
  if (a.rows != rows || a.dim != in) return "gemv: the norm prologue's rows and width must be the GEMV's rows and inputs";
  if (a.type != type) return "gemv: the norm's dtype must be x's";
  if (a.residual_type != type && a.residual_type != ElementType::kFloat32) {
    return "gemv: the norm prologue's residual must be the model dtype or fp32";
  }
  if (a.x == nullptr || a.y == nullptr || a.residual_out == nullptr || a.weight == nullptr ||
      (a.norm == NormType::kLayer && a.bias == nullptr)) {
    return "gemv: the norm prologue needs x, y, residual_out, weight (and a LayerNorm's bias)";
  }
  // Every block reads x, y and z while the first writes the residual.
  if (a.residual_out == a.x || a.residual_out == a.y || a.residual_out == a.z) {
    return "gemv: the norm prologue's residual_out must not be one of its inputs";
  }
  if (a.shape == AddNormShape::kVector) return "gemv: the norm prologue computes the element shape's norm";
  const int threads = addnorm::threads_of(a);
  if (!addnorm::valid_threads(threads) || a.dim > addnorm::kRowCache * threads) {  // addnorm::caches_row
    return "gemv: the norm prologue needs a row its threads keep in registers (dim <= 8 x threads, 4096 at 512)";
  }
  return nullptr;
}

// The phases below keep each element's norm input n (the residual rounded to the model dtype,
// so exact in it) in the block's shared row a.normed between the phases, where the add_norm
// kernel keeps it in registers (addnorm::RowCache): the same values, so the same arithmetic
// (addnorm::first_sum_term, row_scale, normed_value), without holding a row's worth of registers
// through the whole GEMV (they took it from 40 to 113-120 on sm_90). The last phase overwrites
// each n with its normed value, in place, by the thread that wrote it.

// Phase 1 for virtual thread v: its elements' residuals (stored where a.residual_out is set),
// their n into the shared row, its part of the first row sum in element order. Every read of its
// elements (at most addnorm::kRowCache: refusal checked the row) before any write.
template <class Io>
EFFARCH_HD float add_partial(const AddNormParams& a, int64_t row, int v, int threads) {
  float acc = 0.0f;
  addnorm::cached_batch(
      a.dim, v, threads, [&](int i, int) { return addnorm::residual_value<Io>(a, row, i); },
      [&](int i, int, float r) {
        if (a.residual_out != nullptr) Io::store(a.residual_out, row * a.residual_out_row_stride + i, a.residual_type, r);
        const float n = Io::round_to(a.type, r);
        Io::store(a.normed, row * a.normed_row_stride + i, a.type, n);
        acc = addnorm::first_sum_term(a.norm, n, acc);
      });
  return acc;
}

// Phase 2 (LayerNorm) for virtual thread v: its part of sum (n - mean)^2.
template <class Io>
EFFARCH_HD float variance_partial(const AddNormParams& a, int64_t row, int v, int threads, float mean) {
  float acc = 0.0f;
  for (int i = v; i < a.dim; i += threads) {
    const float d = Io::load(a.normed, row * a.normed_row_stride + i, a.type) - mean;
    acc = fmaf(d, d, acc);
  }
  return acc;
}

// Phase 3 for virtual thread v: its elements' normed values over their n in the shared row.
template <class Io>
EFFARCH_HD void norm_write(const AddNormParams& a, int64_t row, int v, int threads, const addnorm::RowScale& s) {
  struct WeightBias {
    float w, b;
  };
  addnorm::cached_batch(
      a.dim, v, threads,
      [&](int i, int) {
        return WeightBias{Io::load(a.weight, i, a.type), a.norm == NormType::kRms ? 0.0f : Io::load(a.bias, i, a.type)};
      },
      [&](int i, int, const WeightBias& wb) {
        const int64_t at = row * a.normed_row_stride + i;
        Io::store(a.normed, at, a.type, addnorm::normed_value<Io>(a, s, Io::load(a.normed, at, a.type), wb.w, wb.b));
      });
}

// Virtual thread j of GEMV thread tid (it runs where it is below the row's threads).
EFFARCH_HD int virtual_thread(int tid, int j) { return tid + j * kGemvThreads; }

// Each phase for the virtual threads of GEMV thread tid: part[j] the j-th's part of a row sum
// (0 for a virtual thread past the row's `threads`).
template <class Io>
EFFARCH_HD void add_partials(const AddNormParams& a, int64_t row, int tid, int threads, float (&part)[kPerThread]) {
EFFARCH_UNROLL
  for (int j = 0; j < kPerThread; ++j) {
    const int v = virtual_thread(tid, j);
    part[j] = v < threads ? add_partial<Io>(a, row, v, threads) : 0.0f;
  }
}
template <class Io>
EFFARCH_HD void variance_partials(const AddNormParams& a, int64_t row, int tid, int threads, float mean,
                                  float (&part)[kPerThread]) {
EFFARCH_UNROLL
  for (int j = 0; j < kPerThread; ++j) {
    const int v = virtual_thread(tid, j);
    part[j] = v < threads ? variance_partial<Io>(a, row, v, threads, mean) : 0.0f;
  }
}
template <class Io>
EFFARCH_HD void norm_writes(const AddNormParams& a, int64_t row, int tid, int threads, float first, float second) {
  const addnorm::RowScale s = addnorm::row_scale(a, first, second);
EFFARCH_UNROLL
  for (int j = 0; j < kPerThread; ++j) {
    const int v = virtual_thread(tid, j);
    if (v < threads) norm_write<Io>(a, row, v, threads, s);
  }
}

// The virtual warp whose sum GEMV warp `warp` adds for its j-th partials, or -1 where that warp
// is past the row's threads (its sum is not part of the block sum).
EFFARCH_HD int virtual_warp(int warp, int j, int threads) {
  const int w = warp + j * (kGemvThreads / kWarpLanes);
  return w * kWarpLanes < threads ? w : -1;
}

// Shared memory a launch's blocks hold for x: `rows` normed rows of `in` elements of `elem_bytes`.
inline int64_t shared_bytes(int rows, int in, int elem_bytes) { return int64_t{rows} * in * elem_bytes; }

}  // namespace effarch::kernels::gemvnorm
