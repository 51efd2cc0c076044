#pragma once
// The selective scan's second prefill algorithm, "lanes16" (and "lanes8"): a warp per channel, its
// 32 lanes over time. Written once for the GPU kernel (selective_scan_kernels.cuh) and for the
// host emulation that CPU tests run, as selective_scan_math.h is.
//
// Why a second one. The first (selective_scan_math.h) puts 32 channels on a warp's lanes and
// walks time in 32-step chunks, scanning each chunk twice and composing the warps' segments
// behind three barriers a chunk; on an H200 it ran at 2.3% of the copy bandwidth with 15-25% of
// the SMs' issue slots busy (docs/perf/README.md): each block waits out a chain of short phases.
// Here, as in mamba_ssm's scan, time is what the threads share:
//
// Mapping. A block owns kChannels = 8 neighbouring channels of one sequence, a warp per channel,
// and walks the sequence in tiles of kTile = 512 steps; lane l scans steps [16 l, 16 l + 16) of
// the tile in sequence. Per tile:
//   1. the block stages u and dt = softplus(delta + bias) of its channels, and B and C eight
//      states at a time, in shared memory, transposed so that a lane's 16 steps are contiguous
//      (rows read as 16-byte vectors where the layout allows: the mixer's channel-last views);
//   2. per state n, each lane scans its steps from zero (a_i = exp(dt_i A), b_i = dt_i u_i B_i,
//      kept in registers), giving the map h -> P h + H of its segment (P = exp(A sum dt));
//   3. the warp scans those maps across its lanes (five shuffle steps) and composes them with
//      the carry, the state before the tile: every lane gets its start state, and the warp the
//      next tile's carry;
//   4. each lane runs its steps again from its start state, accumulating y_i += C_i h_i;
//   5. after the last state, y + D u goes through shared memory back to channel-last rows,
//      gated by SiLU(z) on the way out.
// One exponential per (step, state) and 2 + 2 d_state / 8 barriers a tile (512 steps), against
// two to three exponentials and three barriers every 32 steps. The grid is batch x ceil(dim / 8) blocks:
// 640 for Mamba-2.8B at batch 1.
//
// lanes8 (Layout<8>, SelectiveScanParams::lane_steps 8) is the same with 8 steps a lane and tiles
// of 256: a measuring variant, for occupancy. lanes16 keeps 80 floats a lane through a tile (108
// registers on sm_90) and 80 KiB of staged rows a block, so two blocks (16 warps) share an SM and
// the SM issues in 42% of its cycles, waiting on the loop's latency (docs/mamba.md); lanes8 keeps
// half of both, so four blocks can, at the price of twice the shuffle rounds and barriers a step.
//
// Exec, as in selective_scan_math.h: exec.threads(f) runs f(tid, regs) for the block's threads
// (on the host: in turn), exec.sync() is __syncthreads(); exec.warp_carry(s, state) is step 3
// (warp shuffles on the GPU, the same Kogge-Stone order over the lanes' registers on the host).

#include <cstdint>
#ifndef __CUDACC__
#include <memory>
#include <vector>
#endif

#include "common/host_device.h"
#include "selective_scan/selective_scan_channel.h"
#include "selective_scan/selective_scan_params.h"

namespace effarch::kernels::scan::lanes {

inline constexpr int kChannels = 8;                  // channels (warps) per block
inline constexpr int kThreads = kChannels * kLanes;  // 256
inline constexpr int kStates = 8;                    // states of B and C staged at a time
inline constexpr int kPad = 4;                       // floats after each lane's steps

// A lane's steps: 16 (lanes16, the default) or 8 (lanes8). Eight halve what a lane keeps (the
// five arrays of Regs) and the staged rows, so more blocks share an SM (sm_90: 4 of lanes8, 2 of
// lanes16), at the price of a tile of 256 steps: the warp's shuffle scan and the barriers come
// twice as often per step.
template <int Items>
struct Layout {
  static_assert(Items == 16 || Items == 8, "a lane scans 16 or 8 steps");
  static constexpr int kTile = kLanes * Items;        // 512 or 256 steps per tile
  static constexpr int kRow = kTile + kLanes * kPad;  // 640 or 384 floats per staged row
  // Where step r of a tile sits in a staged row: lane l's steps start at (Items + 4) l, 16-byte
  // aligned, and the eight lanes of a 16-byte shared-memory access start on distinct banks (16
  // steps: 0, 20, 8, 28, 16, 4, 24, 12; 8 steps: 0, 12, 24, 4, 16, 28, 8, 20), so the lanes'
  // vector reads do not conflict.
  EFFARCH_HD static constexpr int pos(int r) { return r + kPad * (r / Items); }
};

// Shared memory, floats: u and dt [kChannels][kRow] (dt's rows take y + D u at the end), B and C
// [kStates][kRow], the carry and A log2(e) [kChannels][dstate], dt's bias [kChannels]. lanes16:
// 80 KiB + 64 bytes a state + 32 (two blocks fit an sm_90 SM for every d_state up to 256);
// lanes8: 48 KiB + the same (four at d_state 16).
template <int Items>
constexpr int64_t shared_floats(int dstate) {
  return 2 * kChannels * Layout<Items>::kRow + 2 * kStates * Layout<Items>::kRow +
         2 * static_cast<int64_t>(kChannels) * dstate + kChannels;
}

template <int Items>
struct Shared {
  static constexpr int kRow = Layout<Items>::kRow;
  float (*u)[kRow];
  float (*dt)[kRow];
  float (*B)[kRow];
  float (*C)[kRow];
  float* carry;  // [kChannels][dstate]
  float* A2;     // [kChannels][dstate]: A log2(e), read once per block (0 past the channels)
  float* bias;   // [kChannels]: dt's bias, read once per block (0 past the channels or without one)
};

template <int Items>
EFFARCH_HD Shared<Items> carve_shared(float* buffer, int dstate) {
  Shared<Items> s;
  s.u = reinterpret_cast<float(*)[Layout<Items>::kRow]>(buffer);
  s.dt = s.u + kChannels;
  s.B = s.dt + kChannels;
  s.C = s.B + kStates;
  s.carry = reinterpret_cast<float*>(s.C + kStates);
  s.A2 = s.carry + kChannels * dstate;
  s.bias = s.A2 + kChannels * dstate;
  return s;
}

// What a lane keeps through a tile (registers on the GPU).
template <int Items>
struct Regs {
  float dt[Items];
  float du[Items];  // dt u
  float y[Items];   // sum over the states so far of C . h
  float a[Items];   // this state's exp(dt A) and dt u B per step
  float b[Items];
  float dtsum;
  float P, H;  // the segment's map h -> P h + H (step 2), then the warp's inclusive scan of it
  float h0;    // the segment's start state (step 3)
};

// Row t of two tensors' windows of eight elements (a + t a_row + k a_elem, and b's), the first
// `count` of them, the rest 0: load8 each where count is 8 (16-byte loads where `vec`), else
// element by element. What both staging steps read a row with.
template <typename input_t>
EFFARCH_HD void load_row_pair(const input_t* a, int64_t a_row, int64_t a_elem, const input_t* b, int64_t b_row,
                              int64_t b_elem, int64_t t, int count, bool vec, float (&av)[8], float (&bv)[8]) {
  if (count >= 8) {
    load8(a + t * a_row, a_elem, vec, av);
    load8(b + t * b_row, b_elem, vec, bv);
    return;
  }
  for (int k = 0; k < count; ++k) {
    av[k] = to_float(a[t * a_row + k * a_elem]);
    bv[k] = to_float(b[t * b_row + k * b_elem]);
  }
}

// Step 1a (thread tid): the tile's u and dt of the block's channels into shared memory, zeros
// past the sequence or the channels; a thread takes whole rows (eight channels of one step).
template <typename input_t, int Items>
EFFARCH_HD void stage_inputs(const SelectiveScanParams& p, int tile, int batch, int64_t t0, int tid, Shared<Items>& s) {
  using L = Layout<Items>;
  const int c0 = tile * kChannels;
  const auto* u = static_cast<const input_t*>(p.u) + batch * p.u_batch_stride + c0 * p.u_dim_stride;
  const auto* delta =
      static_cast<const input_t*>(p.delta) + batch * p.delta_batch_stride + c0 * p.delta_dim_stride;
  const int count = p.dim - c0 < kChannels ? p.dim - c0 : kChannels;
  const bool vec = count == kChannels && rows_vectorise(u, p.u_dim_stride, p.u_time_stride) &&
                   rows_vectorise(delta, p.delta_dim_stride, p.delta_time_stride);
  for (int r = tid; r < L::kTile; r += kThreads) {
    const int64_t t = t0 + r;
    float uv[8] = {}, dv[8] = {};
    if (t < p.seqlen) {
      load_row_pair(u, p.u_time_stride, p.u_dim_stride, delta, p.delta_time_stride, p.delta_dim_stride, t, count,
                    vec, uv, dv);
    }
EFFARCH_UNROLL
    for (int k = 0; k < kChannels; ++k) {
      const bool ok = t < p.seqlen && c0 + k < p.dim;
      s.u[k][L::pos(r)] = uv[k];
      // dt 0: the state passes unchanged (discretize's arithmetic, the bias from shared memory)
      s.dt[k][L::pos(r)] = ok ? dt_of(p, dv[k], s.bias[k]) : 0.0f;
    }
  }
}

// Step 1b: states [first, first + kStates) of the tile's B and C, zeros outside; a thread takes
// the eight states of a step.
template <typename input_t, int Items>
EFFARCH_HD void stage_BC(const SelectiveScanParams& p, int batch, int64_t t0, int first, int tid, Shared<Items>& s) {
  using L = Layout<Items>;
  static_assert(kStates == 8, "a row of staged states is one load8");
  const auto* B = static_cast<const input_t*>(p.B) + batch * p.B_batch_stride + first * p.B_state_stride;
  const auto* C = static_cast<const input_t*>(p.C) + batch * p.C_batch_stride + first * p.C_state_stride;
  const int count = p.dstate - first < kStates ? p.dstate - first : kStates;
  const bool vec = count == kStates && rows_vectorise(B, p.B_state_stride, p.B_time_stride) &&
                   rows_vectorise(C, p.C_state_stride, p.C_time_stride);
  for (int r = tid; r < L::kTile; r += kThreads) {
    const int64_t t = t0 + r;
    float bv[8] = {}, cv[8] = {};
    if (t < p.seqlen) {
      load_row_pair(B, p.B_time_stride, p.B_state_stride, C, p.C_time_stride, p.C_state_stride, t, count, vec, bv, cv);
    }
EFFARCH_UNROLL
    for (int k = 0; k < kStates; ++k) {
      s.B[k][L::pos(r)] = bv[k];
      s.C[k][L::pos(r)] = cv[k];
    }
  }
}

// The carry (the state before the first tile): the given state or zeros; A log2(e) of the
// block's channels, which each state's scan would otherwise fetch from global memory, a latency
// before its first exponential; and their dt biases, which the staging would otherwise load for
// every step (thread tid's share; read behind a barrier).
template <int Items>
EFFARCH_HD void init_block(const SelectiveScanParams& p, int tile, int batch, int tid, Shared<Items>& s) {
  if (tid < kChannels) {
    const int channel = tile * kChannels + tid;
    s.bias[tid] = channel < p.dim ? delta_bias_of(p, channel) : 0.0f;
  }
  for (int i = tid; i < kChannels * p.dstate; i += kThreads) {
    const int k = i / p.dstate, n = i % p.dstate, channel = tile * kChannels + k;
    float v = 0.0f;
    if (p.from_state && channel < p.dim) {
      v = p.state[batch * p.state_batch_stride + channel * p.state_dim_stride + n * p.state_state_stride];
    }
    s.carry[i] = v;
    s.A2[i] = A2_at(p, channel, n);
  }
}

// The carry into p.state after the last tile (behind a barrier).
template <int Items>
EFFARCH_HD void store_carry(const SelectiveScanParams& p, int tile, int batch, int tid, const Shared<Items>& s) {
  for (int i = tid; i < kChannels * p.dstate; i += kThreads) {
    const int k = i / p.dstate, n = i % p.dstate, channel = tile * kChannels + k;
    if (channel < p.dim) {
      p.state[batch * p.state_batch_stride + channel * p.state_dim_stride + n * p.state_state_stride] = s.carry[i];
    }
  }
}

// A lane's steps of the tile from shared memory: dt, dt u, and y cleared.
template <int Items>
EFFARCH_HD void lane_inputs(int tid, const Shared<Items>& s, Regs<Items>& r) {
  const int warp = tid / kLanes, lane = tid % kLanes;
  const float* dt = &s.dt[warp][lane * (Items + kPad)];
  const float* u = &s.u[warp][lane * (Items + kPad)];
  float sum = 0.0f;
EFFARCH_UNROLL
  for (int i = 0; i < Items; ++i) {
    r.dt[i] = dt[i];
    r.du[i] = dt[i] * u[i];
    r.y[i] = 0.0f;
    sum += dt[i];
  }
  r.dtsum = sum;
}

// Step 2 for state `state` (row n of the staged B): the lane's segment from zero.
template <int Items>
EFFARCH_HD void segment_map(int dstate, int state, int n, int tid, const Shared<Items>& s, Regs<Items>& r) {
  const int warp = tid / kLanes, lane = tid % kLanes;
  const float a2 = s.A2[warp * dstate + state];
  const float* B = &s.B[n][lane * (Items + kPad)];
  float h = 0.0f;
EFFARCH_UNROLL
  for (int i = 0; i < Items; ++i) {
    r.a[i] = exp2_ftz(r.dt[i] * a2);
    r.b[i] = r.du[i] * B[i];
    h = r.a[i] * h + r.b[i];
  }
  r.P = exp2_ftz(r.dtsum * a2);
  r.H = h;
}

// Step 3's arithmetic: the later map (P, H) after the earlier (Pe, He): h -> P (Pe h + He) + H.
EFFARCH_HD void compose(float& P, float& H, float Pe, float He) {
  H = P * He + H;
  P = P * Pe;
}

// Step 4: the lane's steps again from its start state, with the readout of row n of C.
template <int Items>
EFFARCH_HD void segment_readout(int n, int tid, const Shared<Items>& s, Regs<Items>& r) {
  const int lane = tid % kLanes;
  const float* C = &s.C[n][lane * (Items + kPad)];
  float h = r.h0;
EFFARCH_UNROLL
  for (int i = 0; i < Items; ++i) {
    h = r.a[i] * h + r.b[i];
    r.y[i] += C[i] * h;
  }
}

// Step 5a: y + D u into the warp's own dt row (no other warp reads it after lane_inputs).
template <int Items>
EFFARCH_HD void lane_outputs(const SelectiveScanParams& p, int tile, int tid, Shared<Items>& s, const Regs<Items>& r) {
  const int warp = tid / kLanes, lane = tid % kLanes, channel = tile * kChannels + warp;
  const float D = channel < p.dim ? skip_of(p, channel) : 0.0f;
  float* y = &s.dt[warp][lane * (Items + kPad)];
  const float* u = &s.u[warp][lane * (Items + kPad)];
EFFARCH_UNROLL
  for (int i = 0; i < Items; ++i) y[i] = p.D != nullptr ? r.y[i] + D * u[i] : r.y[i];
}

// Step 5b (behind a barrier): the tile's y rows, gated, to global memory; a thread takes whole
// rows, as stage_inputs does.
template <typename input_t, int Items>
EFFARCH_HD void write_y(const SelectiveScanParams& p, int tile, int batch, int64_t t0, int tid,
                        const Shared<Items>& s) {
  using L = Layout<Items>;
  const int c0 = tile * kChannels;
  auto* y = static_cast<input_t*>(p.y) + batch * p.y_batch_stride + c0 * p.y_dim_stride;
  const auto* z = p.z != nullptr
                      ? static_cast<const input_t*>(p.z) + batch * p.z_batch_stride + c0 * p.z_dim_stride
                      : nullptr;
  const bool full = c0 + kChannels <= p.dim;
  const bool vec = full && rows_vectorise(static_cast<const input_t*>(y), p.y_dim_stride, p.y_time_stride) &&
                   (z == nullptr || rows_vectorise(z, p.z_dim_stride, p.z_time_stride));
  for (int r = tid; r < L::kTile; r += kThreads) {
    const int64_t t = t0 + r;
    if (t >= p.seqlen) break;  // rows past the end: the later r are past it too
    float out[8], zv[8] = {};
EFFARCH_UNROLL
    for (int k = 0; k < kChannels; ++k) out[k] = s.dt[k][L::pos(r)];
    if (full) {
      if (z != nullptr) {
        load8(z + t * p.z_time_stride, p.z_dim_stride, vec, zv);
EFFARCH_UNROLL
        for (int k = 0; k < kChannels; ++k) out[k] *= silu(zv[k]);
      }
      store8(y + t * p.y_time_stride, p.y_dim_stride, vec, out);
    } else {
      for (int k = 0; k < kChannels && c0 + k < p.dim; ++k) {
        float v = out[k];
        if (z != nullptr) v *= silu(to_float(z[t * p.z_time_stride + k * p.z_dim_stride]));
        y[t * p.y_time_stride + k * p.y_dim_stride] = from_float<input_t>(v);
      }
    }
  }
}

// The whole block: channels [tile * kChannels, + kChannels) of sequence `batch`.
template <typename input_t, int Items, typename Exec>
EFFARCH_HD void scan_block(const SelectiveScanParams& p, int tile, int batch, Shared<Items>& s, Exec& exec) {
  using R = Regs<Items>;
  exec.threads([&](int tid, R&) { init_block(p, tile, batch, tid, s); });
  exec.sync();  // the biases, before the first staging reads them
  for (int64_t t0 = 0; t0 < p.seqlen; t0 += Layout<Items>::kTile) {
    exec.threads([&](int tid, R&) { stage_inputs<input_t>(p, tile, batch, t0, tid, s); });
    exec.sync();
    exec.threads([&](int tid, R& r) { lane_inputs(tid, s, r); });
    for (int first = 0; first < p.dstate; first += kStates) {
      if (first > 0) exec.sync();  // every warp is done with the previous states' B and C
      exec.threads([&](int tid, R&) { stage_BC<input_t>(p, batch, t0, first, tid, s); });
      exec.sync();
      const int count = p.dstate - first < kStates ? p.dstate - first : kStates;
      for (int n = 0; n < count; ++n) {
        exec.threads([&](int tid, R& r) { segment_map(p.dstate, first + n, n, tid, s, r); });
        exec.warp_carry(s, p.dstate, first + n);
        exec.threads([&](int tid, R& r) { segment_readout(n, tid, s, r); });
      }
    }
    exec.threads([&](int tid, R& r) { lane_outputs(p, tile, tid, s, r); });
    exec.sync();
    exec.threads([&](int tid, R&) { write_y<input_t>(p, tile, batch, t0, tid, s); });
    exec.sync();  // the rows are read before the next tile's inputs overwrite them
  }
  exec.threads([&](int tid, R&) { store_carry(p, tile, batch, tid, s); });
}

#ifndef __CUDACC__
// Host emulation (float inputs): every block in turn, each phase for all its threads; step 3 over
// each warp's lanes in the order of the kernel's shuffles (Kogge-Stone: at offsets 1, 2, 4, 8, 16
// every lane composes its value after that of the lane `offset` below it, all from the previous
// round's values).
template <int Items>
struct HostExec {
  Regs<Items> regs[kThreads];
  template <typename F>
  void threads(F&& f) {
    for (int tid = 0; tid < kThreads; ++tid) f(tid, regs[tid]);
  }
  void sync() {}
  void warp_carry(Shared<Items>& s, int dstate, int state) {
    for (int warp = 0; warp < kChannels; ++warp) {
      Regs<Items>* lane = regs + warp * kLanes;
      for (int offset = 1; offset < kLanes; offset *= 2) {
        float P[kLanes], H[kLanes];
        for (int l = 0; l < kLanes; ++l) P[l] = lane[l].P, H[l] = lane[l].H;
        for (int l = offset; l < kLanes; ++l) compose(lane[l].P, lane[l].H, P[l - offset], H[l - offset]);
      }
      float& carry = s.carry[warp * dstate + state];
      for (int l = 0; l < kLanes; ++l) {
        lane[l].h0 = l == 0 ? carry : lane[l - 1].P * carry + lane[l - 1].H;
      }
      carry = lane[kLanes - 1].P * carry + lane[kLanes - 1].H;
    }
  }
};

template <int Items>
void emulate_scan_with(const SelectiveScanParams& p) {
  std::vector<float> buffer(static_cast<size_t>(shared_floats<Items>(p.dstate)));
  auto exec = std::make_unique<HostExec<Items>>();
  for (int batch = 0; batch < p.batch; ++batch) {
    for (int tile = 0; tile * kChannels < p.dim; ++tile) {
      Shared<Items> shared = carve_shared<Items>(buffer.data(), p.dstate);
      scan_block<float>(p, tile, batch, shared, *exec);
    }
  }
}

// p.lane_steps picks the variant, as the launcher does.
inline void emulate_scan(const SelectiveScanParams& p) {
  if (p.lane_steps == 8) {
    emulate_scan_with<8>(p);
  } else {
    emulate_scan_with<16>(p);
  }
}
#endif

}  // namespace effarch::kernels::scan::lanes
