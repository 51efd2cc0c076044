#pragma once
// Tensor-core stages 2 and 4 of the chunked SSD scan (bf16 / fp16 inputs, d_state <= 128), the
// math in ssd_tc_math.h; stages 1 and 3 are ssd_chunk_scan.cuh's. 128 threads (4 warps) a block,
// each warp 16 rows of a 64 x 64 fp32 output tile (4 wmma accumulators), K in steps of 64 tokens.
//   chunk_state_tc  block (P tile x N tile, h, b * nchunks + c): own = x^T round(B decay dt),
//                   decay = exp(cs[Q-1] - cs[s]) by every thread
//   chunk_scan_tc   block (P tile + col_tiles * (row tile + row_tiles * c), h, b): the rows' C
//                   against the start state, then per 64-token step below the diagonal the raw
//                   scores C B^T (recomputed: no [chunks, G, Q, Q] tensor), decayed, masked and
//                   scaled by dt in shared memory, rounded, times x; + D x.
// Shared memory (bf16/fp16, Q 256, N 128): chunk_state_tc 36 KiB, chunk_scan_tc 54 KiB (N 128,
// Q 1024: 60 KiB), within the 99 KiB an sm_120/121 block may opt into.
// ptxas (CUDA 13.0, -Xptxas -v), registers per thread:
//                       sm_90 bf16 / fp16   sm_121 bf16 / fp16
//   chunk_scan_tc           128 / 128           190 / 181     (sm_90 capped for 4 blocks per SM)
//   chunk_state_tc           83 / 73            136 / 164
// No spills but 40 bytes in chunk_scan_tc fp16 on sm_90.

#include "common/tile_mma.h"
#include "ssd/ssd_common.cuh"
#include "ssd/ssd_tc_math.h"

namespace effarch::kernels {

// The largest chunk and d_state this path takes fit the 99 KiB (101376 bytes) of dynamic shared
// memory an sm_120/121 block may opt into (sm_90: 227 KiB).
static_assert(ssd::tc_scan_offsets(ssd::kMaxChunk, ssd::kTcMaxDState, 2).total <= 101376 &&
                  ssd::tc_state_offsets(ssd::kMaxChunk, 2).total <= 101376,
              "the tensor-core scan's shared memory must fit sm_120/121");
// Mamba-2's chunk of 256 with d_state 128: four stage-4 blocks per sm_90 SM (228 KiB of shared
// memory, 1 KiB of it reserved per block), which B's region sharing with cb and x buys.
static_assert(4 * (ssd::tc_scan_offsets(256, ssd::kTcMaxDState, 2).total + 1024) <= 233472,
              "four tensor-core scan blocks must fit an sm_90 SM at chunk 256, d_state 128");

template <typename input_t>
__global__ void __launch_bounds__(ssd::kTcThreads) ssd_chunk_state_tc_kernel(const SsdScanParams p) {
  using Io = ssd::StaticIo<input_t>;
  EFFARCH_DYNAMIC_SHARED(32, char, tc_state_smem);
  const ssd::TcStateShared<input_t> sh = ssd::tc_state_shared<input_t>(tc_state_smem, p.chunk);
  const int tiles_n = ssd::tc_state_tiles(p.d_state);
  const int pd0 = static_cast<int>(blockIdx.x / tiles_n) * ssd::kTcCols;
  const int n0 = static_cast<int>(blockIdx.x % tiles_n) * ssd::kTcStates;
  const int h = blockIdx.y, b = blockIdx.z / p.nchunks, c = blockIdx.z % p.nchunks;
  const int warp = threadIdx.x / ssd::kWarpSize;
  ssd::tc_state_decay(p, b, h, c, threadIdx.x, ssd::kTcThreads, sh.decay);
  tile::FragAcc acc[ssd::kTcStates / tile::kDim];
  ssd::tc_zero(acc);
  const int valid = ssd::chunk_tokens(p, c);
  for (int s0 = 0; s0 < valid; s0 += ssd::kTcTokens) {
    __syncthreads();  // the decays written; the previous step's products done with the tiles
    ssd::tc_state_load<Io>(p, b, c, h, pd0, n0, s0, threadIdx.x, ssd::kTcThreads, sh);
    __syncthreads();
    ssd::tc_state_mma(warp, sh, acc);
  }
  ssd::tc_state_store_warp(warp, sh, acc);
  __syncthreads();
  ssd::tc_state_write(p, b, c, h, pd0, n0, threadIdx.x, ssd::kTcThreads, sh.out);
}

// On sm_90 at most 128 registers a thread, so that four blocks fit an SM by registers as by shared
// memory. sm_120/121 hold one 54 KiB block per SM (100 KiB of shared memory): no cap there, where
// it only made ptxas spill.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 1200
inline constexpr int kTcScanMinBlocks = 1;
#else
inline constexpr int kTcScanMinBlocks = 4;
#endif
template <typename input_t>
__global__ void __launch_bounds__(ssd::kTcThreads, kTcScanMinBlocks) ssd_chunk_scan_tc_kernel(const SsdScanParams p) {
  using Io = ssd::StaticIo<input_t>;
  EFFARCH_DYNAMIC_SHARED(32, char, tc_scan_smem);
  const int col_tiles = ssd::tc_col_tiles(p.head_dim), row_tiles = ssd::tc_row_tiles(p.chunk);
  const int pd0 = static_cast<int>(blockIdx.x % col_tiles) * ssd::kTcCols;
  const int rest = static_cast<int>(blockIdx.x / col_tiles);
  const int c = rest / row_tiles, row0 = (rest % row_tiles) * ssd::kTcRows;
  const int h = blockIdx.y, b = blockIdx.z;
  if (row0 >= ssd::chunk_tokens(p, c)) return;  // the whole block: before any barrier
  const ssd::TcScanShared<input_t> sh = ssd::tc_scan_shared<input_t>(tc_scan_smem, p.chunk, p.d_state);
  const int warp = threadIdx.x / ssd::kWarpSize;
  ssd::tc_scan_load<Io>(p, b, c, h, row0, pd0, threadIdx.x, ssd::kTcThreads, sh);
  __syncthreads();
  tile::FragAcc acc[ssd::kTcCols / tile::kDim];
  ssd::tc_scan_start_mma(p.d_state, warp, sh, acc);
  __syncthreads();
  ssd::tc_scan_start_scale(p, c, row0, threadIdx.x, ssd::kTcThreads, sh.cs, sh.acc);
  __syncthreads();
  ssd::tc_scan_reload(warp, sh, acc);
  const int k_end = ssd::tc_scan_k_end(p, c, row0);
  for (int s0 = 0; s0 < k_end; s0 += ssd::kTcTokens) {
    __syncthreads();  // every warp done with the start state / the previous step's cb and x
    ssd::tc_scan_load_b<Io>(p, b, c, h, s0, threadIdx.x, ssd::kTcThreads, sh);
    __syncthreads();
    ssd::tc_scan_scores_mma(p.d_state, warp, sh);
    __syncthreads();  // every warp done with B: cb and x take its region
    ssd::tc_scan_load_x<Io>(p, b, c, h, pd0, s0, threadIdx.x, ssd::kTcThreads, sh);
    ssd::tc_scan_decay_step<Io>(p, c, row0, s0, threadIdx.x, ssd::kTcThreads, sh);
    __syncthreads();
    ssd::tc_scan_out_mma(warp, sh, acc);
  }
  ssd::tc_scan_store_warp(warp, sh, acc);  // its own rows of acc, last read before a barrier
  __syncthreads();
  ssd::tc_scan_write<Io>(p, b, c, h, row0, pd0, threadIdx.x, ssd::kTcThreads, sh.acc);
}


template <typename input_t>
LaunchStatus ssd_chunk_state_tc_launch(const SsdScanParams& p, cudaStream_t stream) {
  const size_t bytes = static_cast<size_t>(ssd::tc_state_offsets(p.chunk, sizeof(input_t)).total);
  LaunchStatus status = allow_dynamic_shared(ssd_chunk_state_tc_kernel<input_t>, bytes,
                                        "ssd_chunk_scan: shared memory of the tensor-core chunk states");
  if (!status.ok()) return status;
  const unsigned tiles = static_cast<unsigned>(ssd::tc_col_tiles(p.head_dim) * ssd::tc_state_tiles(p.d_state));
  return launch_plain(ssd_chunk_state_tc_kernel<input_t>, dim3(tiles, p.heads, p.batch * p.nchunks),
                      dim3(ssd::kTcThreads), bytes, stream, "ssd_chunk_state_tc_kernel", p);
}

template <typename input_t>
LaunchStatus ssd_chunk_scan_tc_launch(const SsdScanParams& p, cudaStream_t stream) {
  const size_t bytes = static_cast<size_t>(ssd::tc_scan_offsets(p.chunk, p.d_state, sizeof(input_t)).total);
  LaunchStatus status = allow_dynamic_shared(ssd_chunk_scan_tc_kernel<input_t>, bytes,
                                        "ssd_chunk_scan: shared memory of the tensor-core chunk outputs");
  if (!status.ok()) return status;
  const int64_t blocks = static_cast<int64_t>(p.nchunks) * ssd::tc_row_tiles(p.chunk) * ssd::tc_col_tiles(p.head_dim);
  if (blocks > 0x7fffffff) return {cudaErrorInvalidConfiguration, "ssd_chunk_scan: too many output tiles"};
  return launch_plain(ssd_chunk_scan_tc_kernel<input_t>, dim3(static_cast<unsigned>(blocks), p.heads, p.batch),
                      dim3(ssd::kTcThreads), bytes, stream, "ssd_chunk_scan_tc_kernel", p);
}

}  // namespace effarch::kernels
