#pragma once
// The dense GEMV kernel (gemv.h has the contract, gemv_math.h the plan and the per-lane math),
// templated on the element type and the row count; instantiated per element type in
// gemv_<dtype>.cu. This file is the thin GPU shell: thread indices, the warp's shuffle sum, the
// split warps' shared-memory sum, the stores (and a fused conv update's, gemv_math.h), a gated
// activation's pairing of gate and up rows in shared memory.

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "add_norm/add_norm_io.cuh"
#include "common/block_sum.cuh"
#include "common/convert.cuh"
#include "common/grid_dependency.h"
#include "common/launch.h"
#include "gemv/gemv.h"
#include "gemv/gemv_math.h"
#include "gemv/gemv_norm.h"

namespace effarch::kernels {
namespace gemv_detail {

// The norm prologue's block sum (gemv_norm.h): each warp's butterfly over each of its virtual
// warps' partials, as block_sum's over the add_norm kernel's block, those sums added in virtual
// warp order. Two barriers, like block_sum (the second lets the next sum reuse `red`).
__device__ __forceinline__ float virtual_block_sum(float* red, const float (&part)[gemvnorm::kPerThread], int threads) {
  const int warp = static_cast<int>(threadIdx.x) / kGemvLanes, lane = static_cast<int>(threadIdx.x) % kGemvLanes;
#pragma unroll
  for (int j = 0; j < gemvnorm::kPerThread; ++j) {
    const float s = warp_xor_sum(part[j]);
    const int w = gemvnorm::virtual_warp(warp, j, threads);
    if (lane == 0 && w >= 0) red[w] = s;
  }
  __syncthreads();
  const float total = add_warp_sums(red, threads / kGemvLanes);
  __syncthreads();
  return total;
}

// The norm prologue: the first lanes' weights asked into L2 (they stream while the block computes
// the norm), the norm's weight and bias into L1, the wait for the kernel before, then each row of
// x normed into `xs` (shared memory, rows `in` apart) by the whole block, the first block also
// writing the residual. Every thread of the block runs it (the barriers).
template <typename T>
__device__ __forceinline__ void gemv_norm_prologue(const GemvParams& p, const GemvLane& l, bool active, int ahead,
                                                   T* xs, float* red) {
  using Io = addnorm::TypedIo<T>;
  constexpr int V = GemvUnpack<T>::kVec;
  if (active) {
    const T* w_row = static_cast<const T*>(p.w) + static_cast<int64_t>(l.out_row) * p.in;
    const int nvec = p.in / V;
    for (int k = 0; k < ahead; ++k) {
      const int v = gemv_prefetch_vector(l.t, l.stride, k, 0);  // from the lane's first vector
      if (v >= nvec) break;
      prefetch_l2(w_row + static_cast<int64_t>(v) * V);
    }
  }
  AddNormParams a = p.norm;
  const int tid = static_cast<int>(threadIdx.x), threads = a.threads;  // the launcher's addnorm::threads_of
  addnorm::prefetch_norm_weights(a, tid, kGemvThreads);
  grid_dependency_wait();
  a.normed = xs;
  a.normed_row_stride = p.in;
  if (blockIdx.x != 0) a.residual_out = nullptr;
  for (int r = 0; r < p.rows; ++r) {
    float part[gemvnorm::kPerThread];
    gemvnorm::add_partials<Io>(a, r, tid, threads, part);
    const float first = virtual_block_sum(red, part, threads);
    float second = 0.0f;
    if (a.norm == NormType::kLayer) {
      gemvnorm::variance_partials<Io>(a, r, tid, threads, addnorm::mean_of(first, a.dim), part);
      second = virtual_block_sum(red, part, threads);
    }
    gemvnorm::norm_writes<Io>(a, r, tid, threads, first, second);
  }
  __syncthreads();  // the normed rows in shared memory before any warp reads them
}

// kGated: a gated activation (GemvActivation::gated), its own instantiation so that the plain
// kernel keeps its registers (40 at one row on sm_90; the pairing's barrier and bookkeeping in the
// same body took 44-46), and only for the rows a decode step fuses (kGemvGatedMaxRows).
// kUnroll: weight loads in flight a lane (kGemvUnroll; kGemvUnrollWide in the measuring variant).
// kNorm: the norm prologue (GemvParams::norm; the 16-byte path, R <= gemvnorm::kMaxRows): x is the
// block's normed copy in dynamic shared memory, and `prefetch` the vectors a lane asks into L2
// before the prologue (its first kUnroll and more).
// The prologue's batches of loads would hold 113-128 registers a thread (the compiler overlaps
// both virtual threads' reads), two blocks an SM: kNorm asks for four blocks (64 registers), the
// loads in flight in the products (32 warps x 4 x 16 bytes a lane) well past what the copy
// bandwidth needs. The others ask for none (0): a minimum of one block an SM took the plain
// one-row kernel from 40 to 44 registers on sm_90, six blocks an SM to five.
template <typename T, int R, bool kVectorized, bool kGated, int kUnroll = kGemvUnroll, bool kNorm = false>
__global__ void __launch_bounds__(kGemvThreads, kNorm ? 4 : 0) gemv_kernel(const GemvParams p, const int split,
                                                                          const int prefetch) {
  __shared__ float partial[kGemvWarps][R];
  __shared__ float pair_value[kGated ? kGemvWarps : 1][R];  // gated: each row's stored value, for its pair
  __shared__ float norm_red[kNorm ? addnorm::kMaxThreads / kGemvLanes : 1];  // the prologue's warp sums
  EFFARCH_DYNAMIC_SHARED(16, unsigned char, gemv_normed_x);         // kNorm: [rows, in] of T
  allow_dependent_launch();
  const GemvLane l = gemv_lane_of(split, static_cast<int>(blockIdx.x), static_cast<int>(threadIdx.x),
                                  kGated ? p.out / 2 : 0);
  float acc[R];
#pragma unroll
  for (int r = 0; r < R; ++r) acc[r] = 0.f;
  const bool active = l.out_row < p.out;  // the last block's spare warps still reach the barriers
  if constexpr (kNorm) gemv_norm_prologue<T>(p, l, active, prefetch, reinterpret_cast<T*>(gemv_normed_x), norm_red);
  if (active) {
    const T* w_row = static_cast<const T*>(p.w) + static_cast<int64_t>(l.out_row) * p.in;
    const T* x = static_cast<const T*>(p.x);
    if constexpr (kNorm) {  // x: the block's normed rows; the weights were asked before the prologue
      gemv_lane_vectorized<T, R, kUnroll>(w_row, reinterpret_cast<const T*>(gemv_normed_x), p.in, p.rows,
                                          p.in / GemvUnpack<T>::kVec, l.t, l.stride, acc, 0);
    } else if constexpr (kVectorized) {
      gemv_lane_vectorized<T, R, kUnroll>(w_row, x, p.x_row_stride, p.rows, p.in / GemvUnpack<T>::kVec, l.t,
                                          l.stride, acc, prefetch);
    } else {
      gemv_lane_scalar<T, R>(w_row, x, p.x_row_stride, p.rows, p.in, l.t, l.stride, acc);
    }
  } else {
    grid_dependency_wait();  // the lane functions wait in every active lane; the spare ones too
  }
#pragma unroll
  for (int r = 0; r < R; ++r) {
#pragma unroll
    for (int offset = kGemvLanes / 2; offset > 0; offset /= 2) acc[r] += __shfl_xor_sync(0xffffffffu, acc[r], offset);
  }
  T* y = static_cast<T*>(p.y);
  const T* bias = static_cast<const T*>(p.bias);
  // The output (row r, weight row o) from its sum: stored (with a fused activation or conv), or,
  // gated, kept in shared memory for its pair (a gate row's activated).
  const auto finish = [&](int r, float sum) {
    const T v = gemv_output<T>(sum, gemv_row_activates(p.activation, l.out_row, p.out), p.activation.act);
    if constexpr (kGated) {
      pair_value[l.warp / split][r] = to_float(v);
    } else {
      y[r * p.y_row_stride + l.out_row] = v;
      if (p.conv.dim > 0) gemv_conv_update<T>(p.conv, r, l.out_row, v);
    }
  };
  if (split == 1) {
    if (active && l.lane == 0) {
      const float b = bias != nullptr ? to_float(bias[l.out_row]) : 0.f;
#pragma unroll
      for (int r = 0; r < R; ++r) {
        if (r < p.rows) finish(r, gemv_combine(&acc[r], 1, 1, b));
      }
    }
  } else {
    if (l.lane == 0) {
#pragma unroll
      for (int r = 0; r < R; ++r) partial[l.warp][r] = acc[r];
    }
    __syncthreads();
    // Lane r of the group's first warp finishes row r.
    if (active && l.part == 0 && l.lane < R && l.lane < p.rows) {
      const float b = bias != nullptr ? to_float(bias[l.out_row]) : 0.f;
      finish(l.lane, gemv_combine(&partial[l.warp][l.lane], R, split, b));
    }
  }
  if constexpr (kGated) {
    __syncthreads();
    // Lane r of a gate row's first warp stores act(gate) * up for row r; its up row is h slots on.
    const GemvPair q = gemv_pair_of(l, split, p.out / 2);
    if (active && q.gate && l.part == 0 && l.lane < R && l.lane < p.rows) {
      y[l.lane * p.y_row_stride + q.column] = gemv_gated_output<T>(pair_value[q.slot][l.lane], pair_value[q.up_slot][l.lane]);
    }
  }
}

template <typename T, int R>
LaunchStatus gemv_launch(const GemvParams& p, cudaStream_t stream) {
  if (p.conv.dim > 0 && (p.conv.width < 2 || p.conv.width > 4 || p.conv.begin < 0 || p.conv.begin + p.conv.dim > p.out)) {
    return {cudaErrorInvalidValue, "gemv: the fused conv update needs width 2..4 and channels inside the outputs"};
  }
  if (p.conv.dim > 0 && p.activation.on) return {cudaErrorInvalidValue, "gemv: a conv update or an activation, not both"};
  const bool gated = p.activation.gated;
  if (gated && (!p.activation.on || p.out % 2 != 0 || p.rows > kGemvGatedMaxRows)) {
    return {cudaErrorInvalidValue, "gemv: a gated activation needs the activation on, an even number of rows (gate "
                                   "then up) and at most kGemvGatedMaxRows rows of x"};
  }
  if (p.activation.on && (p.activation.from < 0 || p.activation.from >= p.out || (gated && p.activation.from != 0))) {
    return {cudaErrorInvalidValue, "gemv: an activation's first row must lie inside the outputs (0 for a gated one)"};
  }
  if (p.unroll != 0 && p.unroll != kGemvUnroll && p.unroll != kGemvUnrollWide) {
    return {cudaErrorInvalidValue, "gemv: unroll must be 0, 4 or 8"};
  }
  if (!gemv_split_valid(p.split, gated)) {
    return {cudaErrorInvalidValue, "gemv: split must be 0 (the plan's), 1, 2, 4 or 8 warps a row (at most 4 with a "
                                   "gated activation)"};
  }
  const GemvPlan plan = gemv_plan(p.out, p.in, GemvUnpack<T>::kVec, p.sm_count, gated, p.split);
  constexpr const char* kWhat = "gemv kernel launch";
  if (p.norm.dim > 0) {
    if (const char* why = gemvnorm::refusal(p.norm, p.rows, p.in, p.x_type)) return {cudaErrorInvalidValue, why};
    if (p.unroll == kGemvUnrollWide) return {cudaErrorInvalidValue, "gemv: the norm prologue runs the default unroll"};
    if (!gemv_vectorized(p.in, static_cast<int>(sizeof(T)), reinterpret_cast<uintptr_t>(p.w), 0, p.in)) {
      return {cudaErrorInvalidValue, "gemv: the norm prologue needs the 16-byte path (inputs a multiple of 16 bytes, "
                                     "the weight 16-byte aligned)"};
    }
    if constexpr (R <= gemvnorm::kMaxRows) {
      // Every resident lane's first weights and the next ones (within half the L2) asked before
      // the prologue, whether or not the kernel may start early: they stream while it runs.
      const int ahead = kGemvUnroll + gemv_prefetch_vectors(plan, p.in / GemvUnpack<T>::kVec, p.sm_count, p.l2_bytes);
      const size_t shared = static_cast<size_t>(gemvnorm::shared_bytes(p.rows, p.in, static_cast<int>(sizeof(T))));
      GemvParams q = p;
      q.norm.threads = addnorm::threads_of(p.norm);  // the add_norm kernel's threads a row: the virtual threads
      return launch_kernel(gated ? gemv_kernel<T, R, true, true, kGemvUnroll, true>
                                 : gemv_kernel<T, R, true, false, kGemvUnroll, true>,
                           dim3(plan.blocks), dim3(kGemvThreads), shared, stream, kWhat, q, plan.split, ahead);
    }
  }
  const bool vectorized = gemv_vectorized(p.in, static_cast<int>(sizeof(T)), reinterpret_cast<uintptr_t>(p.w),
                                          reinterpret_cast<uintptr_t>(p.x), p.x_row_stride);
  // The measuring variant: one row of x, the 16-byte path, no gated activation (else the default).
  const bool wide = R == 1 && vectorized && !gated && p.unroll == kGemvUnrollWide;
  // Weights asked into L2 before the wait only when the kernel may start early (--pdl): with the
  // switch off the wait returns at once and the kernel is the one measured before the prefetch.
  const int prefetch = vectorized && programmatic_launch_enabled()
                           ? gemv_prefetch_vectors(plan, p.in / GemvUnpack<T>::kVec, p.sm_count, p.l2_bytes,
                                                   wide ? kGemvUnrollWide : kGemvUnroll)
                           : 0;
  if constexpr (R == 1) {
    if (wide) {
      return launch_kernel(gemv_kernel<T, 1, true, false, kGemvUnrollWide>, dim3(plan.blocks), dim3(kGemvThreads), 0,
                           stream, kWhat, p, plan.split, prefetch);
    }
  }
  if constexpr (R <= kGemvGatedMaxRows) {
    if (gated) {
      return launch_kernel(vectorized ? gemv_kernel<T, R, true, true> : gemv_kernel<T, R, false, true>,
                           dim3(plan.blocks), dim3(kGemvThreads), 0, stream, kWhat, p, plan.split, prefetch);
    }
  }
  return launch_kernel(vectorized ? gemv_kernel<T, R, true, false> : gemv_kernel<T, R, false, false>, dim3(plan.blocks),
                       dim3(kGemvThreads), 0, stream, kWhat, p, plan.split, prefetch);
}

}  // namespace gemv_detail

template <typename T>
LaunchStatus gemv_cuda(const GemvParams& p, cudaStream_t stream) {
  using namespace gemv_detail;
  if (p.out == 0 || p.rows == 0) return {};
  switch (p.rows) {
    case 1: return gemv_launch<T, 1>(p, stream);
    case 2: return gemv_launch<T, 2>(p, stream);
    case 3: case 4: return gemv_launch<T, 4>(p, stream);
    case 5: case 6: case 7: case 8: return gemv_launch<T, 8>(p, stream);
    default: return {cudaErrorInvalidValue, "gemv: rows must be 1..8"};
  }
}

}  // namespace effarch::kernels
