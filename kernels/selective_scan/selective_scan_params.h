#pragma once
// The selective scan kernels' params (see selective_scan.h): plain C++ with no CUDA header, so the
// host emulation in the CPU tests (selective_scan_math.h) builds without the CUDA toolkit.

#include <cstdint>

#include "common/element_enum.h"

namespace effarch::kernels {

inline constexpr int kSelectiveScanMaxStates = 256;

namespace scan {

// The prefill's block shape (selective_scan_math.h): here so that the host-side launcher can plan
// the sequence split without the kernel math.
inline constexpr int kLanes = 32;  // channels per block
inline constexpr int kWarps = 8;   // time segments per chunk
// Segment 16 picks the other prefill kernel (selective_scan_lanes.h: a warp per channel, each lane
// 16 steps in sequence), which has no sequence split.
inline constexpr int kLanesSegment = 16;
// Segment 0 picks the third (selective_scan_pieces.h, "pieces"): a thread per channel walking its
// piece of the sequence with its states in registers (d_state up to kPiecesMaxStates), a block of
// kPiecesChannels channels, pieces of whole kPiecesChunk-step chunks.
inline constexpr int kPiecesSegment = 0;
inline constexpr int kPiecesChannels = 128;
inline constexpr int kPiecesMaxStates = 16;
inline constexpr int kPiecesChunk = 32;
// Timesteps per chunk: the unit a sequence split cuts pieces in.
constexpr int chunk_steps(int seg) { return seg == kPiecesSegment ? kPiecesChunk : kWarps * seg; }
// Channels a block owns (the split's plan counts blocks with it).
constexpr int block_channels(int seg) { return seg == kPiecesSegment ? kPiecesChannels : kLanes; }
// The kernels that split: the 32-channel kernel's segments and the pieces kernel.
constexpr bool segment_splits(int seg) { return seg == 8 || seg == 4 || seg == kPiecesSegment; }
constexpr bool valid_segment(int seg) { return segment_splits(seg) || seg == kLanesSegment; }

// The sequence split's plan (selective_scan_math.h, "Sequence split").
inline constexpr int kSplitBlocksPerSm = 4;      // auto: pieces until batch x tiles x pieces >= this x SMs
inline constexpr int kSplitMinPieceChunks = 4;   // auto: pieces of at least this many chunks
inline constexpr int kSplitMaxPieces = 65535;    // grid z

constexpr int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

struct SplitPlan {
  int pieces = 1;        // 1: the unsplit kernel
  int piece_chunks = 0;  // chunks per piece (the last piece: what is left)
};

// `requested` pieces (>= 1) of a sequence, clamped: at most one per chunk (a piece shorter than a
// chunk exists only at the end) and at most kSplitMaxPieces; the chunks spread evenly, so the
// count can come out lower (10 chunks in 6 pieces: 5 pieces of 2).
constexpr SplitPlan split_plan(int64_t seqlen, int seg, int64_t requested) {
  const int64_t chunks = ceil_div(seqlen, chunk_steps(seg));
  int64_t want = requested < 1 ? 1 : requested;
  if (want > chunks) want = chunks;
  if (want > kSplitMaxPieces) want = kSplitMaxPieces;
  if (want <= 1) return {1, 0};
  const int64_t per = ceil_div(chunks, want);
  return {static_cast<int>(ceil_div(chunks, per)), static_cast<int>(per)};
}

// The launcher's choice: none when batch x tiles already gives kSplitBlocksPerSm blocks per SM,
// else enough pieces to get there, each of at least kSplitMinPieceChunks chunks.
constexpr int64_t auto_pieces(int64_t batch, int64_t dim, int64_t seqlen, int seg, int sm_count) {
  const int64_t blocks = batch * ceil_div(dim, block_channels(seg));
  const int64_t target = static_cast<int64_t>(kSplitBlocksPerSm) * sm_count;
  if (blocks <= 0 || blocks >= target) return 1;
  const int64_t by_length = ceil_div(seqlen, chunk_steps(seg)) / kSplitMinPieceChunks;
  const int64_t want = ceil_div(target, blocks);
  return want < by_length ? want : (by_length < 1 ? 1 : by_length);
}

}  // namespace scan

struct SelectiveScanParams {
  int batch = 0;
  int dim = 0;     // D channels
  int seqlen = 0;  // L timesteps (1 for the state update)
  int dstate = 0;  // N states, 1..kSelectiveScanMaxStates
  bool delta_softplus = true;
  bool from_state = false;  // prefill: start from `state` instead of zeros
  // Prefill: timesteps per warp segment, 8 (one block per SM) or 4 (half the registers: two), or
  // kLanesSegment (16): the warp-per-channel kernel, 16 timesteps per lane, or kPiecesSegment (0):
  // a thread per channel over its piece (selective_scan_pieces.h; d_state up to 16).
  int segment = 8;
  // With segment kLanesSegment: the steps a lane scans, 16 (lanes16) or 8 (lanes8, tiles of 256
  // steps: selective_scan_lanes.h). Other values are an error.
  int lane_steps = 16;
  // Prefill split over time (selective_scan_math.h, "Sequence split"): `pieces` contiguous pieces
  // of `piece_chunks` chunks each (the last may be shorter), each scanned by its own blocks. 1: the
  // unsplit kernel. The workspace, fp32, written by the first pass and read by the second:
  //   split_states [batch][pieces][dstate][dim]: slot 0 the initial state (from_state only),
  //                slot q >= 1 the end state of piece q - 1 scanned from zeros;
  //   split_dtsum  [batch][pieces][dim]: slot q >= 1 the sum of dt over piece q - 1.
  int pieces = 1;
  int piece_chunks = 0;
  float* split_states = nullptr;
  float* split_dtsum = nullptr;
  // u, delta, B, C, z and y share one element type; A, D, delta_bias and the state are float32.
  ElementType input_type = ElementType::kFloat32;

  const void* u = nullptr;  // [batch, dim, seqlen]
  int64_t u_batch_stride = 0, u_dim_stride = 0, u_time_stride = 0;
  const void* delta = nullptr;  // [batch, dim, seqlen]
  int64_t delta_batch_stride = 0, delta_dim_stride = 0, delta_time_stride = 0;
  const void* B = nullptr;  // [batch, dstate, seqlen]
  int64_t B_batch_stride = 0, B_state_stride = 0, B_time_stride = 0;
  const void* C = nullptr;  // [batch, dstate, seqlen]
  int64_t C_batch_stride = 0, C_state_stride = 0, C_time_stride = 0;
  const void* z = nullptr;  // [batch, dim, seqlen]; nullptr: no gate
  int64_t z_batch_stride = 0, z_dim_stride = 0, z_time_stride = 0;
  void* y = nullptr;  // [batch, dim, seqlen]
  int64_t y_batch_stride = 0, y_dim_stride = 0, y_time_stride = 0;

  const float* A = nullptr;  // [dim, dstate]
  int64_t A_dim_stride = 0, A_state_stride = 0;
  const float* D = nullptr;  // [dim]; nullptr: no skip
  int64_t D_stride = 0;
  const float* delta_bias = nullptr;  // [dim]; nullptr: no bias
  int64_t delta_bias_stride = 0;

  float* state = nullptr;  // [batch, dim, dstate]
  int64_t state_batch_stride = 0, state_dim_stride = 0, state_state_stride = 0;

  // The one-token update with Mamba-1's dt_proj fused (ops::selective_state_update_dt_proj):
  // delta[b, d] = sum_r dt_proj[d, r] dt_low[b, r], summed in fp32 and rounded to the element type
  // once (what the projection would have returned), computed by the update kernel instead of read
  // from `delta`. dt_proj and dt_low in the inputs' element type. nullptr: `delta` is read.
  const void* dt_proj = nullptr;  // [dim, dt_rank]
  int64_t dt_proj_dim_stride = 0, dt_proj_rank_stride = 0;
  const void* dt_low = nullptr;  // [batch, dt_rank]
  int64_t dt_low_batch_stride = 0, dt_low_rank_stride = 0;
  int dt_rank = 0;
};

}  // namespace effarch::kernels
