#pragma once
// The per-thread math of the fused residual add + norm (add_norm_params.h), shared by the CUDA
// kernel (add_norm_kernel.cuh) and its host emulation (tests/ops/add_norm_test.cpp), which runs
// the phases below for every thread of every block in the kernel's order. EFFARCH_HD functions,
// no CUDA type: the shell adds only the thread index, the shared reduction buffer and barriers.
//
// Element access goes through `Io`, a class with
//   static float load(const void* base, int64_t offset, ElementType type);
//   static void store(void* base, int64_t offset, ElementType type, float value);
//   static float round_to(ElementType type, float value);  // value rounded to `type`, back in fp32
//
// Rounding follows the unfused ops (src/ops/norm.cpp) step by step: the residual add rounded to
// the residual's dtype as ATen's add does, the norm's input cast to the model dtype, RMSNorm's
// fp32 normalisation rounded before the weight product (rounded again). What cannot follow the
// reference exactly is the order of the row sums (warp butterflies, then the warps' sums in order here, ATen's own order
// there): sums of squares and means agree to fp32 rounding, so the outputs agree to about one ulp
// of fp32 before their last rounding (tests/ops/add_norm_test.cpp measures how often that ulp
// reaches a half-precision result). Products are explicit fmaf or separate roundings on both
// sides, so the host emulation is the device arithmetic, bar rsqrt and the mean's division
// (each side does what ATen does on its device: rsqrtf and sum * (1 / n) on CUDA, 1 / sqrt and
// sum / n on the CPU).

#include <math.h>

#include <cstdint>
#include <type_traits>

#include "add_norm/add_norm_params.h"
#include "common/host_device.h"
#include "common/staged_copy.h"
#include "common/warp_sum.h"

namespace effarch::kernels::addnorm {

inline constexpr int kMaxThreads = 512;  // threads per row (block); a power of 2

// A thread's norm inputs, kept in registers from the first phase to the last where the row fits
// (dim <= kRowCache x threads: hidden sizes up to 4096 with 512 threads), so that the later
// phases do not read the row back from residual_out (LayerNorm read it twice more), 14-16 bytes
// an element moved where 8-12 are the row's own. On an H100 that took 3-7% off the kernel's time
// in a 4096-token prefill (94-146 us a call before; docs/perf/README.md, "sixth run"): the read-back
// hit in cache, and one block a row is what bounds it there (docs/perf/pending.md, entry 46). The
// same values in the same order as the read-back: the outputs are bitwise the same.
inline constexpr int kRowCache = 8;
struct RowCache {
  float n[kRowCache];
};
EFFARCH_HD bool caches_row(int dim, int nthreads) { return dim <= kRowCache * nthreads; }

// staged_copy's one batch with each element's slot k (element tid + k nthreads, k < kRowCache):
// every read before any write, so kRowCache loads are in flight. For rows that caches_row.
template <class Read, class Write>
EFFARCH_HD void cached_batch(int count, int tid, int nthreads, Read&& read, Write&& write) {
  using V = std::decay_t<decltype(read(0, 0))>;
  V v[kRowCache]{};
EFFARCH_UNROLL
  for (int k = 0; k < kRowCache; ++k) {
    const int i = tid + k * nthreads;
    if (i < count) v[k] = read(i, k);
  }
EFFARCH_UNROLL
  for (int k = 0; k < kRowCache; ++k) {
    const int i = tid + k * nthreads;
    if (i < count) write(i, k, v[k]);
  }
}

// Threads of a row's block: the smallest power of 2 >= dim, between 32 and kMaxThreads.
inline int threads_for(int dim) {
  int t = 32;
  while (t < dim && t < kMaxThreads) t *= 2;
  return t;
}
// The launch's threads a row: the params' own (AddNormParams::threads) or threads_for(dim).
inline int threads_of(const AddNormParams& p) { return p.threads > 0 ? p.threads : threads_for(p.dim); }
// Whether a block of `threads` can run a row: a power of two from 32 (a warp) to kMaxThreads.
// What the op checks NormParams::cuda_threads against, and the launcher its launch.
inline bool valid_threads(int threads) {
  return threads >= 32 && threads <= kMaxThreads && (threads & (threads - 1)) == 0;
}

EFFARCH_HD float rsqrt_of(float v) {
#ifdef __CUDA_ARCH__
  return rsqrtf(v);  // at::rsqrt and at::layer_norm on CUDA
#else
  return 1.0f / sqrtf(v);  // at::rsqrt on the CPU
#endif
}

EFFARCH_HD float mean_of(float sum, int n) {
#ifdef __CUDA_ARCH__
  // ATen's CUDA mean: the sum times the factor 1 / n, rounded on its own (__fmul_rn: never
  // contracted into an FMA with the subtraction or `+ eps` that reads it, which nvcc's -fmad
  // might do differently in two kernels; ATen computes the mean in a step of its own).
  return __fmul_rn(sum, 1.0f / static_cast<float>(n));
#else
  return sum / static_cast<float>(n);  // ATen's CPU mean: sum, then div_
#endif
}

// residual_out of element i of `row`: round_R(round_T(y + z) + x), or round_R(x + y) without z.
template <class Io>
EFFARCH_HD float residual_value(const AddNormParams& p, int64_t row, int i) {
  const float x = Io::load(p.x, row * p.x_row_stride + i, p.residual_type);
  float y = Io::load(p.y, row * p.y_row_stride + i, p.type);
  if (p.z != nullptr) y = Io::round_to(p.type, y + Io::load(p.z, row * p.z_row_stride + i, p.type));
  return Io::round_to(p.residual_type, x + y);
}

// An element's term of the first row sum: n^2 (RMSNorm) or n (LayerNorm), added as the kernels add it.
EFFARCH_HD float first_sum_term(NormType norm, float n, float acc) {
  return norm == NormType::kRms ? fmaf(n, n, acc) : acc + n;
}

// The mean (LayerNorm; 0 for RMSNorm) and the scale of a row from its sums: RMSNorm's first is sum
// n^2, LayerNorm's first sum n and second sum (n - mean)^2.
struct RowScale {
  float mean, scale;
};
EFFARCH_HD RowScale row_scale(const AddNormParams& p, float first, float second) {
  const bool rms = p.norm == NormType::kRms;
  return {rms ? 0.0f : mean_of(first, p.dim),
          rms ? rsqrt_of(mean_of(first, p.dim) + p.eps) : rsqrt_of(mean_of(second, p.dim) + p.eps)};
}

// The normed value of an element from its norm input n, weight w and (LayerNorm) bias b, before
// its store's rounding. RMSNorm: the fp32 normalisation rounded to T, then the weight product
// (src/ops/norm.cpp); LayerNorm: at::layer_norm's CUDA kernels' (rstd * (x - mean)) * gamma +
// beta, the last two contracted.
template <class Io>
EFFARCH_HD float normed_value(const AddNormParams& p, const RowScale& s, float n, float w, float b) {
  if (p.norm == NormType::kRms) return w * Io::round_to(p.type, n * s.scale);
  return fmaf(s.scale * (n - s.mean), w, b);
}

// The norm's input of element i, once phase 1 has written residual_out: the model-dtype value.
template <class Io>
EFFARCH_HD float norm_input(const AddNormParams& p, int64_t row, int i) {
  return Io::round_to(p.type, Io::load(p.residual_out, row * p.residual_out_row_stride + i, p.residual_type));
}

// Phase 1: the thread writes residual_out for its elements tid, tid + nthreads, ... and returns
// its part of the first row sum: sum n^2 (RMSNorm) or sum n (LayerNorm).
// The elements' reads are staged ahead of the stores (common/staged_copy.h: one memory latency
// per batch of elements, not per element; an H200 profile had this kernel at 5.9 us a row);
// the sum runs in the same order.
// With `cache` (a row that caches_row) the thread's norm inputs also go to it.
template <class Io>
EFFARCH_HD float add_partial(const AddNormParams& p, int64_t row, int tid, int nthreads, RowCache* cache = nullptr) {
  float acc = 0.0f;
  const auto keep = [&](int i, float r) {
    Io::store(p.residual_out, row * p.residual_out_row_stride + i, p.residual_type, r);
    const float n = Io::round_to(p.type, r);
    acc = first_sum_term(p.norm, n, acc);
    return n;
  };
  if (cache != nullptr) {
    cached_batch(
        p.dim, tid, nthreads, [&](int i, int) { return residual_value<Io>(p, row, i); },
        [&](int i, int k, float r) { cache->n[k] = keep(i, r); });
    return acc;
  }
  staged_copy(
      p.dim, tid, nthreads, [&](int i) { return residual_value<Io>(p, row, i); }, [&](int i, float r) { keep(i, r); });
  return acc;
}

// Row sums: the kernel's block_sum (common/block_sum.cuh; common/warp_sum.h mirrors it on the host).

// Phase 2 (LayerNorm only): the thread's part of sum (n - mean)^2.
template <class Io>
EFFARCH_HD float variance_partial(const AddNormParams& p, int64_t row, int tid, int nthreads, float mean,
                                  const RowCache* cache = nullptr) {
  float acc = 0.0f;
  if (cache != nullptr) {
EFFARCH_UNROLL
    for (int k = 0; k < kRowCache; ++k) {
      if (tid + k * nthreads < p.dim) {
        const float d = cache->n[k] - mean;
        acc = fmaf(d, d, acc);
      }
    }
    return acc;
  }
  for (int i = tid; i < p.dim; i += nthreads) {
    const float d = norm_input<Io>(p, row, i) - mean;
    acc = fmaf(d, d, acc);
  }
  return acc;
}

// Phase 3: the normed output of the thread's elements. RMSNorm: `first` is sum n^2; LayerNorm:
// `first` is sum n and `second` sum (n - mean)^2.
template <class Io>
EFFARCH_HD void norm_write(const AddNormParams& p, int64_t row, int tid, int nthreads, float first, float second,
                           const RowCache* cache = nullptr) {
  struct In {
    float n, w, b;  // the norm's input, weight and (LayerNorm) bias of an element
  };
  const auto weights = [&](float n, int i) {
    return In{n, Io::load(p.weight, i, p.type), p.norm == NormType::kRms ? 0.0f : Io::load(p.bias, i, p.type)};
  };
  const RowScale s = row_scale(p, first, second);
  const auto write = [&](int i, const In& v) {
    Io::store(p.normed, row * p.normed_row_stride + i, p.type, normed_value<Io>(p, s, v.n, v.w, v.b));
  };
  if (cache != nullptr) {
    cached_batch(
        p.dim, tid, nthreads, [&](int i, int k) { return weights(cache->n[k], i); },
        [&](int i, int, const In& v) { write(i, v); });
    return;
  }
  staged_copy(p.dim, tid, nthreads, [&](int i) { return weights(norm_input<Io>(p, row, i), i); }, write);
}

// ---- The vector shape (AddNormParams::shape): 16-byte accesses, a block sized to the row ----
//
// Thread tid takes the row's 8-element vectors tid, tid + nthreads, ... (at most kVecSlots of
// them), each read and written as one 16-byte access of the model dtype (two of an fp32
// residual), and keeps its norm inputs in registers between the phases. The block is as small as
// the row allows (vector_threads_for: Phi-2's 2560 take 160 threads, Llama's 4096 take 256), so
// an SM holds many rows at once where the element shape holds two or four 512-thread blocks.
// Same rounding as the element shape; only the row sums' order differs (each thread adds its
// vectors' elements in order, then the block sum as before).
//
// Io adds, for this shape:
//   static void load8(const void* base, int64_t offset, ElementType type, float (&out)[8]);
//   static void store8(void* base, int64_t offset, ElementType type, const float (&in)[8]);
// (offset a multiple of 8, the address 16-byte aligned: vector_applies checks both.)

inline constexpr int kVec = 8;       // elements a vector
inline constexpr int kVecSlots = 2;  // vectors a thread keeps
inline constexpr int kMaxVectorDim = kVec * kVecSlots * kMaxThreads;  // 8192

struct VecCache {
  float n[kVecSlots][kVec];
};

// Threads a row in the vector shape: enough for kVecSlots vectors each, a multiple of a warp.
inline int vector_threads_for(int dim) {
  const int vectors = (dim + kVec - 1) / kVec;
  const int threads = (vectors + kVecSlots - 1) / kVecSlots;
  return threads <= kWarpLanes ? kWarpLanes : (threads + kWarpLanes - 1) / kWarpLanes * kWarpLanes;
}

// Whether the vector shape can run p: whole vectors (dim, every row stride and base a multiple
// of 8 elements, 16-byte aligned addresses) and a row within kMaxVectorDim. Where it cannot, the
// launcher runs the element shape (add_norm_kernel.cuh), whatever p.shape asks.
inline bool vector_applies(const AddNormParams& p) {
  const auto aligned = [](const void* base) {
    return base == nullptr || reinterpret_cast<uintptr_t>(base) % 16 == 0;
  };
  const auto whole = [](int64_t stride) { return stride % kVec == 0; };
  return p.dim % kVec == 0 && p.dim <= kMaxVectorDim && whole(p.x_row_stride) && whole(p.y_row_stride) &&
         (p.z == nullptr || whole(p.z_row_stride)) && whole(p.residual_out_row_stride) &&
         whole(p.normed_row_stride) && aligned(p.x) && aligned(p.y) && aligned(p.z) && aligned(p.residual_out) &&
         aligned(p.normed) && aligned(p.weight) && aligned(p.bias);
}

// Rows from which kAuto takes the vector shape: a prefill's. One 512-thread block a row, right for
// a decode step's row (10.5 us on an H100), ran a 4096-token prefill's rows at half the speed of
// ATen's unfused LayerNorm (docs/perf/pending.md, entry 46); decode's rows (a batch under 128) keep
// the shape measured there until the vector shape is timed on them.
inline constexpr int64_t kVectorMinRows = 128;

// The shape a launch of p runs: the vector shape where p.shape asks for it, or kAuto with the
// launcher's threads and a prefill's rows, and the row allows it.
inline bool runs_vector(const AddNormParams& p) {
  const bool wanted = p.shape == AddNormShape::kVector ||
                      (p.shape == AddNormShape::kAuto && p.threads == 0 && p.rows >= kVectorMinRows);
  return wanted && vector_applies(p);
}

// The launch's threads a row for either shape.
inline int launch_threads(const AddNormParams& p) { return runs_vector(p) ? vector_threads_for(p.dim) : threads_of(p); }

// residual_out of vector v of `row` (residual_value's rounding, element by element).
template <class Io>
EFFARCH_HD void residual_vector(const AddNormParams& p, int64_t row, int v, float (&out)[kVec]) {
  float x[kVec], y[kVec];
  Io::load8(p.x, row * p.x_row_stride + int64_t{v} * kVec, p.residual_type, x);
  Io::load8(p.y, row * p.y_row_stride + int64_t{v} * kVec, p.type, y);
  if (p.z != nullptr) {
    float z[kVec];
    Io::load8(p.z, row * p.z_row_stride + int64_t{v} * kVec, p.type, z);
EFFARCH_UNROLL
    for (int j = 0; j < kVec; ++j) y[j] = Io::round_to(p.type, y[j] + z[j]);
  }
EFFARCH_UNROLL
  for (int j = 0; j < kVec; ++j) out[j] = Io::round_to(p.residual_type, x[j] + y[j]);
}

// Phase 1 of the vector shape: every read of the thread's vectors before any write (their loads
// in flight together), then residual_out, the kept norm inputs and the first row sum's part.
template <class Io>
EFFARCH_HD float add_partial_vec(const AddNormParams& p, int64_t row, int tid, int nthreads, VecCache& cache) {
  const int vectors = p.dim / kVec;
  float r[kVecSlots][kVec];
EFFARCH_UNROLL
  for (int k = 0; k < kVecSlots; ++k) {
    const int v = tid + k * nthreads;
    if (v < vectors) residual_vector<Io>(p, row, v, r[k]);
  }
  float acc = 0.0f;
EFFARCH_UNROLL
  for (int k = 0; k < kVecSlots; ++k) {
    const int v = tid + k * nthreads;
    if (v >= vectors) break;
    Io::store8(p.residual_out, row * p.residual_out_row_stride + int64_t{v} * kVec, p.residual_type, r[k]);
EFFARCH_UNROLL
    for (int j = 0; j < kVec; ++j) {
      const float n = Io::round_to(p.type, r[k][j]);
      cache.n[k][j] = n;
      acc = first_sum_term(p.norm, n, acc);
    }
  }
  return acc;
}

// Phase 2 of the vector shape (LayerNorm): the thread's part of sum (n - mean)^2.
EFFARCH_HD float variance_partial_vec(const AddNormParams& p, int tid, int nthreads, float mean, const VecCache& cache) {
  float acc = 0.0f;
EFFARCH_UNROLL
  for (int k = 0; k < kVecSlots; ++k) {
    if (tid + k * nthreads >= p.dim / kVec) break;
EFFARCH_UNROLL
    for (int j = 0; j < kVec; ++j) {
      const float d = cache.n[k][j] - mean;
      acc = fmaf(d, d, acc);
    }
  }
  return acc;
}

// Phase 3 of the vector shape: norm_write's arithmetic, the weight (and bias) read as vectors.
template <class Io>
EFFARCH_HD void norm_write_vec(const AddNormParams& p, int64_t row, int tid, int nthreads, float first, float second,
                               const VecCache& cache) {
  const int vectors = p.dim / kVec;
  const bool rms = p.norm == NormType::kRms;
  const RowScale s = row_scale(p, first, second);
  float w[kVecSlots][kVec], b[kVecSlots][kVec];
EFFARCH_UNROLL
  for (int k = 0; k < kVecSlots; ++k) {
    const int v = tid + k * nthreads;
    if (v >= vectors) break;
    Io::load8(p.weight, int64_t{v} * kVec, p.type, w[k]);
    if (!rms) Io::load8(p.bias, int64_t{v} * kVec, p.type, b[k]);
  }
EFFARCH_UNROLL
  for (int k = 0; k < kVecSlots; ++k) {
    const int v = tid + k * nthreads;
    if (v >= vectors) break;
    float out[kVec];
EFFARCH_UNROLL
    for (int j = 0; j < kVec; ++j) {
      const float n = cache.n[k][j];
      out[j] = normed_value<Io>(p, s, n, w[k][j], rms ? 0.0f : b[k][j]);  // the element shape's (norm_write)
    }
    Io::store8(p.normed, row * p.normed_row_stride + int64_t{v} * kVec, p.type, out);
  }
}

}  // namespace effarch::kernels::addnorm
