#pragma once
// The rows GEMM's plan and per-block math (rows_gemm.h has the contract), shared by the kernels
// (rows_gemm.cuh) and a CPU test that runs them block by block, warp by warp
// (tests/ops/rows_gemm_test.cpp): the tile products go through common/tile_mma.h, which is wmma
// on the GPU and plain loops on the host. Functions marked EFFARCH_HD are the kernels' own code;
// the plan and the applicability checks are host functions the binding and the launcher call.
//
// Layout of a launch: block (f, s) computes output features f * 128 .. f * 128 + 127 of every row
// of x over the K range of split s. Its 8 warps own 16 features each; the block walks its K range
// in slabs of 64: the 256 threads stage x's rows for the slab in shared memory (16-byte copies,
// zeros past the last row: the 16-row tiles of x are whole), then each warp multiplies its 16
// weight rows, read straight from global memory as 16x16 tiles (their 32-byte runs are each read
// once, by one warp), against the slab's x tiles: y tile (16 rows of x x 16 features) += x tile
// W^T tile, fp32 accumulators, one per 16 rows of x. The weights are read once in all; x, a few KB a
// slab, once per block from L2. Each warp stores its fp32 sums into its split's partial buffer;
// a second kernel adds the splits in split order, adds the bias and rounds once to the element
// type. No atomics: the same bits every run.

#include <cstdint>
#include <cstring>

#include "common/host_device.h"
#include "common/tile_mma.h"
#include "rows_gemm/rows_gemm_params.h"

namespace effarch::kernels {

inline constexpr int kRowsGemmMinRows = 9;   // fewer: the dense GEMV (kernels/gemv)
inline constexpr int kRowsGemmMaxRows = 64;  // more: cuBLAS
inline constexpr int kRowsGemmWarps = 8;
inline constexpr int kRowsGemmThreads = kRowsGemmWarps * 32;
inline constexpr int kRowsGemmFeatures = kRowsGemmWarps * tile::kDim;  // output features a block
inline constexpr int kRowsGemmSlab = 64;                               // K a slab of x holds
inline constexpr int kRowsGemmXsLd = kRowsGemmSlab + 8;  // a slab row's stride: 144 bytes, rows 16 bytes apart in banks
inline constexpr int kRowsGemmMaxFrags = kRowsGemmMaxRows / tile::kDim;
inline constexpr int kRowsGemmChunk = 8;             // elements a staging copy moves (16 bytes)
inline constexpr int kRowsGemmBlocksWanted = 2;      // blocks per SM the split aims for
inline constexpr int kRowsGemmMinSplitK = 256;       // K a split keeps at least (four slabs)
inline constexpr int kRowsGemmMaxSplits = 16;
inline constexpr int kRowsGemmReduceThreads = 256;

struct RowsGemmPlan {
  int feature_blocks = 0;  // grid x: ceil(N / 128)
  int splits = 1;          // grid y: K ranges of split_k (the last takes the rest)
  int split_k = 0;         // a multiple of the slab
  int frags = 0;           // 16-row tiles of x: ceil(R / 16)
  int rows_pad = 0;        // frags * 16: the partial buffer's rows
};

// The plan for N = out features of K = in, R = rows, on `sm_count` SMs (0: 132). The split
// doubles while the blocks fall short of kRowsGemmBlocksWanted per SM, each split keeps at least
// kRowsGemmMinSplitK of K, and the partial sums written and read (splits x rows_pad x N fp32, twice)
// stay within a quarter of the weight's bytes (N x K x 2): splits x rows_pad x 16 <= K.
inline RowsGemmPlan rows_gemm_plan(int out, int in, int rows, int sm_count) {
  RowsGemmPlan p;
  p.feature_blocks = (out + kRowsGemmFeatures - 1) / kRowsGemmFeatures;
  p.frags = (rows + tile::kDim - 1) / tile::kDim;
  p.rows_pad = p.frags * tile::kDim;
  const int64_t sms = sm_count > 0 ? sm_count : 132;
  int splits = 1;
  while (splits < kRowsGemmMaxSplits && int64_t{p.feature_blocks} * splits < kRowsGemmBlocksWanted * sms &&
         in / (2 * splits) >= kRowsGemmMinSplitK && int64_t{2} * splits * p.rows_pad * 16 <= in) {
    splits *= 2;
  }
  const int slabs = (in + kRowsGemmSlab - 1) / kRowsGemmSlab;
  p.split_k = (slabs + splits - 1) / splits * kRowsGemmSlab;
  p.splits = (in + p.split_k - 1) / p.split_k;  // no empty split
  return p;
}

// The shape conditions: R in kRowsGemmMinRows..kRowsGemmMaxRows, N and K multiples of 16 (whole
// 16x16 weight tiles: wmma cannot mask), sizes that fit an int with a slab to spare. The binding checks the rest
// (dtype, contiguity, alignment: rows_gemm_aligned).
inline bool rows_gemm_shape_ok(int64_t rows, int64_t out, int64_t in) {
  return rows >= kRowsGemmMinRows && rows <= kRowsGemmMaxRows && out > 0 && in > 0 && out % tile::kDim == 0 &&
         in % tile::kDim == 0 && out <= INT32_MAX && in <= INT32_MAX - kRowsGemmSlab;  // (the plan's int sums)
}
// wmma reads a weight tile from a 32-byte aligned address (W's base: every tile then is, N and K
// being multiples of 16) and the staging copies x in 16-byte pieces (x's base, and its row stride
// a multiple of 8 elements); the partial buffer is written as 32-byte aligned fp32 tiles.
inline bool rows_gemm_weight_aligned(const void* w) { return reinterpret_cast<uintptr_t>(w) % 32 == 0; }
inline bool rows_gemm_x_aligned(const void* x, int64_t x_row_stride) {
  return reinterpret_cast<uintptr_t>(x) % 16 == 0 && x_row_stride % kRowsGemmChunk == 0;
}
inline bool rows_gemm_aligned(const void* w, const void* x, int64_t x_row_stride, const void* partial) {
  return rows_gemm_weight_aligned(w) && rows_gemm_x_aligned(x, x_row_stride) &&
         reinterpret_cast<uintptr_t>(partial) % 32 == 0;
}

// Block (f, s)'s features and K range.
struct RowsGemmBlock {
  int n_base, k_begin, k_end;
};
EFFARCH_HD RowsGemmBlock rows_gemm_block(const RowsGemmParams& p, const RowsGemmPlan& plan, int f, int s) {
  RowsGemmBlock b;
  b.n_base = f * kRowsGemmFeatures;
  b.k_begin = s * plan.split_k;
  b.k_end = b.k_begin + plan.split_k < p.in ? b.k_begin + plan.split_k : p.in;
  return b;
}

// 16 bytes of T copied (x into the slab), or zeroed.
template <typename T>
EFFARCH_HD void rows_gemm_copy_chunk(T* dst, const T* src) {
#ifdef __CUDA_ARCH__
  *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(src);
#else
  std::memcpy(dst, src, kRowsGemmChunk * sizeof(T));
#endif
}
template <typename T>
EFFARCH_HD void rows_gemm_zero_chunk(T* dst) {
#ifdef __CUDA_ARCH__
  *reinterpret_cast<uint4*>(dst) = make_uint4(0, 0, 0, 0);
#else
  std::memset(dst, 0, kRowsGemmChunk * sizeof(T));
#endif
}

// Thread `tid` of `nthreads`' part of staging x[0 .. rows_pad, k0 .. k0 + 64) into the slab xs
// ([rows_pad][kRowsGemmXsLd]): 16-byte chunks c = tid, tid + nthreads, ... (row c / 8, columns
// 8 (c % 8) ..), zeros for rows past R and columns at or past k_end (k_end - k0 is a multiple of
// 16, so a chunk is wholly in or out).
template <typename T>
EFFARCH_HD void rows_gemm_stage_x(const RowsGemmParams& p, int rows_pad, int k0, int k_end, int tid, int nthreads,
                                  T* xs) {
  constexpr int kChunksPerRow = kRowsGemmSlab / kRowsGemmChunk;
  const T* x = static_cast<const T*>(p.x);
  for (int c = tid; c < rows_pad * kChunksPerRow; c += nthreads) {
    const int r = c / kChunksPerRow, col = (c % kChunksPerRow) * kRowsGemmChunk;
    T* dst = xs + r * kRowsGemmXsLd + col;
    if (r < p.rows && k0 + col < k_end) {
      rows_gemm_copy_chunk(dst, x + r * p.x_row_stride + k0 + col);
    } else {
      rows_gemm_zero_chunk(dst);
    }
  }
}

// A warp's products over one slab: its 16 weight rows from n0, the k-steps of 16 up to k_len
// (a multiple of 16, at most 64), against the slab's kFrags tiles of 16 rows. The slab's (up to
// four) weight tiles are loaded before the first product, so their reads are in flight together.
template <typename T, int kFrags>
EFFARCH_HD void rows_gemm_warp_slab(const RowsGemmParams& p, int n0, int k0, int k_len, const T* xs,
                                    tile::FragAcc (&acc)[kFrags]) {
  constexpr int kSteps = kRowsGemmSlab / tile::kDim;
  const T* w = static_cast<const T*>(p.w) + static_cast<int64_t>(n0) * p.in + k0;
  tile::FragB<T, tile::ColMajor> b[kSteps];  // W [n][k] row-major is the (k, n) operand column-major
  EFFARCH_UNROLL
  for (int s = 0; s < kSteps; ++s) {
    if (s * tile::kDim < k_len) tile::load(b[s], w + s * tile::kDim, p.in);
  }
  EFFARCH_UNROLL
  for (int s = 0; s < kSteps; ++s) {
    if (s * tile::kDim >= k_len) break;
    EFFARCH_UNROLL
    for (int i = 0; i < kFrags; ++i) {
      tile::FragA<T, tile::RowMajor> a;
      tile::load(a, xs + i * tile::kDim * kRowsGemmXsLd + s * tile::kDim, kRowsGemmXsLd);
      tile::mma(acc[i], a, b[s]);
    }
  }
}

// The warp's fp32 sums into its split's partial buffer [splits][rows_pad][N]: tile i holds rows
// 16 i .. 16 i + 15 (x's rows, the accumulator's m) of features n0 .. n0 + 15 (its n).
template <int kFrags>
EFFARCH_HD void rows_gemm_store(const RowsGemmParams& p, const RowsGemmPlan& plan, int split, int n0,
                                const tile::FragAcc (&acc)[kFrags]) {
  EFFARCH_UNROLL
  for (int i = 0; i < kFrags; ++i) {
    float* at = p.partial + (static_cast<int64_t>(split) * plan.rows_pad + i * tile::kDim) * p.out + n0;
    tile::store(at, acc[i], p.out);
  }
}

// y[r, n]: the splits' sums added in split order, then the bias, rounded once to T.
template <typename T>
EFFARCH_HD T rows_gemm_output(const RowsGemmParams& p, const RowsGemmPlan& plan, int r, int n) {
  float s = 0.0f;
  for (int q = 0; q < plan.splits; ++q) s += p.partial[(static_cast<int64_t>(q) * plan.rows_pad + r) * p.out + n];
  if (p.bias != nullptr) s += to_float(static_cast<const T*>(p.bias)[n]);
  return from_float<T>(s);
}

}  // namespace effarch::kernels
