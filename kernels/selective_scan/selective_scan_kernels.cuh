#pragma once
// The selective scan's CUDA shells: the prefill kernels run scan::scan_block (selective_scan_math.h,
// 32 channels a block over the lanes), scan::lanes::scan_block (selective_scan_lanes.h, a warp
// per channel, its lanes over time) or scan::pieces::scan_piece (selective_scan_pieces.h, a thread
// per channel over a piece) for one block of channels; the update kernel
// scan::update_lane for kUpdateLanes threads per channel, or scan::update_lane_vec for
// kUpdateVecLanes (the vector path). The math lives in the core headers,
// which the CPU tests also run.

#include "common/grid_dependency.h"
#include "common/launch.h"
#include "selective_scan/selective_scan_lanes.h"
#include "selective_scan/selective_scan_math.h"
#include "selective_scan/selective_scan_pieces.h"

namespace effarch::kernels {

namespace scan {

inline constexpr int kMaxGridY = 65535;
inline constexpr int kUpdateThreads = 128;

// Exec for the GPU: a phase is this thread's part of it; sync is the block barrier.
template <int kSegment>
struct DeviceExec {
  static constexpr int kSeg = kSegment;
  ThreadRegs<kSeg> regs;
  template <typename F>
  __device__ __forceinline__ void threads(F&& f) {
    f(static_cast<int>(threadIdx.x), regs);
  }
  __device__ __forceinline__ void sync() { __syncthreads(); }
};

namespace lanes {

// Exec of the lanes kernel: a phase is this thread's part; warp_carry is step 3 with shuffles, in
// the order of the host emulation's Kogge-Stone rounds.
template <int Items>
struct DeviceExec {
  Regs<Items> regs;
  template <typename F>
  __device__ __forceinline__ void threads(F&& f) {
    f(static_cast<int>(threadIdx.x), regs);
  }
  __device__ __forceinline__ void sync() { __syncthreads(); }
  __device__ __forceinline__ void warp_carry(Shared<Items>& s, int dstate, int state) {
    constexpr unsigned kAll = 0xffffffffu;
    const int lane = static_cast<int>(threadIdx.x) % kLanes, warp = static_cast<int>(threadIdx.x) / kLanes;
    float* slot = &s.carry[warp * dstate + state];
    const float carry = *slot;  // read first: its latency hides behind the shuffle rounds
    float P = regs.P, H = regs.H;
#pragma unroll
    for (int offset = 1; offset < kLanes; offset *= 2) {
      const float Pe = __shfl_up_sync(kAll, P, offset), He = __shfl_up_sync(kAll, H, offset);
      if (lane >= offset) compose(P, H, Pe, He);
    }
    const float Pe = __shfl_up_sync(kAll, P, 1), He = __shfl_up_sync(kAll, H, 1);
    regs.h0 = lane == 0 ? carry : Pe * carry + He;
    const float Pl = __shfl_sync(kAll, P, kLanes - 1), Hl = __shfl_sync(kAll, H, kLanes - 1);
    __syncwarp();  // every lane has read the carry
    if (lane == 0) *slot = Pl * carry + Hl;
  }
};

}  // namespace lanes

namespace pieces {

// Exec of the pieces kernels: a phase is this thread's part of it.
struct DeviceExec {
  Regs regs;
  template <typename F>
  __device__ __forceinline__ void threads(F&& f) {
    f(static_cast<int>(threadIdx.x), regs);
  }
  __device__ __forceinline__ void sync() { __syncthreads(); }
};

}  // namespace pieces

// A split's plan and workspace, for the launchers of the kernels that split (the 32-channel
// kernel's two passes, the pieces kernel): 1..kSplitMaxPieces pieces, and past one a piece length
// and the workspace.
inline LaunchStatus check_split(const SelectiveScanParams& p) {
  if (p.pieces < 1 || p.pieces > kSplitMaxPieces ||
      (p.pieces > 1 && (p.piece_chunks < 1 || p.split_states == nullptr || p.split_dtsum == nullptr))) {
    return {cudaErrorInvalidValue, "selective_scan_fwd: a split needs its piece length and workspace"};
  }
  return {};
}

inline LaunchStatus check_args(const SelectiveScanParams& p, const char* what) {
  if (p.dstate < 1 || p.dstate > kSelectiveScanMaxStates) return {cudaErrorInvalidValue, what};
  if (p.batch > kMaxGridY) return {cudaErrorInvalidConfiguration, what};
  return {};
}

}  // namespace scan

// kSeg 8: 254 registers, one block per SM; kSeg 4: capped at 128 (two blocks per SM; ptxas
// reports 12 bytes of spills on sm_90 bf16). 4 is the default: faster at every length on an H200
// (docs/mamba.md).
template <typename input_t, int kSeg>
__global__ void __launch_bounds__(scan::kThreads, kSeg == 4 ? 2 : 1)
    selective_scan_fwd_kernel(const SelectiveScanParams p) {
  EFFARCH_DYNAMIC_SHARED(4, float, shared_buffer);
  scan::Shared shared = scan::carve_shared(shared_buffer, kSeg);
  scan::DeviceExec<kSeg> exec;
  scan::scan_block<input_t>(p, static_cast<int>(blockIdx.x), static_cast<int>(blockIdx.y), shared, exec);
}

// Every d_state the prefill kernels take (1..256) fits the 99 KiB (101376 bytes) of dynamic shared
// memory an sm_120/121 block may opt into (sm_90: 227 KiB); past it the launch's opt-in would fail
// and Mamba-1 would not run on a DGX Spark.
static_assert(scan::lanes::shared_floats<16>(kSelectiveScanMaxStates) * sizeof(float) <= 101376 &&
                  scan::split_local_shared_floats(kSelectiveScanMaxStates, 8) * sizeof(float) <= 101376 &&
                  scan::split_local_shared_floats(kSelectiveScanMaxStates, 4) * sizeof(float) <= 101376,
              "the selective scan's shared memory must fit sm_120/121 at d_state 256");

// A warp per channel (selective_scan_lanes.h): 256 threads for 8 channels. lanes16: at most 128
// registers so that two blocks (81 KiB of shared memory each at d_state 16) share an sm_90 SM (an
// sm_120/121 SM's 100 KiB holds one). lanes8: at most 64, so that four (49 KiB each) do.
template <typename input_t, int Items>
__global__ void __launch_bounds__(scan::lanes::kThreads, Items == 16 ? 2 : 4)
    selective_scan_lanes_kernel(const SelectiveScanParams p) {
  EFFARCH_DYNAMIC_SHARED(4, float, lanes_shared);
  scan::lanes::Shared<Items> shared = scan::lanes::carve_shared<Items>(lanes_shared, p.dstate);
  scan::lanes::DeviceExec<Items> exec;
  scan::lanes::scan_block<input_t>(p, static_cast<int>(blockIdx.x), static_cast<int>(blockIdx.y), shared, exec);
}

// The sequence split's two passes (selective_scan_math.h, "Sequence split"): grid (tiles, batch,
// pieces - 1) for the first, (tiles, batch, pieces) for the second. The first keeps no readout (no
// y, C or z): capped at 128 registers, two blocks per SM, for either segment; the second has the
// unsplit kernel's bounds.
template <typename input_t, int kSeg>
__global__ void __launch_bounds__(scan::kThreads, 2)
    selective_scan_split_local_kernel(const SelectiveScanParams p) {
  EFFARCH_DYNAMIC_SHARED(4, float, shared_buffer);
  scan::Shared shared = scan::carve_shared(shared_buffer, kSeg);
  scan::DeviceExec<kSeg> exec;
  scan::split_local_block<input_t>(p, static_cast<int>(blockIdx.x), static_cast<int>(blockIdx.y),
                                   static_cast<int>(blockIdx.z), shared,
                                   shared_buffer + scan::shared_floats(p.dstate, kSeg), exec);
}

// The pieces kernel's two passes (selective_scan_pieces.h): grid (tiles of 128 channels, batch,
// pieces - 1) for the first (kReadout false), (tiles, batch, pieces) for the second. At most 128
// registers, so that four blocks (16 warps) share an SM.
template <typename input_t, bool kReadout>
__global__ void __launch_bounds__(scan::pieces::kThreads, 4) selective_scan_pieces_kernel(const SelectiveScanParams p) {
  __shared__ float pieces_shared[scan::pieces::shared_floats()];
  scan::pieces::Shared shared = scan::pieces::carve_shared(pieces_shared);
  scan::pieces::DeviceExec exec;
  scan::pieces::scan_piece<input_t, kReadout>(p, static_cast<int>(blockIdx.x), static_cast<int>(blockIdx.y),
                                              static_cast<int>(blockIdx.z), shared, exec);
}

template <typename input_t, int kSeg>
__global__ void __launch_bounds__(scan::kThreads, kSeg == 4 ? 2 : 1)
    selective_scan_split_kernel(const SelectiveScanParams p) {
  EFFARCH_DYNAMIC_SHARED(4, float, shared_buffer);
  scan::Shared shared = scan::carve_shared(shared_buffer, kSeg);
  scan::DeviceExec<kSeg> exec;
  scan::split_scan_block<input_t>(p, static_cast<int>(blockIdx.x), static_cast<int>(blockIdx.y),
                                  static_cast<int>(blockIdx.z), shared, exec);
}

// kL threads per (sequence, channel): kUpdateLanes (16, half a warp, a lane per state) or, on the
// vector path (kVec, scan::update_vectorized), kUpdateVecLanes (4, four neighbouring states a lane
// in 16-byte vectors). The lanes' parts of the readout (and of a fused dt_proj's dot) are summed by
// shuffles within the channel's kL lanes (an xor butterfly: common/warp_sum.h).
template <typename input_t, bool kVec>
__global__ void __launch_bounds__(scan::kUpdateThreads) selective_state_update_kernel(const SelectiveScanParams p) {
  constexpr int kL = kVec ? scan::kUpdateVecLanes : scan::kUpdateLanes;
  allow_dependent_launch();
  grid_dependency_wait();  // the state, x, dt, B, C and z come from the kernels before
  const int64_t i = static_cast<int64_t>(blockIdx.x) * scan::kUpdateThreads + threadIdx.x;
  const int64_t pair = i / kL;
  const int lane = static_cast<int>(i % kL);
  const bool active = pair < static_cast<int64_t>(p.batch) * p.dim;  // a channel's kL lanes agree
  const int batch = active ? static_cast<int>(pair / p.dim) : 0, channel = active ? static_cast<int>(pair % p.dim) : 0;
  float delta = 0.0f;
  if (p.dt_proj != nullptr) {  // dt_proj fused: the channel's kL lanes sum its row's products
    float part = active ? scan::dt_proj_lane<input_t>(p, batch, channel, lane, kL) : 0.0f;
    for (int offset = kL / 2; offset > 0; offset /= 2) part += __shfl_xor_sync(0xffffffffu, part, offset, kL);
    delta = scan::dt_proj_round<input_t>(part);
  } else if (active) {
    delta = scan::update_delta<input_t>(p, batch, channel);
  }
  scan::UpdateInputs in{};
  if (active) in = scan::update_inputs<input_t>(p, batch, channel, delta);
  float v = 0.0f;
  if (active) {
    v = kVec ? scan::update_lane_vec<input_t>(p, batch, channel, lane, in)
             : scan::update_lane<input_t>(p, batch, channel, lane, in);
  }
  for (int offset = kL / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset, kL);
  if (active && lane == 0) scan::update_finish<input_t>(p, batch, channel, v, in);
}

template <typename input_t, int kSeg>
LaunchStatus selective_scan_fwd_launch(const SelectiveScanParams& p, cudaStream_t stream) {
  const size_t bytes = static_cast<size_t>(scan::shared_floats(p.dstate, kSeg)) * sizeof(float);
  const LaunchStatus smem = allow_dynamic_shared(selective_scan_fwd_kernel<input_t, kSeg>, bytes,
                                                 "selective_scan_fwd: cudaFuncSetAttribute (shared memory)");
  if (!smem.ok()) return smem;
  const dim3 grid((p.dim + scan::kLanes - 1) / scan::kLanes, p.batch);
  return launch_plain(selective_scan_fwd_kernel<input_t, kSeg>, grid, dim3(scan::kThreads), bytes, stream,
                      "selective_scan_fwd_kernel", p);
}

template <typename input_t, int Items>
LaunchStatus selective_scan_lanes_launch(const SelectiveScanParams& p, cudaStream_t stream) {
  const size_t bytes = static_cast<size_t>(scan::lanes::shared_floats<Items>(p.dstate)) * sizeof(float);
  const LaunchStatus smem = allow_dynamic_shared(selective_scan_lanes_kernel<input_t, Items>, bytes,
                                                 "selective_scan_fwd: cudaFuncSetAttribute (lanes, shared memory)");
  if (!smem.ok()) return smem;
  const dim3 grid((p.dim + scan::lanes::kChannels - 1) / scan::lanes::kChannels, p.batch);
  return launch_plain(selective_scan_lanes_kernel<input_t, Items>, grid, dim3(scan::lanes::kThreads), bytes, stream,
                      "selective_scan_lanes_kernel", p);
}

template <typename input_t, int kSeg>
LaunchStatus selective_scan_split_launch(const SelectiveScanParams& p, cudaStream_t stream) {
  const LaunchStatus split = scan::check_split(p);
  if (!split.ok()) return split;
  const unsigned tiles = (p.dim + scan::kLanes - 1) / scan::kLanes;
  const size_t local_bytes = static_cast<size_t>(scan::split_local_shared_floats(p.dstate, kSeg)) * sizeof(float);
  LaunchStatus smem = allow_dynamic_shared(selective_scan_split_local_kernel<input_t, kSeg>, local_bytes,
                                           "selective_scan_fwd: cudaFuncSetAttribute (split, shared memory)");
  if (!smem.ok()) return smem;
  const size_t bytes = static_cast<size_t>(scan::shared_floats(p.dstate, kSeg)) * sizeof(float);
  smem = allow_dynamic_shared(selective_scan_split_kernel<input_t, kSeg>, bytes,
                              "selective_scan_fwd: cudaFuncSetAttribute (split, shared memory)");
  if (!smem.ok()) return smem;
  const LaunchStatus local =
      launch_plain(selective_scan_split_local_kernel<input_t, kSeg>, dim3(tiles, p.batch, p.pieces - 1),
                   dim3(scan::kThreads), local_bytes, stream, "selective_scan_split_local_kernel", p);
  if (!local.ok()) return local;
  return launch_plain(selective_scan_split_kernel<input_t, kSeg>, dim3(tiles, p.batch, p.pieces), dim3(scan::kThreads),
                      bytes, stream, "selective_scan_split_kernel", p);
}

template <typename input_t>
LaunchStatus selective_scan_pieces_launch(const SelectiveScanParams& p, cudaStream_t stream) {
  if (p.dstate > scan::kPiecesMaxStates) {
    return {cudaErrorInvalidValue, "selective_scan_fwd: the pieces kernel takes d_state up to 16"};
  }
  const LaunchStatus split = scan::check_split(p);
  if (!split.ok()) return split;
  const unsigned tiles = (p.dim + scan::pieces::kThreads - 1) / scan::pieces::kThreads;
  if (p.pieces > 1) {
    const LaunchStatus local =
        launch_plain(selective_scan_pieces_kernel<input_t, false>, dim3(tiles, p.batch, p.pieces - 1),
                     dim3(scan::pieces::kThreads), 0, stream, "selective_scan_pieces_kernel (pass 1)", p);
    if (!local.ok()) return local;
  }
  return launch_plain(selective_scan_pieces_kernel<input_t, true>, dim3(tiles, p.batch, p.pieces),
                      dim3(scan::pieces::kThreads), 0, stream, "selective_scan_pieces_kernel (pass 2)", p);
}

template <typename input_t>
LaunchStatus selective_scan_fwd_cuda(const SelectiveScanParams& p, cudaStream_t stream) {
  const LaunchStatus args = scan::check_args(p, "selective_scan_fwd: d_state must be 1..256 and batch at most 65535");
  if (!args.ok()) return args;
  if (!scan::valid_segment(p.segment)) {
    return {cudaErrorInvalidValue, "selective_scan_fwd: segment must be 0, 4, 8 or 16"};
  }
  if (p.dt_proj != nullptr) return {cudaErrorInvalidValue, "selective_scan_fwd: the fused dt_proj is the update's only"};
  if (p.batch == 0 || p.dim == 0 || p.seqlen == 0) return {};
  if (!scan::segment_splits(p.segment) && p.pieces > 1) {
    return {cudaErrorInvalidValue, "selective_scan_fwd: only the 4- and 8-step and pieces kernels split"};
  }
  if (p.segment == scan::kPiecesSegment) return selective_scan_pieces_launch<input_t>(p, stream);
  if (p.segment == scan::kLanesSegment && p.lane_steps != 16 && p.lane_steps != 8) {
    return {cudaErrorInvalidValue, "selective_scan_fwd: lane_steps must be 16 or 8"};
  }
  if (p.segment == scan::kLanesSegment) {
    return p.lane_steps == 8 ? selective_scan_lanes_launch<input_t, 8>(p, stream)
                             : selective_scan_lanes_launch<input_t, 16>(p, stream);
  }
  if (p.pieces > 1) {
    return p.segment == 4 ? selective_scan_split_launch<input_t, 4>(p, stream)
                          : selective_scan_split_launch<input_t, 8>(p, stream);
  }
  return p.segment == 4 ? selective_scan_fwd_launch<input_t, 4>(p, stream)
                        : selective_scan_fwd_launch<input_t, 8>(p, stream);
}

template <typename input_t>
LaunchStatus selective_state_update_cuda(const SelectiveScanParams& p, cudaStream_t stream) {
  const LaunchStatus args = scan::check_args(p, "selective_state_update: d_state must be 1..256");
  if (!args.ok()) return args;
  if (p.dt_proj != nullptr && (p.dt_low == nullptr || p.dt_rank < 1)) {
    return {cudaErrorInvalidValue, "selective_state_update: a fused dt_proj needs dt_low and dt_rank >= 1"};
  }
  const bool vec = scan::update_vectorized(p, static_cast<int>(sizeof(input_t)));
  const int64_t threads = static_cast<int64_t>(p.batch) * p.dim * (vec ? scan::kUpdateVecLanes : scan::kUpdateLanes);
  if (threads == 0) return {};
  const auto blocks = static_cast<unsigned>((threads + scan::kUpdateThreads - 1) / scan::kUpdateThreads);
  return launch_kernel(vec ? selective_state_update_kernel<input_t, true> : selective_state_update_kernel<input_t, false>,
                       dim3(blocks), dim3(scan::kUpdateThreads), 0, stream, "selective_state_update_kernel", p);
}

}  // namespace effarch::kernels
