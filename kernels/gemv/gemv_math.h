#pragma once
// The dense GEMV's plan and per-lane math (gemv.h has the contract), shared by the kernel
// (gemv.cuh) and a CPU test that emulates it block by block, warp by warp, lane by lane
// (tests/ops/gemv_test.cpp). Functions marked EFFARCH_HD are the kernel's own code; the plan and
// the path choice are plain host functions the launcher calls.
//
// Layout of a launch: blocks of kGemvWarps warps. `split` warps (1, 2, 4 or 8) share one output
// row o and its K range, so a block computes kGemvWarps / split rows. The split group's
// split * 32 lanes walk the row in 16-byte vectors, lane t taking vectors t, t + G, t + 2G, ...
// (G = split * 32): each step of the group reads one contiguous run of G * 16 bytes, and each lane
// issues kGemvUnroll such loads before it uses the first, so several loads per lane are in flight
// (the latency a lone load per iteration leaves exposed). Weights are loaded with a streaming
// hint (read once: no L1 allocation), x with plain loads (every warp re-reads it: it stays in
// L1/L2; not the read-only path, gemv_load_x says why). Each lane accumulates in fp32 in its fixed
// vector order; the warp sums its lanes with an xor butterfly (common/warp_sum.h mirrors it on the
// host); the split warps' sums are added in warp order in shared memory, then the bias; one
// rounding to the output type. No atomics: the sum order is fixed by the plan. With a fused conv
// update (GemvConvUpdate) the thread that stores y[r, o] then runs the conv for (r, o): after the
// grid dependency wait, like every read of a kernel's output. With a fused activation
// (GemvActivation) that thread stores the activation of the rounded output instead. With a gated
// activation a block's first half of rows are gate rows and its second half the matching up rows
// (gemv_lane_of); each keeps its stored value in shared memory (the gate rows act(gate), the up
// rows up), and after a barrier the gate rows' threads store the product (gemv_gated_output).

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "activation/activation_math.h"
#include "causal_conv1d/causal_conv1d_math.h"
#include "common/grid_dependency.h"
#include "common/host_device.h"
#include "common/warp_sum.h"
#include "gemv/gemv_params.h"

namespace effarch::kernels {

inline constexpr int kGemvWarps = 8;
inline constexpr int kGemvLanes = 32;
inline constexpr int kGemvThreads = kGemvWarps * kGemvLanes;
inline constexpr int kGemvUnroll = 4;    // 16-byte weight loads a lane has in flight
// The measuring variant (GemvParams::unroll; one row of x, no gated activation): eight loads in
// flight a lane, for the 37-64 MB matrices where the kernel trails cuBLAS on an H100
// (docs/perf/pending.md, entry 25). A lane's vectors are added in the same order either way.
inline constexpr int kGemvUnrollWide = 8;
inline constexpr int kGemvWavesWanted = 4;  // blocks per SM the split aims for at least

// The widest split a plan takes: every warp of a block on one row, or half of them with a gated
// activation (a block holds a gate row and its up row).
constexpr int gemv_max_split(bool gated) { return gated ? kGemvWarps / 2 : kGemvWarps; }
// Whether `split` is a value GemvParams::split takes: 0 (the plan's), or a power of two up to the max.
constexpr bool gemv_split_valid(int split, bool gated) {
  return split == 0 || ((split & (split - 1)) == 0 && split > 0 && split <= gemv_max_split(gated));
}

// How a launch covers the matrix: `split` warps per output row, `outputs_per_block` rows per block.
struct GemvPlan {
  int split = 1;
  int outputs_per_block = kGemvWarps;
  int blocks = 0;
};

// The plan for O = out rows of K = in elements, `vec` elements per 16-byte load, on a device with
// `sm_count` multiprocessors (0: 132, an H100 / H200). One warp per row where that already gives
// kGemvWavesWanted blocks per SM; otherwise the split doubles (up to kGemvWarps) while the blocks
// fall short and every lane still keeps at least two vectors of the row after the split. A gated
// activation (out = 2I) needs a gate row and its up row in each block: the split stops at
// kGemvWarps / 2, and the blocks are ceil(I / (rows per block / 2)), which is the plain count.
// Below that cap both plans are the same, so the fused product sums in the plain GEMV's order.
// `forced` > 0 (GemvParams::split, a measuring knob the launcher has checked) replaces the split.
inline GemvPlan gemv_plan(int out, int in, int vec, int sm_count, bool gated = false, int forced = 0) {
  const int64_t sms = sm_count > 0 ? sm_count : 132;
  const int64_t wanted = kGemvWavesWanted * sms;
  const int64_t vectors = (static_cast<int64_t>(in) + vec - 1) / vec;
  const int max_split = gemv_max_split(gated);
  const auto blocks = [out](int split) {
    const int per_block = kGemvWarps / split;
    return (static_cast<int64_t>(out) + per_block - 1) / per_block;
  };
  int split = 1;
  if (forced > 0) {
    split = forced;
  } else {
    while (split < max_split && blocks(split) < wanted && vectors >= 2LL * kGemvLanes * (2 * split)) split *= 2;
  }
  return GemvPlan{split, kGemvWarps / split, static_cast<int>(blocks(split))};
}

// Under programmatic launch (--pdl) a lane loads its first kGemvUnroll weight vectors before its
// grid dependency wait; these are how many of its next vectors it also asks into L2 there
// (prefetch_l2, no registers), so that the weights stream while the kernel before this one (a
// norm, a state update: latency-bound, the memory idle) finishes. Bounded so that what the
// resident lanes ask for before the wait, loads and prefetches, fills at most half the L2
// (`l2_bytes`; the rest holds activations and the kernel before's data): a prefetched line
// evicted before its load would be read twice. Resident lanes are counted at the most a block of
// kGemvThreads allows, 2048 threads an SM (fewer when registers limit it: the bound errs small).
// 0 where the lane has no vectors past its first kGemvUnroll, or the L2 size is unknown (0).
inline constexpr int kGemvMaxResidentThreadsPerSm = 2048;
inline int gemv_prefetch_vectors(const GemvPlan& plan, int nvec, int sm_count, int64_t l2_bytes,
                                 int unroll = kGemvUnroll) {
  const int64_t lane_vectors = (static_cast<int64_t>(nvec) + plan.split * kGemvLanes - 1) / (plan.split * kGemvLanes);
  const int64_t beyond = lane_vectors - unroll;
  if (beyond <= 0 || l2_bytes <= 0) return 0;
  const int64_t sms = sm_count > 0 ? sm_count : 132;
  const int64_t resident_blocks =
      std::min<int64_t>(plan.blocks, sms * (kGemvMaxResidentThreadsPerSm / kGemvThreads));
  const int64_t per_lane = l2_bytes / 2 / (resident_blocks * kGemvThreads * 16);  // 16-byte vectors
  return static_cast<int>(std::max<int64_t>(0, std::min(beyond, per_lane - unroll)));
}

// Whether the 16-byte path applies: K a multiple of the vector, and W, x and every row of x
// 16-byte aligned (W's rows then are: K * elem_bytes is a multiple of 16). Else the scalar loop.
inline bool gemv_vectorized(int in, int elem_bytes, uintptr_t w, uintptr_t x, int64_t x_row_stride) {
  const int vec = 16 / elem_bytes;
  return in % vec == 0 && w % 16 == 0 && x % 16 == 0 && (x_row_stride * elem_bytes) % 16 == 0;
}

// Which output row, which part of its K range and which lane a thread of a block is.
struct GemvLane {
  int out_row;  // o, the weight row (may be >= out in the last block: such warps compute nothing)
  int warp;     // warp in the block, the slot of its partial sums
  int part;     // warp within the split group, 0..split-1
  int lane;
  int t;        // lane within the split group, 0..split*32-1: its first vector
  int stride;   // vectors between a lane's consecutive vectors (split * 32)
};
// `inter` 0: the plain GEMV, block b's slot s (= warp / split) is row b * rows_per_block + s.
// `inter` I > 0 (a gated activation, out = 2I, rows per block even): slot s < h (h = rows per
// block / 2) is gate row j = b * h + s and slot s + h its up row I + j; a pair past I gets the row
// 2I (nothing to compute).
EFFARCH_HD GemvLane gemv_lane_of(int split, int block, int thread, int inter = 0) {
  GemvLane l;
  l.warp = thread / kGemvLanes;
  l.lane = thread % kGemvLanes;
  l.part = l.warp % split;
  const int slot = l.warp / split, per_block = kGemvWarps / split;
  if (inter == 0) {
    l.out_row = block * per_block + slot;
  } else {
    const int half = per_block / 2, j = block * half + slot % half;
    l.out_row = j < inter ? j + (slot < half ? 0 : inter) : 2 * inter;
  }
  l.t = l.part * kGemvLanes + l.lane;
  l.stride = split * kGemvLanes;
  return l;
}
// A gated activation's view of a lane's row (derived after the sums, from what they kept live):
// its slot in the block, whether it is a gate row (whose threads store act(gate) * up), the
// column of y (j) and the slot of its up row.
struct GemvPair {
  int slot;
  bool gate;
  int column;
  int up_slot;
};
EFFARCH_HD GemvPair gemv_pair_of(const GemvLane& l, int split, int inter) {
  GemvPair q;
  q.slot = l.warp / split;
  q.gate = l.out_row < inter;
  q.column = q.gate ? l.out_row : l.out_row - inter;
  q.up_slot = q.slot + kGemvWarps / split / 2;
  return q;
}

// 16 bytes of W or x, as loaded.
struct GemvChunk {
  unsigned int u[4];
};

// A weight load: read once per step, so no L1 allocation (ld.global.nc.L1::no_allocate).
EFFARCH_HD GemvChunk gemv_load_weights(const void* p) {
  GemvChunk c;
#ifdef __CUDA_ARCH__
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(c.u[0]), "=r"(c.u[1]), "=r"(c.u[2]), "=r"(c.u[3])
      : "l"(p));
#else
  std::memcpy(&c, p, sizeof c);
#endif
  return c;
}
// An x load: every warp reads it (L1 keeps it). A plain load, not the read-only path: x is written
// by the kernel before this one, which under programmatic launch may still be running when this
// kernel starts; the load follows the grid dependency wait, which makes those writes visible.
EFFARCH_HD GemvChunk gemv_load_x(const void* p) {
  GemvChunk c;
#ifdef __CUDA_ARCH__
  const uint4 v = *static_cast<const uint4*>(p);
  c.u[0] = v.x;
  c.u[1] = v.y;
  c.u[2] = v.z;
  c.u[3] = v.w;
#else
  std::memcpy(&c, p, sizeof c);
#endif
  return c;
}

// The 16 / sizeof(T) elements of a chunk widened to fp32, in memory order.
template <typename T>
struct GemvUnpack;
template <>
struct GemvUnpack<float> {
  static constexpr int kVec = 4;
  EFFARCH_HD static void run(const GemvChunk& c, float (&v)[kVec]) {
    EFFARCH_UNROLL
    for (int i = 0; i < kVec; ++i) {
#ifdef __CUDA_ARCH__
      v[i] = __uint_as_float(c.u[i]);
#else
      std::memcpy(&v[i], &c.u[i], sizeof(float));
#endif
    }
  }
};
#ifdef EFFARCH_KERNEL_BUILD
template <>
struct GemvUnpack<__nv_bfloat16> {
  static constexpr int kVec = 8;
  // bf16 is the top half of an fp32: widening is a shift (the low element is the low half-word).
  EFFARCH_HD static void run(const GemvChunk& c, float (&v)[kVec]) {
    EFFARCH_UNROLL
    for (int i = 0; i < 4; ++i) {
      v[2 * i] = __uint_as_float(c.u[i] << 16);
      v[2 * i + 1] = __uint_as_float(c.u[i] & 0xffff0000u);
    }
  }
};
template <>
struct GemvUnpack<__half> {
  static constexpr int kVec = 8;
  EFFARCH_HD static void run(const GemvChunk& c, float (&v)[kVec]) {
    EFFARCH_UNROLL
    for (int i = 0; i < 4; ++i) {
      v[2 * i] = __half2float(__ushort_as_half(static_cast<unsigned short>(c.u[i] & 0xffffu)));
      v[2 * i + 1] = __half2float(__ushort_as_half(static_cast<unsigned short>(c.u[i] >> 16)));
    }
  }
};
#endif

// The vector a lane asks into L2 k-th before its wait (k < gemv_prefetch_vectors): the one after
// its first `unroll` (kGemvUnroll) loads, then on; nvec or more: past the row, not asked.
EFFARCH_HD int gemv_prefetch_vector(int t, int stride, int k, int unroll = kGemvUnroll) {
  return t + (unroll + k) * stride;
}

// One lane's partial sums on the 16-byte path: its vectors t, t + stride, ... of the row (nvec
// vectors), kGemvUnroll weight loads issued before the first is used; acc[r] += W x[r] elementwise
// in memory order with fmaf. Rows at or past `rows` are skipped (R is the compile-time bound).
// The lane's grid dependency wait (common/grid_dependency.h) comes after its first weight loads
// and before its first read of x: under programmatic launch the first kGemvUnroll weight vectors
// of every resident lane stream in while the kernel before this one finishes, and the next
// `prefetch` ones (gemv_prefetch_vectors; 0 with the switch off) are asked into L2 beside them.
// Every lane waits exactly once, also a lane with no vector. kUnroll (kGemvUnroll, or
// kGemvUnrollWide in the measuring variant) is how many loads are in flight, not the sums' order.
template <typename T, int R, int kUnroll = kGemvUnroll>
EFFARCH_HD void gemv_lane_vectorized(const T* w_row, const T* x, int64_t x_row_stride, int rows, int nvec, int t,
                                     int stride, float (&acc)[R], int prefetch = 0) {
  constexpr int V = GemvUnpack<T>::kVec;
  bool waited = false;
  for (int v0 = t; v0 < nvec; v0 += kUnroll * stride) {
    GemvChunk wc[kUnroll] = {};
    EFFARCH_UNROLL
    for (int u = 0; u < kUnroll; ++u) {
      const int v = v0 + u * stride;
      if (v < nvec) wc[u] = gemv_load_weights(w_row + static_cast<int64_t>(v) * V);
    }
    if (!waited) {
      for (int k = 0; k < prefetch; ++k) {
        const int v = gemv_prefetch_vector(t, stride, k, kUnroll);
        if (v >= nvec) break;
        prefetch_l2(w_row + static_cast<int64_t>(v) * V);
      }
      grid_dependency_wait();
      waited = true;
    }
    EFFARCH_UNROLL
    for (int u = 0; u < kUnroll; ++u) {
      const int v = v0 + u * stride;
      if (v >= nvec) break;
      float wf[V];
      GemvUnpack<T>::run(wc[u], wf);
      EFFARCH_UNROLL
      for (int r = 0; r < R; ++r) {
        if (r >= rows) continue;
        float xf[V];
        GemvUnpack<T>::run(gemv_load_x(x + r * x_row_stride + static_cast<int64_t>(v) * V), xf);
        EFFARCH_UNROLL
        for (int i = 0; i < V; ++i) acc[r] = fmaf(wf[i], xf[i], acc[r]);
      }
    }
  }
  if (!waited) grid_dependency_wait();
}

// The scalar path (K not a multiple of the vector, or unaligned rows): elements t, t + stride, ...
// The lane waits for the kernel before this one first (no weight read ahead on this path).
template <typename T, int R>
EFFARCH_HD void gemv_lane_scalar(const T* w_row, const T* x, int64_t x_row_stride, int rows, int in, int t, int stride,
                                 float (&acc)[R]) {
  grid_dependency_wait();
  for (int k = t; k < in; k += stride) {
    const float w = to_float(w_row[k]);
    EFFARCH_UNROLL
    for (int r = 0; r < R; ++r) {
      if (r >= rows) break;
      acc[r] = fmaf(w, to_float(x[r * x_row_stride + k]), acc[r]);
    }
  }
}

// The fused conv update of one (row r, output row o) (GemvConvUpdate), given y[r, o] as the
// kernel stored it: nothing for an output row outside the conv's channels.
template <typename T>
EFFARCH_HD float gemv_conv_param(const void* base, int64_t index, bool fp32) {
  return fp32 ? static_cast<const float*>(base)[index] : to_float(static_cast<const T*>(base)[index]);
}
template <typename T, int kWidth>
EFFARCH_HD void gemv_conv_window(const GemvConvUpdate& c, int row, int channel, T value) {
  float w[kWidth], window[kWidth];
  EFFARCH_UNROLL
  for (int k = 0; k < kWidth; ++k) {
    w[k] = gemv_conv_param<T>(c.weight, channel * c.weight_dim_stride + k * c.weight_width_stride, c.weight_fp32);
  }
  const float bias = c.bias != nullptr ? gemv_conv_param<T>(c.bias, channel * c.bias_stride, c.weight_fp32) : 0.0f;
  T* state = static_cast<T*>(c.state) + row * c.state_row_stride + channel * c.state_dim_stride;
  // The window shifted left by one, the new value last (T -> fp32 -> T is exact for the rest).
  EFFARCH_UNROLL
  for (int k = 0; k + 1 < kWidth; ++k) window[k] = to_float(state[(k + 1) * c.state_width_stride]);
  window[kWidth - 1] = to_float(value);
  const float out = conv1d::conv_output<kWidth>(w, window, bias, c.silu);
  static_cast<T*>(c.out)[row * c.out_row_stride + channel * c.out_dim_stride] = from_float<T>(out);
  EFFARCH_UNROLL
  for (int k = 0; k < kWidth; ++k) state[k * c.state_width_stride] = from_float<T>(window[k]);
}
template <typename T>
EFFARCH_HD void gemv_conv_update(const GemvConvUpdate& c, int row, int out_row, T value) {
  const int channel = out_row - c.begin;
  if (channel < 0 || channel >= c.dim) return;
  switch (c.width) {
    case 2: gemv_conv_window<T, 2>(c, row, channel, value); break;
    case 3: gemv_conv_window<T, 3>(c, row, channel, value); break;
    case 4: gemv_conv_window<T, 4>(c, row, channel, value); break;
    default: break;  // the launcher refuses other widths
  }
}

// The stored value of an output: its sum (with the bias) rounded to T, then, where `activate`, the
// activation of that value with every step rounded to T (act::activate, as the activation kernel
// computes it from the stored projection).
template <typename T>
EFFARCH_HD T gemv_output(float sum, bool activate, ActKind act) {
  const T v = from_float<T>(sum);
  if (!activate) return v;
  return from_float<T>(act::activate(act, to_float(v), [](float x) { return to_float(from_float<T>(x)); }));
}
// Whether output row `out_row` of `out` stores its activation: with a plain activation the rows
// from `a.from` on (every row for from 0); with a gated one the gate rows (the first half), whose
// act(gate) meets its up row's projection.
EFFARCH_HD bool gemv_row_activates(const GemvActivation& a, int out_row, int out) {
  return a.on && (a.gated ? out_row < out / 2 : out_row >= a.from);
}

// A gated activation's output from its pair's stored values, act(gate) and up, each already
// rounded to T: their product, rounded (the gated activation kernel's last step,
// act::activation_element).
template <typename T>
EFFARCH_HD T gemv_gated_output(float act_gate, float up) {
  return from_float<T>(mul_rn(act_gate, up));
}

// An output: the split warps' sums (first[0], first[stride], ...) added in warp order, then the
// bias (0 without one).
EFFARCH_HD float gemv_combine(const float* first, int stride, int split, float bias) {
  float s = first[0];
  for (int j = 1; j < split; ++j) s += first[j * stride];
  return s + bias;
}

}  // namespace effarch::kernels
