#pragma once
// The math of the decode attention kernels, written once for the device and the host (EFFARCH_HD):
// which keys a query row sees, how a block's keys are split, the online softmax of one thread,
// the merge of two partial states and the combine of the splits; and the split kernel's shared
// memory, so that a CPU test sizes it against what a GPU lets a block have.
// tests/ops/decode_attention_test.cpp runs these same functions in the kernel's order on the CPU
// (a host emulation) against the reference. Plain C++: no CUDA types, no torch.
//
// Loops have compile-time bounds, unrolled by nvcc without pragmas (which the host compiler warns
// about). Scores are kept in base 2: the query is scaled by scale * log2(e) once, so every exponential is
// an exp2 (one instruction on the GPU), as in FlashAttention and FlashInfer.

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "../common/host_device.h"

namespace effarch::kernels::decode_attn {

inline constexpr int kThreads = 128;   // threads per block of the split kernel
inline constexpr int kTileKeys = 64;   // keys per shared-memory stage (two stages in flight)
inline constexpr int kStepKeys = 8;    // keys scored before one online-softmax rescale (at most)
inline constexpr int kMaxRows = 8;     // query rows (GQA group x queries) of one KV head per block
inline constexpr float kLog2e = 1.4426950408889634f;

// Head sizes with a kernel, and the lanes that share one row's head dimension: each lane owns
// kVec = head_dim / lanes consecutive elements (16 lanes, except 8 for head size 40).
inline bool supported_head_dim(int head_dim) {
  return head_dim == 16 || head_dim == 32 || head_dim == 40 || head_dim == 64 || head_dim == 80 || head_dim == 128;
}
constexpr int lanes_for(int head_dim) { return head_dim % 16 == 0 ? 16 : 8; }

// How the kThreads threads of a block share kRows query rows and a tile of keys. The threads form
// kGroups groups of kLanes lanes; group g serves rows of row group g % kRowGroups (kRowsPerGroup
// rows each, so a K/V element read from shared memory serves several rows) and the keys of key
// group g / kRowGroups: a contiguous kKeysPerGroup-key slice of every tile.
template <int kHeadDim, int kRows>
struct Layout {
  static constexpr int kLanes = lanes_for(kHeadDim);
  static constexpr int kVec = kHeadDim / kLanes;
  static constexpr int kGroups = kThreads / kLanes;
  static constexpr int kRowGroups = kRows < 4 ? kRows : 4;
  static constexpr int kRowsPerGroup = kRows / kRowGroups;
  static constexpr int kKeyGroups = kGroups / kRowGroups;
  static constexpr int kKeysPerGroup = kTileKeys / kKeyGroups;
  static constexpr int kStep = kKeysPerGroup < kStepKeys ? kKeysPerGroup : kStepKeys;
  static_assert(kHeadDim % kLanes == 0, "head size must split over the lanes");
  static_assert(kKeysPerGroup % kStep == 0, "a key group's slice must be whole steps");
};

// Shared-memory row pitch in elements: 16 bytes of padding, so the groups of a warp reading
// different keys at the same offset fall on different banks.
template <typename T, int kHeadDim>
inline constexpr int kSmemPitch = kHeadDim + static_cast<int>(16 / sizeof(T));

// Bytes of one stage: a K and a V tile.
template <typename T, int kHeadDim>
inline constexpr size_t kStageBytes = size_t{2} * kTileKeys * kSmemPitch<T, kHeadDim> * sizeof(T);

// Stages in flight: two (the next tile loads while this one is used) where they fit in 96 KiB,
// else one (float32 at head size 128: sm_120-class GPUs give a block at most 99 KiB).
template <typename T, int kHeadDim>
inline constexpr int kStages = 2 * kStageBytes<T, kHeadDim> <= 96 * 1024 ? 2 : 1;

// Bytes of dynamic shared memory of the split kernel: the stages, reused after the key loop for
// the merge of the key groups' states.
template <typename T, int kHeadDim, int kRows>
constexpr size_t split_smem_bytes() {
  using L = Layout<kHeadDim, kRows>;
  const size_t tiles = kStages<T, kHeadDim> * kStageBytes<T, kHeadDim>;
  const size_t merge = size_t{kRows} * L::kKeyGroups * (kHeadDim + 2) * sizeof(float);
  return tiles > merge ? tiles : merge;
}

// Rows per block for `rows` query rows per KV head: the smallest of 1, 2, 4, 8 that holds them
// (8 beyond: the rows are served by several blocks, each reading the KV head again).
inline int rows_per_block(int64_t rows) { return rows <= 1 ? 1 : rows <= 2 ? 2 : rows <= 4 ? 4 : kMaxRows; }
inline int64_t row_chunks(int64_t rows) { return (rows + kMaxRows - 1) / kMaxRows; }

// How many splits of the key length: enough blocks for `blocks_per_sm` (kSplitBlocksPerSm) blocks
// an SM, at most one split per tile of the longest cache (the grid is sized for the buffer, the
// keys are divided on the device by the filled length, so a captured CUDA graph stays right as
// the cache fills). blocks_per_sm is a measuring knob (perf/pending.md entry 48: Llama-3-8B's 8 KV
// heads at batch 1 give 264 blocks where three blocks an SM fit at head size 128).
inline constexpr int kSplitBlocksPerSm = 2;
inline int plan_num_splits(int64_t batch, int64_t kv_heads, int64_t chunks, int64_t max_keys, int num_sms,
                           int blocks_per_sm = kSplitBlocksPerSm) {
  const int64_t blocks = batch * kv_heads * chunks;
  const int64_t target = static_cast<int64_t>(blocks_per_sm > 0 ? blocks_per_sm : kSplitBlocksPerSm) *
                         (num_sms > 0 ? num_sms : 1);
  int64_t splits = (target + blocks - 1) / blocks;
  const int64_t max_splits = (max_keys + kTileKeys - 1) / kTileKeys;
  if (splits > max_splits) splits = max_splits;
  if (splits > 1024) splits = 1024;
  return static_cast<int>(splits < 1 ? 1 : splits);
}

struct KeyRange {
  int64_t begin = 0;
  int64_t end = 0;  // exclusive
};

// The keys a query at `position` sees in a cache of `max_keys`: 0 .. position, and with a sliding
// window (window > 0) only the last `window` of them. Positions beyond the cache are clamped:
// keys outside the buffer are never read.
EFFARCH_HD KeyRange row_keys(int64_t position, int64_t window, int64_t max_keys) {
  int64_t end = position + 1;
  if (end > max_keys) end = max_keys;
  if (end < 0) end = 0;
  int64_t begin = window > 0 ? position - window + 1 : 0;
  if (begin < 0) begin = 0;
  if (begin > end) begin = end;
  return {begin, end};
}

// The keys any query of a sequence sees: its queries sit at last_position - (num_queries - 1) ..
// last_position (the last one is the newest token).
EFFARCH_HD KeyRange sequence_keys(int64_t last_position, int num_queries, int64_t window, int64_t max_keys) {
  const KeyRange first = row_keys(last_position - (num_queries - 1), window, max_keys);
  const KeyRange last = row_keys(last_position, window, max_keys);
  return {first.begin < last.begin ? first.begin : last.begin, last.end};
}

// Split `split` of `num_splits` of the keys `span`: equal whole tiles from the start, computed on
// the device from the filled length; trailing splits may be empty.
EFFARCH_HD KeyRange split_keys(KeyRange span, int num_splits, int split) {
  const int64_t n = span.end - span.begin;
  int64_t chunk = (n + num_splits - 1) / num_splits;
  chunk = (chunk + kTileKeys - 1) / kTileKeys * kTileKeys;
  int64_t begin = span.begin + static_cast<int64_t>(split) * chunk;
  int64_t end = begin + chunk;
  if (begin > span.end) begin = span.end;
  if (end > span.end) end = span.end;
  return {begin, end};
}

EFFARCH_HD float math_exp2(float x) {
#ifdef __CUDA_ARCH__
  return exp2f(x);
#else
  return std::exp2(x);
#endif
}
EFFARCH_HD float math_log2(float x) {
#ifdef __CUDA_ARCH__
  return log2f(x);
#else
  return std::log2(x);
#endif
}
EFFARCH_HD float math_fma(float a, float b, float c) {
#ifdef __CUDA_ARCH__
  return fmaf(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}
EFFARCH_HD float math_max(float a, float b) { return a > b ? a : b; }
EFFARCH_HD float neg_inf() { return -INFINITY; }

// One lane's partial q . k over its kVec elements (q already scaled to base 2).
template <int kVec>
EFFARCH_HD float partial_dot(const float (&q)[kVec], const float (&k)[kVec]) {
  float acc = 0.0f;
  for (int i = 0; i < kVec; ++i) acc = math_fma(q[i], k[i], acc);
  return acc;
}

// A row's running softmax as one lane holds it: the running max m (base 2), the running sum l of
// exp2(s - m), and the lane's slice o of sum exp2(s - m) v (not yet divided by l).
template <int kVec>
struct SoftmaxState {
  float m;
  float l;
  float o[kVec];
  EFFARCH_HD void init() {
    m = neg_inf();
    l = 0.0f;
    for (int i = 0; i < kVec; ++i) o[i] = 0.0f;
  }
};

// Takes n scores s (base 2; -inf for a key the row does not see) into the state: the new max,
// the old sum and output rescaled once, and s[j] replaced by its weight exp2(s[j] - m). The
// caller then adds s[j] * v_j to o.
template <int kVec, int kN>
EFFARCH_HD void rescale(SoftmaxState<kVec>& st, float (&s)[kN]) {
  float m_new = st.m;
  for (int j = 0; j < kN; ++j) m_new = math_max(m_new, s[j]);
  if (m_new == neg_inf()) {  // nothing seen yet, nothing seen now
    for (int j = 0; j < kN; ++j) s[j] = 0.0f;
    return;
  }
  const float alpha = math_exp2(st.m - m_new);  // 0 when st.m is -inf
  float sum = 0.0f;
  for (int j = 0; j < kN; ++j) {
    s[j] = math_exp2(s[j] - m_new);
    sum += s[j];
  }
  st.l = math_fma(st.l, alpha, sum);
  for (int i = 0; i < kVec; ++i) st.o[i] *= alpha;
  st.m = m_new;
}

template <int kVec>
EFFARCH_HD void accumulate(SoftmaxState<kVec>& st, float p, const float (&v)[kVec]) {
  for (int i = 0; i < kVec; ++i) st.o[i] = math_fma(p, v[i], st.o[i]);
}

// st <- the state over both key sets (another key group's m, l and o slice).
template <int kVec>
EFFARCH_HD void merge(SoftmaxState<kVec>& st, float m, float l, const float* o) {
  const float m_new = math_max(st.m, m);
  if (m_new == neg_inf()) return;
  const float a = math_exp2(st.m - m_new), b = math_exp2(m - m_new);
  st.l = st.l * a + l * b;
  for (int i = 0; i < kVec; ++i) st.o[i] = st.o[i] * a + o[i] * b;
  st.m = m_new;
}

// Divides o by l in place and returns the log2-sum-exp2 of the scores (m + log2 l); a state that
// saw no key gives o = 0 and -inf.
template <int kVec>
EFFARCH_HD float finish(SoftmaxState<kVec>& st) {
  if (st.l == 0.0f) {
    for (int i = 0; i < kVec; ++i) st.o[i] = 0.0f;
    return neg_inf();
  }
  const float inv = 1.0f / st.l;
  for (int i = 0; i < kVec; ++i) st.o[i] *= inv;
  return st.m + math_log2(st.l);
}

// One output element from the splits' normalised outputs o[i * o_stride] and their log2-sum-exp2
// lse[i]: sum_i 2^(lse_i - M) o_i / sum_i 2^(lse_i - M), M the largest; empty splits (-inf) weigh 0.
EFFARCH_HD float combine_splits(const float* lse, const float* o, int64_t o_stride, int num_splits) {
  float m = neg_inf();
  for (int i = 0; i < num_splits; ++i) m = math_max(m, lse[i]);
  if (m == neg_inf()) return 0.0f;
  float num = 0.0f, den = 0.0f;
  for (int i = 0; i < num_splits; ++i) {
    const float w = math_exp2(lse[i] - m);
    num = math_fma(w, o[i * o_stride], num);
    den += w;
  }
  return num / den;
}

}  // namespace effarch::kernels::decode_attn
