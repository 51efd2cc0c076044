#pragma once
// The selective scan's third prefill algorithm, "pieces" (SelectiveScanParams::segment 0): a
// thread per channel, its states in registers, the sequence cut into pieces that run in parallel.
// Written once for the GPU kernels (selective_scan_kernels.cuh) and for the host emulation that
// CPU tests run, as selective_scan_lanes.h is.
//
// Why a third one. lanes16 (selective_scan_lanes.h) computes each exp(dt A) once, but pays for it
// with a warp's lanes sharing time: per (step, state) about 19.5 instructions in all, two 16-step
// dependent chains and five dependent shuffle rounds a state, at 25% occupancy; on an H100 it
// issues in 42% of its cycles (docs/mamba.md). Here a thread owns a channel and walks time itself,
// so the recurrence of its d_state states runs as independent chains side by side (16 chains of
// one FMA each a step: latency is hidden inside the thread), with no shuffles and no composition
// inside a piece. The price: parallelism over time comes only from the pieces, each exp(dt A) is
// computed twice (once per pass), and the SFU (16 exponentials a clock an SM against 128 FMAs)
// and the issue rate bound it: by its SASS about 230 us at 4096 tokens for Mamba-2.8B on an H100
// at full rate, against lanes16's measured 469 (docs/mamba.md; not yet run on a GPU).
//
// Mapping. A block owns kPiecesChannels = 128 neighbouring channels of one sequence, a thread
// each (grid x), of one piece (grid z); pieces are whole chunks of kPiecesChunk steps
// (selective_scan_params.h), planned as the 32-channel kernel's split plans them, and use its
// workspace (selective_scan_split.h: slot 0 the initial state, slot q >= 1 the
// end state of piece q - 1 from zeros and its sum of dt). Per tile of kTile steps:
//   1. each thread reads its channel's u, delta (and z in pass 2) of the tile into registers, and
//      the block stages the tile's B (and C) rows in shared memory as fp32 (every channel reads
//      the same row: broadcast);
//   2. each thread runs the tile's steps: dt = softplus(delta + bias), then per state
//      h = exp2(dt A log2(e)) h + dt u B, and in pass 2 y = C . h, written gated.
// Pass 1 (every piece but the last) runs from zeros without the readout and writes the piece's
// end state and dt sum; pass 2 (every piece) composes its start state from the initial state and
// the earlier pieces' maps (h -> exp2(A2 S) h + e), runs with the readout, and the last piece
// writes the final state. With one piece only pass 2 runs, from p.state. States past d_state are
// zeros (A 0, B 0, C 0) and stay zero, so every d_state up to 16 runs the same code.
//
// Exec, as in selective_scan_lanes.h: exec.threads(f) runs f(tid, regs) for the block's threads
// (on the host: in turn), exec.sync() is __syncthreads().

#include <cstdint>
#ifndef __CUDACC__
#include <memory>
#include <vector>
#endif

#include "common/host_device.h"
#include "selective_scan/selective_scan_channel.h"
#include "selective_scan/selective_scan_params.h"
#include "selective_scan/selective_scan_split.h"

namespace effarch::kernels::scan::pieces {

inline constexpr int kThreads = kPiecesChannels;  // 128: a thread per channel
inline constexpr int kStates = kPiecesMaxStates;  // 16: a thread's states
inline constexpr int kTile = 16;                  // steps read ahead and staged at a time
static_assert(kPiecesChunk % kTile == 0, "a piece is whole tiles, except at the sequence's end");

// Shared memory, floats: B and C of a tile, [kTile][kStates] each (2 KiB).
constexpr int64_t shared_floats() { return 2 * kTile * kStates; }

struct Shared {
  float (*B)[kStates];
  float (*C)[kStates];
};

EFFARCH_HD Shared carve_shared(float* buffer) {
  Shared s;
  s.B = reinterpret_cast<float(*)[kStates]>(buffer);
  s.C = s.B + kTile;
  return s;
}

// What a thread keeps through its piece (registers on the GPU).
struct Regs {
  float h[kStates];   // the channel's state
  float A2[kStates];  // A log2(e), 0 past d_state or the channels
  float u[kTile];     // the tile's u, delta and z, read ahead
  float delta[kTile];
  float z[kTile];
  float bias;   // dt's bias
  float dtsum;  // pass 1: the sum of dt over the piece
};

EFFARCH_HD int64_t state_index(const SelectiveScanParams& p, int batch, int channel, int state) {
  return batch * p.state_batch_stride + channel * p.state_dim_stride + state * p.state_state_stride;
}

// The thread's channel constants, and its state zeroed.
EFFARCH_HD void init_thread(const SelectiveScanParams& p, int channel, Regs& r) {
  const bool active = channel < p.dim;
  r.bias = active ? delta_bias_of(p, channel) : 0.0f;
  r.dtsum = 0.0f;
EFFARCH_UNROLL
  for (int n = 0; n < kStates; ++n) {
    r.A2[n] = active ? A2_at(p, channel, n) : 0.0f;
    r.h[n] = 0.0f;
  }
}

// Pass 2's start state for piece `piece`: the initial state (p.state when unsplit, else slot 0;
// zeros without from_state), then each earlier piece's map h -> exp2(A2 S) h + e in order.
EFFARCH_HD void start_state(const SelectiveScanParams& p, int batch, int channel, int piece, Regs& r) {
  if (channel >= p.dim) return;
  if (p.from_state) {
EFFARCH_UNROLL
    for (int n = 0; n < kStates; ++n) {  // (unrolled, so that the arrays stay in registers)
      if (n < p.dstate) {
        r.h[n] = p.pieces > 1 ? p.split_states[split_state_index(p, batch, 0, n, channel)]
                              : p.state[state_index(p, batch, channel, n)];
      }
    }
  }
  for (int q = 0; q < piece; ++q) {
    const float S = p.split_dtsum[split_dtsum_index(p, batch, q + 1, channel)];
EFFARCH_UNROLL
    for (int n = 0; n < kStates; ++n) {
      if (n < p.dstate) {
        r.h[n] = exp2_ftz(r.A2[n] * S) * r.h[n] + p.split_states[split_state_index(p, batch, q + 1, n, channel)];
      }
    }
  }
}

// Step 1, thread tid: its channel's u, delta (and z with the readout) of steps [t0, t0 + kTile)
// before `last` into registers (zeros after), and its share of the tile's B (and C) rows, zeros
// past `last` or d_state.
template <typename input_t, bool kReadout>
EFFARCH_HD void read_tile(const SelectiveScanParams& p, int tile, int batch, int64_t t0, int64_t last, int tid,
                          const Shared& s, Regs& r) {
  const int channel = tile * kThreads + tid;
  if (channel < p.dim) {
    const auto* u = static_cast<const input_t*>(p.u) + batch * p.u_batch_stride + channel * p.u_dim_stride;
    const auto* delta =
        static_cast<const input_t*>(p.delta) + batch * p.delta_batch_stride + channel * p.delta_dim_stride;
    const input_t* z = kReadout && p.z != nullptr ? static_cast<const input_t*>(p.z) + batch * p.z_batch_stride +
                                                        channel * p.z_dim_stride
                                                  : nullptr;
EFFARCH_UNROLL
    for (int i = 0; i < kTile; ++i) {
      const int64_t t = t0 + i;
      const bool in = t < last;
      r.u[i] = in ? to_float(u[t * p.u_time_stride]) : 0.0f;
      r.delta[i] = in ? to_float(delta[t * p.delta_time_stride]) : 0.0f;
      if (kReadout) r.z[i] = in && z != nullptr ? to_float(z[t * p.z_time_stride]) : 0.0f;
    }
  }
  constexpr int kRows = kReadout ? 2 : 1;  // B, then C
  const auto* Bp = static_cast<const input_t*>(p.B) + batch * p.B_batch_stride;
  const auto* Cp = static_cast<const input_t*>(p.C) + batch * p.C_batch_stride;
  for (int k = tid; k < kRows * kTile * kStates; k += kThreads) {
    const int row = k / (kTile * kStates), i = (k / kStates) % kTile, n = k % kStates;
    const int64_t t = t0 + i;
    float v = 0.0f;
    if (t < last && n < p.dstate) {
      v = row == 0 ? to_float(Bp[n * p.B_state_stride + t * p.B_time_stride])
                   : to_float(Cp[n * p.C_state_stride + t * p.C_time_stride]);
    }
    (row == 0 ? s.B : s.C)[i][n] = v;
  }
}

// Step 2, thread tid: the tile's steps before `last`. Pass 1 (no readout) sums dt; pass 2 writes
// (C . h + D u) * SiLU(z) for each step.
template <typename input_t, bool kReadout>
EFFARCH_HD void run_tile(const SelectiveScanParams& p, int tile, int batch, int64_t t0, int64_t last, int tid,
                         const Shared& s, Regs& r) {
  const int channel = tile * kThreads + tid;
  if (channel >= p.dim) return;
  auto* y = kReadout ? static_cast<input_t*>(p.y) + batch * p.y_batch_stride + channel * p.y_dim_stride : nullptr;
EFFARCH_UNROLL
  for (int i = 0; i < kTile; ++i) {
    if (t0 + i >= last) break;
    const float dt = dt_of(p, r.delta[i], r.bias);
    const float du = dt * r.u[i];
    float readout = 0.0f;
EFFARCH_UNROLL
    for (int n = 0; n < kStates; ++n) {
      r.h[n] = exp2_ftz(dt * r.A2[n]) * r.h[n] + du * s.B[i][n];
      if (kReadout) readout += s.C[i][n] * r.h[n];
    }
    if (kReadout) {
      y[(t0 + i) * p.y_time_stride] = from_float<input_t>(finish(p, readout, r.u[i], r.z[i], channel));
    } else {
      r.dtsum += dt;
    }
  }
}

// One pass over piece `piece` of channels [tile * kThreads, + kThreads) of sequence `batch`:
// kReadout false is pass 1 (from zeros, the end state and dt sum into slot piece + 1; piece 0
// also copies the initial state into slot 0), true is pass 2 (from its start state, y, and the
// last piece's end state into p.state).
template <typename input_t, bool kReadout, typename Exec>
EFFARCH_HD void scan_piece(const SelectiveScanParams& p, int tile, int batch, int piece, Shared& s, Exec& exec) {
  const int64_t first = piece_begin(p, piece, kPiecesSegment), last = piece_end(p, piece, kPiecesSegment);
  exec.threads([&](int tid, Regs& r) {
    const int channel = tile * kThreads + tid;
    init_thread(p, channel, r);
    if (kReadout) start_state(p, batch, channel, piece, r);
  });
  for (int64_t t0 = first; t0 < last; t0 += kTile) {
    exec.threads([&](int tid, Regs& r) { read_tile<input_t, kReadout>(p, tile, batch, t0, last, tid, s, r); });
    exec.sync();
    exec.threads([&](int tid, Regs& r) { run_tile<input_t, kReadout>(p, tile, batch, t0, last, tid, s, r); });
    exec.sync();  // every thread is done with the tile's B and C before the next staging
  }
  exec.threads([&](int tid, Regs& r) {
    const int channel = tile * kThreads + tid;
    if (channel >= p.dim) return;
EFFARCH_UNROLL
    for (int n = 0; n < kStates; ++n) {
      if (n >= p.dstate) continue;
      if (kReadout) {
        // (The launcher refuses pieces < 1, so `pieces <= 1` adds nothing but the form in which ptxas
        // keeps sm_90's pass 2 within its 128 registers: without it, or as `>=`, 20 bytes spill.)
        if (piece + 1 == p.pieces || p.pieces <= 1) p.state[state_index(p, batch, channel, n)] = r.h[n];
      } else {
        p.split_states[split_state_index(p, batch, piece + 1, n, channel)] = r.h[n];
        if (piece == 0 && p.from_state) {
          p.split_states[split_state_index(p, batch, 0, n, channel)] = p.state[state_index(p, batch, channel, n)];
        }
      }
    }
    if (!kReadout) p.split_dtsum[split_dtsum_index(p, batch, piece + 1, channel)] = r.dtsum;
  });
}

#ifndef __CUDACC__
// Host emulation (float inputs): pass 1 over every block of pieces 0 .. pieces - 2, then pass 2
// over every block (the stream order of the two launches), each phase for all of a block's
// threads before the next.
struct HostExec {
  Regs regs[kThreads];
  template <typename F>
  void threads(F&& f) {
    for (int tid = 0; tid < kThreads; ++tid) f(tid, regs[tid]);
  }
  void sync() {}
};

inline void emulate_scan(const SelectiveScanParams& p) {
  std::vector<float> buffer(static_cast<size_t>(shared_floats()));
  auto exec = std::make_unique<HostExec>();
  Shared shared = carve_shared(buffer.data());
  for (int piece = 0; piece + 1 < p.pieces; ++piece) {
    for (int batch = 0; batch < p.batch; ++batch) {
      for (int tile = 0; tile * kThreads < p.dim; ++tile) {
        scan_piece<float, false>(p, tile, batch, piece, shared, *exec);
      }
    }
  }
  for (int piece = 0; piece < p.pieces; ++piece) {
    for (int batch = 0; batch < p.batch; ++batch) {
      for (int tile = 0; tile * kThreads < p.dim; ++tile) {
        scan_piece<float, true>(p, tile, batch, piece, shared, *exec);
      }
    }
  }
}
#endif

}  // namespace effarch::kernels::scan::pieces
