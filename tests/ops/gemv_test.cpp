// The dense GEMV (kernels/gemv, OpFamily::DenseGemv): its split-K plan on the real decode shapes,
// the kernel's own per-lane code (kernels/gemv/gemv_math.h) run by a host emulation that walks the
// launch's blocks, warps and lanes in the kernel's order (lane sums, the xor-butterfly warp sum,
// the split warps' sum in warp order, the bias) against at::linear in fp32 on awkward sizes, the
// dispatch in ops::linear, the conv update fused into the GEMV's epilogue (ops::linear_conv_update,
// emulated against causal_conv1d_update's reference) and the activation fused into it
// (ops::linear_activation, and the gated form ops::linear_gated_activation), and on a GPU the
// kernel itself against at::linear for every dtype and the fused conv and activations against the
// two kernels bit for bit (DenseGemvCuda.*, skipped without one).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <tuple>
#include <vector>

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include "../test_util.h"
#include "causal_conv1d_launch.h"
#include "cuda_graph_capture.h"
#include "effarch/common/error.h"
#include "effarch/ops/backend.h"
#include "effarch/ops/activation.h"
#include "effarch/ops/causal_conv1d.h"
#include "effarch/ops/linear.h"
#include "gemv/gemv_math.h"
#include "linear_problem.h"
#include "tolerance.h"

namespace effarch::ops {
namespace {

using kernels::GemvLane;
using kernels::GemvPlan;
using kernels::kGemvLanes;
using kernels::kGemvWarps;

// ---- the plan ----

GemvPlan plan_bf16(int out, int in) { return kernels::gemv_plan(out, in, 8, 132); }

// Every plan covers the rows exactly once, with a split of 1, 2, 4 or 8 warps per row.
void expect_covers(const GemvPlan& p, int out, const std::string& what) {
  EXPECT_TRUE(p.split == 1 || p.split == 2 || p.split == 4 || p.split == 8) << what;
  EXPECT_EQ(p.split * p.outputs_per_block, kGemvWarps) << what;
  EXPECT_GE(static_cast<int64_t>(p.blocks) * p.outputs_per_block, out) << what;
  EXPECT_LT(static_cast<int64_t>(p.blocks - 1) * p.outputs_per_block, out) << what;
}

TEST(DenseGemvPlan, DecodeShapesOfMambaPhiAndLlama) {
  struct Shape {
    const char* name;
    int out, in, split;
  };
  // bf16 (8 elements a load) on 132 SMs: the split doubles while the blocks are under 4 x 132 = 528
  // and each lane keeps at least two vectors of its row.
  const Shape shapes[] = {
      {"mamba-2.8b x_proj", 192, 5120, 8},   // 24 blocks unsplit; 640 vectors: 2.5 a lane at split 8
      {"mamba-2.8b dt_proj", 5120, 160, 1},  // 640 blocks already
      {"mamba-2.8b out_proj", 2560, 5120, 2},
      {"mamba-2.8b in_proj", 10240, 2560, 1},
      {"mamba-2.8b lm_head", 50280, 2560, 1},
      {"phi-2 qkv", 7680, 2560, 1},
      {"phi-2 dense", 2560, 2560, 2},
      {"phi-2 fc1", 10240, 2560, 1},
      {"phi-2 fc2", 2560, 10240, 2},
      {"llama-3-8b qkv", 6144, 4096, 1},
      {"llama-3-8b o", 4096, 4096, 2},
      {"llama-3-8b gate_up", 28672, 4096, 1},
      {"llama-3-8b down", 4096, 14336, 2},
  };
  for (const Shape& s : shapes) {
    const GemvPlan p = plan_bf16(s.out, s.in);
    expect_covers(p, s.out, s.name);
    EXPECT_EQ(p.split, s.split) << s.name;
    // Enough blocks to fill 132 SMs several times, but for x_proj, whose 192 rows x 8 warps are all
    // the warps one block per row can give.
    if (s.out > 192) EXPECT_GE(p.blocks, 4 * 132) << s.name;
  }
  EXPECT_EQ(plan_bf16(192, 5120).blocks, 192);
  // Too short a row to split: K = 160 (20 vectors) and K = 7 stay at one warp a row.
  EXPECT_EQ(plan_bf16(3, 160).split, 1);
  EXPECT_EQ(plan_bf16(1, 7).split, 1);
  // The SM count moves the threshold: 132 SMs split Llama's o, 32 do not.
  EXPECT_EQ(kernels::gemv_plan(4096, 4096, 8, 32).split, 1);
  EXPECT_EQ(kernels::gemv_plan(4096, 4096, 8, 0).split, 2);  // unknown: an H100's 132
  for (int out : {1, 3, 7, 8, 9, 192, 1000}) {
    for (int in : {1, 7, 8, 100, 2560, 5123}) expect_covers(kernels::gemv_plan(out, in, 4, 132), out, "awkward");
  }
  // A forced split (GemvParams::split, the measuring knob) replaces the plan's, whatever the row's
  // length or the SM count: Mamba-2.8B's in_proj at 1, 2 and 4 warps a row.
  for (int split : {1, 2, 4, 8}) {
    const GemvPlan p = kernels::gemv_plan(10240, 2560, 8, 132, false, split);
    EXPECT_EQ(p.split, split);
    EXPECT_EQ(p.blocks, 10240 / (8 / split));
    expect_covers(kernels::gemv_plan(7, 7, 8, 4, false, split), 7, "forced");
  }
  EXPECT_TRUE(kernels::gemv_split_valid(0, true) && kernels::gemv_split_valid(4, true) && kernels::gemv_split_valid(8, false));
  for (int bad : {3, 6, 16, -1}) EXPECT_FALSE(kernels::gemv_split_valid(bad, false)) << bad;
  EXPECT_FALSE(kernels::gemv_split_valid(8, true));  // a gated block holds a gate row and its up row
}

// Under --pdl a lane asks its vectors after the first kGemvUnroll into L2 before its wait. What the
// resident lanes ask for there, loads and prefetches, must stay within half the L2, counted at 8
// blocks of 256 threads an SM (the most 2048 threads allow), else a line could be evicted before
// its load reads it and the weight would be read twice.
TEST(DenseGemvPlan, L2PrefetchBeforeTheWaitStaysWithinHalfTheL2) {
  constexpr int64_t kL2 = int64_t{50} << 20;  // an H100's or H200's 50 MiB
  constexpr int kSms = 132;
  const auto vectors_asked = [](const GemvPlan& p, int nvec, int prefetch) {  // a lane's, before its wait
    const int lane_vectors = (nvec + p.split * kGemvLanes - 1) / (p.split * kGemvLanes);
    return std::min(lane_vectors, kernels::kGemvUnroll + prefetch);
  };
  struct Shape {
    const char* name;
    int out, in, prefetch;
  };
  const Shape shapes[] = {
      {"mamba-2.8b in_proj", 10240, 2560, 2},   // 1280 blocks, 1056 resident: 6 of a lane's 10 vectors
      {"mamba-2.8b out_proj", 2560, 5120, 6},   // 640 blocks, all resident: the whole 26 MB
      {"mamba-2.8b x_proj", 192, 5120, 0},      // 3 vectors a lane: all loaded before the wait already
      {"mamba-2.8b dt_proj", 5120, 160, 0},     // 1 vector a lane
      {"mamba-2.8b lm_head", 50280, 2560, 2},
      {"phi-2 fc2", 2560, 10240, 6},            // 20 vectors a lane, 640 blocks: 10 of them
      {"llama-3-8b down", 4096, 14336, 2},      // 28 vectors a lane, 1024 blocks: 6 of them
      {"llama-3-8b gate_up", 28672, 4096, 2},
  };
  for (const Shape& s : shapes) {
    const GemvPlan p = plan_bf16(s.out, s.in);
    const int nvec = s.in / 8;
    const int prefetch = kernels::gemv_prefetch_vectors(p, nvec, kSms, kL2);
    EXPECT_EQ(prefetch, s.prefetch) << s.name;
    const int64_t resident = std::min<int64_t>(p.blocks, int64_t{8} * kSms) * kernels::kGemvThreads;
    EXPECT_LE(resident * vectors_asked(p, nvec, prefetch) * 16, kL2 / 2) << s.name;
  }
  // Every plan, any size: within the budget, never negative, never past the lane's own vectors.
  for (int out : {1, 7, 192, 1000, 4096, 50280}) {
    for (int in : {8, 160, 2560, 5120, 14336, 65536}) {
      for (int sms : {32, 132}) {
        const GemvPlan p = kernels::gemv_plan(out, in, 8, sms);
        const int nvec = in / 8;
        const int prefetch = kernels::gemv_prefetch_vectors(p, nvec, sms, kL2);
        const int lane_vectors = (nvec + p.split * kGemvLanes - 1) / (p.split * kGemvLanes);
        EXPECT_GE(prefetch, 0);
        EXPECT_LE(prefetch, std::max(0, lane_vectors - kernels::kGemvUnroll)) << out << " x " << in;
        const int64_t resident = std::min<int64_t>(p.blocks, int64_t{8} * sms) * kernels::kGemvThreads;
        if (prefetch > 0) EXPECT_LE(resident * vectors_asked(p, nvec, prefetch) * 16, kL2 / 2) << out << " x " << in;
      }
    }
  }
  // An unknown L2 asks nothing; a smaller one asks less (DGX Spark's GB10: 24 MiB, 48 SMs).
  EXPECT_EQ(kernels::gemv_prefetch_vectors(plan_bf16(2560, 5120), 640, kSms, 0), 0);
  EXPECT_LT(kernels::gemv_prefetch_vectors(plan_bf16(2560, 5120), 640, kSms, int64_t{8} << 20), 6);
  // The k-th prefetched vector is the lane's (kGemvUnroll + k)-th load: the next ones it reads.
  for (int split : {1, 2, 8}) {
    const GemvLane l = kernels::gemv_lane_of(split, 0, 37);
    for (int k = 0; k < 6; ++k) {
      EXPECT_EQ(kernels::gemv_prefetch_vector(l.t, l.stride, k), l.t + (kernels::kGemvUnroll + k) * l.stride);
    }
  }
  // The prefetch is a hint: a lane's sums are the same bits with it (here on the host, where the
  // hint is nothing; on a GPU DenseGemvCuda.* and the --pdl tests run it).
  at::manual_seed(11);
  const at::Tensor w = at::randn({1, 5120}), x = at::randn({2, 5120});
  for (int t : {0, 5, 31}) {
    float plain[2] = {}, hinted[2] = {};
    kernels::gemv_lane_vectorized<float, 2>(w.const_data_ptr<float>(), x.const_data_ptr<float>(), 5120, 2, 1280, t, 32, plain);
    kernels::gemv_lane_vectorized<float, 2>(w.const_data_ptr<float>(), x.const_data_ptr<float>(), 5120, 2, 1280, t, 32, hinted,
                                            /*prefetch=*/30);
    EXPECT_EQ(plain[0], hinted[0]);
    EXPECT_EQ(plain[1], hinted[1]);
    // Eight loads in flight (the kGemvUnrollWide variant) add the lane's vectors in the same
    // order: the same bits, with or without its prefetch (which starts after its first eight).
    float wide[2] = {}, wide_hinted[2] = {};
    kernels::gemv_lane_vectorized<float, 2, kernels::kGemvUnrollWide>(w.const_data_ptr<float>(), x.const_data_ptr<float>(),
                                                                      5120, 2, 1280, t, 32, wide);
    kernels::gemv_lane_vectorized<float, 2, kernels::kGemvUnrollWide>(w.const_data_ptr<float>(), x.const_data_ptr<float>(),
                                                                      5120, 2, 1280, t, 32, wide_hinted, 30);
    EXPECT_EQ(std::memcmp(plain, wide, sizeof plain), 0) << t;
    EXPECT_EQ(std::memcmp(plain, wide_hinted, sizeof plain), 0) << t;
  }
  EXPECT_EQ(kernels::gemv_prefetch_vector(3, 32, 0, kernels::kGemvUnrollWide), 3 + 8 * 32);
  // Its lanes have fewer vectors past their first loads to prefetch: at most lane vectors - 8.
  const kernels::GemvPlan in_proj = plan_bf16(10240, 2560);
  EXPECT_LE(kernels::gemv_prefetch_vectors(in_proj, 320, kSms, kL2, kernels::kGemvUnrollWide),
            std::max(0, 320 / (in_proj.split * 32) - kernels::kGemvUnrollWide));
}

TEST(DenseGemvPlan, VectorPathNeedsWholeAlignedVectors) {
  EXPECT_TRUE(kernels::gemv_vectorized(2560, 2, 256, 512, 2560));
  EXPECT_FALSE(kernels::gemv_vectorized(2564, 2, 256, 512, 2564));  // K not a multiple of 8 (bf16)
  EXPECT_TRUE(kernels::gemv_vectorized(100, 4, 256, 512, 100));      // fp32: multiples of 4
  EXPECT_FALSE(kernels::gemv_vectorized(100, 4, 256, 512, 102));     // x's rows 408 bytes apart
  EXPECT_FALSE(kernels::gemv_vectorized(100, 4, 260, 512, 100));     // W not 16-byte aligned
  EXPECT_FALSE(kernels::gemv_vectorized(100, 4, 256, 516, 100));     // x not 16-byte aligned
}

TEST(DenseGemvPlan, LanesOfABlock) {
  // Split 4: two rows a block; warps 0-3 share row 2b, 4-7 row 2b + 1; lanes of a group 0..127.
  const GemvLane a = kernels::gemv_lane_of(4, 3, 5 * kGemvLanes + 7);
  EXPECT_EQ(a.out_row, 7);
  EXPECT_EQ(a.warp, 5);
  EXPECT_EQ(a.part, 1);
  EXPECT_EQ(a.lane, 7);
  EXPECT_EQ(a.t, 39);
  EXPECT_EQ(a.stride, 128);
  const GemvLane b = kernels::gemv_lane_of(1, 2, 3 * kGemvLanes);
  EXPECT_EQ(b.out_row, 19);
  EXPECT_EQ(b.t, 0);
  EXPECT_EQ(b.stride, 32);
}

TEST(DenseGemvEmulation, WarpSumIsTheXorButterfly) {
  // Lane 0 ends with ((l0 + l16) + (l8 + l24)) + ...: the two large values cancel first, so all 30
  // ones survive; a running sum from lane 0 would lose them against 1e8.
  float lanes[kGemvLanes];
  for (float& v : lanes) v = 1.0f;
  lanes[0] = 1e8f;
  lanes[16] = -1e8f;
  EXPECT_EQ(kernels::xor_butterfly_sum_emulated<kGemvLanes>(lanes), 30.0f);
  float seq = 0.f;
  for (float v : lanes) seq += v;
  EXPECT_NE(seq, 30.0f);
}

// ---- the host emulation of a launch (fp32) ----

using Problem = test::LinearProblem;

// The kernel's launch, block by block: each warp's lanes run gemv_lane_* (the kernel's own code),
// the warp sums with the butterfly, then the stores: split 1 straight from the warp's sum, else
// the group's first warp adds the split warps' sums in warp order (gemv_combine), then the bias.
// A gated activation (act->gated: W holds 2I rows, y has I columns): the block's gate and up rows
// as gemv_lane_of pairs them, each rounded output kept by its slot, then act(gate) * up stored by
// the gate rows (the kernel's barrier between the two).
template <int R>
at::Tensor emulate(const Problem& pr, const GemvPlan& plan, bool vectorized,
                   const kernels::GemvConvUpdate* conv = nullptr, const kernels::GemvActivation* act = nullptr) {
  const int rows = static_cast<int>(pr.x.size(0)), in = static_cast<int>(pr.w.size(1)),
            out = static_cast<int>(pr.w.size(0));
  const bool gated = act != nullptr && act->gated;
  const int inter = gated ? out / 2 : 0, columns = gated ? inter : out;
  const float* x = pr.x.const_data_ptr<float>();
  const float* w = pr.w.const_data_ptr<float>();
  const float* bias = pr.bias ? pr.bias->const_data_ptr<float>() : nullptr;
  const int64_t stride = pr.x.stride(0);
  at::Tensor y = at::full({rows, columns}, std::nanf(""), at::kFloat);
  float* yp = y.mutable_data_ptr<float>();
  for (int block = 0; block < plan.blocks; ++block) {
    float warp_sum[kGemvWarps][R] = {};
    for (int warp = 0; warp < kGemvWarps; ++warp) {
      float lanes[R][kGemvLanes] = {};
      for (int lane = 0; lane < kGemvLanes; ++lane) {
        const GemvLane l = kernels::gemv_lane_of(plan.split, block, warp * kGemvLanes + lane, inter);
        float acc[R] = {};
        if (l.out_row < out) {
          const float* w_row = w + static_cast<int64_t>(l.out_row) * in;
          if (vectorized) {
            kernels::gemv_lane_vectorized<float, R>(w_row, x, stride, rows, in / 4, l.t, l.stride, acc);
          } else {
            kernels::gemv_lane_scalar<float, R>(w_row, x, stride, rows, in, l.t, l.stride, acc);
          }
        }
        for (int r = 0; r < R; ++r) lanes[r][lane] = acc[r];
      }
      for (int r = 0; r < R; ++r) warp_sum[warp][r] = kernels::xor_butterfly_sum_emulated<kGemvLanes>(lanes[r]);
    }
    float pair_value[kGemvWarps][R];
    for (int warp = 0; warp < kGemvWarps; ++warp) {
      const GemvLane l = kernels::gemv_lane_of(plan.split, block, warp * kGemvLanes, inter);
      if (l.out_row >= out || l.part != 0) continue;
      const float b = bias != nullptr ? bias[l.out_row] : 0.f;
      for (int r = 0; r < rows; ++r) {
        const float sum = plan.split == 1 ? kernels::gemv_combine(&warp_sum[warp][r], 1, 1, b)
                                          : kernels::gemv_combine(&warp_sum[warp][r], R, plan.split, b);
        const kernels::GemvActivation a = act != nullptr ? *act : kernels::GemvActivation{};
        const float v = kernels::gemv_output<float>(sum, kernels::gemv_row_activates(a, l.out_row, out), a.act);
        if (gated) {
          pair_value[l.warp / plan.split][r] = v;  // a gate row's act(gate), an up row's up
          continue;
        }
        yp[r * out + l.out_row] = v;
        if (conv != nullptr) kernels::gemv_conv_update<float>(*conv, r, l.out_row, v);  // the store's thread
      }
    }
    if (!gated) continue;
    for (int warp = 0; warp < kGemvWarps; ++warp) {  // after the barrier: the gate rows store
      const GemvLane l = kernels::gemv_lane_of(plan.split, block, warp * kGemvLanes, inter);
      const kernels::GemvPair q = kernels::gemv_pair_of(l, plan.split, inter);
      if (l.out_row >= out || l.part != 0 || !q.gate) continue;
      EXPECT_EQ(q.up_slot, q.slot + plan.outputs_per_block / 2);
      for (int r = 0; r < rows; ++r) {
        yp[r * columns + q.column] = kernels::gemv_gated_output<float>(pair_value[q.slot][r], pair_value[q.up_slot][r]);
      }
    }
  }
  return y;
}

// R as the kernel's launcher picks it: 1, 2, 4 or 8.
at::Tensor emulate_launch(const Problem& pr, const GemvPlan& plan, bool vectorized,
                          const kernels::GemvConvUpdate* conv = nullptr, const kernels::GemvActivation* act = nullptr) {
  switch (pr.x.size(0)) {
    case 1: return emulate<1>(pr, plan, vectorized, conv, act);
    case 2: return emulate<2>(pr, plan, vectorized, conv, act);
    case 3: case 4: return emulate<4>(pr, plan, vectorized, conv, act);
    default: return emulate<8>(pr, plan, vectorized, conv, act);
  }
}

bool vector_path(const Problem& pr) {
  return kernels::gemv_vectorized(static_cast<int>(pr.w.size(1)), 4, reinterpret_cast<uintptr_t>(pr.w.const_data_ptr()),
                                  reinterpret_cast<uintptr_t>(pr.x.const_data_ptr()), pr.x.stride(0));
}



// fp32 sums in another order than ATen's: a few ulp of the O(1) outputs.
constexpr test::Tolerance kSumOrder{2e-5, 2e-5};

TEST(DenseGemvEmulation, MatchesAtLinearOnAwkwardSizes) {
  at::manual_seed(5);
  int vector_runs = 0, scalar_runs = 0;
  for (int64_t in : {1, 7, 8, 100}) {
    for (int64_t out : {1, 3, 192, 1000}) {
      for (int64_t rows = 1; rows <= 8; ++rows) {
        for (bool bias : {false, true}) {
          const Problem pr = test::make_linear_problem(rows, out, in, bias);
          const bool vec = vector_path(pr);
          EXPECT_EQ(vec, in % 4 == 0);
          (vec ? vector_runs : scalar_runs)++;
          const GemvPlan plan = kernels::gemv_plan(static_cast<int>(out), static_cast<int>(in), 4, 132);
          test::expect_close(emulate_launch(pr, plan, vec), test::linear_reference(pr), kSumOrder,
                             fmt::format("K {} O {} R {} bias {}", in, out, rows, bias));
        }
      }
    }
  }
  // Long rows (K = 2560 takes the 16-byte path, 5123 the scalar one), the split plans among them.
  for (int64_t in : {2560, 5123}) {
    for (int64_t out : {1, 3, 192}) {
      for (int64_t rows : {1, 3, 8}) {
        const Problem pr = test::make_linear_problem(rows, out, in, rows != 3);
        const GemvPlan plan = kernels::gemv_plan(static_cast<int>(out), static_cast<int>(in), 4, 132);
        EXPECT_EQ(plan.split, 8) << in << " " << out;  // few rows, long K: every warp of a block on one row
        const bool vec = vector_path(pr);
        EXPECT_EQ(vec, in == 2560);
        test::expect_close(emulate_launch(pr, plan, vec), test::linear_reference(pr), kSumOrder,
                           fmt::format("K {} O {} R {}", in, out, rows));
      }
    }
  }
  const Problem wide = test::make_linear_problem(2, 1000, 2560, true);
  test::expect_close(emulate_launch(wide, kernels::gemv_plan(1000, 2560, 4, 132), true), test::linear_reference(wide), kSumOrder,
                     "K 2560 O 1000 R 2");
  EXPECT_GT(vector_runs, 0);
  EXPECT_GT(scalar_runs, 0);
}

TEST(DenseGemvEmulation, EverySplitGivesTheSameProduct) {
  // The same problem under every split (the plan forced): each launch's sum order differs, each
  // matches at::linear; odd K and rows of 9 give lanes and warps with nothing to do.
  at::manual_seed(6);
  for (int64_t in : {9, 100, 1000, 1003}) {
    for (int64_t out : {1, 5, 17}) {
      const Problem pr = test::make_linear_problem(5, out, in, true);
      for (int split : {1, 2, 4, 8}) {
        const int per_block = kGemvWarps / split;
        const GemvPlan plan{split, per_block, static_cast<int>((out + per_block - 1) / per_block)};
        test::expect_close(emulate_launch(pr, plan, vector_path(pr)), test::linear_reference(pr), kSumOrder,
                           fmt::format("K {} O {} split {}", in, out, split));
      }
    }
  }
}

TEST(DenseGemvEmulation, StridedRows) {
  at::manual_seed(7);
  // Rows 2K apart (16-byte aligned for K = 100: the vector path), K + 1 apart (the scalar path).
  for (int64_t stride : {200, 101}) {
    for (int64_t rows : {1, 4, 8}) {
      const Problem pr = test::make_linear_problem(rows, 192, 100, true, stride);
      ASSERT_EQ(pr.x.stride(0), stride);
      EXPECT_EQ(vector_path(pr), stride == 200);
      test::expect_close(emulate_launch(pr, kernels::gemv_plan(192, 100, 4, 132), vector_path(pr)), test::linear_reference(pr),
                         kSumOrder, fmt::format("stride {} R {}", stride, rows));
    }
  }
}

// ---- the conv update fused into the GEMV (ops::linear_conv_update) ----

// A Mamba in_proj whose outputs begin .. begin + D - 1 feed a conv of width W: the emulated
// launch with the conv in its epilogue gives the projection (against at::linear) and, from the
// projection it computed, the conv output and the rolled state of causal_conv1d_update's
// reference, in fp32: the same taps in the same order on the same inputs.
TEST(DenseGemvEmulation, FusedConvUpdateIsTheConvOfTheProjection) {
  at::manual_seed(8);
  int runs = 0;
  for (const auto& [rows, out, in, begin, dim] :
       std::vector<std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t>>{
           {1, 40, 16, 0, 20}, {2, 40, 7, 20, 20}, {3, 33, 100, 5, 17}, {8, 64, 12, 0, 64}, {1, 192, 2560, 32, 100}}) {
    for (int64_t width : {2, 3, 4}) {
      for (bool bias : {false, true}) {
        for (bool silu : {false, true}) {
          const Problem pr = test::make_linear_problem(rows, out, in, bias);
          const at::Tensor weight = at::randn({dim, width}), conv_bias = at::randn({dim});
          const at::Tensor state0 = at::randn({rows, dim, width});
          at::Tensor state = state0.clone(), conv_out = at::full({rows, dim}, std::nanf(""));
          // The params as the CUDA binding fills them (src/ops/causal_conv1d_launch.cpp).
          const detail::ConvKernelWeights kw = detail::conv_kernel_weights(
              pr.x, weight, bias ? std::optional<at::Tensor>(conv_bias) : std::nullopt);
          const kernels::GemvConvUpdate c = detail::gemv_conv_update_params(kw, begin, silu, state, conv_out);
          const GemvPlan plan = kernels::gemv_plan(static_cast<int>(out), static_cast<int>(in), 4, 132);
          const at::Tensor y = emulate_launch(pr, plan, vector_path(pr), &c);
          const std::string what =
              fmt::format("R {} O {} K {} conv {}+{} W {} bias {} silu {}", rows, out, in, begin, dim, width, bias, silu);
          test::expect_close(y, test::linear_reference(pr), kSumOrder, what);
          at::Tensor expect_state = state0.clone();
          const at::Tensor expect_out = at::empty({rows, dim, 1});
          detail::causal_conv1d_update_reference(y.narrow(1, begin, dim).unsqueeze(2), expect_state, weight,
                                                 bias ? std::optional<at::Tensor>(conv_bias) : std::nullopt, silu,
                                                 expect_out);
          test::expect_close(conv_out, expect_out.squeeze(2), test::Tolerance{1e-6, 1e-6}, what + ": conv");
          EXPECT_TRUE(at::equal(state, expect_state)) << what << ": the rolled state";
          ++runs;
        }
      }
    }
  }
  EXPECT_EQ(runs, 60);
}

// ---- the activation fused into the GEMV (ops::linear_activation) ----

// A non-gated fc1 with its activation in the epilogue: the emulated launch stores act(the
// projection), against the activation's ATen reference of the plain launch's projection (fp32:
// the host's tanhf / expf against ATen's, within an ulp or two of the O(1) outputs).
TEST(DenseGemvEmulation, FusedActivationIsTheActivationOfTheProjection) {
  at::manual_seed(10);
  for (const auto& [act, kind] : {std::pair{Activation::GeluNew, kernels::ActKind::kGeluNew},
                                  std::pair{Activation::SiLU, kernels::ActKind::kSilu}}) {
    for (const auto& [rows, out, in] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
             {1, 40, 16}, {2, 33, 7}, {3, 192, 2560}, {8, 64, 100}}) {
      const Problem pr = test::make_linear_problem(rows, out, in, true);
      const GemvPlan plan = kernels::gemv_plan(static_cast<int>(out), static_cast<int>(in), 4, 132);
      kernels::GemvActivation a;
      a.on = true;
      a.act = kind;
      const at::Tensor plain = emulate_launch(pr, plan, vector_path(pr));
      const at::Tensor fused = emulate_launch(pr, plan, vector_path(pr), nullptr, &a);
      test::expect_close(fused, activate(act, plain), test::Tolerance{2e-6, 2e-6},
                         fmt::format("act {} R {} O {} K {}", static_cast<int>(kind), rows, out, in));
    }
  }
}

// The activation from a row on (ops::linear_activation_tail: a parallel block's q/k/v rows then
// fc1's): the rows before `from` are the plain launch's bits, those from it its activation; from
// 0 is the whole fused activation. Splits of 1 to 8 (the first two shapes: Phi-2's fused input
// product and a narrow one), `from` inside a block and on a block's edge.
TEST(DenseGemvEmulation, FusedActivationFromARowLeavesTheRowsBeforeIt) {
  at::manual_seed(14);
  for (const auto& [rows, out, in, from] : std::vector<std::tuple<int64_t, int64_t, int64_t, int>>{
           {1, 179, 64, 75}, {2, 40, 2560, 17}, {1, 24, 5120, 8}, {2, 33, 7, 0}, {1, 33, 7, 32}}) {
    const Problem pr = test::make_linear_problem(rows, out, in, true);
    const GemvPlan plan = kernels::gemv_plan(static_cast<int>(out), static_cast<int>(in), 4, 132);
    kernels::GemvActivation a;
    a.on = true;
    a.act = kernels::ActKind::kGeluNew;
    a.from = from;
    const std::string what = fmt::format("R {} O {} K {} from {} split {}", rows, out, in, from, plan.split);
    const at::Tensor plain = emulate_launch(pr, plan, vector_path(pr));
    const at::Tensor fused = emulate_launch(pr, plan, vector_path(pr), nullptr, &a);
    EXPECT_TRUE(at::equal(fused.narrow(1, 0, from), plain.narrow(1, 0, from))) << what;
    test::expect_close(fused.narrow(1, from, out - from), activate(Activation::GeluNew, plain.narrow(1, from, out - from)),
                       test::Tolerance{2e-6, 2e-6}, what);
    for (int o = 0; o < out; ++o) EXPECT_EQ(kernels::gemv_row_activates(a, o, static_cast<int>(out)), o >= from) << what;
  }
}

// A gated MLP's gate/up product with act(gate) * up in the epilogue (ops::linear_gated_activation):
// the emulated launch, whose blocks pair gate row j with up row I + j, against the plain launch's
// [R, 2I] projection then the gated activation kernel's own per-element code, bit for bit (the
// same plan where the plain split is at most 4, as on every model's gate_up: splits 1, 2 and 4
// here), and against ATen's gated activation of at::linear. Odd I (a last block with a half-empty
// pair), the rows it takes (1 and 2: kGemvGatedMaxRows), a bias, and narrow long matrices whose
// plain plan splits 8 ways where the gated one stops at 4.
TEST(DenseGemvEmulation, FusedGatedActivationPairsEachGateRowWithItsUpRow) {
  at::manual_seed(12);
  struct HostIo {
    static float load(const void* base, int64_t offset) { return static_cast<const float*>(base)[offset]; }
    static void store(void* base, int64_t offset, float v) { static_cast<float*>(base)[offset] = v; }
    static float round(float v) { return v; }
  };
  int bitwise = 0;
  for (const auto& [act, kind] : {std::pair{Activation::SiLU, kernels::ActKind::kSilu},
                                  std::pair{Activation::GeluNew, kernels::ActKind::kGeluNew}}) {
    for (const auto& [rows, inter, in] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
             {1, 20, 16}, {2, 33, 7}, {1, 48, 1024}, {2, 60, 600}, {2, 32, 100}, {1, 1, 9},
             {2, 96, 2560}, {1, 8, 5120}, {2, 3, 2560}}) {
      const Problem pr = test::make_linear_problem(rows, 2 * inter, in, rows % 2 == 1);
      const int out = static_cast<int>(2 * inter);
      const GemvPlan plain_plan = kernels::gemv_plan(out, static_cast<int>(in), 4, 132);
      const GemvPlan plan = kernels::gemv_plan(out, static_cast<int>(in), 4, 132, /*gated=*/true);
      const std::string what = fmt::format("act {} R {} I {} K {}", static_cast<int>(kind), rows, inter, in);
      EXPECT_LE(plan.split, kGemvWarps / 2) << what;
      EXPECT_EQ(plan.blocks, (inter + plan.outputs_per_block / 2 - 1) / (plan.outputs_per_block / 2)) << what;
      kernels::GemvActivation a;
      a.on = true;
      a.act = kind;
      a.gated = true;
      const at::Tensor fused = emulate_launch(pr, plan, vector_path(pr), nullptr, &a);
      ASSERT_EQ(fused.sizes(), (at::IntArrayRef{rows, inter})) << what;
      const at::Tensor projection = emulate_launch(pr, plain_plan, vector_path(pr));
      if (plain_plan.split == plan.split) {
        // The gated activation kernel's element code on the plain launch's projection.
        EXPECT_EQ(plan.blocks, plain_plan.blocks) << what;
        at::Tensor apart = at::empty({rows, inter});
        kernels::ActivationParams p;
        p.rows = rows;
        p.cols = inter;
        p.act = kind;
        p.gated = true;
        p.in = projection.const_data_ptr();
        p.in_row_stride = projection.stride(0);
        p.up_offset = inter;
        p.out = apart.mutable_data_ptr();
        p.out_row_stride = apart.stride(0);
        for (int64_t r = 0; r < rows; ++r) {
          for (int64_t c = 0; c < inter; ++c) kernels::act::activation_element<HostIo>(p, r, c);
        }
        EXPECT_TRUE(at::equal(fused, apart)) << what << ": not the GEMV then the gated activation kernel";
        ++bitwise;
      } else {
        EXPECT_EQ(plain_plan.split, kGemvWarps) << what;
      }
      test::expect_close(fused, gated_activation(act, test::linear_reference(pr), Backend::Reference), test::Tolerance{1e-4, 1e-4},
                         what);
    }
  }
  EXPECT_EQ(bitwise, 12);  // splits 1, 2 and 4; not the three split-8 shapes; both activations
}

// linear_activation off the GPU: the projection then the activation, exactly.
TEST(LinearActivation, OnTheCpuItIsTheTwoOps) {
  at::manual_seed(11);
  const Linear fc1(at::randn({24, 8}), at::randn({24}));
  const at::Tensor x = at::randn({2, 1, 8});
  EXPECT_FALSE(linear_activation_fuses(x, fc1, Activation::GeluNew, Backend::Auto));
  EXPECT_TRUE(at::equal(linear_activation(x, fc1, Activation::GeluNew), activate(Activation::GeluNew, linear(x, fc1))));
  EXPECT_TRUE(at::equal(linear_activation(x, fc1, Activation::Relu), activate(Activation::Relu, linear(x, fc1))));
  EXPECT_THROW_WITH(linear_activation(at::randn({2, 16}), fc1, Activation::GeluNew), OpError,
                    {"linear_activation", "x [2, 16]", "8 input features"});
}

// linear_activation_tail off the GPU: the projection, its columns from `from` activated, exactly;
// written into a column range of a wider buffer when asked (the rest untouched); bad arguments
// name what is wrong.
TEST(LinearActivationTail, OnTheCpuItIsTheProductThenTheActivationOfItsTail) {
  at::manual_seed(15);
  const Linear in(at::randn({30, 8}), at::randn({30}));
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    const Linear layer(in.weight.to(dtype), in.bias->to(dtype));
    const at::Tensor x = at::randn({2, 1, 8}).to(dtype);
    const at::Tensor plain = linear(x, layer);
    at::Tensor expect = plain.clone();
    expect.narrow(-1, 12, 18).copy_(activate(Activation::GeluNew, plain.narrow(-1, 12, 18)));
    const at::Tensor got = linear_activation_tail(x, layer, Activation::GeluNew, 12);
    EXPECT_EQ(got.sizes(), (at::IntArrayRef{2, 1, 30}));
    EXPECT_TRUE(at::equal(got, expect)) << c10::toString(dtype);
    at::Tensor wide = at::full({2, 41}, 7.0, x.options());
    const at::Tensor cols = wide.narrow(1, 0, 30);
    const at::Tensor into = linear_activation_tail(x, layer, Activation::GeluNew, 12, Backend::Auto, &cols);
    EXPECT_TRUE(into.is_alias_of(wide));
    EXPECT_TRUE(at::equal(wide.narrow(1, 0, 30), expect.view({2, 30}))) << c10::toString(dtype);
    EXPECT_TRUE(at::equal(wide.narrow(1, 30, 11), at::full({2, 11}, 7.0, x.options())));
  }
  const at::Tensor x = at::randn({2, 8});
  EXPECT_THROW_WITH(linear_activation_tail(x, in, Activation::GeluNew, 30), OpError,
                    {"linear_activation_tail", "first output 30", "30 outputs"});
  EXPECT_THROW_WITH(linear_activation_tail(x, in, Activation::GeluNew, -1), OpError, {"first output -1"});
  const at::Tensor narrow = at::empty({2, 29});
  EXPECT_THROW_WITH(linear_activation_tail(x, in, Activation::GeluNew, 3, Backend::Auto, &narrow), OpError,
                    {"linear_activation_tail", "out [2, 29]", "[2, 30]"});
  EXPECT_THROW_WITH(linear_activation_tail(at::randn({2, 9}), in, Activation::GeluNew, 3), OpError,
                    {"linear_activation_tail", "8 input features"});
}

// linear_gated_activation and gated_mlp off the GPU: the gate/up product then the gated
// activation, exactly; a gate_up with odd rows is refused by name.
TEST(LinearGatedActivation, OnTheCpuItIsTheTwoOps) {
  at::manual_seed(13);
  const Linear gate_up(at::randn({24, 8}));
  const at::Tensor x = at::randn({2, 1, 8});
  EXPECT_FALSE(linear_gated_activation_fuses(x, gate_up, Activation::SiLU, Backend::Auto));
  const at::Tensor got = linear_gated_activation(x, gate_up, Activation::SiLU);
  EXPECT_EQ(got.sizes(), (at::IntArrayRef{2, 1, 12}));
  EXPECT_TRUE(at::equal(got, gated_activation(Activation::SiLU, linear(x, gate_up), Backend::Reference)));
  EXPECT_THROW_WITH(linear_gated_activation(x, Linear(at::randn({23, 8})), Activation::SiLU), OpError,
                    {"linear_gated_activation", "23 output features", "2I"});
  EXPECT_THROW_WITH(linear_gated_activation(at::randn({2, 16}), gate_up, Activation::SiLU), OpError,
                    {"linear_gated_activation", "8 input features"});
}

// linear_conv_update off the GPU: the projection then the conv update, exactly; bad arguments
// name the tensor.
TEST(LinearConvUpdate, OnTheCpuItIsTheTwoOps) {
  at::manual_seed(9);
  const Linear in_proj(at::randn({24, 8}), at::randn({24}));
  const at::Tensor x = at::randn({2, 8}), weight = at::randn({10, 4}), bias = at::randn({10});
  const at::Tensor state0 = at::randn({2, 10, 4});
  at::Tensor state = state0.clone(), expect_state = state0.clone();
  EXPECT_FALSE(linear_conv_update_fuses(x, in_proj, state, Backend::Auto));
  const ProjectedConv got = linear_conv_update(x, in_proj, 6, state, weight, bias, true);
  const at::Tensor projection = linear(x, in_proj);
  EXPECT_TRUE(at::equal(got.projection, projection));
  EXPECT_TRUE(at::equal(got.conv, causal_conv1d_update(projection.narrow(1, 6, 10), expect_state, weight, bias, true)));
  EXPECT_TRUE(at::equal(state, expect_state));
  EXPECT_EQ(got.conv.sizes(), (at::IntArrayRef{2, 10}));

  EXPECT_THROW_WITH(linear_conv_update(x.unsqueeze(1), in_proj, 0, state, weight, bias, true), OpError,
                    {"linear_conv_update", "x", "[B, H]"});
  EXPECT_THROW_WITH(linear_conv_update(x, in_proj, 15, state, weight, bias, true), OpError,
                    {"linear_conv_update", "10 channels from output 15", "24 outputs"});
  at::Tensor flat = at::randn({2, 10});
  EXPECT_THROW_WITH(linear_conv_update(x, in_proj, 0, flat, weight, bias, true), OpError, {"conv_state", "[B, D, W]"});
  at::Tensor narrow_batch = at::randn({3, 10, 4});
  EXPECT_THROW_WITH(linear_conv_update(x, in_proj, 0, narrow_batch, weight, bias, true), OpError,
                    {"conv_state", "[2, 10, 4]"});
  EXPECT_THROW_WITH(linear_conv_update(x, in_proj, 0, state, at::randn({9, 4}), bias, true), OpError, {"weight"});
  EXPECT_THROW_WITH(linear_conv_update(at::randn({2, 16}), in_proj, 0, state, weight, bias, true), OpError,
                    {"linear_conv_update", "8 input features"});
}

// ---- the dispatch ----

TEST(DenseGemv, OpFamilyAndDispatch) {
  EXPECT_EQ(op_name(OpFamily::DenseGemv), "dense_gemv");
  EXPECT_EQ(has_cuda_kernel(OpFamily::DenseGemv), kBuiltWithCuda);
  EXPECT_FALSE(has_cpu_kernel(OpFamily::DenseGemv));
  const Linear layer(at::randn({6, 8}));
  const at::Tensor x = at::randn({2, 8});
  // CPU tensors never take the CUDA kernel; --backend cuda for them is an error naming the op.
  EXPECT_FALSE(detail::dense_gemv_applies(x, layer, Backend::Auto));
  EXPECT_THROW_WITH(linear(x, layer, Backend::Cuda), OpError, {"dense_gemv"});
  EXPECT_TRUE(at::allclose(linear(x, layer, Backend::Reference), at::linear(x, layer.weight), 1e-6, 1e-6));
}

// ---- the kernel on a GPU ----

using test::cuda_layer;
using test::cuda_randn;
using test::have_gpu;

// The kernel's output against at::linear in fp32 on the same (rounded) inputs, rounded once. In
// fp32 the two sums differ by their order alone: about sqrt(K) roundings of the O(1) partial sums
// (3e-5 at K = 14336, plus the stated fp32 tolerance); bf16 / fp16: one rounding of the output.
void expect_kernel_matches(const at::Tensor& x, const Linear& layer, const std::string& what) {
  ASSERT_TRUE(detail::dense_gemv_applies(x, layer, Backend::Cuda)) << what;
  const at::ScalarType dtype = x.scalar_type();
  test::Tolerance tol = test::rounding_tolerance(dtype);
  if (dtype == at::kFloat) tol.atol += 2.5e-7 * std::sqrt(static_cast<double>(layer.in_features()));
  const at::Tensor expect =
      at::linear(x.to(at::kFloat), layer.weight.to(at::kFloat),
                 layer.bias ? std::optional<at::Tensor>(layer.bias->to(at::kFloat)) : std::nullopt)
          .to(dtype);
  test::expect_close(linear(x, layer, Backend::Cuda), expect, tol, what);
}

TEST(DenseGemvCuda, MatchesAtLinearOnAwkwardSizes) {
  if (!have_gpu()) GTEST_SKIP() << "needs a CUDA build and a GPU";
  at::manual_seed(21);
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    for (int64_t in : {1, 7, 8, 100, 2560, 5123}) {
      for (int64_t out : {1, 3, 192, 1000}) {
        for (int64_t rows = 1; rows <= 8; ++rows) {
          const bool bias = (rows + out) % 2 == 0;
          const Linear layer = cuda_layer(out, in, dtype, bias);
          const at::Tensor x = cuda_randn({rows, in}, dtype);
          expect_kernel_matches(x, layer, fmt::format("{} K {} O {} R {} bias {}", c10::toString(dtype), in, out,
                                                      rows, bias));
        }
        // Rows 2K apart (vector path where K allows), K + 1 apart (scalar path), with leading dims.
        const Linear layer = cuda_layer(out, in, dtype, true);
        for (int64_t stride : {2 * in, in + 1}) {
          const at::Tensor x = cuda_randn({3, stride}, dtype).narrow(1, 0, in);
          expect_kernel_matches(x, layer, fmt::format("{} K {} O {} stride {}", c10::toString(dtype), in, out, stride));
        }
        const at::Tensor x3 = cuda_randn({2, 1, in}, dtype);
        const at::Tensor y3 = linear(x3, layer, Backend::Auto);
        EXPECT_EQ(y3.sizes(), (at::IntArrayRef{2, 1, out}));
      }
    }
  }
}

TEST(DenseGemvCuda, MatchesAtLinearOnDecodeShapes) {
  if (!have_gpu()) GTEST_SKIP() << "needs a CUDA build and a GPU";
  at::manual_seed(22);
  // [O, K]: Mamba-2.8B x_proj, dt_proj, out_proj, in_proj, lm_head; Phi-2 qkv, dense, fc1, fc2;
  // Llama-3-8B qkv, o, gate_up, down.
  const std::vector<std::pair<int64_t, int64_t>> shapes = {
      {192, 5120},  {5120, 160},   {2560, 5120},  {10240, 2560}, {50280, 2560}, {7680, 2560}, {2560, 2560},
      {10240, 2560}, {2560, 10240}, {6144, 4096}, {4096, 4096},  {28672, 4096}, {4096, 14336}};
  for (const at::ScalarType dtype : {at::kBFloat16, at::kHalf, at::kFloat}) {
    for (const auto& [out, in] : shapes) {
      const Linear layer = cuda_layer(out, in, dtype, out == 2560);
      for (int64_t rows : {1, 2, 5, 8}) {
        const at::Tensor x = cuda_randn({rows, in}, dtype);
        expect_kernel_matches(x, layer, fmt::format("{} {}x{} R {}", c10::toString(dtype), out, in, rows));
      }
    }
  }
}

// The measuring variant with eight weight loads in flight a lane (Linear::cuda_gemv_unroll 8,
// effarch kernels' dense_gemv_*_u8 rows): the default kernel's output bit for bit at one row on the
// decode shapes it is timed on (in_proj, out_proj, Phi-2's qkv, fc1, fc2, Codestral's out_proj),
// with PDL off and on (its L2 prefetch starts after eight); at two rows the default runs.
TEST(DenseGemvCuda, EightLoadsInFlightGiveTheSameBits) {
  if (!have_gpu()) GTEST_SKIP() << "needs a CUDA build and a GPU";
  at::manual_seed(24);
  const std::vector<std::pair<int64_t, int64_t>> shapes = {{10240, 2560}, {2560, 5120}, {7680, 2560},
                                                           {10240, 2560}, {2560, 10240}, {4096, 8192}, {100, 72}};
  const bool was = programmatic_launch();
  for (const bool pdl : {false, true}) {
    set_programmatic_launch(pdl);
    for (const at::ScalarType dtype : {at::kBFloat16, at::kHalf, at::kFloat}) {
      for (const auto& [out, in] : shapes) {
        Linear layer = cuda_layer(out, in, dtype, false);
        for (const int64_t rows : {1, 2}) {
          const at::Tensor x = cuda_randn({rows, in}, dtype);
          const at::Tensor plain = linear(x, layer, Backend::Cuda);
          layer.cuda_gemv_unroll = kernels::kGemvUnrollWide;
          const at::Tensor wide = linear(x, layer, Backend::Cuda);
          layer.cuda_gemv_unroll = 0;
          EXPECT_TRUE(at::equal(plain, wide)) << c10::toString(dtype) << " " << out << "x" << in << " R " << rows
                                              << " pdl " << pdl;
        }
      }
    }
  }
  set_programmatic_launch(was);
}

// The measuring knob Linear::cuda_gemv_split (effarch kernels' dense_gemv_*_s1/_s2/_s4 rows, pending.md
// entry 25): every forced split of the decode shapes it is timed on against at::linear, 1 and 2 rows,
// every dtype, with PDL (its L2 prefetch depends on the plan) off and on.
TEST(DenseGemvCuda, ForcedSplitsMatchAtLinear) {
  if (!have_gpu()) GTEST_SKIP() << "needs a CUDA build and a GPU";
  at::manual_seed(25);
  const std::vector<std::pair<int64_t, int64_t>> shapes = {{10240, 2560}, {2560, 10240}, {7680, 2560}, {100, 72}};
  const bool was = programmatic_launch();
  for (const bool pdl : {false, true}) {
    set_programmatic_launch(pdl);
    for (const at::ScalarType dtype : {at::kBFloat16, at::kHalf, at::kFloat}) {
      for (const auto& [out, in] : shapes) {
        Linear layer = cuda_layer(out, in, dtype, true);
        for (const int64_t rows : {1, 2}) {
          const at::Tensor x = cuda_randn({rows, in}, dtype);
          for (const int split : {1, 2, 4, 8}) {
            layer.cuda_gemv_split = split;
            expect_kernel_matches(x, layer, fmt::format("{} {}x{} R {} split {} pdl {}", c10::toString(dtype), out, in,
                                                        rows, split, pdl));
          }
          layer.cuda_gemv_split = 0;
        }
      }
    }
  }
  set_programmatic_launch(was);
}

TEST(DenseGemvCuda, DeterministicAndReferenceKeepsAtLinear) {
  if (!have_gpu()) GTEST_SKIP() << "needs a CUDA build and a GPU";
  at::manual_seed(23);
  const Linear layer = cuda_layer(192, 5120, at::kBFloat16, false);  // split 8: the shared-memory sum
  const at::Tensor x = cuda_randn({3, 5120}, at::kBFloat16);
  EXPECT_TRUE(at::equal(linear(x, layer, Backend::Cuda), linear(x, layer, Backend::Cuda)));  // no atomics
  // Auto takes the kernel for 1 and 2 rows only (kCudaDenseGemvAutoMaxRows: it lost to cuBLAS
  // from 4 on an H200); Backend::Cuda for up to 8.
  EXPECT_TRUE(detail::dense_gemv_applies(x.narrow(0, 0, 2), layer, Backend::Auto));
  EXPECT_FALSE(detail::dense_gemv_applies(x, layer, Backend::Auto));
  EXPECT_TRUE(detail::dense_gemv_applies(x, layer, Backend::Cuda));
  EXPECT_FALSE(detail::dense_gemv_applies(x, layer, Backend::Reference));
  EXPECT_TRUE(at::equal(linear(x, layer, Backend::Reference), at::linear(x, layer.weight)));
  // 9 rows, a transposed weight, a weight in another dtype: at::linear.
  EXPECT_FALSE(detail::dense_gemv_applies(cuda_randn({9, 5120}, at::kBFloat16), layer, Backend::Cuda));
  const Linear transposed(cuda_randn({5120, 192}, at::kBFloat16).t());
  EXPECT_FALSE(detail::dense_gemv_applies(x, transposed, Backend::Cuda));
  EXPECT_FALSE(detail::dense_gemv_applies(x.to(at::kFloat), layer, Backend::Cuda));
}

#ifdef EFFARCH_WITH_CUDA
// The conv update in the GEMV's epilogue against the GEMV then the conv kernel, bit for bit: the
// projection, the conv output and the rolled state; every dtype, split 1 and split 8 shapes
// (Mamba-2.8B's in_proj, a narrow one), rows 1-3, widths 2-4, fp32 conv weights beside bf16 / fp16
// activations, the conv's channels at the start or inside the outputs (Mamba-1, Mamba-2), with and
// without the conv's bias and its SiLU.
TEST(DenseGemvCuda, FusedConvUpdateIsTheGemvThenTheConvBitForBit) {
  if (!have_gpu()) GTEST_SKIP() << "needs a CUDA build and a GPU";
  at::manual_seed(25);
  int runs = 0;
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    for (const auto& [out, in, begin, dim] : std::vector<std::tuple<int64_t, int64_t, int64_t, int64_t>>{
             {10240, 2560, 0, 5120}, {96, 5120, 40, 48}, {200, 64, 10, 150}}) {
      for (int64_t rows : {1, 2, 3}) {
        for (int64_t width : {2, 3, 4}) {
          for (const bool fp32_weights : {false, true}) {
            for (const auto& [with_bias, silu] : {std::pair{true, true}, {false, true}, {true, false}}) {
              const Linear layer = cuda_layer(out, in, dtype, rows != 2);
              const at::Tensor x = cuda_randn({rows, in}, dtype);
              const at::ScalarType wtype = fp32_weights ? at::kFloat : dtype;
              const at::Tensor weight = cuda_randn({dim, width}, wtype);
              const std::optional<at::Tensor> bias =
                  with_bias ? std::optional<at::Tensor>(cuda_randn({dim}, wtype)) : std::nullopt;
              const at::Tensor state0 = cuda_randn({rows, dim, width}, dtype);
              at::Tensor fused_state = state0.clone(), apart_state = state0.clone();
              const std::string what =
                  fmt::format("{} O {} K {} conv {}+{} R {} W {} fp32 weights {} bias {} silu {}", c10::toString(dtype),
                              out, in, begin, dim, rows, width, fp32_weights, with_bias, silu);
              ASSERT_TRUE(linear_conv_update_fuses(x, layer, fused_state, Backend::Cuda)) << what;
              const ProjectedConv fused =
                  linear_conv_update(x, layer, begin, fused_state, weight, bias, silu, Backend::Cuda);
              const at::Tensor projection = linear(x, layer, Backend::Cuda);
              const at::Tensor conv =
                  causal_conv1d_update(projection.narrow(1, begin, dim), apart_state, weight, bias, silu, Backend::Cuda);
              EXPECT_TRUE(at::equal(fused.projection, projection)) << what;
              EXPECT_TRUE(at::equal(fused.conv, conv)) << what;
              EXPECT_TRUE(at::equal(fused_state, apart_state)) << what;
              ++runs;
            }
          }
        }
      }
    }
  }
  EXPECT_EQ(runs, 486);
}

// fc1 with its activation in the GEMV's epilogue against the GEMV then the activation kernel, bit
// for bit: every dtype, gelu_new and SiLU, Phi-2's fc1 (split 1) and a narrow matrix (split 8),
// rows 1-3, with and without a bias.
TEST(DenseGemvCuda, FusedActivationIsTheGemvThenTheActivationBitForBit) {
  if (!have_gpu()) GTEST_SKIP() << "needs a CUDA build and a GPU";
  at::manual_seed(26);
  int runs = 0;
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    for (const Activation act : {Activation::GeluNew, Activation::SiLU}) {
      for (const auto& [out, in] : std::vector<std::pair<int64_t, int64_t>>{{10240, 2560}, {96, 5120}}) {
        for (int64_t rows : {1, 2, 3}) {
          const Linear layer = cuda_layer(out, in, dtype, rows != 2);
          const at::Tensor x = cuda_randn({rows, 1, in}, dtype);
          const std::string what = fmt::format("{} act {} O {} K {} R {}", c10::toString(dtype), static_cast<int>(act),
                                               out, in, rows);
          ASSERT_TRUE(linear_activation_fuses(x, layer, act, Backend::Cuda)) << what;
          const at::Tensor fused = linear_activation(x, layer, act, Backend::Cuda);
          const at::Tensor apart = activate(act, linear(x, layer, Backend::Cuda), Backend::Cuda);
          EXPECT_EQ(fused.sizes(), apart.sizes()) << what;
          EXPECT_TRUE(at::equal(fused, apart)) << what;
          ++runs;
        }
      }
    }
  }
  EXPECT_EQ(runs, 36);
}

// The activation from a row on (linear_activation_tail, a parallel block's input product) against
// the GEMV then the activation kernel on the tail, bit for bit; into a column range of a wider
// buffer, rows up to 2, Phi-2's fused shape [7680 + 10240, 2560] and odd sizes.
TEST(DenseGemvCuda, FusedActivationFromARowIsTheGemvThenTheActivationOfTheTail) {
  if (!have_gpu()) GTEST_SKIP() << "needs a CUDA build and a GPU";
  at::manual_seed(27);
  int runs = 0;
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    for (const auto& [out, in, from] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
             {17920, 2560, 7680}, {99, 40, 33}, {64, 5120, 1}}) {
      for (int64_t rows : {1, 2}) {
        const Linear layer = cuda_layer(out, in, dtype, rows == 1);
        const at::Tensor x = cuda_randn({rows, 1, in}, dtype);
        const std::string what = fmt::format("{} O {} K {} from {} R {}", c10::toString(dtype), out, in, from, rows);
        ASSERT_TRUE(linear_activation_fuses(x, layer, Activation::GeluNew, Backend::Cuda)) << what;
        at::Tensor wide = at::full({rows, out + 24}, 3.0, x.options());
        const at::Tensor cols = wide.narrow(1, 0, out);
        linear_activation_tail(x, layer, Activation::GeluNew, from, Backend::Cuda, &cols);
        at::Tensor apart = linear(x, layer, Backend::Cuda).view({rows, out});
        apart.narrow(1, from, out - from).copy_(activate(Activation::GeluNew, apart.narrow(1, from, out - from), Backend::Cuda));
        EXPECT_TRUE(at::equal(cols, apart)) << what;
        EXPECT_TRUE(at::equal(wide.narrow(1, out, 24), at::full({rows, 24}, 3.0, x.options()))) << what;
        ++runs;
      }
    }
  }
  EXPECT_EQ(runs, 18);
}

// A gated MLP's gate/up product with act(gate) * up in the GEMV's epilogue against the GEMV then
// the gated activation kernel, bit for bit: every dtype, SiLU and gelu_new, Llama-3-8B's gate_up
// (split 1), DeepSeekMoE-16B's shared experts, a narrow long matrix (the gated plan's split 4
// against the plain plan's 8: equal within the rounding), odd I at splits 1 and 2 (and 4 in fp32),
// rows 1-2 (3 rows do not fuse); one fused row without a bias, two with one.
TEST(DenseGemvCuda, FusedGatedActivationIsTheGemvThenTheGatedActivationBitForBit) {
  if (!have_gpu()) GTEST_SKIP() << "needs a CUDA build and a GPU";
  at::manual_seed(27);
  int runs = 0;
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    for (const Activation act : {Activation::SiLU, Activation::GeluNew}) {
      for (const auto& [inter, in] :
           std::vector<std::pair<int64_t, int64_t>>{{14336, 4096}, {2816, 2048}, {33, 100}, {35, 1024}, {8, 5120}}) {
        for (int64_t rows : {1, 2, 3}) {
          const Linear layer = cuda_layer(2 * inter, in, dtype, rows >= 2);
          const at::Tensor x = cuda_randn({rows, 1, in}, dtype);
          const std::string what = fmt::format("{} act {} I {} K {} R {}", c10::toString(dtype), static_cast<int>(act),
                                               inter, in, rows);
          // 3 rows: past kCudaGatedGemvMaxRows, the GEMV then the activation kernel (bit for bit).
          ASSERT_EQ(linear_gated_activation_fuses(x, layer, act, Backend::Cuda), rows <= detail::kCudaGatedGemvMaxRows) << what;
          const at::Tensor fused = linear_gated_activation(x, layer, act, Backend::Cuda);
          const at::Tensor apart = gated_activation(act, linear(x, layer, Backend::Cuda), Backend::Cuda);
          ASSERT_EQ(fused.sizes(), apart.sizes()) << what;
          const test::Tolerance one = test::rounding_tolerance(dtype);
          if (rows > detail::kCudaGatedGemvMaxRows) {
            // Not fused: the op is that same chain, so `apart` would hold it to itself. Against
            // ATen's instead (the GEMV's fp32 sums in another order than cuBLAS's: an ulp of gate
            // or up, a few of the output).
            const at::Tensor aten = gated_activation(act, linear(x, layer, Backend::Reference), Backend::Reference);
            test::expect_close(fused, aten, test::Tolerance{4 * one.atol, 4 * one.rtol}, what);
          } else if (inter == 8) {
            // Another split, another order of the fp32 sums: gate and up may each round one ulp
            // apart, and the activation and product carry that on (a few ulps of the output).
            test::expect_close(fused, apart, test::Tolerance{4 * one.atol, 4 * one.rtol}, what);
          } else {
            EXPECT_TRUE(at::equal(fused, apart)) << what;
          }
          ++runs;
        }
      }
    }
  }
  EXPECT_EQ(runs, 90);
}

TEST(DenseGemvCuda, ReplaysInACudaGraph) {
  if (!have_gpu()) GTEST_SKIP() << "needs a CUDA build and a GPU";
  at::manual_seed(24);
  const Linear layer = cuda_layer(2560, 5120, at::kBFloat16, true);
  const at::Tensor x = cuda_randn({2, 1, 5120}, at::kBFloat16);
  (void)linear(x, layer);  // warm-up outside the capture
  at::cuda::CUDAGraph graph;
  const at::Tensor y = test::capture_into(graph, [&] { return linear(x, layer); });
  for (int i = 0; i < 2; ++i) {
    x.copy_(cuda_randn({2, 1, 5120}, at::kBFloat16));
    graph.replay();
    EXPECT_TRUE(at::equal(y, linear(x, layer))) << "replay " << i;
  }
}
#endif

}  // namespace
}  // namespace effarch::ops
