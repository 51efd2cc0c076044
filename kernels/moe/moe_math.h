#pragma once
// The MoE dispatch kernels' own arithmetic (kernels/moe/moe.h has the contract), written once as
// EFFARCH_HD functions so that the CUDA kernels (moe_kernels.cuh) and their CPU host emulation
// (tests/ops/moe_cuda_test.cpp) run the same code: element conversions and rounding, the router's
// per-lane softmax and top-k steps, the warp reductions in the order the shuffles add, the
// permute's ranks within a warp, the per-lane dot products of the expert GEMV, SwiGLU, and the
// combine's ordered, rounded sum. Plain C++: no CUDA types, no torch.
//
// Rounding follows ATen: every value stored in bf16/fp16 is rounded to nearest even from fp32,
// and every op that ATen runs in the model dtype (a layer's output, silu, the product of two
// tensors, y * weight, index_add_) rounds its fp32 result once.

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "common/host_device.h"

#if defined(EFFARCH_KERNEL_BUILD)
#include <cuda_fp16.h>
#endif

namespace effarch::kernels::moe {

// How values of the model dtype are stored.
enum class Precision : int { kFp32 = 0, kBf16 = 1, kFp16 = 2 };

// The router's normalisation (effarch::ops::RouterKind, include/effarch/ops/moe.h).
enum class RouterMode : int {
  kFp32Renormalized = 0,  // Mixtral: softmax fp32, top-k, divided by their sum, fp32 weights
  kFp32 = 1,              // Jamba: softmax fp32, top-k, weights rounded to the model dtype
  kModelDtype = 2,        // DeepSeekMoE: softmax rounded to the model dtype, top-k of those values
};

inline constexpr int kWarp = 32;
inline constexpr int kMaxExperts = 256;  // the router keeps E / 32 logits per lane in registers
inline constexpr int kRouterPerLane = kMaxExperts / kWarp;
inline constexpr int kMaxTopK = 16;
inline constexpr int kPermuteThreads = 1024;  // the permute's one block: 32 warps
inline constexpr int kPermuteWarps = kPermuteThreads / kWarp;
inline constexpr int kGemvRows = 8;  // rows of one expert the GEMV accumulates at once

// ---- element conversions (bit-exact on host and device) ----

template <Precision P>
struct StorageOf {
  using type = uint16_t;  // bf16 and fp16: the raw bits
};
template <>
struct StorageOf<Precision::kFp32> {
  using type = float;
};

EFFARCH_HD uint32_t bits_of(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}
EFFARCH_HD float float_of(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

EFFARCH_HD float bf16_to_float(uint16_t b) { return float_of(static_cast<uint32_t>(b) << 16); }
// Round to nearest even, as c10::BFloat16 and __float2bfloat16_rn do (NaN stays NaN).
EFFARCH_HD uint16_t float_to_bf16(float f) {
  uint32_t u = bits_of(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

EFFARCH_HD float fp16_to_float(uint16_t h) {
#if defined(__CUDA_ARCH__)
  return __half2float(__ushort_as_half(h));
#else
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
  if (exp == 0x1f) return float_of(sign | 0x7f800000u | (man << 13));
  if (exp == 0) {
    const float v = std::ldexp(static_cast<float>(man), -24);  // zero or subnormal: exact
    return sign != 0 ? -v : v;
  }
  return float_of(sign | ((exp + 112u) << 23) | (man << 13));
#endif
}
// Round to nearest even, as c10::Half and __float2half_rn do.
EFFARCH_HD uint16_t float_to_fp16(float f) {
#if defined(__CUDA_ARCH__)
  return __half_as_ushort(__float2half_rn(f));
#else
  const uint32_t u = bits_of(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);  // NaN
  if (a >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65520 rounds to infinity
  if (a < 0x38800000u) {  // below 2^-14: a multiple of 2^-24 (1024 of them is the smallest normal)
    const float q = std::nearbyint(float_of(a) * 16777216.0f);
    return static_cast<uint16_t>(sign | static_cast<uint16_t>(q));
  }
  const uint32_t r = (a + 0xfffu + ((a >> 13) & 1u)) >> 13;  // 23 -> 10 mantissa bits, carry into the exponent
  return static_cast<uint16_t>(sign | static_cast<uint16_t>(r - (112u << 10)));
#endif
}

template <Precision P>
EFFARCH_HD float to_f(typename StorageOf<P>::type v) {
  if constexpr (P == Precision::kFp32) {
    return v;
  } else if constexpr (P == Precision::kBf16) {
    return bf16_to_float(v);
  } else {
    return fp16_to_float(v);
  }
}
template <Precision P>
EFFARCH_HD typename StorageOf<P>::type from_f(float v) {
  if constexpr (P == Precision::kFp32) {
    return v;
  } else if constexpr (P == Precision::kBf16) {
    return float_to_bf16(v);
  } else {
    return float_to_fp16(v);
  }
}
// v rounded to the precision, as a float (what storing and loading it gives).
template <Precision P>
EFFARCH_HD float round_to(float v) {
  return to_f<P>(from_f<P>(v));
}
// The same with the precision known at run time (the router's and combine's few values).
EFFARCH_HD float round_to(float v, Precision p) {
  switch (p) {
    case Precision::kBf16: return round_to<Precision::kBf16>(v);
    case Precision::kFp16: return round_to<Precision::kFp16>(v);
    default: return v;
  }
}
EFFARCH_HD float load_f(const void* base, int64_t i, Precision p) {
  switch (p) {
    case Precision::kBf16: return bf16_to_float(static_cast<const uint16_t*>(base)[i]);
    case Precision::kFp16: return fp16_to_float(static_cast<const uint16_t*>(base)[i]);
    default: return static_cast<const float*>(base)[i];
  }
}
EFFARCH_HD void store_f(void* base, int64_t i, float v, Precision p) {
  switch (p) {
    case Precision::kBf16: static_cast<uint16_t*>(base)[i] = float_to_bf16(v); break;
    case Precision::kFp16: static_cast<uint16_t*>(base)[i] = float_to_fp16(v); break;
    default: static_cast<float*>(base)[i] = v; break;
  }
}

// ---- warp reductions, in the order the shuffles add ----
// The device adds with __shfl_down_sync (offsets 16, 8, 4, 2, 1) and takes lane 0's sum; on the
// host, v holds the 32 lanes' values and the same pairs are added in the same order.
EFFARCH_HD float warp_sum_down_emulated(float (&v)[kWarp]) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    for (int lane = 0; lane < offset; ++lane) v[lane] = v[lane] + v[lane + offset];
  }
  return v[0];
}
// The expert GEMV adds with __shfl_xor_sync (16, 8, 4, 2, 1) and lane 0 writes its sum: on the
// host, common/warp_sum.h's xor_butterfly_sum_emulated.

// ---- router: one warp per token; lane l holds the logits of experts l, l + 32, l + 64, ... ----

// The expert of a lane's j-th logit.
EFFARCH_HD int router_expert(int lane, int j) { return lane + j * kWarp; }

// The lane's largest logit (-inf when it holds none).
EFFARCH_HD float router_lane_max(const float (&logit)[kRouterPerLane], int experts, int lane) {
  float m = -INFINITY;
  for (int j = 0; j < kRouterPerLane; ++j) {
    if (router_expert(lane, j) < experts) m = fmaxf(m, logit[j]);
  }
  return m;
}
// exp(logit - max) in place, returning the lane's sum (in j order).
EFFARCH_HD float router_lane_exp(float (&logit)[kRouterPerLane], int experts, int lane, float max) {
  float s = 0.f;
  for (int j = 0; j < kRouterPerLane; ++j) {
    if (router_expert(lane, j) < experts) {
      logit[j] = expf(logit[j] - max);
      s += logit[j];
    }
  }
  return s;
}
// The probabilities from the exps and the warp's sum; kModelDtype rounds them to the model dtype
// (ATen's softmax in bf16/fp16 computes in fp32 and rounds its output once).
EFFARCH_HD void router_lane_probs(float (&e)[kRouterPerLane], int experts, int lane, float sum,
                                         RouterMode mode, Precision model) {
  for (int j = 0; j < kRouterPerLane; ++j) {
    if (router_expert(lane, j) < experts) {
      const float p = e[j] / sum;
      e[j] = mode == RouterMode::kModelDtype ? round_to(p, model) : p;
    }
  }
}

// A candidate of the top-k: its score and expert; `better` orders by score, descending, then by
// expert id, ascending, so equal scores go to the lower expert id (what at::topk keeps at the
// k-th value). A total order: the warp's maximum is the same whichever way the lanes combine.
struct Candidate {
  float score;
  int expert;  // -1: none
};
EFFARCH_HD bool better(const Candidate& a, const Candidate& b) {
  if (a.expert < 0) return false;
  if (b.expert < 0) return true;
  return a.score > b.score || (a.score == b.score && a.expert < b.expert);
}
// The lane's best candidate among the experts it holds that are not chosen yet (bit j of `chosen`).
EFFARCH_HD Candidate router_lane_best(const float (&score)[kRouterPerLane], int experts, int lane,
                                             uint32_t chosen) {
  Candidate best{0.f, -1};
  for (int j = 0; j < kRouterPerLane; ++j) {
    const int e = router_expert(lane, j);
    if (e < experts && ((chosen >> j) & 1u) == 0) {
      const Candidate c{score[j], e};
      if (better(c, best)) best = c;
    }
  }
  return best;
}
// The combine weights of the k chosen scores (descending), in place.
EFFARCH_HD void router_weights(float* w, int k, RouterMode mode, Precision model) {
  if (mode == RouterMode::kFp32Renormalized) {
    float s = 0.f;
    for (int i = 0; i < k; ++i) s += w[i];
    for (int i = 0; i < k; ++i) w[i] = w[i] / s;
  } else if (mode == RouterMode::kFp32) {
    for (int i = 0; i < k; ++i) w[i] = round_to(w[i], model);
  }  // kModelDtype: the scores are already the model dtype's values
}

// ---- permute: the flat (token, slot) positions p grouped by expert, stable ----

// The bucket of an expert id: the id itself, or `experts` for an id outside 0..E-1 (kept apart
// after every expert's rows; the dispatch never runs them).
EFFARCH_HD int permute_bucket(int64_t id, int experts) {
  return id >= 0 && id < experts ? static_cast<int>(id) : experts;
}
// How many lanes before `lane` of a warp's 32 buckets (-1: no position) hold the same bucket.
EFFARCH_HD int permute_rank_in_warp(const int* warp_buckets, int lane) {
  int rank = 0;
  for (int j = 0; j < lane; ++j) rank += warp_buckets[j] == warp_buckets[lane] ? 1 : 0;
  return rank;
}
// Whether `lane` holds the last position of its bucket in the warp.
EFFARCH_HD bool permute_last_in_warp(const int* warp_buckets, int lane) {
  for (int j = lane + 1; j < kWarp; ++j) {
    if (warp_buckets[j] == warp_buckets[lane]) return false;
  }
  return true;
}

// ---- expert GEMV: one warp per output feature, up to kGemvRows rows of one expert ----
// The weights W are the model dtype's storage, or int8 (weight-only int8 experts: the row's
// products summed in fp32, then scaled by the row's scale, as kernels/int8_gemv does).

// V consecutive elements at p: 16-byte loads on the device where V elements fill whole ones (p then
// 16-byte aligned: the launcher checks), element by element otherwise.
template <typename T, int V, bool kReadOnly>
EFFARCH_HD void load_elems(const T* p, T (&out)[V]) {
#if defined(__CUDA_ARCH__)
  if constexpr (V * sizeof(T) % 16 == 0) {
    for (int c = 0; c < static_cast<int>(V * sizeof(T) / 16); ++c) {
      const uint4 u = kReadOnly ? __ldg(reinterpret_cast<const uint4*>(p) + c) : reinterpret_cast<const uint4*>(p)[c];
      memcpy(reinterpret_cast<char*>(out) + 16 * c, &u, sizeof u);
    }
  } else {
    for (int i = 0; i < V; ++i) out[i] = p[i];
  }
#else
  for (int i = 0; i < V; ++i) out[i] = p[i];
#endif
}
template <Precision P, int V, bool kReadOnly>
EFFARCH_HD void load_chunk(const typename StorageOf<P>::type* p, typename StorageOf<P>::type (&out)[V]) {
  load_elems<typename StorageOf<P>::type, V, kReadOnly>(p, out);
}

// A weight element in fp32: the model dtype's value, or the int8 value (unscaled).
template <Precision P, typename W>
EFFARCH_HD float weight_f(W w) {
  if constexpr (std::is_same<W, int8_t>::value) {
    return static_cast<float>(w);
  } else {
    return to_f<P>(w);
  }
}

// acc[r] += w . x[r] over one chunk of V elements at k0, fused multiply-adds in element order.
template <Precision P, int V, typename W, int kRows = kGemvRows>
EFFARCH_HD void gemv_chunk(const W (&wv)[V], const typename StorageOf<P>::type* const* x, int rows, int k0,
                           float (&acc)[kRows]) {
  using S = typename StorageOf<P>::type;
  float wf[V];
  for (int i = 0; i < V; ++i) wf[i] = weight_f<P>(wv[i]);
  for (int r = 0; r < kRows; ++r) {
    if (r >= rows) break;
    S xv[V];
    load_chunk<P, V, false>(x[r] + k0, xv);
    for (int i = 0; i < V; ++i) acc[r] = fmaf(wf[i], to_f<P>(xv[i]), acc[r]);
  }
}

// Weight loads a lane issues before it uses the first (the dense GEMV's kGemvUnroll, gemv/gemv_math.h).
inline constexpr int kExpertLoadsInFlight = 4;
// The measuring variant (MoeExpertGemvParams::loads_in_flight, with one_row): all eight 16-byte
// loads of a DeepSeekMoE expert's 2048-wide bf16 row in flight at once, one round trip where the
// default takes two (docs/perf/pending.md, entry 44). The chunks are used in the same order: the
// sums are bitwise the default's.
inline constexpr int kExpertLoadsInFlightWide = 8;

// The lane's partial dot products of weight row w (K elements) with the rows x[r] (r < rows):
// chunks of V consecutive elements at lane * V, lane * V + 32 V, ... (K a multiple of V), in that
// order. V is what one 16-byte load of weights holds (V = 1: the scalar path). The weights of
// kExpertLoadsInFlight chunks are loaded before any is used, so each lane has that many weight
// loads in flight (two until 2026-11-26: an expert row of 2048 bf16 took four round trips). kIn
// changes how many loads are in flight, not the order the chunks are added in; kRows how many rows
// of x there are room for (kGemvRows; 1 in the one-token kernel), not what a row's sum is.
template <Precision P, int V, typename W, int kIn = kExpertLoadsInFlight, int kRows = kGemvRows>
EFFARCH_HD void gemv_lane(const W* w, const typename StorageOf<P>::type* const* x, int rows, int k, int lane,
                          float (&acc)[kRows]) {
  for (int r = 0; r < kRows; ++r) acc[r] = 0.f;
  for (int k0 = lane * V; k0 < k; k0 += kIn * kWarp * V) {
    W wv[kIn][V];
    EFFARCH_UNROLL
    for (int c = 0; c < kIn; ++c) {
      if (k0 + c * kWarp * V < k) load_elems<W, V, true>(w + k0 + c * kWarp * V, wv[c]);
    }
    EFFARCH_UNROLL
    for (int c = 0; c < kIn; ++c) {
      if (k0 + c * kWarp * V < k) gemv_chunk<P, V, W, kRows>(wv[c], x, rows, k0 + c * kWarp * V, acc);
    }
  }
}

// Which weight row a warp of the expert GEMV reads, and where its output goes. A block has
// kExpertGemvWarps warps. Plain: block b's warp w reads feature o = b * 8 + w and stores y[row, o].
// With the SwiGLU fused (gate/up, out = 2 * split): warps 0-3 read gate rows j = b * 4 + w and
// warps 4-7 the matching up rows split + j; each keeps its rounded outputs in shared memory, and
// after a barrier the gate warp stores swiglu(gate, up) at y[row, j]. `active`: the row exists
// (a block's last warps may have none; with the SwiGLU fused they still reach the barriers).
inline constexpr int kExpertGemvWarps = 8;
struct ExpertGemvRow {
  int o;        // the weight row: features 0 .. out - 1 (rows o < split in w_lo, the rest in w_hi)
  int column;   // the column of y it stores: o, or with the SwiGLU fused the pair's j
  bool gate;    // SwiGLU fused: a gate row, whose warp stores the pair's output
  bool active;
};
EFFARCH_HD ExpertGemvRow expert_gemv_row(int block, int warp, int out, int split, bool swiglu) {
  ExpertGemvRow r;
  if (!swiglu) {
    r.o = block * kExpertGemvWarps + warp;
    r.column = r.o;
    r.gate = false;
    r.active = r.o < out;
    return r;
  }
  constexpr int kHalf = kExpertGemvWarps / 2;
  r.gate = warp < kHalf;
  r.column = block * kHalf + warp % kHalf;
  r.active = r.column < split;
  r.o = r.gate ? r.column : split + r.column;
  return r;
}
// Blocks along a GEMV's features (the launcher's grid, a host function): ceil(out / 8), which is
// ceil(split / 4) with the SwiGLU fused.
inline int expert_gemv_blocks(int out, int split, bool swiglu) {
  constexpr int kHalf = kExpertGemvWarps / 2;
  return swiglu ? (split + kHalf - 1) / kHalf : (out + kExpertGemvWarps - 1) / kExpertGemvWarps;
}

// ---- SwiGLU between the two products ----

// act(gate) * up as ATen computes it on tensors of the model dtype: silu rounded, then the
// product rounded (gate and up are the model dtype's values of the first product's output).
template <Precision P>
EFFARCH_HD float swiglu(float gate, float up) {
  const float act = round_to<P>(gate / (1.0f + expf(-gate)));
  return round_to<P>(act * up);
}

// ---- combine: each token's rows added in ascending expert id ----

// The token's slots that run here, as grouped rows in ascending order (ascending expert id, then
// slot): ids/row_of/weights are the token's k entries, local[e] whether expert e runs on this
// rank. Returns how many.
EFFARCH_HD int combine_slots(const int64_t* ids, const int* row_of, const void* weights, Precision weight_precision,
                                    const uint8_t* local, int experts, int k, int* rows, float* w) {
  int n = 0;
  for (int j = 0; j < k; ++j) {
    const int64_t e = ids[j];
    if (e < 0 || e >= experts || local[e] == 0) continue;
    int i = n++;
    const int row = row_of[j];
    const float wj = load_f(weights, j, weight_precision);
    while (i > 0 && rows[i - 1] > row) {  // insertion sort: k is small
      rows[i] = rows[i - 1];
      w[i] = w[i - 1];
      --i;
    }
    rows[i] = row;
    w[i] = wj;
  }
  return n;
}
// One step of the combine: the sum so far plus round(y * weight), rounded (the reference's
// index_add_ of an expert's weighted output into a model-dtype buffer). y: the expert's output as
// stored in the model dtype.
template <Precision P>
EFFARCH_HD float combine_add(float out, float y, float weight) {
  return round_to<P>(out + round_to<P>(y * weight));
}
// One output element: a zero of the model dtype, plus round(y * weight) for each row in order,
// every addition rounded.
template <Precision P>
EFFARCH_HD float combine_value(const typename StorageOf<P>::type* y, int64_t y_row_stride, int64_t column,
                                      const int* rows, const float* w, int count) {
  float out = 0.f;
  for (int i = 0; i < count; ++i) out = combine_add<P>(out, to_f<P>(y[rows[i] * y_row_stride + column]), w[i]);
  return out;
}

// ---- the one-token dispatch (MoeExpertGemvParams::token_ids, MoeTokenDownParams) ----
// A decode step of one token needs no permute: its k slots, ordered by expert id (then slot),
// are the rows of the intermediate buffer, and one warp sums an output feature over all of them
// in the combine's order.

// Whether the token's slot j2 (expert f) comes before its slot j (expert e) in the combine's order:
// f valid (in 0..E-1) and a lower id, or the same id at an earlier slot (equal ids, which moe_route
// never makes). The combine's order: combine_slots sorts by grouped row, which is the permute's
// (expert id, then position).
EFFARCH_HD bool token_precedes(int64_t f, int j2, int64_t e, int j, int experts) {
  return f >= 0 && f < experts && (f < e || (f == e && j2 < j));
}
// The rank of the token's slot j among its valid slots in that order, or -1 where ids[j] is
// outside 0..E-1. The kernels compute it a lane per slot (lane j, the ids shuffled across the warp).
EFFARCH_HD int token_rank(const int64_t* ids, int k, int experts, int j) {
  const int64_t e = ids[j];
  if (e < 0 || e >= experts) return -1;
  int rank = 0;
  for (int j2 = 0; j2 < k; ++j2) rank += token_precedes(ids[j2], j2, e, j, experts) ? 1 : 0;
  return rank;
}
// The token's i-th expert in that order, or -1 where it has fewer valid ones; *slot (if given)
// its slot j, whose combine weight it takes.
EFFARCH_HD int token_slot(const int64_t* ids, int k, int experts, int i, int* slot) {
  for (int j = 0; j < k; ++j) {
    if (token_rank(ids, k, experts, j) == i) {
      if (slot != nullptr) *slot = j;
      return static_cast<int>(ids[j]);
    }
  }
  return -1;
}

// The shared experts' sum added after the routed experts' (DeepSeekMoE: `routed + shared` on
// tensors of the model dtype): shared is their down product's fp32 sum, rounded as a layer's
// output is, then the addition rounded.
template <Precision P>
EFFARCH_HD float add_shared(float routed, float shared) {
  return round_to<P>(routed + round_to<P>(shared));
}

// Shared-expert columns a one-token dispatch takes at most (the shared MLP's width over an
// expert's: DeepSeekMoE's 2).
inline constexpr int kMaxSharedSlots = 16;

}  // namespace effarch::kernels::moe
