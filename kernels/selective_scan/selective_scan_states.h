#pragma once
// The selective scan's third prefill algorithm, "states": a lane per state, the one-token update's
// mapping (selective_scan_math.h, kUpdateLanes) walked over the whole sequence. Written once for
// the GPU kernel (selective_scan_kernels.cuh) and for the host emulation that CPU tests run, as
// selective_scan_lanes.h is.
//
// Why a third one. lanes16 (a warp per channel, its lanes over time) spends much of its work
// making time parallel: each state's scan runs twice per lane, behind a five-round shuffle scan of
// the lanes' maps and block barriers every eight states; ncu found it bound by the latency of its
// instructions (an instruction every 6.9 cycles per warp, 16 warps an SM) at 8% of the copy
// bandwidth (docs/perf/README.md). Here time is not split at all. The parallelism comes from the
// states instead: a channel's d_state (16 in every Mamba-1 checkpoint) states sit on 16 lanes, so
// batch 1 of Mamba-2.8B is 5120 channels x 16 = 2560 warps, about 19 per SM of an H100, and each
// lane runs the plain recurrence, one exponential and four more instructions a step.
//
// Mapping. A block owns kGroupsPerBlock = 8 neighbouring channels of one sequence; a group of
// kGroup = 16 lanes (half a warp) owns one channel, lane n its state n (states past d_state hold
// A = B = C = 0: they stay 0 and add nothing). The block walks the sequence in tiles of kSteps =
// 16 steps. Per tile:
//   1. lane j of each group stages its channel's step j in the group's slots: dt =
//      softplus(delta + bias) and dt u (one softplus per step and channel, not one per lane); u
//      and z stay in its registers for step 5. Each thread also stages four values of the
//      tile's B or C (the block's 128 threads cover both, 16 steps x 16 states) in the block's
//      tile buffer, state-major, so that a lane reads its state's 16 steps as four 16-byte reads;
//      the buffers alternate between tiles, so one block barrier a tile orders them;
//   2. every lane runs its state through the 16 steps, h = exp(dt A) h + (dt u) B, keeping
//      C h for each step, and writes the 16 products into its row of the group's slots;
//   3. the next tile's inputs are loaded into registers (their latency hides behind step 4 and
//      the other warps);
//   4. lane j adds up column j of the group's products (the 16 states in order), step j's
//      C . h, and writes y = (C . h + D u) SiLU(z).
// One block barrier and one warp barrier a tile; no shuffle. The state is written once, after
// the last tile. Every warp walks the whole sequence, so a launch is one wave when its blocks fit
// the GPU at once (kMinBlocks an SM: Mamba-2.8B's 640 at batch 1 on 132 SMs); more waves cost
// whole sequences.
//
// d_state up to kStatesMaxStates (16) only: lanes16 runs the rest (launched_segment,
// selective_scan_params.h).
//
// Exec, as in the other two: exec.threads(f) runs f(tid, regs) for the block's threads (on the
// host: in turn), exec.sync() is __syncthreads() and exec.sync_group() __syncwarp() (on the host
// the phases run whole, in order).

#include <cstdint>
#ifndef __CUDACC__
#include <memory>
#endif

#include "common/host_device.h"
#include "selective_scan/selective_scan_channel.h"
#include "selective_scan/selective_scan_params.h"

namespace effarch::kernels::scan::states {

inline constexpr int kGroup = 16;                          // lanes a channel takes: one per state
inline constexpr int kSteps = kGroup;                      // steps a tile: lane j brings step j
inline constexpr int kThreads = 128;                       // a block: 8 channels, 4 warps
inline constexpr int kGroupsPerBlock = kThreads / kGroup;
inline constexpr int kChunk = 4;                           // B or C values a thread stages a tile
static_assert(2 * kSteps * (kGroup / kChunk) == kThreads, "the block's threads stage a tile's B and C");
// Blocks an SM must hold: registers capped at 65536 / (kThreads x kMinBlocks) = 85 a thread, so
// that Mamba-2.8B's batch-1 launch (640 blocks) is one wave on 132 SMs with room to spare.
inline constexpr int kMinBlocks = 6;

static_assert(kStatesMaxStates == kGroup, "a lane per state");

// Blocks of a launch along the channels (the grid's y is the batch).
constexpr int64_t channel_blocks(int64_t dim) { return (dim + kGroupsPerBlock - 1) / kGroupsPerBlock; }

// Shared memory. A staged row is a state's 16 steps (B and C) or a lane's 16 products, padded to
// 20 floats so that the 16-byte accesses of eight lanes start on distinct banks. A group's slots
// take 368 floats, so the two groups of a warp read their product rows 16 banks apart.
inline constexpr int kRow = kSteps + 4;
struct alignas(16) Tile {  // a tile's B and C by state: B[n][i] is state n at step i
  float B[kGroup][kRow];
  float C[kGroup][kRow];
};
inline constexpr int kSlotPad = 16;
struct alignas(16) Slots {  // a group's: step 1's dt and dt u, step 2's products
  float dt[kSteps];
  float du[kSteps];
  float acc[kGroup][kRow];
  float pad[kSlotPad];
};
static_assert(sizeof(Slots) / sizeof(float) % 32 == 16, "a warp's two groups 16 banks apart");
static_assert(kRow * sizeof(float) % 16 == 0, "staged rows start 16-byte aligned");
struct Shared {
  Tile tile[2];  // tile k in tile[k % 2]
  Slots group[kGroupsPerBlock];
};

// Four floats from or to shared memory at a 16-byte aligned address: one access on the GPU.
EFFARCH_HD void load4(const float* p, float (&v)[4]) {
#ifdef __CUDA_ARCH__
  const float4 x = *reinterpret_cast<const float4*>(p);
  v[0] = x.x, v[1] = x.y, v[2] = x.z, v[3] = x.w;
#else
  for (int k = 0; k < 4; ++k) v[k] = p[k];
#endif
}
EFFARCH_HD void store4(float* p, const float* v) {
#ifdef __CUDA_ARCH__
  *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
#else
  for (int k = 0; k < 4; ++k) p[k] = v[k];
#endif
}

// Four neighbouring elements as floats: one 8- or 16-byte load on the GPU when `vector` (stride
// 1, aligned: the caller checked), else one by one, zeros from `count` on.
template <typename input_t>
EFFARCH_HD void load_chunk(const input_t* p, int64_t stride, int count, bool vector, float (&out)[kChunk]) {
#ifdef __CUDA_ARCH__
  if (vector) {
    if constexpr (sizeof(input_t) == 2) {
      const uint2 v = *reinterpret_cast<const uint2*>(p);
      const auto* e = reinterpret_cast<const input_t*>(&v);
      for (int k = 0; k < kChunk; ++k) out[k] = to_float(e[k]);
    } else {
      const float4 v = *reinterpret_cast<const float4*>(p);
      out[0] = v.x, out[1] = v.y, out[2] = v.z, out[3] = v.w;
    }
    return;
  }
#endif
EFFARCH_UNROLL
  for (int k = 0; k < kChunk; ++k) out[k] = k < count ? to_float(p[k * stride]) : 0.0f;
}

// What a thread keeps (registers on the GPU): as lane `state` of its channel's group, and as the
// stager of one chunk of each tile's B or C.
template <typename input_t>
struct Regs {
  int group, state;   // its group in the block and its lane there (its state and its tile step)
  int channel;        // its group's channel
  bool active;        // the channel exists (a block's last groups may not)
  float h;            // its state
  float A2;           // A log2(e) of its state, 0 past d_state
  float bias, D;      // the channel's delta bias and skip (0 without)
  const input_t *u, *delta, *z;  // its step of the current tile
  input_t* y;
  float u_now, z_now;                // the current tile's step
  float next_u, next_delta, next_z;  // the next tile's (delta before the softplus), where it exists
  float acc[kSteps];                 // C h per step of the tile
  // Staging: B (tid < 64) or C, step `stage_step` of a tile, states [stage_first, + kChunk).
  int stage_step, stage_first, stage_count;
  bool stage_vector;
  const input_t* stage;  // that chunk at the current tile
  int64_t stage_time_stride, stage_state_stride;
  float next_chunk[kChunk];
};

// Whether a tensor's rows (d_state elements at t * time stride) load as 16-byte aligned runs.
template <typename input_t>
EFFARCH_HD bool rows_in_vectors(const input_t* base, int64_t state_stride, int64_t time_stride, int dstate) {
  return dstate == kGroup && rows_vectorise(base, state_stride, time_stride);
}

// Before the first tile: the state (p.state when continuing, else zeros), the channel's constants,
// the pointers at the first tile, and the thread's staging chunk.
template <typename input_t>
EFFARCH_HD void init_thread(const SelectiveScanParams& p, int block, int batch, int tid, Regs<input_t>& r) {
  r.group = tid / kGroup;
  r.state = tid % kGroup;
  r.channel = block * kGroupsPerBlock + r.group;
  r.active = r.channel < p.dim;
  const int c = r.active ? r.channel : 0;
  const bool has = r.active && r.state < p.dstate;
  r.h = has && p.from_state
            ? p.state[batch * p.state_batch_stride + c * p.state_dim_stride + r.state * p.state_state_stride]
            : 0.0f;
  r.A2 = has ? A2_at(p, c, r.state) : 0.0f;
  r.bias = p.delta_bias != nullptr ? p.delta_bias[c * p.delta_bias_stride] : 0.0f;
  r.D = skip_of(p, c);
  const int64_t t = r.state;  // lane j brings step j
  r.u = static_cast<const input_t*>(p.u) + batch * p.u_batch_stride + c * p.u_dim_stride + t * p.u_time_stride;
  r.delta = static_cast<const input_t*>(p.delta) + batch * p.delta_batch_stride + c * p.delta_dim_stride +
            t * p.delta_time_stride;
  r.z = p.z != nullptr ? static_cast<const input_t*>(p.z) + batch * p.z_batch_stride + c * p.z_dim_stride +
                             t * p.z_time_stride
                       : nullptr;
  r.y = static_cast<input_t*>(p.y) + batch * p.y_batch_stride + c * p.y_dim_stride + t * p.y_time_stride;
  const bool is_C = tid >= kThreads / 2;
  const int k = tid % (kThreads / 2);
  r.stage_step = k / (kGroup / kChunk);
  r.stage_first = (k % (kGroup / kChunk)) * kChunk;
  r.stage_count = p.dstate - r.stage_first < kChunk ? p.dstate - r.stage_first : kChunk;
  const auto* base = static_cast<const input_t*>(is_C ? p.C : p.B) + batch * (is_C ? p.C_batch_stride : p.B_batch_stride);
  r.stage_time_stride = is_C ? p.C_time_stride : p.B_time_stride;
  r.stage_state_stride = is_C ? p.C_state_stride : p.B_state_stride;
  r.stage_vector = rows_in_vectors(base, r.stage_state_stride, r.stage_time_stride, p.dstate);
  r.stage = base + r.stage_step * r.stage_time_stride + r.stage_first * r.stage_state_stride;
}

// Step 3 (and before the first tile): the thread's loads of the tile at t0 (its pointers are
// there) where they exist (step 1 stages zeros past them); then its pointers move on a tile.
template <typename input_t>
EFFARCH_HD void load_tile(const SelectiveScanParams& p, int64_t t0, Regs<input_t>& r) {
  if (r.active && t0 + r.state < p.seqlen) {
    r.next_u = to_float(*r.u);
    r.next_delta = to_float(*r.delta);
    r.next_z = r.z != nullptr ? to_float(*r.z) : 0.0f;
  }
  if (t0 + r.stage_step < p.seqlen && r.stage_count > 0) {
    load_chunk(r.stage, r.stage_state_stride, r.stage_count, r.stage_vector, r.next_chunk);
  }
  r.u += kSteps * p.u_time_stride;
  r.delta += kSteps * p.delta_time_stride;
  if (r.z != nullptr) r.z += kSteps * p.z_time_stride;
  r.stage += kSteps * r.stage_time_stride;
}

// Step 1: the thread's step into its group's slots (dt as discretize, selective_scan_channel.h,
// computes it, the bias read once; past the sequence dt = 0: the state passes unchanged) and its
// chunk into the tile buffer (zeros past the sequence or d_state).
template <typename input_t>
EFFARCH_HD void stage_tile(const SelectiveScanParams& p, int64_t t0, int tid, Regs<input_t>& r, Tile& tile,
                           Slots& slots) {
  const int j = r.state;
  if (r.active && t0 + j < p.seqlen) {
    float dt = r.next_delta;
    if (p.delta_bias != nullptr) dt += r.bias;
    if (p.delta_softplus) dt = softplus(dt);
    r.u_now = r.next_u;
    r.z_now = r.next_z;
    slots.dt[j] = dt;
    slots.du[j] = dt * r.u_now;
  } else {
    slots.dt[j] = slots.du[j] = 0.0f;
  }
  const bool ok = t0 + r.stage_step < p.seqlen;
  float (*rows)[kRow] = tid < kThreads / 2 ? tile.B : tile.C;
EFFARCH_UNROLL
  for (int k = 0; k < kChunk; ++k) {
    rows[r.stage_first + k][r.stage_step] = ok && k < r.stage_count ? r.next_chunk[k] : 0.0f;
  }
}

// Step 2: the lane's state through the tile, its C h into its row of the group's products.
template <typename input_t>
EFFARCH_HD void scan_tile(const Tile& tile, Slots& slots, Regs<input_t>& r) {
  const float* B = tile.B[r.state];
  const float* C = tile.C[r.state];
  float h = r.h;
EFFARCH_UNROLL
  for (int q = 0; q < kSteps; q += 4) {
    float b[4], c[4];
    load4(B + q, b);
    load4(C + q, c);
EFFARCH_UNROLL
    for (int k = 0; k < 4; ++k) {
      h = exp2_ftz(slots.dt[q + k] * r.A2) * h + slots.du[q + k] * b[k];
      r.acc[q + k] = c[k] * h;
    }
  }
  r.h = h;
EFFARCH_UNROLL
  for (int q = 0; q < kSteps; q += 4) store4(&slots.acc[r.state][q], r.acc + q);
}

// Step 4: lane j adds up step j's C h over the states (in state order) and writes y.
template <typename input_t>
EFFARCH_HD void store_step(const SelectiveScanParams& p, int64_t t0, const Slots& slots, Regs<input_t>& r) {
  const int j = r.state;
  if (r.active && t0 + j < p.seqlen) {
    float sum = slots.acc[0][j];
EFFARCH_UNROLL
    for (int n = 1; n < kGroup; ++n) sum += slots.acc[n][j];
    float y = sum + r.D * r.u_now;
    if (r.z != nullptr) y *= silu(r.z_now);
    *r.y = from_float<input_t>(y);
  }
  r.y += kSteps * p.y_time_stride;
}

// After the last tile: the state for decode.
template <typename input_t>
EFFARCH_HD void store_state(const SelectiveScanParams& p, int batch, const Regs<input_t>& r) {
  if (!r.active || r.state >= p.dstate) return;
  p.state[batch * p.state_batch_stride + r.channel * p.state_dim_stride + r.state * p.state_state_stride] = r.h;
}

// One block: channels [block x 8, + 8) of sequence `batch`.
template <typename input_t, typename Exec>
EFFARCH_HD void scan_block(const SelectiveScanParams& p, int block, int batch, Shared& s, Exec& exec) {
  exec.threads([&](int tid, Regs<input_t>& r) {
    init_thread<input_t>(p, block, batch, tid, r);
    load_tile<input_t>(p, 0, r);
  });
  int buffer = 0;
  for (int64_t t0 = 0; t0 < p.seqlen; t0 += kSteps, buffer ^= 1) {
    exec.threads([&](int tid, Regs<input_t>& r) { stage_tile<input_t>(p, t0, tid, r, s.tile[buffer], s.group[r.group]); });
    exec.sync();  // the tile and the slots are in (and tile[buffer]'s last readers, two tiles ago, are done)
    exec.threads([&](int, Regs<input_t>& r) { scan_tile<input_t>(s.tile[buffer], s.group[r.group], r); });
    exec.sync_group();  // the group's products are in
    if (t0 + kSteps < p.seqlen) exec.threads([&](int, Regs<input_t>& r) { load_tile<input_t>(p, t0 + kSteps, r); });
    exec.threads([&](int, Regs<input_t>& r) { store_step<input_t>(p, t0, s.group[r.group], r); });
  }
  exec.threads([&](int, Regs<input_t>& r) { store_state<input_t>(p, batch, r); });
}

#ifndef __CUDACC__
// Host emulation (float inputs): every block in turn, each phase for all its threads.
struct HostExec {
  Regs<float> regs[kThreads];
  template <typename F>
  void threads(F&& f) {
    for (int tid = 0; tid < kThreads; ++tid) f(tid, regs[tid]);
  }
  void sync() {}
  void sync_group() {}
};

inline void emulate_scan(const SelectiveScanParams& p) {
  auto exec = std::make_unique<HostExec>();
  auto shared = std::make_unique<Shared>();
  for (int batch = 0; batch < p.batch; ++batch) {
    for (int block = 0; block < channel_blocks(p.dim); ++block) scan_block<float>(p, block, batch, *shared, *exec);
  }
}
#endif

}  // namespace effarch::kernels::scan::states
