#pragma once
// The selective scan's block algorithm, written once for the GPU kernel and for a host emulation
// that CPU tests run (common/host_device.h). The kernel shell (selective_scan_kernels.cuh) only maps
// blocks and threads onto it.
//
// Mapping. A block owns kLanes = 32 neighbouring channels of one sequence (lane = channel) and
// walks the sequence in chunks of kWarps x kSeg timesteps (warp = a segment of kSeg steps; kSeg
// is a template parameter: 8, the default, or 4, which halves the registers so that two blocks
// fit an SM: docs/mamba.md says which is faster where measured). With the mixer's channel-last views a warp's load of one timestep is 32
// neighbouring channels: coalesced. The states are held kSlice at a time in registers; d_state
// above kSlice loops over slices. Per chunk and slice:
//   1. each warp scans its segment from a zero state, giving the segment's local end state;
//      with dtsum = sum of the segment's dt, the segment maps h to exp(A dtsum) h + local;
//   2. each warp composes the carry (the state before the chunk) with the earlier warps' maps:
//      its own start state;
//   3. each warp scans its segment again from that start, accumulating y = C . h per step; the
//      last warp's end state is the next chunk's carry.
// So the inputs are read from global memory once; the scan's exponentials are computed twice
// (steps 1 and 3), the price of parallelism over time inside a block. Steps past the end of the
// sequence have dt = 0 and u = 0: they leave the state unchanged.
//
// Exec runs a phase for every thread of the block and synchronises the block:
//   exec.threads(f) calls f(tid, regs) (on the GPU: this thread's; on the host: every thread's in
//   turn), exec.sync() is __syncthreads() on the GPU and nothing on the host (phases run whole).

#include <cstdint>
#include <cstring>
#ifndef __CUDACC__
#include <memory>
#include <vector>
#endif

#include "common/host_device.h"
#include "common/warp_sum.h"
#include "selective_scan/selective_scan_channel.h"
#include "selective_scan/selective_scan_lanes.h"
#include "selective_scan/selective_scan_pieces.h"
#include "selective_scan/selective_scan_params.h"
#include "selective_scan/selective_scan_split.h"

namespace effarch::kernels::scan {

inline constexpr int kDefaultSegment = 8;          // timesteps per segment (the other variant: 4)
inline constexpr int kThreads = kLanes * kWarps;
inline constexpr int kSlice = 16;                  // states in registers at a time

constexpr int num_slices(int dstate) { return (dstate + kSlice - 1) / kSlice; }

// Shared memory of a block, carved from one float buffer of shared_floats(dstate, seg) floats
// (27 KiB for d_state 16, 57 KiB for 256, with 8-step segments).
struct Shared {
  float (*B)[kSlice];              // [chunk][kSlice]: this chunk's B for the current slice
  float (*C)[kSlice];              // [chunk][kSlice]
  float (*agg)[kSlice][kLanes];    // [kWarps][kSlice][kLanes]: each segment's local end state
  float (*dtsum)[kLanes];          // [kWarps][kLanes]: each segment's sum of dt
  float (*carry)[kLanes];          // [slices * kSlice][kLanes]: the state before the chunk
};

constexpr int64_t shared_floats(int dstate, int seg = kDefaultSegment) {
  return 2 * chunk_steps(seg) * kSlice + kWarps * kSlice * kLanes + kWarps * kLanes +
         static_cast<int64_t>(num_slices(dstate)) * kSlice * kLanes;
}

EFFARCH_HD Shared carve_shared(float* buffer, int seg) {
  Shared s;
  s.B = reinterpret_cast<float(*)[kSlice]>(buffer);
  buffer += chunk_steps(seg) * kSlice;
  s.C = reinterpret_cast<float(*)[kSlice]>(buffer);
  buffer += chunk_steps(seg) * kSlice;
  s.agg = reinterpret_cast<float(*)[kSlice][kLanes]>(buffer);
  buffer += kWarps * kSlice * kLanes;
  s.dtsum = reinterpret_cast<float(*)[kLanes]>(buffer);
  buffer += kWarps * kLanes;
  s.carry = reinterpret_cast<float(*)[kLanes]>(buffer);
  return s;
}

// What a thread keeps from one phase to the next (registers on the GPU).
template <int kSeg>
struct ThreadRegs {
  float u[kSeg];
  float dt[kSeg];
  float z[kSeg];
  float y[kSeg];       // sum over the states done so far of C . h
  float A2[kSlice];    // A * log2(e) of the current slice (0 past d_state)
  float h[kSlice];
  float dtsum;
};

// discretize, A2_at, skip_of and finish: selective_scan_channel.h.

// Step 0 of a chunk: this thread's kSeg inputs (zeros outside the sequence or the channels).
template <typename input_t, int kSeg>
EFFARCH_HD void load_segment(const SelectiveScanParams& p, int batch, int channel, int64_t t_begin,
                             ThreadRegs<kSeg>& r) {
  const bool channel_ok = channel < p.dim;
  const auto* u = static_cast<const input_t*>(p.u) + batch * p.u_batch_stride + channel * p.u_dim_stride;
  const auto* delta =
      static_cast<const input_t*>(p.delta) + batch * p.delta_batch_stride + channel * p.delta_dim_stride;
  const auto* z = static_cast<const input_t*>(p.z) + batch * p.z_batch_stride + channel * p.z_dim_stride;
EFFARCH_UNROLL
  for (int i = 0; i < kSeg; ++i) {
    const int64_t t = t_begin + i;
    const bool ok = channel_ok && t < p.seqlen;
    r.u[i] = ok ? to_float(u[t * p.u_time_stride]) : 0.0f;
    r.dt[i] = ok ? discretize(p, to_float(delta[t * p.delta_time_stride]), channel) : 0.0f;
    r.z[i] = ok && p.z != nullptr ? to_float(z[t * p.z_time_stride]) : 0.0f;
    r.y[i] = 0.0f;
  }
  float sum = 0.0f;
EFFARCH_UNROLL
  for (int i = 0; i < kSeg; ++i) sum += r.dt[i];
  r.dtsum = sum;
}

template <int kSeg>
EFFARCH_HD void load_A(const SelectiveScanParams& p, int channel, int slice, ThreadRegs<kSeg>& r) {
EFFARCH_UNROLL
  for (int n = 0; n < kSlice; ++n) r.A2[n] = A2_at(p, channel, slice * kSlice + n);
}

// This chunk's B and C of one slice into shared memory, zeros outside (thread tid of the block).
template <typename input_t, int kSeg>
EFFARCH_HD void load_BC(const SelectiveScanParams& p, int batch, int64_t t_chunk, int slice, int tid, Shared& s) {
  const auto* B = static_cast<const input_t*>(p.B) + batch * p.B_batch_stride;
  const auto* C = static_cast<const input_t*>(p.C) + batch * p.C_batch_stride;
  for (int i = tid; i < chunk_steps(kSeg) * kSlice; i += kThreads) {
    const int step = i / kSlice, n = i % kSlice;  // neighbouring threads: neighbouring states
    const int64_t t = t_chunk + step;
    const int state = slice * kSlice + n;
    const bool ok = t < p.seqlen && state < p.dstate;
    s.B[step][n] = ok ? to_float(B[state * p.B_state_stride + t * p.B_time_stride]) : 0.0f;
    s.C[step][n] = ok ? to_float(C[state * p.C_state_stride + t * p.C_time_stride]) : 0.0f;
  }
}

// Steps 1 and 3 share the recurrence; `readout` adds C . h into r.y.
template <bool kReadout, int kSeg>
EFFARCH_HD void scan_segment(const Shared& s, int warp, ThreadRegs<kSeg>& r) {
EFFARCH_UNROLL
  for (int i = 0; i < kSeg; ++i) {
    const int step = warp * kSeg + i;
    const float du = r.dt[i] * r.u[i];
    float acc = 0.0f;
EFFARCH_UNROLL
    for (int n = 0; n < kSlice; ++n) {
      const float decay = exp2f(r.dt[i] * r.A2[n]);
      r.h[n] = decay * r.h[n] + s.B[step][n] * du;
      if (kReadout) acc += s.C[step][n] * r.h[n];
    }
    if (kReadout) r.y[i] += acc;
  }
}

// Step 1 for thread tid: its segment from a zero state; the local end state and (first slice)
// the dt sum go to shared memory.
template <int kSeg>
EFFARCH_HD void segment_from_zero(const SelectiveScanParams& p, int tile, int slice, int tid, Shared& s,
                                  ThreadRegs<kSeg>& r) {
  const int warp = tid / kLanes, lane = tid % kLanes;
  load_A(p, tile * kLanes + lane, slice, r);
EFFARCH_UNROLL
  for (int n = 0; n < kSlice; ++n) r.h[n] = 0.0f;
  scan_segment<false>(s, warp, r);
EFFARCH_UNROLL
  for (int n = 0; n < kSlice; ++n) s.agg[warp][n][lane] = r.h[n];
  if (slice == 0) s.dtsum[warp][lane] = r.dtsum;
}

// 2. and 3. of a chunk and slice, thread tid: the segment's start state from the carry and the
// earlier warps' maps, then the segment again from it with the readout (into r.y).
template <int kSeg>
EFFARCH_HD void segment_from_carry(int slice, int tid, const Shared& s, ThreadRegs<kSeg>& r) {
  const int warp = tid / kLanes, lane = tid % kLanes;
EFFARCH_UNROLL
  for (int n = 0; n < kSlice; ++n) r.h[n] = s.carry[slice * kSlice + n][lane];
  for (int j = 0; j < warp; ++j) {
    const float dtsum = s.dtsum[j][lane];
EFFARCH_UNROLL
    for (int n = 0; n < kSlice; ++n) r.h[n] = exp2f(dtsum * r.A2[n]) * r.h[n] + s.agg[j][n][lane];
  }
  scan_segment<true>(s, warp, r);
}

// After a slice (behind a barrier): the last warp's end state is the next chunk's carry.
template <int kSeg>
EFFARCH_HD void last_warp_to_carry(int slice, int tid, Shared& s, const ThreadRegs<kSeg>& r) {
  if (tid / kLanes != kWarps - 1) return;
EFFARCH_UNROLL
  for (int n = 0; n < kSlice; ++n) s.carry[slice * kSlice + n][tid % kLanes] = r.h[n];
}

// After a chunk's slices: the thread's kSeg outputs, gated and with the skip.
template <typename input_t, int kSeg>
EFFARCH_HD void write_y(const SelectiveScanParams& p, int tile, int batch, int64_t t_chunk, int tid,
                        const ThreadRegs<kSeg>& r) {
  const int warp = tid / kLanes, channel = tile * kLanes + tid % kLanes;
  if (channel >= p.dim) return;
  auto* y = static_cast<input_t*>(p.y) + batch * p.y_batch_stride + channel * p.y_dim_stride;
EFFARCH_UNROLL
  for (int i = 0; i < kSeg; ++i) {
    const int64_t t = t_chunk + warp * kSeg + i;
    if (t < p.seqlen) y[t * p.y_time_stride] = from_float<input_t>(finish(p, r.y[i], r.u[i], r.z[i], channel));
  }
}

// The whole block: channels [tile * kLanes, + kLanes) of sequence `batch`. Exec::kSeg: the
// segment length of its ThreadRegs.
template <typename input_t, typename Exec>
EFFARCH_HD void scan_block(const SelectiveScanParams& p, int tile, int batch, Shared& s, Exec& exec) {
  constexpr int kSeg = Exec::kSeg;
  using Regs = ThreadRegs<kSeg>;
  const int slices = num_slices(p.dstate);
  // The carry starts as the given state or zeros.
  exec.threads([&](int tid, Regs&) {
    for (int i = tid; i < slices * kSlice * kLanes; i += kThreads) {
      const int state = i / kLanes, lane = i % kLanes, channel = tile * kLanes + lane;
      float v = 0.0f;
      if (p.from_state && channel < p.dim && state < p.dstate) {
        v = p.state[batch * p.state_batch_stride + channel * p.state_dim_stride + state * p.state_state_stride];
      }
      s.carry[state][lane] = v;
    }
  });
  for (int64_t t_chunk = 0; t_chunk < p.seqlen; t_chunk += chunk_steps(kSeg)) {
    exec.threads([&](int tid, Regs& r) {
      const int warp = tid / kLanes, channel = tile * kLanes + tid % kLanes;
      load_segment<input_t, kSeg>(p, batch, channel, t_chunk + warp * kSeg, r);
    });
    for (int slice = 0; slice < slices; ++slice) {
      exec.threads([&](int tid, Regs&) { load_BC<input_t, kSeg>(p, batch, t_chunk, slice, tid, s); });
      exec.sync();
      // 1. Each segment from zero: its local end state.
      exec.threads([&](int tid, Regs& r) { segment_from_zero(p, tile, slice, tid, s, r); });
      exec.sync();
      // 2. The start state of each segment, 3. the segment again from it, with the readout.
      exec.threads([&](int tid, Regs& r) { segment_from_carry(slice, tid, s, r); });
      exec.sync();  // every warp has read the carry and this slice's B and C
      exec.threads([&](int tid, Regs& r) { last_warp_to_carry(slice, tid, s, r); });
    }
    exec.threads([&](int tid, Regs& r) { write_y<input_t>(p, tile, batch, t_chunk, tid, r); });
  }
  exec.sync();  // the last warp's carry, seen by every thread
  exec.threads([&](int tid, Regs&) {
    for (int i = tid; i < slices * kSlice * kLanes; i += kThreads) {
      const int state = i / kLanes, lane = i % kLanes, channel = tile * kLanes + lane;
      if (channel < p.dim && state < p.dstate) {
        p.state[batch * p.state_batch_stride + channel * p.state_dim_stride + state * p.state_state_stride] =
            s.carry[state][lane];
      }
    }
  });
}


// The chunks starting at t_begin, t_begin + chunk, ... before t_end (a multiple of the chunk or
// the sequence's end), from the carry in shared memory, which holds the state after them on return
// (seen by the last warp's threads; a sync makes it the block's). Writes y for those steps.
// scan_block's chunk loop, phase for phase (the phases are the shared functions above), for the
// split's blocks: scan_block keeps its own loop because routing it through this function changes
// ptxas's allocation at the 4-step variant's 128-register cap (12 bytes of spills on sm_90 bf16
// become 76-164); sharing only the phases leaves every kernel's registers and spills as they
// were. Both are tested against the reference.
template <typename input_t, typename Exec>
EFFARCH_HD void scan_chunks(const SelectiveScanParams& p, int tile, int batch, int64_t t_begin, int64_t t_end,
                            Shared& s, Exec& exec) {
  constexpr int kSeg = Exec::kSeg;
  using Regs = ThreadRegs<kSeg>;
  const int slices = num_slices(p.dstate);
  for (int64_t t_chunk = t_begin; t_chunk < t_end; t_chunk += chunk_steps(kSeg)) {
    exec.threads([&](int tid, Regs& r) {
      const int warp = tid / kLanes, channel = tile * kLanes + tid % kLanes;
      load_segment<input_t, kSeg>(p, batch, channel, t_chunk + warp * kSeg, r);
    });
    for (int slice = 0; slice < slices; ++slice) {
      exec.threads([&](int tid, Regs&) { load_BC<input_t, kSeg>(p, batch, t_chunk, slice, tid, s); });
      exec.sync();
      // 1. Each segment from zero: its local end state.
      exec.threads([&](int tid, Regs& r) { segment_from_zero(p, tile, slice, tid, s, r); });
      exec.sync();
      // 2. The start state of each segment, 3. the segment again from it, with the readout.
      exec.threads([&](int tid, Regs& r) { segment_from_carry(slice, tid, s, r); });
      exec.sync();  // every warp has read the carry and this slice's B and C
      exec.threads([&](int tid, Regs& r) { last_warp_to_carry(slice, tid, s, r); });
    }
    exec.threads([&](int tid, Regs& r) { write_y<input_t>(p, tile, batch, t_chunk, tid, r); });
  }
}

// The carry (every slice) into p.state, after a sync (thread tid's share).
EFFARCH_HD void store_carry(const SelectiveScanParams& p, int tile, int batch, int tid, const Shared& s) {
  const int slices = num_slices(p.dstate);
  for (int i = tid; i < slices * kSlice * kLanes; i += kThreads) {
    const int state = i / kLanes, lane = i % kLanes, channel = tile * kLanes + lane;
    if (channel < p.dim && state < p.dstate) {
      p.state[batch * p.state_batch_stride + channel * p.state_dim_stride + state * p.state_state_stride] =
          s.carry[state][lane];
    }
  }
}

// ---- Sequence split ----
//
// With batch x ceil(dim / 32) blocks short of the GPU (Mamba-2.8B at batch 1: 160 blocks for 132
// SMs), the sequence is also cut into p.pieces contiguous pieces of p.piece_chunks whole chunks
// (the last takes the rest), each scanned by its own blocks. The recurrence is linear, so a piece
// maps a start state h to exp(A S) h + e, with S its sum of dt and e its end state from zeros:
//   pass 1 (split_local_block, grid pieces - 1): every piece but the last scans from zeros, one
//     exponential per update and no readout (step 1 of the chunk, then the chunk's segments folded
//     into the piece's running end state), and writes e and S to the workspace; the blocks of
//     piece 0 also copy the initial state (from_state) into slot 0, so that pass 2 never reads
//     p.state, which the last piece overwrites;
//   pass 2 (split_scan_block, grid pieces): every piece composes its start state from the initial
//     state (or zeros) and the maps of the pieces before it (at most pieces - 1 compositions per
//     state: tiny next to a piece of several chunks, and no third launch or second workspace),
//     then runs the unsplit block's chunk loop over its own chunks, writing y; the last piece
//     writes the final state to p.state.
// Pieces are whole chunks, so every chunk boundary is where the unsplit kernel has one, and only
// the last piece reaches past the sequence's end. Deterministic: each workspace entry is written
// by one thread, and every sum runs in a fixed order.

// The plan (split_plan, auto_pieces): selective_scan_params.h, for the host-side launcher; the
// workspace's indices and the pieces' steps: selective_scan_split.h (the pieces kernel's too).

// Pass 1's shared memory: the block's, then each lane's running sum of dt over the piece.
constexpr int64_t split_local_shared_floats(int dstate, int seg) { return shared_floats(dstate, seg) + kLanes; }

// Pass 1: piece `piece` (< pieces - 1) of channels [tile * kLanes, + kLanes) of sequence `batch`
// from zeros; its end state and dt sum into workspace slot piece + 1. `piece_dtsum`: kLanes floats
// of shared memory.
template <typename input_t, typename Exec>
EFFARCH_HD void split_local_block(const SelectiveScanParams& p, int tile, int batch, int piece, Shared& s,
                                  float* piece_dtsum, Exec& exec) {
  constexpr int kSeg = Exec::kSeg;
  using Regs = ThreadRegs<kSeg>;
  const int slices = num_slices(p.dstate);
  exec.threads([&](int tid, Regs&) {
    for (int i = tid; i < slices * kSlice * kLanes; i += kThreads) {
      const int state = i / kLanes, lane = i % kLanes, channel = tile * kLanes + lane;
      s.carry[state][lane] = 0.0f;
      if (piece == 0 && p.from_state && channel < p.dim && state < p.dstate) {
        p.split_states[split_state_index(p, batch, 0, state, channel)] =
            p.state[batch * p.state_batch_stride + channel * p.state_dim_stride + state * p.state_state_stride];
      }
    }
    if (tid < kLanes) piece_dtsum[tid] = 0.0f;
  });
  const int64_t end = piece_end(p, piece, kSeg);
  for (int64_t t_chunk = piece_begin(p, piece, kSeg); t_chunk < end; t_chunk += chunk_steps(kSeg)) {
    exec.threads([&](int tid, Regs& r) {
      const int warp = tid / kLanes, channel = tile * kLanes + tid % kLanes;
      load_segment<input_t, kSeg>(p, batch, channel, t_chunk + warp * kSeg, r);
    });
    for (int slice = 0; slice < slices; ++slice) {
      exec.threads([&](int tid, Regs&) { load_BC<input_t, kSeg>(p, batch, t_chunk, slice, tid, s); });
      exec.sync();  // also: the previous slice's fold has read agg
      exec.threads([&](int tid, Regs& r) { segment_from_zero(p, tile, slice, tid, s, r); });
      exec.sync();
      // The chunk's segments folded into the running end state, kSlice x kLanes (state, lane)
      // pairs over the block's threads: warp w takes states w, w + kWarps, ...
      exec.threads([&](int tid, Regs&) {
        const int warp = tid / kLanes, lane = tid % kLanes, channel = tile * kLanes + lane;
        for (int n = warp; n < kSlice; n += kWarps) {
          const int state = slice * kSlice + n;
          const float a2 = A2_at(p, channel, state);
          float h = s.carry[state][lane];
          for (int j = 0; j < kWarps; ++j) h = exp2f(s.dtsum[j][lane] * a2) * h + s.agg[j][n][lane];
          s.carry[state][lane] = h;
        }
        if (slice == 0 && warp == 0) {
          float sum = piece_dtsum[lane];
          for (int j = 0; j < kWarps; ++j) sum += s.dtsum[j][lane];
          piece_dtsum[lane] = sum;
        }
      });
    }
  }
  exec.sync();
  exec.threads([&](int tid, Regs&) {
    for (int i = tid; i < slices * kSlice * kLanes; i += kThreads) {
      const int state = i / kLanes, lane = i % kLanes, channel = tile * kLanes + lane;
      if (channel < p.dim && state < p.dstate) {
        p.split_states[split_state_index(p, batch, piece + 1, state, channel)] = s.carry[state][lane];
      }
    }
    const int channel = tile * kLanes + tid;
    if (tid < kLanes && channel < p.dim) p.split_dtsum[split_dtsum_index(p, batch, piece + 1, channel)] = piece_dtsum[tid];
  });
}

// Pass 2: piece `piece` of the block's channels from its composed start state, writing y; the last
// piece writes the final state.
template <typename input_t, typename Exec>
EFFARCH_HD void split_scan_block(const SelectiveScanParams& p, int tile, int batch, int piece, Shared& s,
                                 Exec& exec) {
  constexpr int kSeg = Exec::kSeg;
  using Regs = ThreadRegs<kSeg>;
  const int slices = num_slices(p.dstate);
  exec.threads([&](int tid, Regs&) {
    for (int i = tid; i < slices * kSlice * kLanes; i += kThreads) {
      const int state = i / kLanes, lane = i % kLanes, channel = tile * kLanes + lane;
      float h = 0.0f;
      if (channel < p.dim && state < p.dstate) {
        if (p.from_state) h = p.split_states[split_state_index(p, batch, 0, state, channel)];
        const float a2 = A2_at(p, channel, state);
        for (int q = 1; q <= piece; ++q) {
          h = exp2f(p.split_dtsum[split_dtsum_index(p, batch, q, channel)] * a2) * h +
              p.split_states[split_state_index(p, batch, q, state, channel)];
        }
      }
      s.carry[state][lane] = h;
    }
  });
  scan_chunks<input_t>(p, tile, batch, piece_begin(p, piece, kSeg), piece_end(p, piece, kSeg), s, exec);
  if (piece + 1 != p.pieces) return;
  exec.sync();
  exec.threads([&](int tid, Regs&) { store_carry(p, tile, batch, tid, s); });
}

// The one-token update, kUpdateLanes threads per (sequence, channel): lane l of a channel takes
// the states l, l + kUpdateLanes, ..., so a channel's neighbouring states sit in neighbouring
// threads and the fp32 state rows are read and written coalesced (one thread per channel, as
// before, read 64-byte rows with a warp touching 32 of them per load: on an H200 the update took
// 36.8 us at batch 32 for 10 MiB of state). Each lane returns its part of C . h; the channel's
// readout is their sum by an xor butterfly over the lanes (warp shuffles in the kernel,
// common/warp_sum.h's xor_butterfly_sum_emulated on the host), and update_finish writes y.
inline constexpr int kUpdateLanes = 16;

// The vector path of the update (update_vectorized says when it applies): kUpdateVecLanes threads
// per (sequence, channel), lane l taking the groups of kUpdateVec neighbouring states l,
// l + kUpdateVecLanes, ... (d_state 16: one group a lane), the fp32 state and A read and the state
// written as 16-byte vectors, B and C as 8 (bf16, fp16) or 16 bytes (fp32). Why: with a lane per
// state each thread had 4 bytes of the state in flight and the update at batch 32 (2.6 M threads
// for Mamba-2.8B, about ten waves of them on 132 SMs, each paying a memory round trip) took 41-43
// us on an H200 for 21 MB of state read and written, 12% of the copy bandwidth; four states a
// thread is a quarter of the threads and of the waves with four times the bytes in flight each.
inline constexpr int kUpdateVec = 4;
inline constexpr int kUpdateVecLanes = 4;

// Whether the vector path applies: d_state a multiple of kUpdateVec, the states, A, B and C
// contiguous along the states, and every (sequence, channel)'s group start aligned to its vector
// (`elem_bytes`: the input type's size, for B and C). The mixer's decode step meets it (its fp32
// state [B, D, N] and A [D, N] contiguous; B and C narrowed from x_proj's output after dt_rank
// elements, a multiple of 4 for every Mamba-1 checkpoint); anything else takes the lane-per-state
// path. A host function the launcher calls.
inline bool update_vectorized(const SelectiveScanParams& p, int elem_bytes) {
  const auto aligned = [](const void* ptr, int64_t bytes) { return reinterpret_cast<uintptr_t>(ptr) % bytes == 0; };
  const int64_t group_bytes = int64_t{kUpdateVec} * elem_bytes;
  return p.dstate % kUpdateVec == 0 && p.state_state_stride == 1 && p.A_state_stride == 1 && p.B_state_stride == 1 &&
         p.C_state_stride == 1 && aligned(p.state, 16) && p.state_batch_stride % kUpdateVec == 0 &&
         p.state_dim_stride % kUpdateVec == 0 && aligned(p.A, 16) && p.A_dim_stride % kUpdateVec == 0 &&
         aligned(p.B, group_bytes) && aligned(p.C, group_bytes) && p.B_batch_stride % kUpdateVec == 0 &&
         p.C_batch_stride % kUpdateVec == 0;
}

// A channel's inputs of the one-token update, read once before any store (reads after the state's
// store wait for it: the compiler cannot tell the pointers apart).
struct UpdateInputs {
  float u, dt, z, D;
};

// The channel's delta as the update reads it (p.dt_proj unset).
template <typename input_t>
EFFARCH_HD float update_delta(const SelectiveScanParams& p, int batch, int channel) {
  return to_float(static_cast<const input_t*>(p.delta)[batch * p.delta_batch_stride + channel * p.delta_dim_stride]);
}

// With dt_proj fused (p.dt_proj set): lane l's part of the channel's delta, the products
// dt_proj[channel, r] dt_low[batch, r] for r = l, l + lanes, ... summed in fp32 (`lanes`: the
// channel's threads, kUpdateLanes or kUpdateVecLanes). The lanes' parts are added by the same
// butterfly as the readout, then dt_proj_round gives delta.
template <typename input_t>
EFFARCH_HD float dt_proj_lane(const SelectiveScanParams& p, int batch, int channel, int lane, int lanes) {
  const auto* w = static_cast<const input_t*>(p.dt_proj) + channel * p.dt_proj_dim_stride;
  const auto* x = static_cast<const input_t*>(p.dt_low) + batch * p.dt_low_batch_stride;
  float acc = 0.0f;
  for (int r = lane; r < p.dt_rank; r += lanes) {
    acc = fmaf(to_float(w[r * p.dt_proj_rank_stride]), to_float(x[r * p.dt_low_rank_stride]), acc);
  }
  return acc;
}
// The projection's one rounding to the element type, as a GEMV returning delta would round it.
template <typename input_t>
EFFARCH_HD float dt_proj_round(float sum) {
  return to_float(from_float<input_t>(sum));
}

// `delta`: the channel's raw delta (update_delta, or the fused projection's).
template <typename input_t>
EFFARCH_HD UpdateInputs update_inputs(const SelectiveScanParams& p, int batch, int channel, float delta) {
  UpdateInputs in;
  in.u = to_float(static_cast<const input_t*>(p.u)[batch * p.u_batch_stride + channel * p.u_dim_stride]);
  in.dt = discretize(p, delta, channel);
  in.z = p.z != nullptr
             ? to_float(static_cast<const input_t*>(p.z)[batch * p.z_batch_stride + channel * p.z_dim_stride])
             : 0.0f;
  in.D = skip_of(p, channel);
  return in;
}

template <typename input_t>
EFFARCH_HD float update_lane(const SelectiveScanParams& p, int batch, int channel, int lane, const UpdateInputs& in) {
  const auto* B = static_cast<const input_t*>(p.B) + batch * p.B_batch_stride;
  const auto* C = static_cast<const input_t*>(p.C) + batch * p.C_batch_stride;
  float* h = p.state + batch * p.state_batch_stride + channel * p.state_dim_stride;
  const float* A = p.A + channel * p.A_dim_stride;  // channel < p.dim: A2_at's checks not needed
  const float du = in.dt * in.u;
  float acc = 0.0f;
  for (int n = lane; n < p.dstate; n += kUpdateLanes) {
    const float c = to_float(C[n * p.C_state_stride]);  // before the store, as update_inputs says
    const float decay = exp2f(in.dt * (A[n * p.A_state_stride] * kLog2e));
    const float next = decay * h[n * p.state_state_stride] + to_float(B[n * p.B_state_stride]) * du;
    h[n * p.state_state_stride] = next;
    acc += c * next;
  }
  return acc;
}

// kUpdateVec neighbouring elements widened to fp32 (an aligned 8- or 16-byte load on the GPU).
template <typename T>
EFFARCH_HD void load_group(const T* at, float (&v)[kUpdateVec]) {
#ifdef __CUDA_ARCH__
  if constexpr (sizeof(T) == 4) {
    const float4 f = *reinterpret_cast<const float4*>(at);
    v[0] = to_float(f.x), v[1] = to_float(f.y), v[2] = to_float(f.z), v[3] = to_float(f.w);
  } else {
    static_assert(sizeof(T) == 2, "load_group: 2- or 4-byte elements");
    const uint2 raw = *reinterpret_cast<const uint2*>(at);
    T e[kUpdateVec];
    memcpy(e, &raw, sizeof raw);  // (register moves; a union read would be type punning)
    EFFARCH_UNROLL
    for (int i = 0; i < kUpdateVec; ++i) v[i] = to_float(e[i]);
  }
#else
  for (int i = 0; i < kUpdateVec; ++i) v[i] = to_float(at[i]);
#endif
}
EFFARCH_HD void store_group(float* at, const float (&v)[kUpdateVec]) {
#ifdef __CUDA_ARCH__
  *reinterpret_cast<float4*>(at) = make_float4(v[0], v[1], v[2], v[3]);
#else
  for (int i = 0; i < kUpdateVec; ++i) at[i] = v[i];
#endif
}

// update_lane on the vector path: lane l's groups of kUpdateVec states, each read whole (C, A, the
// state, B) before the group's store, the state updated per element as update_lane does it, and
// the lane's part of C . h summed in state order.
template <typename input_t>
EFFARCH_HD float update_lane_vec(const SelectiveScanParams& p, int batch, int channel, int lane, const UpdateInputs& in) {
  const auto* B = static_cast<const input_t*>(p.B) + batch * p.B_batch_stride;
  const auto* C = static_cast<const input_t*>(p.C) + batch * p.C_batch_stride;
  float* h = p.state + batch * p.state_batch_stride + channel * p.state_dim_stride;
  const float* A = p.A + channel * p.A_dim_stride;
  const float du = in.dt * in.u;
  float acc = 0.0f;
  for (int n0 = lane * kUpdateVec; n0 < p.dstate; n0 += kUpdateVecLanes * kUpdateVec) {
    float c[kUpdateVec], a[kUpdateVec], hv[kUpdateVec], b[kUpdateVec];
    load_group(C + n0, c);
    load_group(A + n0, a);
    load_group<float>(h + n0, hv);
    load_group(B + n0, b);
    EFFARCH_UNROLL
    for (int i = 0; i < kUpdateVec; ++i) {
      const float decay = exp2f(in.dt * (a[i] * kLog2e));
      hv[i] = decay * hv[i] + b[i] * du;
    }
    store_group(h + n0, hv);
    EFFARCH_UNROLL
    for (int i = 0; i < kUpdateVec; ++i) acc += c[i] * hv[i];
  }
  return acc;
}

template <typename input_t>
EFFARCH_HD void update_finish(const SelectiveScanParams& p, int batch, int channel, float readout,
                              const UpdateInputs& in) {
  // finish (selective_scan_channel.h) with D from the inputs read before the state's stores.
  float y = readout;
  if (p.D != nullptr) y += in.D * in.u;
  if (p.z != nullptr) y *= silu(in.z);
  static_cast<input_t*>(p.y)[batch * p.y_batch_stride + channel * p.y_dim_stride] = from_float<input_t>(y);
}

#ifndef __CUDACC__
// Host emulation of the kernels for CPU tests (float inputs): the prefill runs every block in
// turn, each phase for all of a block's threads before the next (what __syncthreads guarantees on
// the GPU); the update runs every (sequence, channel) thread.
template <int kSegment>
struct HostExec {
  static constexpr int kSeg = kSegment;
  ThreadRegs<kSeg> regs[kThreads];
  template <typename F>
  void threads(F&& f) {
    for (int tid = 0; tid < kThreads; ++tid) f(tid, regs[tid]);
  }
  void sync() {}
};

template <int kSeg>
void emulate_scan_with(const SelectiveScanParams& p) {
  std::vector<float> buffer(static_cast<size_t>(shared_floats(p.dstate, kSeg)));
  auto exec = std::make_unique<HostExec<kSeg>>();
  for (int batch = 0; batch < p.batch; ++batch) {
    for (int tile = 0; tile * kLanes < p.dim; ++tile) {
      Shared shared = carve_shared(buffer.data(), kSeg);
      scan_block<float>(p, tile, batch, shared, *exec);
    }
  }
}
// The split: pass 1 over every block of pieces 0 .. pieces - 2, then pass 2 over every block
// (what the stream order of the two launches guarantees on the GPU).
template <int kSeg>
void emulate_split_with(const SelectiveScanParams& p) {
  std::vector<float> buffer(static_cast<size_t>(split_local_shared_floats(p.dstate, kSeg)));
  auto exec = std::make_unique<HostExec<kSeg>>();
  for (int piece = 0; piece + 1 < p.pieces; ++piece) {
    for (int batch = 0; batch < p.batch; ++batch) {
      for (int tile = 0; tile * kLanes < p.dim; ++tile) {
        Shared shared = carve_shared(buffer.data(), kSeg);
        split_local_block<float>(p, tile, batch, piece, shared, buffer.data() + shared_floats(p.dstate, kSeg), *exec);
      }
    }
  }
  for (int piece = 0; piece < p.pieces; ++piece) {
    for (int batch = 0; batch < p.batch; ++batch) {
      for (int tile = 0; tile * kLanes < p.dim; ++tile) {
        Shared shared = carve_shared(buffer.data(), kSeg);
        split_scan_block<float>(p, tile, batch, piece, shared, *exec);
      }
    }
  }
}

// p.segment and p.pieces pick the variant, as the launcher does.
inline void emulate_scan(const SelectiveScanParams& p) {
  if (p.segment == kLanesSegment) {
    lanes::emulate_scan(p);
  } else if (p.segment == kPiecesSegment) {
    pieces::emulate_scan(p);
  } else if (p.pieces > 1) {
    if (p.segment == 4) {
      emulate_split_with<4>(p);
    } else {
      emulate_split_with<8>(p);
    }
  } else if (p.segment == 4) {
    emulate_scan_with<4>(p);
  } else {
    emulate_scan_with<8>(p);
  }
}

// The update as the kernel runs it on one path (kVec: the vector path, kUpdateVecLanes threads a
// channel; else kUpdateLanes): the lanes' parts of dt_proj's dot and of the readout, each summed
// by the butterfly over the channel's lanes.
template <bool kVec>
void emulate_update_with(const SelectiveScanParams& p) {
  constexpr int kL = kVec ? kUpdateVecLanes : kUpdateLanes;
  for (int batch = 0; batch < p.batch; ++batch) {
    for (int channel = 0; channel < p.dim; ++channel) {
      float delta;
      if (p.dt_proj != nullptr) {
        float dt_parts[kL];
        for (int lane = 0; lane < kL; ++lane) dt_parts[lane] = dt_proj_lane<float>(p, batch, channel, lane, kL);
        delta = dt_proj_round<float>(xor_butterfly_sum_emulated<kL>(dt_parts));
      } else {
        delta = update_delta<float>(p, batch, channel);
      }
      const UpdateInputs in = update_inputs<float>(p, batch, channel, delta);
      float parts[kL];
      for (int lane = 0; lane < kL; ++lane) {
        parts[lane] = kVec ? update_lane_vec<float>(p, batch, channel, lane, in)
                           : update_lane<float>(p, batch, channel, lane, in);
      }
      update_finish<float>(p, batch, channel, xor_butterfly_sum_emulated<kL>(parts), in);
    }
  }
}
// The path the launcher takes for these params (float inputs: 4-byte elements).
inline void emulate_update(const SelectiveScanParams& p) {
  if (update_vectorized(p, 4)) {
    emulate_update_with<true>(p);
  } else {
    emulate_update_with<false>(p);
  }
}
#endif

}  // namespace effarch::kernels::scan
