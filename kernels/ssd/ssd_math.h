#pragma once
// The per-thread math of the Mamba-2 kernels, shared by the CUDA kernels (ssd_*.cuh) and their
// host emulation in the CPU tests (tests/ops/ssd_cuda_test.cpp), which loop over blocks and
// threads in the kernels' phase order. Functions marked EFFARCH_HD (common/host_device.h: device
// functions under nvcc, inline host functions elsewhere); no CUDA type here. The kernel shells
// add only the thread-index mapping, shared memory, barriers and warp shuffles.
//
// Element access goes through `Io`, a class with
//   static float load(const void* base, int64_t offset, ElementType type);
//   static void store(void* base, int64_t offset, ElementType type, float value);
//   static float round_to(ElementType type, float value);  // value rounded to `type`, back in fp32
// (ssd_common.cuh gives the device ones; the host emulation reads and writes fp32).
//
// Rounding follows the ATen reference in src/ops/ssd.cpp term by term (its products grouped the
// same way), so fp32 results agree to accumulation order. Decays within a chunk are exp(segment
// sums) summed token by token from the row's own position, never differences of the chunk's
// cumulative sums (those lose the small exponents, whose decays are near 1, once the sums grow).

#include <math.h>

#include <cstdint>

#include "common/host_device.h"
#include "common/staged_copy.h"
#include "ssd/ssd_params.h"

namespace effarch::kernels::ssd {

// Launch shapes, shared with the emulation.
inline constexpr int kUpdateWarps = 4;         // decode: head channels (warps) per block
inline constexpr int kWarpSize = 32;
inline constexpr int kScanThreads = 256;       // chunk state / scan output / state passing blocks
inline constexpr int kCumsumThreads = 64;      // chunk cumsum blocks: few threads, spread over every SM
inline constexpr int kScanRows = 16;           // output rows (tokens) per scan-output block
inline constexpr int kScanCols = 16;           // earlier tokens per step of its C B^T (a B tile in shared memory)
inline constexpr int kNormThreads = 256;       // gated RMSNorm: threads per (row, group); a power of 2
// The chunked scan's limits, which its launcher checks (here, so that the CPU tests size the
// kernels' shared memory at them).
inline constexpr int kMaxDState = 256;  // the scan's shared rows of C; the decode step has no limit
inline constexpr int kMaxChunk = 1024;

// softplus and SiLU: kernels::softplus (common/host_device.h) and kernels::silu (common/convert.cuh
// or its host stand-in in common/host_device.h, v / (1 + exp(-v)) as ATen computes it).

// dt + bias, softplus, clamp: src/ops/ssd.cpp's discretize.
EFFARCH_HD float discretize_dt(const SsdHeadParams& hp, int h, float raw) {
  float dt = raw;
  if (hp.dt_bias != nullptr) dt = dt + hp.dt_bias[h];
  if (hp.dt_softplus) dt = softplus(dt);
  if (hp.dt_clamp) dt = fminf(fmaxf(dt, hp.dt_min), hp.dt_max);
  return dt;
}

// ----------------------------------------------------------------------------------------------
// Decode step: one warp per (b, h, p) state row; lane k owns entries n = k, k + 32, ...

struct UpdateRow {
  float dt = 0.0f, decay = 0.0f, x = 0.0f, dskip = 0.0f;
};

template <class Io>
EFFARCH_HD UpdateRow update_row(const SsdUpdateParams& p, int b, int h, int pd) {
  UpdateRow r;
  r.dt = discretize_dt(p.head, h, Io::load(p.dt, b * p.dt_batch_stride + h * p.dt_head_stride, p.x_type));
  r.decay = expf(r.dt * p.head.A[h]);
  r.x = Io::load(p.x, b * p.x_batch_stride + h * p.x_head_stride + pd * p.x_dim_stride, p.x_type);
  r.dskip = p.head.D != nullptr ? p.head.D[h] : 0.0f;
  return r;
}

// Updates the lane's state entries in place; returns its part of sum_n C[n] S[n].
template <class Io>
EFFARCH_HD float update_lane(const SsdUpdateParams& p, int b, int h, int pd, int lane, const UpdateRow& r) {
  const int g = h / (p.heads / p.groups);
  float* s = p.state + b * p.state_batch_stride + h * p.state_head_stride + pd * p.state_dim_stride;
  const int64_t bo = b * p.B_batch_stride + g * p.B_group_stride;
  const int64_t co = b * p.C_batch_stride + g * p.C_group_stride;
  float acc = 0.0f;
  for (int n = lane; n < p.d_state; n += kWarpSize) {
    // C is read before the state's store: read after it, it waited for the store (the compiler
    // cannot tell the pointers apart), a second memory latency per entry.
    const float c = Io::load(p.C, co + n * p.C_state_stride, p.x_type);
    const float input = (r.dt * Io::load(p.B, bo + n * p.B_state_stride, p.x_type)) * r.x;
    const float next = s[n * p.state_state_stride] * r.decay + input;
    s[n * p.state_state_stride] = next;
    acc += next * c;
  }
  return acc;
}

// y from the warp's sum (lane 0 writes).
EFFARCH_HD void update_write_y(const SsdUpdateParams& p, int b, int h, int pd, const UpdateRow& r, float sum) {
  p.y[b * p.y_batch_stride + h * p.y_head_stride + pd * p.y_dim_stride] = sum + r.x * r.dskip;
}

// ----------------------------------------------------------------------------------------------
// Chunked scan. Workspace index of (b, h, c, q) in the [B, H, nchunks, Q] buffers.
EFFARCH_HD int64_t ws_index(const SsdScanParams& p, int b, int h, int c, int q) {
  return ((static_cast<int64_t>(b) * p.heads + h) * p.nchunks + c) * p.chunk + q;
}
// (b, c, h, pd, n) in states_ws [B, nchunks, H, P, N].
EFFARCH_HD int64_t states_index(const SsdScanParams& p, int b, int c, int h, int pd, int n) {
  return (((static_cast<int64_t>(b) * p.nchunks + c) * p.heads + h) * p.head_dim + pd) * p.d_state + n;
}
EFFARCH_HD int chunk_tokens(const SsdScanParams& p, int c) {
  const int rest = p.seqlen - c * p.chunk;
  return rest < p.chunk ? rest : p.chunk;
}
EFFARCH_HD int group_of(const SsdScanParams& p, int h) { return h / (p.heads / p.groups); }
// Of `rows` rows starting at token `first` of a chunk with `valid` tokens, how many hold tokens.
EFFARCH_HD int rows_left(int valid, int first, int rows) {
  const int left = valid - first;
  return left < rows ? (left > 0 ? left : 0) : rows;
}
// Two of the chunk's [Q] workspace rows (ws_index order) into shared memory, reads staged; the
// FMA path takes dt A and dt, the tensor-core path the prefix sums and dt.
EFFARCH_HD void load_chunk_ws(const SsdScanParams& p, int b, int h, int c, const float* ws1, const float* ws2,
                              float* dst1, float* dst2, int tid, int nthreads) {
  struct Pair {
    float v1, v2;
  };
  const int64_t base = ws_index(p, b, h, c, 0);
  staged_copy(
      p.chunk, tid, nthreads, [&](int q) { return Pair{ws1[base + q], ws2[base + q]}; },
      [&](int q, const Pair& v) {
        dst1[q] = v.v1;
        dst2[q] = v.v2;
      });
}

// Stage 1, one thread per (b, h, c): dt, dt A and their prefix sum over the chunk; padding
// tokens past L have dt = 0 (no decay, no input), as the reference pads.
template <class Io>
EFFARCH_HD void chunk_cumsum_thread(const SsdScanParams& p, int b, int h, int c) {
  const int valid = chunk_tokens(p, c);
  const float A = p.head.A[h];
  float cs = 0.0f;
  // kStagedBatch raw dt read before the writes (common/staged_copy.h says why); the same order
  // of additions as one token at a time.
  for (int q0 = 0; q0 < p.chunk; q0 += kStagedBatch) {
    float raw[kStagedBatch];
EFFARCH_UNROLL
    for (int k = 0; k < kStagedBatch; ++k) {
      const int q = q0 + k;
      const int64_t t = static_cast<int64_t>(c) * p.chunk + q;
      raw[k] = q < valid ? Io::load(p.dt, b * p.dt_batch_stride + t * p.dt_time_stride + h * p.dt_head_stride, p.x_type)
                         : 0.0f;
    }
EFFARCH_UNROLL
    for (int k = 0; k < kStagedBatch; ++k) {
      const int q = q0 + k;
      if (q >= p.chunk) break;
      const float dt = q < valid ? discretize_dt(p.head, h, raw[k]) : 0.0f;
      const float a = dt * A;
      cs += a;
      const int64_t i = ws_index(p, b, h, c, q);
      p.dt_ws[i] = dt;
      p.a_ws[i] = a;
      p.cs_ws[i] = cs;
    }
  }
}

// Stage 2, phase 1 (one thread of the block): decay[q] = exp(sum_{q < k < Q} dt A), the decay
// from token q to the chunk's end, summed from the end (the reference's suffix sum).
EFFARCH_HD void chunk_decay_to_end(const SsdScanParams& p, int b, int h, int c, float* decay) {
  const float* a = p.a_ws + ws_index(p, b, h, c, 0);
  float suffix = 0.0f;
  for (int q = p.chunk - 1; q >= 0; --q) {
    decay[q] = expf(suffix);
    suffix += a[q];
  }
}

// Stage 2, phase 2: one thread per state entry e = pd * N + n of (b, c, h): the chunk's own
// contribution sum_q (B[q, n] decay[q]) (x[q, pd] dt[q]).
template <class Io>
EFFARCH_HD void chunk_state_entry(const SsdScanParams& p, int b, int c, int h, int e, const float* decay) {
  const int pd = e / p.d_state, n = e % p.d_state;
  const int g = group_of(p, h), valid = chunk_tokens(p, c);
  const float* dt = p.dt_ws + ws_index(p, b, h, c, 0);
  const int64_t t0 = static_cast<int64_t>(c) * p.chunk;
  const int64_t bo = b * p.B_batch_stride + t0 * p.B_time_stride + g * p.B_group_stride + n * p.B_state_stride;
  const int64_t xo = b * p.x_batch_stride + t0 * p.x_time_stride + h * p.x_head_stride + pd * p.x_dim_stride;
  float acc = 0.0f;
  for (int q = 0; q < valid; ++q) {
    const float bq = Io::load(p.B, bo + q * p.B_time_stride, p.x_type) * decay[q];
    const float xq = Io::load(p.x, xo + q * p.x_time_stride, p.x_type) * dt[q];
    acc += bq * xq;
  }
  p.states_ws[states_index(p, b, c, h, pd, n)] = acc;
}

// Stage 3, one thread per state entry e of (b, h): the chunks in order; each chunk's slot gets
// the state at its start, `state` the final one: start[c + 1] = exp(sum_c dt A) start[c] + own[c].
// The chunks' own states and decays are read kPassAhead at a time before the chain runs over them:
// the reads do not depend on the chain, but a compiler cannot move a read above the store to the
// slot before it (it cannot prove them apart), so one chunk at a time waited out a global-memory
// latency per chunk (H200, Codestral's shape at 32k tokens: 5.9 ms, 21% of the memory bandwidth).
// The same arithmetic in the same order: the results are bitwise those of the one-at-a-time loop.
inline constexpr int kPassAhead = 8;
EFFARCH_HD void state_passing_entry(const SsdScanParams& p, int b, int h, int e) {
  const int pd = e / p.d_state, n = e % p.d_state;
  float* out = p.state + b * p.state_batch_stride + h * p.state_head_stride + pd * p.state_dim_stride +
               n * p.state_state_stride;
  float s = p.from_state ? *out : 0.0f;
  for (int c0 = 0; c0 < p.nchunks; c0 += kPassAhead) {
    float own[kPassAhead], decay[kPassAhead];
EFFARCH_UNROLL
    for (int j = 0; j < kPassAhead; ++j) {
      const int c = c0 + j;
      own[j] = c < p.nchunks ? p.states_ws[states_index(p, b, c, h, pd, n)] : 0.0f;
      decay[j] = c < p.nchunks ? expf(p.cs_ws[ws_index(p, b, h, c, p.chunk - 1)]) : 0.0f;
    }
EFFARCH_UNROLL
    for (int j = 0; j < kPassAhead; ++j) {
      const int c = c0 + j;
      if (c < p.nchunks) {
        p.states_ws[states_index(p, b, c, h, pd, n)] = s;
        s = decay[j] * s + own[j];
      }
    }
  }
  *out = s;
}

// Stage 4: rows [row0, row0 + kScanRows) of chunk c for head h. Shared memory of the block:
struct ScanShared {
  float* a;   // [Q] dt A of the chunk
  float* dt;  // [Q]
  float* C;   // [kScanRows, N + 1] the rows' C in fp32 (rows padded: see scan_ld)
  float* Bt;  // [kScanCols, N + 1] a tile of the chunk's B in fp32
  float* w;   // [kScanRows, Q] (C[l] . B[s]) exp(segment sum), 0 for s > l
};
// Row stride of C and Bt in shared memory: N + 1, so the 16 rows of Bt a warp reads at one n sit
// in 16 different banks (with a stride of N, a multiple of 32, they would all hit one).
EFFARCH_HD int scan_ld(int d_state) { return d_state + 1; }
inline int64_t scan_shared_floats(int chunk, int d_state) {
  return 2 * static_cast<int64_t>(chunk) + static_cast<int64_t>(kScanRows + kScanCols) * (d_state + 1) +
         static_cast<int64_t>(kScanRows) * chunk;
}
EFFARCH_HD ScanShared scan_shared(float* base, int chunk, int d_state) {
  ScanShared sh;
  sh.a = base;
  sh.dt = base + chunk;
  sh.C = base + 2 * chunk;
  sh.Bt = sh.C + kScanRows * scan_ld(d_state);
  sh.w = sh.Bt + kScanCols * scan_ld(d_state);
  return sh;
}
// Blocks (row tiles) per chunk; constexpr, so the host launcher and the kernel share it.
constexpr int scan_tiles_per_chunk(int chunk) { return (chunk + kScanRows - 1) / kScanRows; }

// The block's rows that hold tokens end before this (the last one + 1); the B tiles stop there.
EFFARCH_HD int scan_rows_end(const SsdScanParams& p, int c, int row0) {
  const int valid = chunk_tokens(p, c);
  return row0 + kScanRows < valid ? row0 + kScanRows : valid;
}

// Phase 1, thread tid of nthreads: the chunk's dt A and dt, the rows' C, w zeroed.
template <class Io>
EFFARCH_HD void scan_load(const SsdScanParams& p, int b, int c, int h, int row0, int tid, int nthreads,
                          const ScanShared& sh) {
  load_chunk_ws(p, b, h, c, p.a_ws, p.dt_ws, sh.a, sh.dt, tid, nthreads);
  const int g = group_of(p, h), valid = chunk_tokens(p, c);
  staged_copy(
      kScanRows * p.d_state, tid, nthreads,
      [&](int i) {
        const int r = i / p.d_state, n = i % p.d_state, l = row0 + r;
        const int64_t t = static_cast<int64_t>(c) * p.chunk + l;
        return l < valid ? Io::load(p.C, b * p.C_batch_stride + t * p.C_time_stride + g * p.C_group_stride +
                                             n * p.C_state_stride,
                                    p.x_type)
                         : 0.0f;
      },
      [&](int i, float v) { sh.C[(i / p.d_state) * scan_ld(p.d_state) + i % p.d_state] = v; });
  for (int i = tid; i < kScanRows * p.chunk; i += nthreads) sh.w[i] = 0.0f;
}

// Phase 2, for each tile s0 = 0, kScanCols, ... below scan_rows_end, two steps between barriers:
// (a) the tile of B, tokens [s0, s0 + kScanCols) of the chunk, loaded coalesced over N;
template <class Io>
EFFARCH_HD void scan_load_b_tile(const SsdScanParams& p, int b, int c, int h, int s0, int tid, int nthreads,
                                 const ScanShared& sh) {
  const int g = group_of(p, h), valid = chunk_tokens(p, c);
  const int64_t t0 = static_cast<int64_t>(c) * p.chunk;
  staged_copy(
      kScanCols * p.d_state, tid, nthreads,
      [&](int i) {
        const int j = i / p.d_state, n = i % p.d_state, s = s0 + j;
        return s < valid ? Io::load(p.B, b * p.B_batch_stride + (t0 + s) * p.B_time_stride + g * p.B_group_stride +
                                             n * p.B_state_stride,
                                    p.x_type)
                         : 0.0f;
      },
      [&](int i, float v) { sh.Bt[(i / p.d_state) * scan_ld(p.d_state) + i % p.d_state] = v; });
}
// (b) w[r, s0 + j] = C[row0 + r] . B[s0 + j] where s0 + j <= row0 + r (a token); one pair per
// thread with kScanRows x kScanCols = 256 threads.
EFFARCH_HD void scan_scores_tile(const SsdScanParams& p, int c, int row0, int s0, int tid, int nthreads,
                                 const ScanShared& sh) {
  const int valid = chunk_tokens(p, c);
  for (int i = tid; i < kScanRows * kScanCols; i += nthreads) {
    const int r = i / kScanCols, j = i % kScanCols, l = row0 + r, s = s0 + j;
    if (l >= valid || s > l) continue;
    const float* cr = sh.C + r * scan_ld(p.d_state);
    const float* bs = sh.Bt + j * scan_ld(p.d_state);
    float acc = 0.0f;
    for (int n = 0; n < p.d_state; ++n) acc += cr[n] * bs[n];
    sh.w[r * p.chunk + s] = acc;
  }
}

// Phase 3, thread r < kScanRows: w[r, s] *= exp(sum_{s < k <= l} dt A), the segment sum
// accumulated from s = l down.
EFFARCH_HD void scan_decay_row(const SsdScanParams& p, int c, int row0, int r, const ScanShared& sh) {
  const int l = row0 + r;
  if (l >= chunk_tokens(p, c)) return;
  float* w = sh.w + r * p.chunk;
  float seg = 0.0f;
  for (int s = l; s >= 0; --s) {
    w[s] = w[s] * expf(seg);
    seg += sh.a[s];
  }
}

// Phase 4, one (row, head channel) pair i = r * P + pd: y = sum_{s <= l} w[r, s] (x[s] dt[s])
// + exp(cumsum dt A to l) (C[l] . start state[pd]) + D x[l].
template <class Io>
EFFARCH_HD void scan_output(const SsdScanParams& p, int b, int c, int h, int row0, int i, const ScanShared& sh) {
  const int r = i / p.head_dim, pd = i % p.head_dim, l = row0 + r;
  if (l >= chunk_tokens(p, c)) return;
  const int64_t t0 = static_cast<int64_t>(c) * p.chunk;
  const int64_t xo = b * p.x_batch_stride + t0 * p.x_time_stride + h * p.x_head_stride + pd * p.x_dim_stride;
  const float* w = sh.w + r * p.chunk;
  float diag = 0.0f;
  for (int s = 0; s <= l; ++s) diag += w[s] * (Io::load(p.x, xo + s * p.x_time_stride, p.x_type) * sh.dt[s]);
  const float* start = p.states_ws + states_index(p, b, c, h, pd, 0);
  const float* cr = sh.C + r * scan_ld(p.d_state);
  float off = 0.0f;
  for (int n = 0; n < p.d_state; ++n) off += cr[n] * start[n];
  float y = diag + off * expf(p.cs_ws[ws_index(p, b, h, c, l)]);
  if (p.head.D != nullptr) y = y + Io::load(p.x, xo + l * p.x_time_stride, p.x_type) * p.head.D[h];
  p.y[b * p.y_batch_stride + (t0 + l) * p.y_time_stride + h * p.y_head_stride + pd * p.y_dim_stride] = y;
}

// ----------------------------------------------------------------------------------------------
// Gated RMSNorm: one block per (row, group) of kNormThreads threads.

// y is read through YIo (the kernels' static type), z, weight and out through Io (by type).
template <class YIo, class Io>
EFFARCH_HD float gated_value(const GatedRmsNormParams& p, int64_t row, int ch) {
  const float y = YIo::load(p.y, row * p.y_row_stride + ch * p.y_dim_stride, p.y_type);
  const float z = Io::load(p.z, row * p.z_row_stride + ch * p.z_dim_stride, p.z_type);
  return y * silu(z);
}

// Phase 1: the thread's part of sum h^2 over the group's channels tid, tid + nthreads, ...
template <class YIo, class Io>
EFFARCH_HD float norm_partial(const GatedRmsNormParams& p, int64_t row, int group, int tid, int nthreads) {
  float acc = 0.0f;
  for (int i = tid; i < p.group_size; i += nthreads) {
    const float v = gated_value<YIo, Io>(p, row, group * p.group_size + i);
    acc += v * v;
  }
  return acc;
}

// Phase 2: the group's sum of the threads' parts, common/warp_sum.h's block sum (warp
// butterflies, then the warps' sums in warp order; block_sum_emulated on the host).

// Phase 3: out = weight * round_y(h rsqrt(mean h^2 + eps)), from the group's sum of squares.
template <class YIo, class Io>
EFFARCH_HD void norm_write(const GatedRmsNormParams& p, int64_t row, int group, int tid, int nthreads, float sumsq) {
  const float rinv = 1.0f / sqrtf(sumsq / static_cast<float>(p.group_size) + p.eps);
  for (int i = tid; i < p.group_size; i += nthreads) {
    const int ch = group * p.group_size + i;
    const float normed = Io::round_to(p.y_type, gated_value<YIo, Io>(p, row, ch) * rinv);
    const float w = Io::load(p.weight, ch * p.weight_stride, p.weight_type);
    Io::store(p.out, row * p.out_row_stride + ch * p.out_dim_stride, p.out_type, w * normed);
  }
}

}  // namespace effarch::kernels::ssd
