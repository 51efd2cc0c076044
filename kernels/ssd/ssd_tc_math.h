#pragma once
// The tensor-core path of the chunked SSD scan (bf16 / fp16 inputs): stage 2 (chunk states) and
// stage 4 (chunk outputs) as 16x16x16 tile products with fp32 accumulation (common/tile_mma.h),
// stages 1 and 3 unchanged (ssd_math.h). Shared by the kernels (ssd_chunk_scan_tc.cuh) and their
// host emulation (tests/ops/ssd_cuda_test.cpp): per-thread phases take (tid, nthreads), per-warp
// phases take the warp and are the only code touching fragments; the .cuh shell adds the thread
// mapping and the barriers between phases.
//
// Io (ssd_common.cuh on the GPU, the test's on the host) adds to ssd_math.h's interface
//   using Elem = ...;                                  // the operands' element in shared memory
//   static Elem to_elem(ElementType type, float v);    // v rounded to `type` (nearest even)
// Elem is the input type on the GPU and float (holding rounded values) on the host.
//
// Rounding as mamba_ssm's Triton kernels (ssd_chunk_state.py, ssd_chunk_scan.py): operands enter
// the products in the input dtype, products accumulate in fp32:
//   stage 2: own[pd, n] = sum_s x[s, pd] round(B[s, n] (exp(cs[Q-1] - cs[s]) dt[s]))
//   stage 4: y[l, pd]   = exp(cs[l]) sum_n C[l, n] round(start[n, pd])
//                       + sum_{s <= l} round((C[l] . B[s]) exp(cs[l] - cs[s]) dt[s]) x[s, pd]
//                       + D x[l, pd]
// (C B^T itself is an fp32 accumulation of input-dtype operands.) Within a chunk the decays are
// exp(cs[l] - cs[s]) (Triton's), not the FMA path's segment and suffix sums: the difference of two fp32
// prefix sums of size |cs| is off by about |cs| 2^-23, a relative error of the decay far below
// the bf16 / fp16 rounding of the score it scales for |cs| < 2^10, and it keeps every element of
// the score tile independent. docs/mamba2.md states the resulting tolerances.
//
// Padding: d_state to a multiple of 16, head_dim to the 64-column tile, and the chunk's tokens to
// the 64-token step are zeros in shared memory; masked scores are zeros.

#include "common/staged_copy.h"
#include "common/tile_mma.h"
#include "ssd/ssd_math.h"

namespace effarch::kernels::ssd {

inline constexpr int kTcWarps = 4;
inline constexpr int kTcThreads = kTcWarps * kWarpSize;  // 128
inline constexpr int kTcRows = kTcWarps * tile::kDim;    // 64 tokens (rows) per stage-4 block, 16 per warp
inline constexpr int kTcCols = 64;                       // head channels per block (both stages)
inline constexpr int kTcStates = 64;                     // state entries per stage-2 block
inline constexpr int kTcTokens = 64;                     // the K step over the chunk's tokens
inline constexpr int kTcMaxDState = 128;                 // stage 4 keeps C and a B tile of all N in shared memory
// Row padding of the shared tiles (elements): 16-bit rows of 8 more, fp32 rows of 4 more, so
// successive rows start in other banks; both keep wmma's ld and 32-byte alignment rules.
inline constexpr int kTcPadElem = 8;
inline constexpr int kTcPadFloat = 4;

// Sizes shared by the host launchers and the kernels (constexpr: nvcc's relaxed constexpr makes
// them callable on both sides).
constexpr int tc_round16(int v) { return (v + tile::kDim - 1) / tile::kDim * tile::kDim; }
constexpr int tc_ld_state(int d_state) { return tc_round16(d_state) + kTcPadElem; }  // C, B rows (N)
inline constexpr int kTcLdCols = kTcCols + kTcPadElem;  // x and scaled-B rows, scores in the input type
inline constexpr int kTcLdAcc = kTcCols + kTcPadFloat;  // fp32 tiles
static_assert(kTcStates == kTcCols && kTcTokens == kTcCols && kTcRows == kTcCols,
              "the shared tiles share one row length");
constexpr int64_t tc_align(int64_t bytes) { return (bytes + 31) / 32 * 32; }  // wmma's 32-byte alignment
constexpr int tc_col_tiles(int head_dim) { return (head_dim + kTcCols - 1) / kTcCols; }
constexpr int tc_state_tiles(int d_state) { return (d_state + kTcStates - 1) / kTcStates; }
constexpr int tc_row_tiles(int chunk) { return (chunk + kTcRows - 1) / kTcRows; }

// Whether rows of an operand can move eight elements at a time: unit column stride, the valid
// columns a multiple of 8, every other stride a multiple of 8 elements and the base aligned to
// 8 elements (16 bytes in bf16 / fp16). The model's views (x, B and C cut from the conv's output,
// Codestral's d_state 128 and head_dim 64) qualify; anything else takes the element-wise path.
EFFARCH_HD bool tc_rows_vec8(const void* base, ElementType type, int64_t col_stride, int cols, int64_t s1, int64_t s2,
                             int64_t s3) {
  const auto bytes = static_cast<uint64_t>(8 * element_bytes(type));
  return col_stride == 1 && cols % 8 == 0 && s1 % 8 == 0 && s2 % 8 == 0 && s3 % 8 == 0 &&
         reinterpret_cast<uintptr_t>(base) % bytes == 0;
}
// rows x cols_pad elements into dst (row r at dst + r * ld), eight at a time: row r from
// src[origin + r * row_stride + ...] where r < rows_valid and the column below cols_valid, else zeros.
template <class Io>
EFFARCH_HD void tc_copy_rows_vec8(const SsdScanParams& p, const void* src, int64_t origin, int64_t row_stride,
                                  int rows, int rows_valid, int cols_valid, int cols_pad, int tid, int nthreads,
                                  typename Io::Elem* dst, int ld) {
  const int per_row = cols_pad / 8;
  staged_copy<4>(  // four 16-byte reads in flight: 16 registers, not the 32 of eight
      rows * per_row, tid, nthreads,
      [&](int i) {
        const int r = i / per_row, col = i % per_row * 8;
        return r < rows_valid && col < cols_valid ? Io::load8(src, origin + r * row_stride + col, p.x_type)
                                                  : Io::zero8();
      },
      [&](int i, const typename Io::Vec8& v) { Io::store8(dst + (i / per_row) * ld + i % per_row * 8, v); });
}

// ---------------------------------------------------------------------------------------------
// Stage 2: block (P tile, N tile) x head x (batch, chunk): own[pd, n] over the chunk's tokens.

template <class E>
struct TcStateShared {
  float* decay;  // [Q] exp(sum of dt A after the token)
  E* x;          // [kTcTokens][kTcLdCols]  x[s, pd]
  E* b;          // [kTcTokens][kTcLdCols]  round(B[s, n] decay[s] dt[s])
  float* out;    // [kTcCols][kTcLdAcc]     the accumulators, stored for the masked write
};
// Byte offsets of the regions (elem_bytes: sizeof(E)); `total` is the dynamic shared memory.
struct TcStateOffsets {
  int64_t decay, x, b, out, total;
};
constexpr TcStateOffsets tc_state_offsets(int chunk, int elem_bytes) {
  TcStateOffsets o{};
  o.decay = 0;
  o.x = o.decay + tc_align(4 * static_cast<int64_t>(chunk));
  o.b = o.x + tc_align(static_cast<int64_t>(elem_bytes) * kTcTokens * kTcLdCols);
  o.out = o.b + tc_align(static_cast<int64_t>(elem_bytes) * kTcTokens * kTcLdCols);
  o.total = o.out + tc_align(4 * static_cast<int64_t>(kTcCols) * kTcLdAcc);
  return o;
}
template <class E>
EFFARCH_HD TcStateShared<E> tc_state_shared(char* base, int chunk) {
  const TcStateOffsets o = tc_state_offsets(chunk, static_cast<int>(sizeof(E)));
  TcStateShared<E> sh;
  sh.decay = reinterpret_cast<float*>(base + o.decay);
  sh.x = reinterpret_cast<E*>(base + o.x);
  sh.b = reinterpret_cast<E*>(base + o.b);
  sh.out = reinterpret_cast<float*>(base + o.out);
  return sh;
}

// Phase 1: decay[q] = exp(cs[Q-1] - cs[q]), the decay from token q to the chunk's end, every
// thread its own tokens (Triton's form, as the scores' decays below; the FMA path's suffix sums
// take one thread O(Q) exps per block).
EFFARCH_HD void tc_state_decay(const SsdScanParams& p, int b, int h, int c, int tid, int nthreads, float* decay) {
  const float* cs = p.cs_ws + ws_index(p, b, h, c, 0);
  const float last = cs[p.chunk - 1];
  for (int q = tid; q < p.chunk; q += nthreads) decay[q] = expf(last - cs[q]);
}

// Phase 2 (per K step s0, between barriers): the x and scaled-B tiles of tokens [s0, s0 + 64).
template <class Io>
EFFARCH_HD void tc_state_load(const SsdScanParams& p, int b, int c, int h, int pd0, int n0, int s0, int tid,
                              int nthreads, const TcStateShared<typename Io::Elem>& sh) {
  const int g = group_of(p, h), valid = chunk_tokens(p, c);
  const int64_t t0 = static_cast<int64_t>(c) * p.chunk;
  const float* dt = p.dt_ws + ws_index(p, b, h, c, 0);
  const int x_cols = p.head_dim - pd0 < kTcCols ? p.head_dim - pd0 : kTcCols;
  const int b_cols = p.d_state - n0 < kTcStates ? p.d_state - n0 : kTcStates;
  const int rows_valid = rows_left(valid, s0, kTcTokens);
  if (tc_rows_vec8(p.x, p.x_type, p.x_dim_stride, x_cols, p.x_batch_stride, p.x_time_stride, p.x_head_stride) &&
      tc_rows_vec8(p.B, p.x_type, p.B_state_stride, b_cols, p.B_batch_stride, p.B_time_stride, p.B_group_stride)) {
    // Eight at a time (tc_rows_vec8): x unchanged, B widened, scaled by its row's decay dt, rounded.
    tc_copy_rows_vec8<Io>(p, p.x, b * p.x_batch_stride + (t0 + s0) * p.x_time_stride + h * p.x_head_stride + pd0,
                          p.x_time_stride, kTcTokens, rows_valid, x_cols, kTcCols, tid, nthreads, sh.x, kTcLdCols);
    constexpr int kPerRow = kTcStates / 8;
    const int64_t origin = b * p.B_batch_stride + (t0 + s0) * p.B_time_stride + g * p.B_group_stride + n0;
    staged_copy<4>(
        kTcTokens * kPerRow, tid, nthreads,
        [&](int i) {
          const int j = i / kPerRow, col = i % kPerRow * 8;
          return j < rows_valid && col < b_cols ? Io::load8(p.B, origin + j * p.B_time_stride + col, p.x_type)
                                                : Io::zero8();
        },
        [&](int i, const typename Io::Vec8& v) {
          const int j = i / kPerRow, col = i % kPerRow * 8;
          float f[8];
          Io::unpack8(v, p.x_type, f);
          const float scale = j < rows_valid ? sh.decay[s0 + j] * dt[s0 + j] : 0.0f;
          for (int k = 0; k < 8; ++k) f[k] = col + k < b_cols ? f[k] * scale : 0.0f;
          Io::store8(sh.b + j * kTcLdCols + col, Io::pack8(p.x_type, f));
        });
    return;
  }
  struct XB {
    float x, b;  // x[s, pd] and B[s, n], as read
  };
  staged_copy(
      kTcTokens * kTcCols, tid, nthreads,
      [&](int i) {
        const int j = i / kTcCols, col = i % kTcCols, s = s0 + j;
        XB v{0.0f, 0.0f};
        if (s < valid && pd0 + col < p.head_dim) {
          v.x = Io::load(p.x, b * p.x_batch_stride + (t0 + s) * p.x_time_stride + h * p.x_head_stride +
                                  (pd0 + col) * p.x_dim_stride,
                         p.x_type);
        }
        if (s < valid && n0 + col < p.d_state) {
          v.b = Io::load(p.B, b * p.B_batch_stride + (t0 + s) * p.B_time_stride + g * p.B_group_stride +
                                  (n0 + col) * p.B_state_stride,
                         p.x_type);
        }
        return v;
      },
      [&](int i, const XB& v) {
        const int j = i / kTcCols, col = i % kTcCols, s = s0 + j;
        const float bv = s < valid && n0 + col < p.d_state ? v.b * (sh.decay[s] * dt[s]) : 0.0f;
        sh.x[j * kTcLdCols + col] = Io::to_elem(p.x_type, v.x);
        sh.b[j * kTcLdCols + col] = Io::to_elem(p.x_type, bv);
      });
}

EFFARCH_HD void tc_zero(tile::FragAcc (&acc)[kTcCols / tile::kDim]) {
  for (int jj = 0; jj < kTcCols / tile::kDim; ++jj) tile::zero(acc[jj]);
}

// Phase 3, warp w: rows pd0 + 16 w .. of the tile, all 64 state columns: acc[jj] += x^T b.
template <class E>
EFFARCH_HD void tc_state_mma(int warp, const TcStateShared<E>& sh, tile::FragAcc (&acc)[kTcStates / tile::kDim]) {
  for (int kk = 0; kk < kTcTokens; kk += tile::kDim) {
    tile::FragA<E, tile::ColMajor> a;  // (m = pd, k = s) at x[s][pd]
    tile::load(a, sh.x + kk * kTcLdCols + warp * tile::kDim, kTcLdCols);
    for (int jj = 0; jj < kTcStates / tile::kDim; ++jj) {
      tile::FragB<E, tile::RowMajor> bf;  // (k = s, n) at b[s][n]
      tile::load(bf, sh.b + kk * kTcLdCols + jj * tile::kDim, kTcLdCols);
      tile::mma(acc[jj], a, bf);
    }
  }
}
template <class E>
EFFARCH_HD void tc_state_store_warp(int warp, const TcStateShared<E>& sh, const tile::FragAcc (&acc)[kTcStates / tile::kDim]) {
  for (int jj = 0; jj < kTcStates / tile::kDim; ++jj) {
    tile::store(sh.out + warp * tile::kDim * kTcLdAcc + jj * tile::kDim, acc[jj], kTcLdAcc);
  }
}
// Phase 4: the tile's entries inside [P, N] to the chunk's slot of states_ws.
EFFARCH_HD void tc_state_write(const SsdScanParams& p, int b, int c, int h, int pd0, int n0, int tid, int nthreads,
                               const float* out) {
  for (int i = tid; i < kTcCols * kTcStates; i += nthreads) {
    const int r = i / kTcStates, col = i % kTcStates;
    if (pd0 + r < p.head_dim && n0 + col < p.d_state) {
      p.states_ws[states_index(p, b, c, h, pd0 + r, n0 + col)] = out[r * kTcLdAcc + col];
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Stage 4: block (chunk, 64-row tile, P tile) x head x batch: y for rows [row0, row0 + 64) and
// head channels [pd0, pd0 + 64).

// B, and cb with x, take turns in one region: a K step reads B only in the scores' product, and
// writes cb (from the scores) and x after it, behind a barrier. That keeps a block at 55 KiB for
// bf16 with d_state 128 and chunk 256 (72.7 KiB with three regions), so four blocks fit an
// H100/H200 SM instead of three (ncu on an H200: 18.75% occupancy, limited by shared memory).
template <class E>
struct TcScanShared {
  float* cs;   // [Q] the chunk's inclusive prefix sums of dt A
  float* dt;   // [Q]
  E* C;        // [kTcRows][tc_ld_state]   the rows' C
  E* B;        // [kTcTokens][tc_ld_state] a K step's B; before the K loop the start state as [pd][n]
  E* cb;       // [kTcRows][kTcLdCols]     in B's region: the step's decayed, masked, dt-scaled scores
  E* x;        // [kTcTokens][kTcLdCols]   in B's region after cb: the step's x
  float* acc;  // [kTcRows][kTcLdAcc]      fp32: C start, the step's raw scores, then y
};
struct TcScanOffsets {
  int64_t cs, dt, C, B, cb, x, acc, total;
};
constexpr TcScanOffsets tc_scan_offsets(int chunk, int d_state, int elem_bytes) {
  TcScanOffsets o{};
  o.cs = 0;
  o.dt = o.cs + tc_align(4 * static_cast<int64_t>(chunk));
  o.C = o.dt + tc_align(4 * static_cast<int64_t>(chunk));
  o.B = o.C + tc_align(static_cast<int64_t>(elem_bytes) * kTcRows * tc_ld_state(d_state));
  const int64_t b_bytes = tc_align(static_cast<int64_t>(elem_bytes) * kTcTokens * tc_ld_state(d_state));  // = kTcCols rows
  o.cb = o.B;
  o.x = o.cb + tc_align(static_cast<int64_t>(elem_bytes) * kTcRows * kTcLdCols);
  const int64_t cbx_bytes = o.x + tc_align(static_cast<int64_t>(elem_bytes) * kTcTokens * kTcLdCols) - o.B;
  o.acc = o.B + (b_bytes > cbx_bytes ? b_bytes : cbx_bytes);
  o.total = o.acc + tc_align(4 * static_cast<int64_t>(kTcRows) * kTcLdAcc);
  return o;
}
template <class E>
EFFARCH_HD TcScanShared<E> tc_scan_shared(char* base, int chunk, int d_state) {
  const TcScanOffsets o = tc_scan_offsets(chunk, d_state, static_cast<int>(sizeof(E)));
  TcScanShared<E> sh;
  sh.cs = reinterpret_cast<float*>(base + o.cs);
  sh.dt = reinterpret_cast<float*>(base + o.dt);
  sh.C = reinterpret_cast<E*>(base + o.C);
  sh.B = reinterpret_cast<E*>(base + o.B);
  sh.x = reinterpret_cast<E*>(base + o.x);
  sh.cb = reinterpret_cast<E*>(base + o.cb);
  sh.acc = reinterpret_cast<float*>(base + o.acc);
  return sh;
}
// The K steps end below this: the block's last row + 1 (causal), at most the chunk's tokens.
EFFARCH_HD int tc_scan_k_end(const SsdScanParams& p, int c, int row0) {
  const int valid = chunk_tokens(p, c);
  return row0 + kTcRows < valid ? row0 + kTcRows : valid;
}

// Tokens [row0, row0 + rows) of chunk c of head h's group in a [B, L, G, N] operand (B or C, with
// its strides) into shared memory as rows of the element type, N padded to 16 (tc_ld_state apart);
// zeros past the chunk's tokens and past N.
template <class Io>
EFFARCH_HD void tc_load_group_rows(const SsdScanParams& p, const void* src, int64_t batch_stride, int64_t time_stride,
                                   int64_t group_stride, int64_t state_stride, int b, int c, int h, int row0, int rows,
                                   int tid, int nthreads, typename Io::Elem* dst) {
  const int g = group_of(p, h), valid = chunk_tokens(p, c);
  const int np = tc_round16(p.d_state), ld = tc_ld_state(p.d_state);
  const int64_t t0 = static_cast<int64_t>(c) * p.chunk;
  if (tc_rows_vec8(src, p.x_type, state_stride, p.d_state, batch_stride, time_stride, group_stride)) {
    const int rows_valid = rows_left(valid, row0, rows);
    tc_copy_rows_vec8<Io>(p, src, b * batch_stride + (t0 + row0) * time_stride + g * group_stride, time_stride, rows,
                          rows_valid, p.d_state, np, tid, nthreads, dst, ld);
    return;
  }
  staged_copy(
      rows * np, tid, nthreads,
      [&](int i) {
        const int r = i / np, n = i % np, l = row0 + r;
        return l < valid && n < p.d_state
                   ? Io::load(src, b * batch_stride + (t0 + l) * time_stride + g * group_stride + n * state_stride,
                              p.x_type)
                   : 0.0f;
      },
      [&](int i, float v) { dst[(i / np) * ld + i % np] = Io::to_elem(p.x_type, v); });
}

// Phase 1: the chunk's cs and dt, the rows' C, and the start state rounded to the input type
// (Triton's prev_states.to(dtype)) as [pd][n] in the B region; zeros outside [L, P, N].
template <class Io>
EFFARCH_HD void tc_scan_load(const SsdScanParams& p, int b, int c, int h, int row0, int pd0, int tid, int nthreads,
                             const TcScanShared<typename Io::Elem>& sh) {
  load_chunk_ws(p, b, h, c, p.cs_ws, p.dt_ws, sh.cs, sh.dt, tid, nthreads);
  const int np = tc_round16(p.d_state), ld = tc_ld_state(p.d_state);
  tc_load_group_rows<Io>(p, p.C, p.C_batch_stride, p.C_time_stride, p.C_group_stride, p.C_state_stride, b, c, h, row0,
                         kTcRows, tid, nthreads, sh.C);
  staged_copy(
      kTcCols * np, tid, nthreads,
      [&](int i) {
        const int j = i / np, n = i % np, pd = pd0 + j;
        return pd < p.head_dim && n < p.d_state ? p.states_ws[states_index(p, b, c, h, pd, n)] : 0.0f;
      },
      [&](int i, float v) { sh.B[(i / np) * ld + i % np] = Io::to_elem(p.x_type, v); });
}

// Phase 2, warp w (rows 16 w ..): acc[jj] = C . start for the 4 column tiles, stored fp32.
template <class E>
EFFARCH_HD void tc_scan_start_mma(int d_state, int warp, const TcScanShared<E>& sh,
                                  tile::FragAcc (&acc)[kTcCols / tile::kDim]) {
  const int ld = tc_ld_state(d_state), np = tc_round16(d_state);
  for (int jj = 0; jj < kTcCols / tile::kDim; ++jj) tile::zero(acc[jj]);
  for (int kk = 0; kk < np; kk += tile::kDim) {
    tile::FragA<E, tile::RowMajor> a;  // (m = l, k = n) at C[l][n]
    tile::load(a, sh.C + warp * tile::kDim * ld + kk, ld);
    for (int jj = 0; jj < kTcCols / tile::kDim; ++jj) {
      tile::FragB<E, tile::ColMajor> bf;  // (k = n, col = pd) at start[pd][n]
      tile::load(bf, sh.B + jj * tile::kDim * ld + kk, ld);
      tile::mma(acc[jj], a, bf);
    }
  }
  for (int jj = 0; jj < kTcCols / tile::kDim; ++jj) {
    tile::store(sh.acc + warp * tile::kDim * kTcLdAcc + jj * tile::kDim, acc[jj], kTcLdAcc);
  }
}
// Phase 3: C . start scaled by exp(cs[l]) in fp32 (Triton's acc * scale_m).
EFFARCH_HD void tc_scan_start_scale(const SsdScanParams& p, int c, int row0, int tid, int nthreads,
                                    const float* cs, float* acc) {
  const int valid = chunk_tokens(p, c);
  for (int i = tid; i < kTcRows * kTcCols; i += nthreads) {
    const int r = i / kTcCols, col = i % kTcCols, l = row0 + r;
    float& v = acc[r * kTcLdAcc + col];
    v = l < valid ? v * expf(cs[l]) : 0.0f;
  }
}
// Phase 4, warp w: its accumulators from the scaled tile (the output sum starts there).
template <class E>
EFFARCH_HD void tc_scan_reload(int warp, const TcScanShared<E>& sh, tile::FragAcc (&acc)[kTcCols / tile::kDim]) {
  for (int jj = 0; jj < kTcCols / tile::kDim; ++jj) {
    tile::load_acc(acc[jj], sh.acc + warp * tile::kDim * kTcLdAcc + jj * tile::kDim, kTcLdAcc);
  }
}

// K step s0 (s0 = 0, 64, ... below tc_scan_k_end), between barriers:
// (a) the step's B [s][n] tile, zeros past the chunk's tokens and N;
template <class Io>
EFFARCH_HD void tc_scan_load_b(const SsdScanParams& p, int b, int c, int h, int s0, int tid, int nthreads,
                               const TcScanShared<typename Io::Elem>& sh) {
  tc_load_group_rows<Io>(p, p.B, p.B_batch_stride, p.B_time_stride, p.B_group_stride, p.B_state_stride, b, c, h, s0,
                         kTcTokens, tid, nthreads, sh.B);
}
// (c') with (c), after the scores' product (x shares B's region): the step's x [s][pd] tile,
// zeros past the chunk's tokens and P;
template <class Io>
EFFARCH_HD void tc_scan_load_x(const SsdScanParams& p, int b, int c, int h, int pd0, int s0, int tid, int nthreads,
                               const TcScanShared<typename Io::Elem>& sh) {
  const int valid = chunk_tokens(p, c);
  const int64_t t0 = static_cast<int64_t>(c) * p.chunk;
  const int cols_valid = p.head_dim - pd0 < kTcCols ? p.head_dim - pd0 : kTcCols;
  if (tc_rows_vec8(p.x, p.x_type, p.x_dim_stride, cols_valid, p.x_batch_stride, p.x_time_stride, p.x_head_stride)) {
    const int rows_valid = rows_left(valid, s0, kTcTokens);
    tc_copy_rows_vec8<Io>(p, p.x, b * p.x_batch_stride + (t0 + s0) * p.x_time_stride + h * p.x_head_stride + pd0,
                          p.x_time_stride, kTcTokens, rows_valid, cols_valid, kTcCols, tid, nthreads, sh.x, kTcLdCols);
    return;
  }
  staged_copy(
      kTcTokens * kTcCols, tid, nthreads,
      [&](int i) {
        const int j = i / kTcCols, col = i % kTcCols, s = s0 + j;
        return s < valid && pd0 + col < p.head_dim
                   ? Io::load(p.x, b * p.x_batch_stride + (t0 + s) * p.x_time_stride + h * p.x_head_stride +
                                       (pd0 + col) * p.x_dim_stride,
                              p.x_type)
                   : 0.0f;
      },
      [&](int i, float v) { sh.x[(i / kTcCols) * kTcLdCols + i % kTcCols] = Io::to_elem(p.x_type, v); });
}
// (b) warp w: the raw scores C[l] . B[s] of its 16 rows and the step's 64 tokens, stored fp32;
template <class E>
EFFARCH_HD void tc_scan_scores_mma(int d_state, int warp, const TcScanShared<E>& sh) {
  const int ld = tc_ld_state(d_state), np = tc_round16(d_state);
  tile::FragAcc sc[kTcTokens / tile::kDim];
  for (int jj = 0; jj < kTcTokens / tile::kDim; ++jj) tile::zero(sc[jj]);
  for (int kk = 0; kk < np; kk += tile::kDim) {
    tile::FragA<E, tile::RowMajor> a;  // (m = l, k = n) at C[l][n]
    tile::load(a, sh.C + warp * tile::kDim * ld + kk, ld);
    for (int jj = 0; jj < kTcTokens / tile::kDim; ++jj) {
      tile::FragB<E, tile::ColMajor> bf;  // (k = n, col = s) at B[s][n]
      tile::load(bf, sh.B + jj * tile::kDim * ld + kk, ld);
      tile::mma(sc[jj], a, bf);
    }
  }
  for (int jj = 0; jj < kTcTokens / tile::kDim; ++jj) {
    tile::store(sh.acc + warp * tile::kDim * kTcLdAcc + jj * tile::kDim, sc[jj], kTcLdAcc);
  }
}
// (c) the scores decayed exp(cs[l] - cs[s]), times dt[s], masked to s <= l < L, rounded to the
// input type (Triton's cb.to(dtype));
template <class Io>
EFFARCH_HD void tc_scan_decay_step(const SsdScanParams& p, int c, int row0, int s0, int tid, int nthreads,
                                   const TcScanShared<typename Io::Elem>& sh) {
  const int valid = chunk_tokens(p, c);
  for (int i = tid; i < kTcRows * kTcTokens; i += nthreads) {
    const int r = i / kTcTokens, j = i % kTcTokens, l = row0 + r, s = s0 + j;
    float v = 0.0f;
    if (l < valid && s <= l) v = sh.acc[r * kTcLdAcc + j] * expf(sh.cs[l] - sh.cs[s]) * sh.dt[s];
    sh.cb[r * kTcLdCols + j] = Io::to_elem(p.x_type, v);
  }
}
// (d) warp w: acc[jj] += cb . x over the step's tokens.
template <class E>
EFFARCH_HD void tc_scan_out_mma(int warp, const TcScanShared<E>& sh, tile::FragAcc (&acc)[kTcCols / tile::kDim]) {
  for (int kk = 0; kk < kTcTokens; kk += tile::kDim) {
    tile::FragA<E, tile::RowMajor> a;  // (m = l, k = s) at cb[l][s]
    tile::load(a, sh.cb + warp * tile::kDim * kTcLdCols + kk, kTcLdCols);
    for (int jj = 0; jj < kTcCols / tile::kDim; ++jj) {
      tile::FragB<E, tile::RowMajor> bf;  // (k = s, col = pd) at x[s][pd]
      tile::load(bf, sh.x + kk * kTcLdCols + jj * tile::kDim, kTcLdCols);
      tile::mma(acc[jj], a, bf);
    }
  }
}

// After the K loop, warp w stores its accumulators (tc_scan_store_warp), then after a barrier:
template <class E>
EFFARCH_HD void tc_scan_store_warp(int warp, const TcScanShared<E>& sh, const tile::FragAcc (&acc)[kTcCols / tile::kDim]) {
  for (int jj = 0; jj < kTcCols / tile::kDim; ++jj) {
    tile::store(sh.acc + warp * tile::kDim * kTcLdAcc + jj * tile::kDim, acc[jj], kTcLdAcc);
  }
}
// the block writes y = acc + D x for the rows and channels inside [L, P].
template <class Io>
EFFARCH_HD void tc_scan_write(const SsdScanParams& p, int b, int c, int h, int row0, int pd0, int tid, int nthreads,
                              const float* acc) {
  const int valid = chunk_tokens(p, c);
  const int64_t t0 = static_cast<int64_t>(c) * p.chunk;
  // The skip's x read in the staged batch (the y stores would otherwise hold up each next read).
  staged_copy(
      kTcRows * kTcCols, tid, nthreads,
      [&](int i) {
        const int r = i / kTcCols, col = i % kTcCols, l = row0 + r, pd = pd0 + col;
        return p.head.D != nullptr && l < valid && pd < p.head_dim
                   ? Io::load(p.x, b * p.x_batch_stride + (t0 + l) * p.x_time_stride + h * p.x_head_stride +
                                       pd * p.x_dim_stride,
                              p.x_type)
                   : 0.0f;
      },
      [&](int i, float xv) {
        const int r = i / kTcCols, col = i % kTcCols, l = row0 + r, pd = pd0 + col;
        if (l >= valid || pd >= p.head_dim) return;
        float y = acc[r * kTcLdAcc + col];
        if (p.head.D != nullptr) y = y + xv * p.head.D[h];
        p.y[b * p.y_batch_stride + (t0 + l) * p.y_time_stride + h * p.y_head_stride + pd * p.y_dim_stride] = y;
      });
}

}  // namespace effarch::kernels::ssd
