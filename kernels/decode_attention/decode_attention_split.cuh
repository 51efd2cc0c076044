#pragma once
// The decode attention kernels (flash-decoding, after FlashInfer's decode kernel and vLLM's paged
// attention v2): grid (split, KV head x row chunk, sequence).
//
// Split kernel, one block of kThreads threads per grid cell. The block finds its keys on the
// device (the sequence's position, the window, its split), then streams them through shared
// memory in tiles of kTileKeys keys, two stages in flight (cp.async; one where two do not fit),
// K and V rows copied once and read from shared memory by every query row of the KV head.
// Groups of kLanes lanes each own a row (or two) and a slice of every tile's keys; a lane holds
// kVec elements of the query (fp32, scaled to base 2), scores a key with a partial dot product
// summed over the lanes (shuffles), and keeps an online softmax (running max, sum, output slice)
// over kStep keys at a time. At the end the key groups' states are merged through shared memory,
// and the block writes the output (one split) or the split's normalised output and
// log2-sum-exp2 to the workspace.
//
// Combine kernel, one block per (sequence, query head, query): each thread one element of the
// head dimension, the weighted sum of the splits (combine_splits).

#include "common/grid_dependency.h"
#include "common/launch.h"
#include "decode_attention/decode_attention_common.cuh"

namespace effarch::kernels {

template <typename T, int kHeadDim, int kRows>
__global__ void __launch_bounds__(decode_attn::kThreads)
    decode_attention_split_kernel(const DecodeAttentionParams p) {
  namespace da = decode_attn;
  using L = da::Layout<kHeadDim, kRows>;
  constexpr int kVec = L::kVec;
  constexpr int kLanes = L::kLanes;
  constexpr int kRpg = L::kRowsPerGroup;
  constexpr int kPitch = da::kSmemPitch<T, kHeadDim>;
  constexpr int kChunkElems = static_cast<int>(16 / sizeof(T));
  constexpr int kChunksPerRow = kHeadDim / kChunkElems;
  static_assert(kHeadDim % kChunkElems == 0, "K/V rows are copied in 16-byte chunks");

  EFFARCH_DYNAMIC_SHARED(16, unsigned char, smem);
  T* const k_tiles = reinterpret_cast<T*>(smem);
  constexpr int kStages = da::kStages<T, kHeadDim>;
  T* const v_tiles = k_tiles + kStages * da::kTileKeys * kPitch;
  allow_dependent_launch();
  grid_dependency_wait();  // the position, q and the cache rows written this step come from the kernels before

  const int split = blockIdx.x;
  const int kv_head = static_cast<int>(blockIdx.y) % p.kv_heads;
  const int chunk = static_cast<int>(blockIdx.y) / p.kv_heads;
  const int batch = blockIdx.z;
  const int tid = threadIdx.x;
  const int lane = tid % kLanes;
  const int group = tid / kLanes;
  const int row_group = group % L::kRowGroups;
  const int key_group = group / L::kRowGroups;
  const unsigned lane_mask = ((1u << kLanes) - 1u) << ((tid % 32) / kLanes * kLanes);

  const int64_t last = p.positions != nullptr ? p.positions[batch * p.positions_stride] : p.position;
  const da::KeyRange keys =
      da::split_keys(da::sequence_keys(last, p.num_queries, p.window, p.max_keys), p.num_splits, split);

  // This group's rows: row = g * num_queries + t of the KV head's G * num_queries rows.
  const int group_size = p.q_heads / p.kv_heads;
  const int rows = group_size * p.num_queries;
  const float q_scale = p.scale * da::kLog2e;
  float q[kRpg][kVec];
  da::KeyRange seen[kRpg];
  da::SoftmaxState<kVec> st[kRpg];
#pragma unroll
  for (int rr = 0; rr < kRpg; ++rr) {
    const int row = chunk * kRows + row_group * kRpg + rr;
    st[rr].init();
    seen[rr] = {0, 0};
#pragma unroll
    for (int i = 0; i < kVec; ++i) q[rr][i] = 0.0f;
    if (row < rows) {
      const int g = row / p.num_queries, t = row % p.num_queries;
      seen[rr] = da::row_keys(last - (p.num_queries - 1) + t, p.window, p.max_keys);
      const T* qp = static_cast<const T*>(p.q) + batch * p.q_batch_stride +
                    static_cast<int64_t>(kv_head * group_size + g) * p.q_head_stride + t * p.q_query_stride +
                    lane * kVec;
#pragma unroll
      for (int i = 0; i < kVec; ++i) q[rr][i] = to_float(qp[i]) * q_scale;
    }
  }

  const T* const k_base = static_cast<const T*>(p.k) + batch * p.k_batch_stride + kv_head * p.k_head_stride;
  const T* const v_base = static_cast<const T*>(p.v) + batch * p.v_batch_stride + kv_head * p.v_head_stride;
  const int num_tiles = static_cast<int>((keys.end - keys.begin + da::kTileKeys - 1) / da::kTileKeys);
  const auto load_tile = [&](int tile, int stage) {
    const int64_t first = keys.begin + static_cast<int64_t>(tile) * da::kTileKeys;
    T* const kd = k_tiles + stage * da::kTileKeys * kPitch;
    T* const vd = v_tiles + stage * da::kTileKeys * kPitch;
    for (int idx = tid; idx < da::kTileKeys * kChunksPerRow; idx += da::kThreads) {
      const int key = idx / kChunksPerRow, c = idx % kChunksPerRow;
      const bool valid = first + key < keys.end;
      const int64_t s = valid ? first + key : keys.begin;  // a readable row; nothing is read when !valid
      da::cp_async_16(kd + key * kPitch + c * kChunkElems, k_base + s * p.k_key_stride + c * kChunkElems, valid);
      da::cp_async_16(vd + key * kPitch + c * kChunkElems, v_base + s * p.v_key_stride + c * kChunkElems, valid);
    }
    da::cp_async_commit();
  };

  if (num_tiles > 0) load_tile(0, 0);
  for (int tile = 0; tile < num_tiles; ++tile) {
    if constexpr (kStages == 2) {
      if (tile + 1 < num_tiles) {
        load_tile(tile + 1, (tile + 1) & 1);
        da::cp_async_wait<1>();
      } else {
        da::cp_async_wait<0>();
      }
    } else {
      if (tile > 0) load_tile(tile, 0);
      da::cp_async_wait<0>();
    }
    __syncthreads();
    const int stage = kStages == 2 ? (tile & 1) : 0;
    const T* const kt = k_tiles + stage * da::kTileKeys * kPitch;
    const T* const vt = v_tiles + stage * da::kTileKeys * kPitch;
    const int64_t first = keys.begin + static_cast<int64_t>(tile) * da::kTileKeys;
    for (int step = 0; step < L::kKeysPerGroup; step += L::kStep) {
      const int key0 = key_group * L::kKeysPerGroup + step;  // in the tile
      if (first + key0 >= keys.end) break;                    // the same for the group's lanes
      float s[kRpg][L::kStep];
#pragma unroll
      for (int j = 0; j < L::kStep; ++j) {
        float kv[kVec];
        da::load_slice<T, kVec>(kt + (key0 + j) * kPitch + lane * kVec, kv);
        const int64_t key = first + key0 + j;
#pragma unroll
        for (int rr = 0; rr < kRpg; ++rr) {
          const float dot = da::group_sum<kLanes>(da::partial_dot<kVec>(q[rr], kv), lane_mask);
          const bool visible = key < keys.end && key >= seen[rr].begin && key < seen[rr].end;
          s[rr][j] = visible ? dot : da::neg_inf();
        }
      }
#pragma unroll
      for (int rr = 0; rr < kRpg; ++rr) da::rescale(st[rr], s[rr]);
#pragma unroll
      for (int j = 0; j < L::kStep; ++j) {
        float vv[kVec];
        da::load_slice<T, kVec>(vt + (key0 + j) * kPitch + lane * kVec, vv);
#pragma unroll
        for (int rr = 0; rr < kRpg; ++rr) da::accumulate(st[rr], s[rr][j], vv);
      }
    }
    __syncthreads();  // the stage is refilled next iteration
  }

  // Merge the key groups' states of each row into key group 0 (in key-group order).
  if constexpr (L::kKeyGroups > 1) {
    constexpr int kMergePitch = kHeadDim + 2;  // o, then m and l
    float* const merge_buf = reinterpret_cast<float*>(smem);
    if (key_group > 0) {
#pragma unroll
      for (int rr = 0; rr < kRpg; ++rr) {
        float* dst = merge_buf + ((row_group * kRpg + rr) * L::kKeyGroups + key_group) * kMergePitch;
#pragma unroll
        for (int i = 0; i < kVec; ++i) dst[lane * kVec + i] = st[rr].o[i];
        if (lane == 0) {
          dst[kHeadDim] = st[rr].m;
          dst[kHeadDim + 1] = st[rr].l;
        }
      }
    }
    __syncthreads();
    if (key_group > 0) return;
    for (int kg = 1; kg < L::kKeyGroups; ++kg) {
#pragma unroll
      for (int rr = 0; rr < kRpg; ++rr) {
        const float* src = merge_buf + ((row_group * kRpg + rr) * L::kKeyGroups + kg) * kMergePitch;
        da::merge(st[rr], src[kHeadDim], src[kHeadDim + 1], src + lane * kVec);
      }
    }
  }

#pragma unroll
  for (int rr = 0; rr < kRpg; ++rr) {
    const int row = chunk * kRows + row_group * kRpg + rr;
    if (row >= rows) continue;
    const int g = row / p.num_queries, t = row % p.num_queries;
    const int head = kv_head * group_size + g;
    const float lse = da::finish(st[rr]);
    if (p.num_splits == 1) {
      T* op = static_cast<T*>(p.out) + batch * p.out_batch_stride + static_cast<int64_t>(head) * p.out_head_stride +
              t * p.out_query_stride + lane * kVec;
#pragma unroll
      for (int i = 0; i < kVec; ++i) op[i] = from_float<T>(st[rr].o[i]);
    } else {
      const int64_t row_id = (static_cast<int64_t>(batch) * p.q_heads + head) * p.num_queries + t;
      float* po = p.partial_out + (row_id * p.num_splits + split) * kHeadDim + lane * kVec;
#pragma unroll
      for (int i = 0; i < kVec; ++i) po[i] = st[rr].o[i];
      if (lane == 0) p.partial_lse[row_id * p.num_splits + split] = lse;
    }
  }
}

template <typename T>
__global__ void __launch_bounds__(decode_attn::kThreads)
    decode_attention_combine_kernel(const DecodeAttentionParams p) {
  allow_dependent_launch();
  grid_dependency_wait();  // the splits' partial outputs
  const int64_t row_id = blockIdx.x;
  const int d = threadIdx.x;
  if (d >= p.head_dim) return;
  const int t = static_cast<int>(row_id % p.num_queries);
  const int64_t bh = row_id / p.num_queries;
  const int head = static_cast<int>(bh % p.q_heads);
  const int64_t batch = bh / p.q_heads;
  const float y = decode_attn::combine_splits(p.partial_lse + row_id * p.num_splits,
                                                   p.partial_out + row_id * p.num_splits * p.head_dim + d,
                                                   p.head_dim, p.num_splits);
  static_cast<T*>(p.out)[batch * p.out_batch_stride + static_cast<int64_t>(head) * p.out_head_stride +
                         t * p.out_query_stride + d] = from_float<T>(y);
}

template <typename T, int kHeadDim, int kRows>
LaunchStatus decode_attention_split_launch(const DecodeAttentionParams& p, cudaStream_t stream) {
  namespace da = decode_attn;
  constexpr size_t kSmem = da::split_smem_bytes<T, kHeadDim, kRows>();
  // 99 KiB (101376 bytes) is what an sm_120/121 block (DGX Spark) may opt into; sm_90 has 227 KiB.
  static_assert(kSmem <= 101376, "decode_attention: the split kernel's shared memory must fit sm_120/121");
  const auto kernel = decode_attention_split_kernel<T, kHeadDim, kRows>;
  const LaunchStatus smem =
      allow_dynamic_shared(kernel, kSmem, "decode_attention: shared memory above 48 KiB (cudaFuncSetAttribute)");
  if (!smem.ok()) return smem;
  const int64_t chunks = da::row_chunks(static_cast<int64_t>(p.q_heads / p.kv_heads) * p.num_queries);
  const dim3 grid(static_cast<unsigned>(p.num_splits), static_cast<unsigned>(p.kv_heads * chunks),
                  static_cast<unsigned>(p.batch));
  return launch_kernel(kernel, grid, dim3(da::kThreads), kSmem, stream, "decode_attention_split_kernel", p);
}

template <typename T>
LaunchStatus decode_attention_combine_launch(const DecodeAttentionParams& p, cudaStream_t stream) {
  const int64_t rows = static_cast<int64_t>(p.batch) * p.q_heads * p.num_queries;
  return launch_kernel(decode_attention_combine_kernel<T>, dim3(static_cast<unsigned>(rows)), dim3(decode_attn::kThreads),
                       0, stream, "decode_attention_combine_kernel", p);
}

template <typename T>
LaunchStatus decode_attention_cuda(const DecodeAttentionParams& p, cudaStream_t stream) {
  namespace da = decode_attn;
  if (p.batch == 0 || p.q_heads == 0) return {};
  if (p.kv_heads <= 0 || p.q_heads % p.kv_heads != 0 || p.num_queries < 1 || p.num_splits < 1 || p.max_keys < 0 ||
      p.window < 0) {
    return {cudaErrorInvalidValue, "decode_attention: heads, queries, splits, keys or window out of range"};
  }
  if (p.num_splits > 1 && (p.partial_out == nullptr || p.partial_lse == nullptr)) {
    return {cudaErrorInvalidValue, "decode_attention: more than one split needs the workspace"};
  }
  const int64_t rows = static_cast<int64_t>(p.q_heads / p.kv_heads) * p.num_queries;
  if (p.batch > da::kMaxGridYZ || p.kv_heads * da::row_chunks(rows) > da::kMaxGridYZ) {
    return {cudaErrorInvalidConfiguration, "decode_attention: batch or KV heads x row chunks above 65535"};
  }
  const LaunchStatus split = da::dispatch_head_dim(p.head_dim, [&](auto head_dim) -> LaunchStatus {
    return da::dispatch_rows(da::rows_per_block(rows), [&](auto block_rows) -> LaunchStatus {
      return decode_attention_split_launch<T, decltype(head_dim)::value, decltype(block_rows)::value>(p, stream);
    });
  });
  if (!split.ok() || p.num_splits == 1) return split;
  return decode_attention_combine_launch<T>(p, stream);
}

}  // namespace effarch::kernels
