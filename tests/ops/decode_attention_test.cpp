// decode_attention: the kernel's own split/combine math run on the CPU (a host emulation that
// loops over the grid, the thread groups and their lanes in the kernel's order, calling the same
// functions the kernel calls: kernels/decode_attention/decode_attention_math.h) against the
// reference; the reference against causal_attention; argument errors; and, with a GPU, the CUDA
// kernel against the reference for every dtype up to 32k keys, under CUDA graph replay, and the
// tiny Transformer models' greedy tokens with the kernels (decode attention, and the fused RoPE +
// cache write in the static and graphed steps) and with the reference.

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "../../kernels/decode_attention/decode_attention_math.h"
#include "../test_util.h"
#include "effarch/common/error.h"
#include "effarch/model/catalog.h"
#include "effarch/model/config.h"
#include "effarch/model/model.h"
#include "effarch/ops/attention.h"
#include "effarch/ops/decode_attention.h"
#include "tolerance.h"

#ifdef EFFARCH_WITH_CUDA
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include "cuda_graph_capture.h"
#endif

namespace effarch::ops {
namespace {

namespace da = kernels::decode_attn;
using test::expect_close;

// An fp32 result rounded once to `dtype` against another such: at most an ulp apart (epsilon of
// the value); 1e-5 where values near zero show fp32's own rounding of the sums.
// (test::rounding_tolerance's 2e-2 is a fifth of the outputs at 4k keys.) float32 itself: the
// kernel sums in another order over up to 32k keys.
test::Tolerance one_rounding(at::ScalarType dtype) {
  if (dtype == at::kFloat) return {1e-4, 1e-4};
  return {1e-5, test::epsilon(dtype)};
}

// ---------------------------------------------------------------------------------------------
// Host emulation of the kernels.

struct Problem {
  at::Tensor q, k, v;  // [B, Hq, T, D], [B, Hkv, S, D] (float32 contiguous copies for the emulation)
  std::vector<int64_t> positions;  // the newest query's position, per sequence
  int64_t window = 0;
  float scale = 0.0f;
  int num_splits = 1;
};

template <int kLanes>
void butterfly(float (&v)[kLanes]) {  // what group_sum's shuffles compute, lane by lane
  for (int offset = kLanes / 2; offset > 0; offset /= 2) {
    float next[kLanes];
    for (int l = 0; l < kLanes; ++l) next[l] = v[l] + v[l ^ offset];
    for (int l = 0; l < kLanes; ++l) v[l] = next[l];
  }
}

// One block of the split kernel (split, KV head, row chunk, sequence): writes the output rows
// (one split) or the split's normalised output and log2-sum-exp2.
template <int kHeadDim, int kRows>
void emulate_block(const Problem& pr, int batch, int kv_head, int chunk, int split, float* out, float* partial_out,
                   float* partial_lse) {
  using L = da::Layout<kHeadDim, kRows>;
  constexpr int kVec = L::kVec, kLanes = L::kLanes, kRpg = L::kRowsPerGroup;
  const int64_t hq = pr.q.size(1), t_count = pr.q.size(2), hkv = pr.k.size(1), s_len = pr.k.size(2);
  const int group_size = static_cast<int>(hq / hkv);
  const int num_queries = static_cast<int>(t_count);
  const int rows = group_size * num_queries;
  const float* q = pr.q.const_data_ptr<float>();
  const float* k = pr.k.const_data_ptr<float>() + (batch * hkv + kv_head) * s_len * kHeadDim;
  const float* v = pr.v.const_data_ptr<float>() + (batch * hkv + kv_head) * s_len * kHeadDim;

  const int64_t last = pr.positions[batch];
  const da::KeyRange keys =
      da::split_keys(da::sequence_keys(last, num_queries, pr.window, s_len), pr.num_splits, split);

  struct Thread {
    float q[kRpg][kVec];
    da::KeyRange seen[kRpg];
    da::SoftmaxState<kVec> st[kRpg];
  };
  std::vector<Thread> th(da::kThreads);
  const float q_scale = pr.scale * da::kLog2e;
  for (int tid = 0; tid < da::kThreads; ++tid) {
    const int lane = tid % kLanes, group = tid / kLanes, row_group = group % L::kRowGroups;
    for (int rr = 0; rr < kRpg; ++rr) {
      const int row = chunk * kRows + row_group * kRpg + rr;
      th[tid].st[rr].init();
      th[tid].seen[rr] = {0, 0};
      for (int i = 0; i < kVec; ++i) th[tid].q[rr][i] = 0.0f;
      if (row < rows) {
        const int g = row / num_queries, t = row % num_queries;
        th[tid].seen[rr] = da::row_keys(last - (num_queries - 1) + t, pr.window, s_len);
        const float* qp = q + ((batch * hq + kv_head * group_size + g) * t_count + t) * kHeadDim + lane * kVec;
        for (int i = 0; i < kVec; ++i) th[tid].q[rr][i] = qp[i] * q_scale;
      }
    }
  }

  // A K or V element as the tile in shared memory holds it: zeros past the split's keys.
  const auto slice = [&](const float* base, int64_t key, int lane, float (&out_vec)[kVec]) {
    for (int i = 0; i < kVec; ++i) out_vec[i] = key < keys.end ? base[key * kHeadDim + lane * kVec + i] : 0.0f;
  };
  const int num_tiles = static_cast<int>((keys.end - keys.begin + da::kTileKeys - 1) / da::kTileKeys);
  for (int tile = 0; tile < num_tiles; ++tile) {
    const int64_t first = keys.begin + static_cast<int64_t>(tile) * da::kTileKeys;
    for (int group = 0; group < L::kGroups; ++group) {
      const int key_group = group / L::kRowGroups;
      Thread* lanes = &th[group * kLanes];
      for (int step = 0; step < L::kKeysPerGroup; step += L::kStep) {
        const int key0 = key_group * L::kKeysPerGroup + step;
        if (first + key0 >= keys.end) break;
        float s[kLanes][kRpg][L::kStep];
        for (int j = 0; j < L::kStep; ++j) {
          const int64_t key = first + key0 + j;
          float dots[kRpg][kLanes];
          for (int lane = 0; lane < kLanes; ++lane) {
            float kv[kVec];
            slice(k, key, lane, kv);
            for (int rr = 0; rr < kRpg; ++rr) dots[rr][lane] = da::partial_dot<kVec>(lanes[lane].q[rr], kv);
          }
          for (int rr = 0; rr < kRpg; ++rr) butterfly<kLanes>(dots[rr]);
          for (int lane = 0; lane < kLanes; ++lane) {
            for (int rr = 0; rr < kRpg; ++rr) {
              const da::KeyRange& seen = lanes[lane].seen[rr];
              const bool visible = key < keys.end && key >= seen.begin && key < seen.end;
              s[lane][rr][j] = visible ? dots[rr][lane] : da::neg_inf();
            }
          }
        }
        for (int lane = 0; lane < kLanes; ++lane) {
          for (int rr = 0; rr < kRpg; ++rr) da::rescale(lanes[lane].st[rr], s[lane][rr]);
        }
        for (int j = 0; j < L::kStep; ++j) {
          for (int lane = 0; lane < kLanes; ++lane) {
            float vv[kVec];
            slice(v, first + key0 + j, lane, vv);
            for (int rr = 0; rr < kRpg; ++rr) da::accumulate(lanes[lane].st[rr], s[lane][rr][j], vv);
          }
        }
      }
    }
  }

  // Key group 0 merges the others' states (m and l from their lane 0, o from the same lane).
  for (int row_group = 0; row_group < L::kRowGroups; ++row_group) {
    for (int kg = 1; kg < L::kKeyGroups; ++kg) {
      const Thread* other = &th[(kg * L::kRowGroups + row_group) * kLanes];
      for (int lane = 0; lane < kLanes; ++lane) {
        for (int rr = 0; rr < kRpg; ++rr) {
          da::merge(th[row_group * kLanes + lane].st[rr], other[0].st[rr].m, other[0].st[rr].l, other[lane].st[rr].o);
        }
      }
    }
    for (int lane = 0; lane < kLanes; ++lane) {
      Thread& me = th[row_group * kLanes + lane];
      for (int rr = 0; rr < kRpg; ++rr) {
        const int row = chunk * kRows + row_group * kRpg + rr;
        if (row >= rows) continue;
        const int g = row / num_queries, t = row % num_queries;
        const int64_t row_id = (static_cast<int64_t>(batch) * hq + kv_head * group_size + g) * t_count + t;
        const float lse = da::finish(me.st[rr]);
        if (pr.num_splits == 1) {
          for (int i = 0; i < kVec; ++i) out[row_id * kHeadDim + lane * kVec + i] = me.st[rr].o[i];
        } else {
          for (int i = 0; i < kVec; ++i) {
            partial_out[(row_id * pr.num_splits + split) * kHeadDim + lane * kVec + i] = me.st[rr].o[i];
          }
          if (lane == 0) partial_lse[row_id * pr.num_splits + split] = lse;
        }
      }
    }
  }
}

template <int kHeadDim, int kRows>
at::Tensor emulate_with(const Problem& pr) {
  const int64_t b = pr.q.size(0), hq = pr.q.size(1), t = pr.q.size(2), hkv = pr.k.size(1);
  at::Tensor out = at::zeros(pr.q.sizes(), at::kFloat);
  const int64_t rows_total = b * hq * t;
  std::vector<float> partial_out(static_cast<size_t>(rows_total * pr.num_splits * kHeadDim), NAN);
  std::vector<float> partial_lse(static_cast<size_t>(rows_total * pr.num_splits), NAN);
  const int64_t chunks = da::row_chunks((hq / hkv) * t);
  for (int batch = 0; batch < b; ++batch) {
    for (int y = 0; y < hkv * chunks; ++y) {
      for (int split = 0; split < pr.num_splits; ++split) {
        emulate_block<kHeadDim, kRows>(pr, batch, static_cast<int>(y % hkv), static_cast<int>(y / hkv), split,
                                       out.mutable_data_ptr<float>(), partial_out.data(), partial_lse.data());
      }
    }
  }
  if (pr.num_splits > 1) {  // the combine kernel: one thread per output element
    float* o = out.mutable_data_ptr<float>();
    for (int64_t row = 0; row < rows_total; ++row) {
      for (int d = 0; d < kHeadDim; ++d) {
        o[row * kHeadDim + d] = da::combine_splits(&partial_lse[row * pr.num_splits],
                                                   &partial_out[row * pr.num_splits * kHeadDim + d], kHeadDim,
                                                   pr.num_splits);
      }
    }
  }
  return out;
}

template <int kHeadDim>
at::Tensor emulate_rows(const Problem& pr, int rows) {
  switch (rows) {
    case 1: return emulate_with<kHeadDim, 1>(pr);
    case 2: return emulate_with<kHeadDim, 2>(pr);
    case 4: return emulate_with<kHeadDim, 4>(pr);
    default: return emulate_with<kHeadDim, 8>(pr);
  }
}

// The kernels' output for q, k, v in their dtype: float32 inside, rounded once to q's dtype.
at::Tensor emulate(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, std::vector<int64_t> positions,
                   int64_t window, double scale, int num_splits) {
  Problem pr;
  pr.q = q.to(at::kFloat).contiguous();
  pr.k = k.to(at::kFloat).contiguous();
  pr.v = v.to(at::kFloat).contiguous();
  if (positions.size() == 1) positions.resize(static_cast<size_t>(q.size(0)), positions[0]);
  pr.positions = positions;
  pr.window = window;
  pr.scale = static_cast<float>(scale);
  pr.num_splits = num_splits;
  const int rows = da::rows_per_block((q.size(1) / k.size(1)) * q.size(2));
  at::Tensor out;
  switch (q.size(3)) {
    case 16: out = emulate_rows<16>(pr, rows); break;
    case 32: out = emulate_rows<32>(pr, rows); break;
    case 40: out = emulate_rows<40>(pr, rows); break;
    case 64: out = emulate_rows<64>(pr, rows); break;
    case 80: out = emulate_rows<80>(pr, rows); break;
    case 128: out = emulate_rows<128>(pr, rows); break;
    default: ADD_FAILURE() << "no emulation for head size " << q.size(3); return at::Tensor();
  }
  return out.to(q.scalar_type());
}

// ---------------------------------------------------------------------------------------------
// Problems.

struct Case {
  int64_t batch, q_heads, kv_heads, queries, head_dim, max_keys;
  std::vector<int64_t> positions;  // one per sequence, or one for all
  int64_t window = 0;
};

std::string describe(const Case& c) {
  std::string pos;
  for (int64_t p : c.positions) pos += std::to_string(p) + " ";
  return "B=" + std::to_string(c.batch) + " Hq=" + std::to_string(c.q_heads) + " Hkv=" + std::to_string(c.kv_heads) +
         " T=" + std::to_string(c.queries) + " D=" + std::to_string(c.head_dim) + " S=" + std::to_string(c.max_keys) +
         " positions " + pos + "window " + std::to_string(c.window);
}

struct Tensors {
  at::Tensor q, k, v, positions;
};

Tensors make_tensors(const Case& c, at::ScalarType dtype, at::Device device, uint64_t seed) {
  at::manual_seed(seed);
  const auto opts = at::TensorOptions().dtype(at::kFloat);
  Tensors t;
  t.q = at::randn({c.batch, c.q_heads, c.queries, c.head_dim}, opts).to(dtype).to(device);
  // Larger keys make the softmax peaked, so a wrong key or weight shows.
  t.k = (at::randn({c.batch, c.kv_heads, c.max_keys, c.head_dim}, opts) * 2).to(dtype).to(device);
  t.v = at::randn({c.batch, c.kv_heads, c.max_keys, c.head_dim}, opts).to(dtype).to(device);
  t.positions = at::tensor(c.positions, at::kLong).to(device);
  return t;
}

std::optional<int64_t> window_of(const Case& c) { return c.window > 0 ? std::optional<int64_t>(c.window) : std::nullopt; }

// The reference in float32 from the same (rounded) inputs.
at::Tensor reference_fp32(const Tensors& t, const Case& c, double scale) {
  return detail::decode_attention_reference(t.q.to(at::kFloat), t.k.to(at::kFloat), t.v.to(at::kFloat), t.positions,
                                            scale, window_of(c), AttentionImpl::Sdpa);
}

// The awkward sizes of the issue: lengths 1, 2, odd, not a multiple of the split, long; GQA 1, 4,
// 8 (and 16: two row chunks); head sizes 64, 80, 128 (and the tiny models' 16, 32, 40); several
// sequences at different positions; windows; several queries.
std::vector<Case> cpu_cases() {
  return {
      {1, 4, 4, 1, 64, 8, {0}},                   // one key
      {1, 4, 4, 1, 64, 8, {1}},                   // two keys
      {2, 8, 2, 1, 80, 200, {76, 130}},           // Phi-2's head size, odd lengths, GQA 4
      {1, 8, 1, 1, 128, 300, {190}},              // GQA 8, not a multiple of the tile
      {3, 16, 2, 1, 128, 1100, {1, 700, 1099}},   // GQA 8, a full cache, lengths 2 .. 1100
      {1, 2, 2, 1, 64, 4200, {4096}},             // long, one past a multiple of the split
      {2, 16, 1, 1, 64, 160, {150, 33}},          // GQA 16: two row chunks
      {2, 4, 2, 1, 128, 500, {450, 20}, 100},     // sliding window, one sequence inside it
      {1, 4, 4, 1, 80, 400, {399}, 1},            // window of one key
      {2, 4, 2, 3, 64, 300, {250, 2}, 77},        // three queries, window
      {1, 2, 1, 5, 128, 90, {70}},                // five queries, GQA 2: rows of two heads
      {1, 4, 2, 1, 16, 70, {66}},
      {1, 4, 2, 1, 32, 70, {69}},
      {2, 4, 4, 1, 40, 150, {149, 64}},
  };
}

TEST(DecodeAttentionEmulation, KernelMathMatchesTheReferenceOnAwkwardSizes) {
  for (const Case& c : cpu_cases()) {
    const Tensors t = make_tensors(c, at::kFloat, at::kCPU, 11);
    const double scale = 1.0 / std::sqrt(static_cast<double>(c.head_dim));
    const at::Tensor expected = reference_fp32(t, c, scale);
    const int planned = da::plan_num_splits(c.batch, c.kv_heads, da::row_chunks((c.q_heads / c.kv_heads) * c.queries),
                                            c.max_keys, 132);
    for (int splits : {1, 3, 7, planned}) {
      const at::Tensor got = emulate(t.q, t.k, t.v, c.positions, c.window, scale, splits);
      expect_close(got, expected, {2e-5, 2e-5}, describe(c) + " splits " + std::to_string(splits));
    }
  }
}

TEST(DecodeAttentionEmulation, HalfPrecisionInputsRoundOnceAtTheEnd) {
  const Case c{2, 8, 2, 1, 128, 700, {650, 3}};
  for (at::ScalarType dtype : {at::kBFloat16, at::kHalf}) {
    const Tensors t = make_tensors(c, dtype, at::kCPU, 12);
    const double scale = 1.0 / std::sqrt(128.0);
    const at::Tensor got = emulate(t.q, t.k, t.v, c.positions, 0, scale, 5);
    expect_close(got, reference_fp32(t, c, scale).to(dtype), one_rounding(dtype), c10::toString(dtype));
  }
}

TEST(DecodeAttentionEmulation, SplitsPartitionTheKeysWholeTilesFirst) {
  // Every key of the span in exactly one split, in order; a split is whole tiles unless it ends the span.
  for (int64_t n : {1, 2, 63, 64, 65, 1000, 32768}) {
    for (int splits : {1, 2, 5, 64, 513}) {
      const da::KeyRange span{7, 7 + n};
      int64_t next = span.begin;
      for (int s = 0; s < splits; ++s) {
        const da::KeyRange r = da::split_keys(span, splits, s);
        ASSERT_EQ(r.begin, next) << n << " keys, split " << s << " of " << splits;
        ASSERT_LE(r.begin, r.end);
        if (r.end != span.end) EXPECT_EQ((r.end - r.begin) % da::kTileKeys, 0) << n << " keys, split " << s;
        next = r.end;
      }
      EXPECT_EQ(next, span.end) << n << " keys over " << splits << " splits";
    }
  }
  // The grid is planned for the buffer, bounded by its tiles.
  EXPECT_EQ(da::plan_num_splits(1, 8, 1, 32768, 132), 33);
  EXPECT_EQ(da::plan_num_splits(32, 32, 1, 32768, 132), 1);
  EXPECT_EQ(da::plan_num_splits(1, 8, 1, 100, 132), 2);
  // The measuring knob (decode_attention_b4, _b6): more blocks an SM, more splits, the same bound.
  EXPECT_EQ(da::plan_num_splits(1, 8, 1, 32768, 132, 4), 66);
  EXPECT_EQ(da::plan_num_splits(1, 8, 1, 8192, 132, 6), 99);
  EXPECT_EQ(da::plan_num_splits(1, 8, 1, 100, 132, 6), 2);
  EXPECT_EQ(da::plan_num_splits(1, 8, 1, 32768, 132, 0), 33);  // 0: the default
  // Window and clamping.
  EXPECT_EQ(da::row_keys(10, 0, 100).begin, 0);
  EXPECT_EQ(da::row_keys(10, 4, 100).begin, 7);
  EXPECT_EQ(da::row_keys(10, 4, 100).end, 11);
  EXPECT_EQ(da::row_keys(500, 0, 100).end, 100);
}

// What an sm_120/121 block (DGX Spark's GB10) may opt into: 99 KiB of dynamic shared memory (an
// H100's 227 KiB). A kernel asking for more fails at cudaFuncSetAttribute (allow_dynamic_shared).
constexpr size_t kSm121BlockBytes = 101376;

template <typename T, int kHeadDim>
void expect_split_fits_sm121(const char* type) {
  const size_t rows[] = {da::split_smem_bytes<T, kHeadDim, 1>(), da::split_smem_bytes<T, kHeadDim, 2>(),
                         da::split_smem_bytes<T, kHeadDim, 4>(), da::split_smem_bytes<T, kHeadDim, 8>()};
  for (size_t bytes : rows) EXPECT_LE(bytes, kSm121BlockBytes) << type << ", head size " << kHeadDim;
}
template <typename T>
void expect_split_fits_sm121_every_head_size(const char* type) {
  expect_split_fits_sm121<T, 16>(type);
  expect_split_fits_sm121<T, 32>(type);
  expect_split_fits_sm121<T, 40>(type);
  expect_split_fits_sm121<T, 64>(type);
  expect_split_fits_sm121<T, 80>(type);
  expect_split_fits_sm121<T, 128>(type);
}

// On a DGX Spark (sm_121, 99 KiB a block) the split kernel launches for every instantiation the
// launcher can pick: each head size with a kernel (every built-in config's, checked first), each
// element type, 1, 2, 4 or 8 rows a block; otherwise the Transformers' decode would fail there.
// Float32 at head size 128 keeps one stage (two would take 132 KiB); the largest block is float32
// at head size 80 (Phi-2 in fp32): two stages of 42 KiB.
TEST(DecodeAttentionEmulation, SplitKernelSharedMemoryFitsAnSm121Block) {
  size_t with_attention = 0;
  for (const std::string& name : model::builtin_model_names()) {
    const model::ModelConfig config = model::resolve_model(name).config;
    if (!config.attention) continue;
    ++with_attention;
    EXPECT_TRUE(da::supported_head_dim(static_cast<int>(config.attention->head_dim)))
        << name << ": head size " << config.attention->head_dim;
  }
  EXPECT_GE(with_attention, 10u);  // Llama, Mistral, Mixtral, Phi, DeepSeekMoE, Jamba and the tiny ones
  expect_split_fits_sm121_every_head_size<float>("float32");
  expect_split_fits_sm121_every_head_size<at::BFloat16>("bfloat16");
  expect_split_fits_sm121_every_head_size<at::Half>("float16");
  EXPECT_EQ((da::kStages<float, 128>), 1);
  EXPECT_EQ((da::split_smem_bytes<float, 128, 8>()), 67584u);
  EXPECT_EQ((da::kStages<float, 80>), 2);
  EXPECT_EQ((da::split_smem_bytes<float, 80, 1>()), 86016u);
  EXPECT_EQ((da::kStages<at::BFloat16, 128>), 2);
  EXPECT_EQ((da::split_smem_bytes<at::BFloat16, 128, 8>()), 69632u);
}

// ---------------------------------------------------------------------------------------------
// The op entry on the CPU: its reference against causal_attention, and its errors.

TEST(DecodeAttention, ReferenceEqualsCausalAttentionPerSequence) {
  for (const Case& c : cpu_cases()) {
    const Tensors t = make_tensors(c, at::kFloat, at::kCPU, 13);
    const double scale = 0.3;
    for (AttentionImpl impl : {AttentionImpl::Sdpa, AttentionImpl::Eager}) {
      const at::Tensor got = decode_attention(t.q, t.k, t.v, t.positions, scale, window_of(c), Backend::Auto, impl);
      for (int64_t b = 0; b < c.batch; ++b) {
        const int64_t pos = c.positions.size() == 1 ? c.positions[0] : c.positions[static_cast<size_t>(b)];
        const int64_t s = pos + 1;
        const at::Tensor expected = causal_attention(t.q.narrow(0, b, 1), t.k.narrow(0, b, 1).narrow(2, 0, s),
                                                     t.v.narrow(0, b, 1).narrow(2, 0, s), s - c.queries, scale, impl,
                                                     window_of(c));
        expect_close(got.narrow(0, b, 1), expected, {1e-5, 1e-5}, describe(c) + " sequence " + std::to_string(b));
        if (c.positions.size() == 1 || c.batch == 1) {  // the host-position entry, one position for all
          const at::Tensor host = decode_attention(t.q, t.k, t.v, pos, scale, window_of(c), Backend::Auto, impl);
          expect_close(host.narrow(0, b, 1), expected, {1e-5, 1e-5}, describe(c) + " host position");
        }
      }
    }
  }
}

TEST(DecodeAttention, StridedCacheViewsAreReadInPlace) {
  // A [B, S, Hkv, D] buffer seen as [B, Hkv, S, D], narrowed to its first keys.
  const Case c{2, 8, 2, 1, 64, 96, {90, 17}};
  const Tensors t = make_tensors(c, at::kFloat, at::kCPU, 14);
  const at::Tensor k_view = t.k.transpose(1, 2).contiguous().transpose(1, 2);
  const at::Tensor v_view = t.v.transpose(1, 2).contiguous().transpose(1, 2);
  expect_close(decode_attention(t.q, k_view, v_view, t.positions, 0.125, std::nullopt),
               decode_attention(t.q, t.k, t.v, t.positions, 0.125, std::nullopt), {1e-6, 1e-6}, "strided");
}

// The output written into a column range of a wider [B, T, width] buffer (the parallel block's
// fused step), through both entries: the same values as a new tensor, the rest of the buffer
// untouched; an output of another shape or dtype is refused by name.
TEST(DecodeAttention, OutputIntoAStridedViewOfAWiderBuffer) {
  const Case c{2, 8, 2, 1, 64, 40, {30, 30}};
  const Tensors t = make_tensors(c, at::kFloat, at::kCPU, 16);
  const int64_t features = c.q_heads * c.head_dim, width = features + 100;
  at::Tensor buffer = at::full({c.batch, 1, width}, 5.0);
  const at::Tensor out = buffer.narrow(-1, 60, features).view({c.batch, 1, c.q_heads, c.head_dim}).transpose(1, 2);
  const at::Tensor plain = decode_attention(t.q, t.k, t.v, t.positions, 0.2, std::nullopt);
  const at::Tensor got = decode_attention(t.q, t.k, t.v, t.positions, 0.2, std::nullopt, Backend::Auto,
                                          AttentionImpl::Sdpa, &out);
  EXPECT_TRUE(got.is_alias_of(buffer));
  EXPECT_TRUE(at::equal(out, plain));
  EXPECT_TRUE(at::equal(buffer.narrow(-1, 0, 60), at::full({c.batch, 1, 60}, 5.0)));
  EXPECT_TRUE(at::equal(buffer.narrow(-1, 60 + features, 40), at::full({c.batch, 1, 40}, 5.0)));
  buffer.fill_(5.0);
  decode_attention(t.q, t.k, t.v, int64_t{30}, 0.2, std::nullopt, Backend::Auto, AttentionImpl::Eager, &out);
  expect_close(out, plain, {1e-5, 1e-5}, "host position, eager");  // eager against SDPA's sums
  // q and out both column ranges of one [B, 1, 2 features] buffer (a parallel block without
  // RoPE): their rows interleave without sharing an element, so out is taken; out on q is refused.
  at::Tensor both = at::zeros({c.batch, 1, 2 * features});
  const auto cols = [&](int64_t first) {
    return both.narrow(-1, first, features).view({c.batch, 1, c.q_heads, c.head_dim}).transpose(1, 2);
  };
  const at::Tensor q_cols = cols(0), out_cols = cols(features);
  q_cols.copy_(t.q);
  decode_attention(q_cols, t.k, t.v, t.positions, 0.2, std::nullopt, Backend::Auto, AttentionImpl::Sdpa, &out_cols);
  EXPECT_TRUE(at::equal(out_cols, plain));
  EXPECT_THROW_WITH(decode_attention(q_cols, t.k, t.v, t.positions, 0.2, std::nullopt, Backend::Auto,
                                     AttentionImpl::Sdpa, &q_cols),
                    OpError, {"decode_attention", "out overlaps q"});
  const at::Tensor small = at::empty({c.batch, c.q_heads, 1, c.head_dim - 1});
  EXPECT_THROW_WITH(decode_attention(t.q, t.k, t.v, t.positions, 0.2, std::nullopt, Backend::Auto,
                                     AttentionImpl::Sdpa, &small),
                    OpError, {"decode_attention", "out", "q's shape"});
  const at::Tensor doubles = at::empty(t.q.sizes(), at::kDouble);
  EXPECT_THROW_WITH(decode_attention(t.q, t.k, t.v, int64_t{30}, 0.2, std::nullopt, Backend::Auto,
                                     AttentionImpl::Sdpa, &doubles),
                    OpError, {"decode_attention", "out"});
}

TEST(DecodeAttention, BadArgumentsAreOpErrorsNamingThem) {
  const Case c{2, 4, 2, 1, 64, 16, {5, 6}};
  const Tensors t = make_tensors(c, at::kFloat, at::kCPU, 15);
  EXPECT_THROW_WITH(decode_attention(t.q, t.k, t.v, t.positions.to(at::kInt), 1.0, std::nullopt), OpError,
                    {"decode_attention", "positions"});
  EXPECT_THROW_WITH(decode_attention(t.q, t.k, t.v, at::zeros({3}, at::kLong), 1.0, std::nullopt), OpError,
                    {"decode_attention", "positions"});
  EXPECT_THROW_WITH(decode_attention(t.q.narrow(1, 0, 3), t.k, t.v, t.positions, 1.0, std::nullopt), OpError,
                    {"decode_attention", "KV heads"});
  EXPECT_THROW_WITH(decode_attention(t.q, t.k, t.v.narrow(2, 0, 8), t.positions, 1.0, std::nullopt), OpError,
                    {"decode_attention", "v_cache"});
  EXPECT_THROW_WITH(decode_attention(t.q, t.k.to(at::kDouble), t.v, t.positions, 1.0, std::nullopt), OpError,
                    {"decode_attention", "dtype"});
  EXPECT_THROW_WITH(decode_attention(t.q, t.k, t.v, t.positions, 1.0, int64_t{0}), OpError,
                    {"decode_attention", "window"});
  EXPECT_THROW_WITH(decode_attention(t.q, t.k, t.v, int64_t{16}, 1.0, std::nullopt), OpError,
                    {"decode_attention", "position 16"});
  EXPECT_THROW_WITH(decode_attention(t.q, t.k, t.v, t.positions, 1.0, std::nullopt, Backend::Cuda), OpError,
                    {"decode_attention", "cuda"});
}

// ---------------------------------------------------------------------------------------------
// The CUDA kernel (skipped without a GPU).

bool have_gpu() { return kBuiltWithCuda && at::hasCUDA(); }

std::vector<Case> gpu_cases() {
  std::vector<Case> cases = cpu_cases();
  cases.push_back({1, 32, 32, 1, 80, 32768, {32767}});          // Phi-2 at 32k
  cases.push_back({1, 32, 8, 1, 128, 32768, {32767}});          // Llama-3-8B at 32k
  cases.push_back({4, 32, 8, 1, 128, 8192, {8191, 5, 4000, 777}});
  cases.push_back({2, 32, 8, 1, 128, 32768, {30000, 12345}, 4096});  // Mistral's window
  cases.push_back({8, 32, 32, 1, 80, 600, {512}});
  cases.push_back({1, 8, 1, 1, 64, 32768, {20001}});
  return cases;
}

TEST(DecodeAttentionCuda, KernelMatchesTheReferenceForEveryDtype) {
  if (!have_gpu()) GTEST_SKIP() << "needs a CUDA build and a GPU";
  const at::Device gpu(at::kCUDA, 0);
  for (const Case& c : gpu_cases()) {
    for (at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
      const Tensors t = make_tensors(c, dtype, gpu, 21);
      const double scale = 1.0 / std::sqrt(static_cast<double>(c.head_dim));
      const at::Tensor got = decode_attention(t.q, t.k, t.v, t.positions, scale, window_of(c), Backend::Cuda);
      const at::Tensor expected = reference_fp32(t, c, scale).to(dtype);
      expect_close(got, expected, one_rounding(dtype), describe(c) + " " + c10::toString(dtype));
      if (c.positions.size() == 1) {
        const at::Tensor host = decode_attention(t.q, t.k, t.v, c.positions[0], scale, window_of(c), Backend::Cuda);
        expect_close(host, got, {0.0, 0.0}, describe(c) + " host position");
      }
    }
  }
}

// The split plan's measuring knob (detail::decode_attention_cuda's split_blocks_per_sm, timed as
// effarch kernels' decode_attention_b4 and _b6): more, shorter splits agree with the reference as
// the default's do, on Llama-3-8B's and Phi-2's shapes at 8k and 32k.
TEST(DecodeAttentionCuda, MoreSplitsAgreeWithTheReference) {
  if (!have_gpu()) GTEST_SKIP() << "needs a CUDA build and a GPU";
#ifdef EFFARCH_WITH_CUDA  // detail::decode_attention_cuda exists in a CUDA build only
  const at::Device gpu(at::kCUDA, 0);
  const std::vector<Case> cases = {{1, 32, 8, 1, 128, 8192, {8191}}, {1, 32, 8, 1, 128, 32768, {32767}},
                                   {1, 32, 32, 1, 80, 8192, {8191}}};
  for (const Case& c : cases) {
    for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
      const Tensors t = make_tensors(c, dtype, gpu, 22);
      const double scale = 1.0 / std::sqrt(static_cast<double>(c.head_dim));
      const at::Tensor expected = reference_fp32(t, c, scale).to(dtype);
      const test::Tolerance tol = one_rounding(dtype);
      for (const int blocks_per_sm : {4, 6}) {
        const at::Tensor out = at::empty_like(t.q);
        detail::decode_attention_cuda(t.q, t.k, t.v, at::Tensor(), c.positions[0], scale, std::nullopt, out,
                                      blocks_per_sm);
        expect_close(out, expected, tol, describe(c) + " " + c10::toString(dtype) + " blocks an SM " +
                                             std::to_string(blocks_per_sm));
      }
    }
  }
#endif
}

TEST(DecodeAttentionCuda, StridedCacheViewsAndBadLayouts) {
  if (!have_gpu()) GTEST_SKIP() << "needs a CUDA build and a GPU";
  const at::Device gpu(at::kCUDA, 0);
  const Case c{2, 32, 8, 1, 128, 4096, {4000, 100}};
  const Tensors t = make_tensors(c, at::kBFloat16, gpu, 22);
  // [B, S, Hkv, D] storage, and a longer buffer narrowed: both read in place.
  const at::Tensor k_view = t.k.transpose(1, 2).contiguous().transpose(1, 2);
  const at::Tensor v_view = t.v.transpose(1, 2).contiguous().transpose(1, 2);
  const at::Tensor expected = reference_fp32(t, c, 0.1).to(at::kBFloat16);
  expect_close(decode_attention(t.q, k_view, v_view, t.positions, 0.1, std::nullopt, Backend::Cuda), expected,
               one_rounding(at::kBFloat16), "[B, S, Hkv, D] cache");
  const at::Tensor k_long = at::cat({t.k, t.k}, 2), v_long = at::cat({t.v, t.v}, 2);
  expect_close(decode_attention(t.q, k_long.narrow(2, 0, 4096), v_long.narrow(2, 0, 4096), t.positions, 0.1,
                                std::nullopt, Backend::Cuda),
               expected, one_rounding(at::kBFloat16), "narrowed buffer");
  // A query from a [B, T, Hq*D] projection (the model's layout).
  const at::Tensor q_view = t.q.transpose(1, 2).contiguous().transpose(1, 2);
  expect_close(decode_attention(q_view, t.k, t.v, t.positions, 0.1, std::nullopt, Backend::Cuda), expected,
               one_rounding(at::kBFloat16), "transposed q");
  EXPECT_THROW_WITH(decode_attention(t.q, t.k.narrow(3, 0, 64), t.v.narrow(3, 0, 64), t.positions, 0.1,
                                     std::nullopt, Backend::Cuda),
                    OpError, {"decode_attention", "q"});  // head sizes differ
  const Case odd{1, 4, 4, 1, 96, 64, {10}};
  const Tensors o = make_tensors(odd, at::kHalf, gpu, 23);
  EXPECT_THROW_WITH(decode_attention(o.q, o.k, o.v, o.positions, 0.1, std::nullopt, Backend::Cuda), OpError,
                    {"decode_attention", "head size 96"});
  const at::Tensor k_odd = at::cat({t.k, t.k.narrow(3, 0, 1)}, 3).narrow(3, 1, 128);  // rows 2 bytes off
  EXPECT_THROW_WITH(decode_attention(t.q, k_odd, t.v, t.positions, 0.1, std::nullopt, Backend::Cuda), OpError,
                    {"decode_attention", "16 bytes"});
}

// The kernel writes a strided output view in place (the parallel block's column range of its
// fused buffer): the same bits as into a new tensor, the buffer's other columns untouched.
TEST(DecodeAttentionCuda, OutputIntoAStridedViewOfAWiderBuffer) {
  if (!have_gpu()) GTEST_SKIP() << "needs a CUDA build and a GPU";
  const at::Device gpu(at::kCUDA, 0);
  for (const Case& c : std::vector<Case>{{1, 32, 32, 1, 80, 4096, {600}}, {2, 32, 8, 1, 128, 8192, {8000, 77}}}) {
    for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
      const Tensors t = make_tensors(c, dtype, gpu, 24);
      const int64_t features = c.q_heads * c.head_dim, width = features + 17920;
      at::Tensor buffer = at::full({c.batch, 1, width}, 5.0, t.q.options());
      const at::Tensor out =
          buffer.narrow(-1, 17920, features).view({c.batch, 1, c.q_heads, c.head_dim}).transpose(1, 2);
      const at::Tensor plain = decode_attention(t.q, t.k, t.v, t.positions, 0.1, std::nullopt, Backend::Cuda);
      decode_attention(t.q, t.k, t.v, t.positions, 0.1, std::nullopt, Backend::Cuda, AttentionImpl::Sdpa, &out);
      EXPECT_TRUE(at::equal(out, plain)) << describe(c) << " " << c10::toString(dtype);
      EXPECT_TRUE(at::equal(buffer.narrow(-1, 0, 17920), at::full({c.batch, 1, 17920}, 5.0, t.q.options())));
    }
  }
}

#ifdef EFFARCH_WITH_CUDA
TEST(DecodeAttentionCuda, AGraphCapturedOnceReplaysAsThePositionAdvances) {
  if (!have_gpu()) GTEST_SKIP() << "needs a GPU";
  const at::Device gpu(at::kCUDA, 0);
  const Case c{2, 32, 8, 1, 128, 3000, {0, 0}, 1000};
  Tensors t = make_tensors(c, at::kBFloat16, gpu, 24);
  at::Tensor position = at::zeros({1}, at::TensorOptions().dtype(at::kLong).device(gpu));
  (void)decode_attention(t.q, t.k, t.v, position, 0.1, int64_t{1000}, Backend::Cuda);  // warm up
  at::cuda::CUDAGraph graph;
  const at::Tensor out = test::capture_into(
      graph, [&] { return decode_attention(t.q, t.k, t.v, position, 0.1, int64_t{1000}, Backend::Cuda); });
  for (int64_t pos : {0, 1, 63, 64, 999, 1000, 2047, 2999}) {
    position.fill_(pos);
    graph.replay();
    const Case at_pos{c.batch, c.q_heads, c.kv_heads, 1, c.head_dim, c.max_keys, {pos}, c.window};
    Tensors ref = t;
    ref.positions = position;
    expect_close(out, reference_fp32(ref, at_pos, 0.1).to(at::kBFloat16), one_rounding(at::kBFloat16),
                 "replay at position " + std::to_string(pos));
  }
}
#endif

}  // namespace
}  // namespace effarch::ops

// ---------------------------------------------------------------------------------------------
// The tiny Transformer models: identical greedy tokens with the kernel and with the reference.

namespace effarch::model {
namespace {

std::unique_ptr<Model> tiny(const std::string& name, const nlohmann::json& overrides, ops::Backend backend,
                            DecodeMode decode, at::Device device) {
  ModelOptions opt;
  opt.seed = 7;
  opt.random_init = RandomInit::Varied;  // biases, norm weights, D and A_log drawn too
  opt.backend = backend;
  opt.decode = decode;
  opt.device = device;
  auto source = resolve_model((effarch::testing::configs_dir() / "models" / (name + ".json")).string());
  if (!overrides.empty()) {
    nlohmann::json doc = source.config.raw;
    doc.update(overrides);
    source.config = parse_config(doc, name);
  }
  return Model::load(source, opt);
}

std::vector<int64_t> greedy(Model& m, const at::Tensor& prompt, int steps) {
  m.allocate_cache(prompt.size(0), prompt.size(1) + steps);
  at::Tensor logits = m.prefill_last(prompt);
  std::vector<int64_t> tokens;
  for (int i = 0; i < steps; ++i) {
    const at::Tensor next = logits.argmax(-1);
    const at::Tensor host = next.cpu();
    for (int64_t b = 0; b < host.size(0); ++b) tokens.push_back(host[b].item<int64_t>());
    logits = m.decode(next);
  }
  return tokens;
}

TEST(DecodeAttentionModels, TinyTransformersGiveTheSameGreedyTokensWithTheKernel) {
  if (!(ops::kBuiltWithCuda && at::hasCUDA())) GTEST_SKIP() << "needs a CUDA build and a GPU";
  const at::Device gpu(at::kCUDA, 0);
  struct Variant {
    const char* name;
    nlohmann::json overrides;
  };
  // The tiny configs, a sliding window shorter than the prompt, and the real head sizes 64, 80
  // (Phi's partial rotary) and 128.
  const std::vector<Variant> variants = {
      {"tiny-llama", {}},
      {"tiny-llama3", {}},
      {"tiny-mistral", {}},
      {"tiny-mistral", {{"sliding_window", 5}}},
      {"tiny-phi", {}},
      {"tiny-llama", {{"hidden_size", 256}}},
      {"tiny-phi", {{"hidden_size", 320}}},
      {"tiny-llama", {{"hidden_size", 512}}},
  };
  for (const Variant& v : variants) {
    for (DecodeMode mode : {DecodeMode::Eager, DecodeMode::Static, DecodeMode::CudaGraph}) {
      auto kernel = tiny(v.name, v.overrides, ops::Backend::Auto, mode, gpu);
      auto reference = tiny(v.name, v.overrides, ops::Backend::Reference, mode, gpu);
      ASSERT_EQ(kernel->implementations().at("decode_attention"), "cuda") << v.name;
      ASSERT_EQ(reference->implementations().at("decode_attention"), "reference") << v.name;
      ASSERT_EQ(kernel->implementations().at("rope_cache_write"), "cuda") << v.name;  // the static step's fused RoPE
      at::manual_seed(3);
      const at::Tensor prompt = at::randint(0, kernel->config().vocab_size, {3, 11}, at::kLong).to(gpu);
      const std::string what = std::string(v.name) + " " + v.overrides.dump() + " mode " +
                               std::to_string(static_cast<int>(mode));
      EXPECT_EQ(greedy(*kernel, prompt, 24), greedy(*reference, prompt, 24)) << what;
    }
  }
}

}  // namespace
}  // namespace effarch::model
