#pragma once
// Mamba-2 chunked SSD scan (prefill), in mamba_ssm's four stages, each its own kernel:
//   1. chunk_cumsum   one thread per (b, h, chunk): dt (bias, softplus, clamp), dt A and its
//                     prefix sum within the chunk -> [B, H, nchunks, Q] workspaces.
//   2. chunk_state    each chunk's own contribution to the state at its end,
//                     sum_q B[q] exp(sum_{k > q} dt A) dt[q] x[q] -> [B, nchunks, H, P, N].
//   3. state_passing  sequential over chunks per state entry: the slot of chunk c gets the state
//                     at its start, `state` the final one (read first when from_state).
//   4. chunk_scan     per block of kScanRows tokens of one chunk and head: w = C B^T of the
//                     group against the chunk's earlier tokens, kScanCols of B at a time through
//                     shared memory (recomputed per head: no [chunks, H, Q, Q] or
//                     [chunks, G, Q, Q] tensor exists), masked and decayed by exp(segment sums), times dt x, plus
//                     C times the chunk's start state decayed to the token, plus D x.
// Workspace memory is linear in L: 3 floats per token and head, and P N floats per chunk and head.
// Stages 2 and 4 come in two forms: the plain fp32 FMA loops below (fp32 inputs, d_state above
// 128, or asked for), and for bf16 / fp16 with params.tensor_cores the tile products of
// ssd_chunk_scan_tc.cuh (input-dtype operands, fp32 accumulation, mamba_ssm's roundings).

#include <type_traits>

#include "ssd/ssd_chunk_scan_tc.cuh"
#include "ssd/ssd_common.cuh"

namespace effarch::kernels {

// ssd::kCumsumThreads (64) a block: one thread per (b, h, chunk) makes few threads (Codestral at
// 32k tokens: 16,384), which 256-thread blocks put on 64 of an H200's 132 SMs (ncu: 0.3 ms).
template <typename input_t>
__global__ void __launch_bounds__(ssd::kCumsumThreads) ssd_chunk_cumsum_kernel(const SsdScanParams p) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * ssd::kCumsumThreads + threadIdx.x;
  if (i >= static_cast<int64_t>(p.batch) * p.heads * p.nchunks) return;
  const int c = static_cast<int>(i % p.nchunks);
  const int h = static_cast<int>((i / p.nchunks) % p.heads);
  const int b = static_cast<int>(i / (static_cast<int64_t>(p.nchunks) * p.heads));
  ssd::chunk_cumsum_thread<ssd::StaticIo<input_t>>(p, b, h, c);
}

template <typename input_t>
__global__ void __launch_bounds__(ssd::kScanThreads) ssd_chunk_state_kernel(const SsdScanParams p) {
  EFFARCH_DYNAMIC_SHARED(4, float, decay);  // [Q]
  const int h = blockIdx.y;
  const int b = blockIdx.z / p.nchunks, c = blockIdx.z % p.nchunks;
  if (threadIdx.x == 0) ssd::chunk_decay_to_end(p, b, h, c, decay);
  __syncthreads();
  const int e = blockIdx.x * ssd::kScanThreads + threadIdx.x;
  if (e < p.head_dim * p.d_state) ssd::chunk_state_entry<ssd::StaticIo<input_t>>(p, b, c, h, e, decay);
}

template <typename input_t>  // input_t unused: one instantiation per .cu, as the other stages
__global__ void __launch_bounds__(ssd::kScanThreads) ssd_state_passing_kernel(const SsdScanParams p) {
  const int e = blockIdx.x * ssd::kScanThreads + threadIdx.x;
  if (e < p.head_dim * p.d_state) ssd::state_passing_entry(p, blockIdx.z, blockIdx.y, e);
}

template <typename input_t>
__global__ void __launch_bounds__(ssd::kScanThreads) ssd_chunk_scan_kernel(const SsdScanParams p) {
  using Io = ssd::StaticIo<input_t>;
  EFFARCH_DYNAMIC_SHARED(4, float, shared);
  const ssd::ScanShared sh = ssd::scan_shared(shared, p.chunk, p.d_state);
  const int tiles = ssd::scan_tiles_per_chunk(p.chunk);
  const int c = blockIdx.x / tiles, row0 = (blockIdx.x % tiles) * ssd::kScanRows;
  const int h = blockIdx.y, b = blockIdx.z;
  if (row0 >= ssd::chunk_tokens(p, c)) return;  // the whole block: before any barrier
  ssd::scan_load<Io>(p, b, c, h, row0, threadIdx.x, ssd::kScanThreads, sh);
  const int rows_end = ssd::scan_rows_end(p, c, row0);
  for (int s0 = 0; s0 < rows_end; s0 += ssd::kScanCols) {  // C B^T, one B tile at a time
    __syncthreads();  // the previous tile's products done (the first time: the loads)
    ssd::scan_load_b_tile<Io>(p, b, c, h, s0, threadIdx.x, ssd::kScanThreads, sh);
    __syncthreads();
    ssd::scan_scores_tile(p, c, row0, s0, threadIdx.x, ssd::kScanThreads, sh);
  }
  __syncthreads();
  if (threadIdx.x < ssd::kScanRows) ssd::scan_decay_row(p, c, row0, threadIdx.x, sh);
  __syncthreads();
  for (int i = threadIdx.x; i < ssd::kScanRows * p.head_dim; i += ssd::kScanThreads) {
    ssd::scan_output<Io>(p, b, c, h, row0, i, sh);
  }
}

template <typename input_t>
LaunchStatus ssd_chunk_scan_cuda(const SsdScanParams& p, cudaStream_t stream) {
  if (p.batch == 0 || p.heads == 0 || p.head_dim == 0 || p.seqlen == 0) return {};
  if (p.groups < 1 || p.heads % p.groups != 0) return {cudaErrorInvalidValue, "ssd_chunk_scan: groups must divide heads"};
  if (p.chunk < 1 || p.chunk > ssd::kMaxChunk) {
    return {cudaErrorInvalidValue, "ssd_chunk_scan: chunk size must be 1..1024"};
  }
  if (p.d_state < 1 || p.d_state > ssd::kMaxDState) {
    return {cudaErrorInvalidValue, "ssd_chunk_scan: d_state must be 1..256"};
  }
  if (p.nchunks != (p.seqlen + p.chunk - 1) / p.chunk) {
    return {cudaErrorInvalidValue, "ssd_chunk_scan: nchunks must be ceil(seqlen / chunk)"};
  }
  if (p.dt_ws == nullptr || p.a_ws == nullptr || p.cs_ws == nullptr || p.states_ws == nullptr) {
    return {cudaErrorInvalidValue, "ssd_chunk_scan: the workspaces are required"};
  }
  if (p.heads > ssd::kMaxGridYZ || p.batch > ssd::kMaxGridYZ ||
      static_cast<int64_t>(p.batch) * p.nchunks > ssd::kMaxGridYZ) {
    return {cudaErrorInvalidConfiguration, "ssd_chunk_scan: batch, heads or batch * chunks above 65535"};
  }
  if (p.tensor_cores) {
    if constexpr (std::is_same_v<input_t, float>) {
      return {cudaErrorInvalidValue, "ssd_chunk_scan: the tensor-core path takes bf16 or fp16 inputs"};
    }
    if (p.d_state > ssd::kTcMaxDState) {
      return {cudaErrorInvalidValue, "ssd_chunk_scan: the tensor-core path takes d_state up to 128"};
    }
  }
  const int entries = p.head_dim * p.d_state;
  const unsigned entry_blocks = static_cast<unsigned>((entries + ssd::kScanThreads - 1) / ssd::kScanThreads);

  const int64_t lanes = static_cast<int64_t>(p.batch) * p.heads * p.nchunks;
  LaunchStatus status =
      launch_plain(ssd_chunk_cumsum_kernel<input_t>,
                   dim3(static_cast<unsigned>((lanes + ssd::kCumsumThreads - 1) / ssd::kCumsumThreads)),
                   dim3(ssd::kCumsumThreads), 0, stream, "ssd_chunk_cumsum_kernel", p);
  if (!status.ok()) return status;

  if constexpr (!std::is_same_v<input_t, float>) {
    if (p.tensor_cores) status = ssd_chunk_state_tc_launch<input_t>(p, stream);
  }
  if (!p.tensor_cores) {
    const size_t decay_bytes = sizeof(float) * static_cast<size_t>(p.chunk);
    status = launch_plain(ssd_chunk_state_kernel<input_t>, dim3(entry_blocks, p.heads, p.batch * p.nchunks),
                          dim3(ssd::kScanThreads), decay_bytes, stream, "ssd_chunk_state_kernel", p);
  }
  if (!status.ok()) return status;

  status = launch_plain(ssd_state_passing_kernel<input_t>, dim3(entry_blocks, p.heads, p.batch),
                        dim3(ssd::kScanThreads), 0, stream, "ssd_state_passing_kernel", p);
  if (!status.ok()) return status;

  if constexpr (!std::is_same_v<input_t, float>) {
    if (p.tensor_cores) return ssd_chunk_scan_tc_launch<input_t>(p, stream);
  }
  const size_t scan_bytes = sizeof(float) * static_cast<size_t>(ssd::scan_shared_floats(p.chunk, p.d_state));
  status = allow_dynamic_shared(ssd_chunk_scan_kernel<input_t>, scan_bytes,
                                "ssd_chunk_scan: shared memory for the chunk size and d_state");
  if (!status.ok()) return status;
  const unsigned tiles = static_cast<unsigned>(p.nchunks) * static_cast<unsigned>(ssd::scan_tiles_per_chunk(p.chunk));
  return launch_plain(ssd_chunk_scan_kernel<input_t>, dim3(tiles, p.heads, p.batch), dim3(ssd::kScanThreads),
                      scan_bytes, stream, "ssd_chunk_scan_kernel", p);
}

}  // namespace effarch::kernels
