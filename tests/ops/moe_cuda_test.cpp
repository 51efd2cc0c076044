// The CUDA MoE dispatch (kernels/moe, src/ops/moe_cuda.cpp) against the ATen reference
// (src/ops/moe.cpp), stage by stage.
//
// On the CPU (every build): host emulations that run each kernel's own arithmetic
// (kernels/moe/moe_math.h) in the kernel's phase order -- lanes, warps, tiles, blocks -- against
// the reference: the router (three router kinds, top-k 1/2/6, 8 and 64 experts, bf16 and fp32),
// the permute (stable grouping, counts, offsets, the inverse map; no-token experts, every token on
// one expert, 4096 tokens x top-6 over 64 experts), the expert GEMV with the SwiGLU in its epilogue
// (scalar and 16-byte paths, several row chunks; each gate row paired with its up row), the combine (bit-exact against the reference's rounding), the whole
// decode dispatch, and the element conversions the kernels store with.
// On a GPU (skipped without one): the kernels themselves against the reference, every dtype.

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include <fmt/format.h>

#ifdef EFFARCH_WITH_CUDA
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include "cuda_graph_capture.h"
#endif

#include "effarch/common/error.h"
#include "effarch/ops/moe.h"
#include "moe_emulation.h"
#include "tolerance.h"

namespace effarch::ops {
namespace {

using namespace moe_emulation;

// ---- element conversions ----

TEST(MoeKernelMath, ConversionsMatchAten) {
  // Every half and bfloat16 value widens as c10 widens it; float -> half/bfloat16 rounds to
  // nearest even as c10 rounds (random floats over the whole range, halfway cases, overflow).
  for (uint32_t b = 0; b < 65536; ++b) {
    const auto h = static_cast<uint16_t>(b);
    const float via_c10 = static_cast<float>(c10::Half(h, c10::Half::from_bits()));
    const float ours = km::fp16_to_float(h);
    if (std::isnan(via_c10)) {
      EXPECT_TRUE(std::isnan(ours)) << b;
    } else {
      ASSERT_EQ(km::bits_of(ours), km::bits_of(via_c10)) << "half bits " << b;
    }
    ASSERT_EQ(km::bits_of(km::bf16_to_float(h)), km::bits_of(static_cast<float>(c10::BFloat16(h, c10::BFloat16::from_bits()))));
  }
  at::manual_seed(1);
  const at::Tensor f = at::cat({at::randn({200000}) * at::pow(2.0, at::randint(-30, 20, {200000})).to(at::kFloat),
                                at::tensor({65504.f, 65519.f, 65520.f, 1e9f, 5.96e-8f, 2.98e-8f, 2.99e-8f, 6.1e-5f, 0.f,
                                            -0.f, 1.00048828125f, 1.00146484375f, 1.0f + 1.0f / 256, 1.0f + 3.0f / 256})});
  const at::Tensor as_half = f.to(at::kHalf).to(at::kFloat), as_bf16 = f.to(at::kBFloat16).to(at::kFloat);
  const float* fp = f.const_data_ptr<float>();
  const float* hp = as_half.const_data_ptr<float>();
  const float* bp = as_bf16.const_data_ptr<float>();
  for (int64_t i = 0; i < f.numel(); ++i) {
    ASSERT_EQ(km::bits_of(km::round_to<km::Precision::kFp16>(fp[i])), km::bits_of(hp[i])) << fp[i];
    ASSERT_EQ(km::bits_of(km::round_to<km::Precision::kBf16>(fp[i])), km::bits_of(bp[i])) << fp[i];
  }
}

// ---- router ----

struct RouterCase {
  int64_t tokens, experts, top_k;
  RouterKind kind;
  at::ScalarType dtype;
};

std::vector<RouterCase> router_cases() {
  std::vector<RouterCase> cases;
  for (const RouterKind kind : {RouterKind::SoftmaxFp32Renormalized, RouterKind::SoftmaxFp32, RouterKind::SoftmaxModelDtype}) {
    for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
      cases.push_back({37, 8, 2, kind, dtype});
      cases.push_back({64, 64, 6, kind, dtype});
      cases.push_back({5, 16, 1, kind, dtype});
      cases.push_back({3, 200, 16, kind, dtype});  // several logits per lane, the largest top-k
    }
  }
  return cases;
}

// The reference scores' resolution: an fp32 softmax within a few ulps; DeepSeekMoE's model-dtype
// scores within one rounding of it.
double score_tolerance(const RouterCase& c) {
  if (c.kind == RouterKind::SoftmaxModelDtype && c.dtype != at::kFloat) return 1e-2 / static_cast<double>(c.experts) + 4e-3;
  return 1e-6;
}
test::Tolerance router_weight_tolerance(const RouterCase& c) {
  if (c.kind == RouterKind::SoftmaxFp32Renormalized || c.dtype == at::kFloat) return {1e-6, 1e-5};
  return test::rounding_tolerance(c.dtype);
}

TEST(MoeKernelEmulation, RouterMatchesTheReference) {
  int64_t flips = 0, slots = 0;
  for (const RouterCase& c : router_cases()) {
    at::manual_seed(static_cast<uint64_t>(c.tokens * 13 + c.experts + c.top_k));
    const at::Tensor x = at::randn({c.tokens, 32}).to(c.dtype);
    const at::Tensor w = (at::randn({c.experts, 32}) * 0.5).to(c.dtype);
    const std::string what = fmt::format("N{} E{} k{} {} {}", c.tokens, c.experts, c.top_k, kind_name(c.kind),
                                         c10::toString(c.dtype));
    const Routing ref = moe_route(x, w, c.top_k, c.kind, Backend::Reference);
    const Routing emu = emulate_router(at::linear(x, w), c.top_k, c.kind);
    const double ptol = c.kind == RouterKind::SoftmaxModelDtype && c.dtype != at::kFloat ? 1e-2 : 1e-6;
    test::expect_close(emu.probs, ref.probs, {1e-7, ptol}, what + " probs");
    flips += expect_same_topk(emu, ref, score_tolerance(c), router_weight_tolerance(c), what);
    slots += c.tokens * c.top_k;
  }
  // Ties and near-ties are rare: almost every slot picks the reference's expert.
  EXPECT_LE(flips * 50, slots) << flips << " of " << slots << " slots chose another (tied) expert";
}

TEST(MoeKernelEmulation, RouterBreaksTiesTowardTheLowerExpertId) {
  // Equal logits: the kernel keeps the lower ids, in ascending order, whatever the lane holding them.
  for (const int64_t experts : {8, 64, 200}) {
    at::Tensor logits = at::zeros({2, experts});
    logits[1].fill_(-1.0);
    logits[1][experts - 1] = 3.0;  // one clear winner, then ties
    for (const RouterKind kind : {RouterKind::SoftmaxFp32Renormalized, RouterKind::SoftmaxModelDtype}) {
      const Routing r = emulate_router(logits.to(at::kBFloat16), 3, kind);
      EXPECT_EQ(r.expert_ids[0][0].item<int64_t>(), 0);
      EXPECT_EQ(r.expert_ids[0][1].item<int64_t>(), 1);
      EXPECT_EQ(r.expert_ids[0][2].item<int64_t>(), 2);
      EXPECT_EQ(r.expert_ids[1][0].item<int64_t>(), experts - 1);
      EXPECT_EQ(r.expert_ids[1][1].item<int64_t>(), 0);
      EXPECT_EQ(r.expert_ids[1][2].item<int64_t>(), 1);
      if (kind == RouterKind::SoftmaxFp32Renormalized) {
        EXPECT_NEAR(r.weights[0].sum().item<float>(), 1.0f, 1e-6);
      }
    }
  }
}

// ---- permute ----

struct PermuteCase {
  int64_t tokens, experts, top_k;
  const char* layout;  // "random", "one" (every token on expert E-1), "few" (only experts 1 and 3)
};

at::Tensor permute_ids(const PermuteCase& c) {
  if (std::string(c.layout) == "one") {
    at::Tensor ids = random_ids(c.tokens, c.experts - 1, c.top_k - 1);
    return at::cat({at::full({c.tokens, 1}, c.experts - 1, at::kLong), ids}, 1);
  }
  if (std::string(c.layout) == "few") {
    return (at::randint(0, 2, {c.tokens, c.top_k}, at::kLong) * 2 + 1);
  }
  return random_ids(c.tokens, c.experts, c.top_k);
}

TEST(MoeKernelEmulation, PermuteIsTheStableGroupingByExpert) {
  const PermuteCase cases[] = {{1, 8, 2, "random"},     {7, 5, 1, "random"},     {33, 64, 6, "random"},
                               {1000, 8, 2, "random"},  {4096, 64, 6, "random"}, {4096, 16, 1, "random"},
                               {300, 16, 2, "one"},     {4096, 64, 6, "one"},    {257, 8, 1, "few"},
                               {0, 8, 2, "random"}};
  for (const PermuteCase& c : cases) {
    at::manual_seed(static_cast<uint64_t>(c.tokens + c.experts));
    const std::string what = fmt::format("N{} E{} k{} {}", c.tokens, c.experts, c.top_k, c.layout);
    const at::Tensor flat = permute_ids(c).reshape({-1});
    const Plan p = emulate_permute(flat, static_cast<int>(c.experts));
    const at::Tensor counts = at::bincount(flat, {}, c.experts);
    const at::Tensor order = std::get<1>(at::sort(flat, /*stable=*/true, 0, false));
    for (int64_t e = 0; e < c.experts; ++e) {
      ASSERT_EQ(p.counts[static_cast<size_t>(e)], counts[e].item<int64_t>()) << what << " expert " << e;
    }
    EXPECT_EQ(p.counts[static_cast<size_t>(c.experts)], 0) << what;
    EXPECT_EQ(p.offsets[static_cast<size_t>(c.experts)], flat.numel()) << what;
    std::vector<int> active;
    for (int64_t e = 0; e < c.experts; ++e) {
      if (counts[e].item<int64_t>() > 0) active.push_back(static_cast<int>(e));
    }
    EXPECT_EQ(p.active, active) << what;
    const int64_t* op = order.const_data_ptr<int64_t>();
    for (int64_t i = 0; i < flat.numel(); ++i) {
      ASSERT_EQ(p.order[static_cast<size_t>(i)], op[i]) << what << " row " << i;
      ASSERT_EQ(p.row_of[static_cast<size_t>(op[i])], i) << what << " position " << op[i];
    }
  }
}

TEST(MoeKernelEmulation, PermuteKeepsOutOfRangeIdsApart) {
  const at::Tensor ids = at::tensor({3, -1, 0, 9, 3, 2}, at::kLong);
  const Plan p = emulate_permute(ids, 4);
  EXPECT_EQ(p.counts, (std::vector<int>{1, 0, 1, 2, 2}));
  EXPECT_EQ(p.order, (std::vector<int>{2, 5, 0, 4, 1, 3}));  // the two bad ids last, in order
  EXPECT_EQ(p.active, (std::vector<int>{0, 2, 3}));
}

// ---- expert GEMV with the SwiGLU, combine ----

struct DispatchCase {
  int64_t tokens, experts, top_k;
  const char* layout;
};

// The decode dispatch, emulated, against the reference with the same routing: every dtype, both
// GEMV paths, awkward sizes (hidden 40 and inter 24: the 16-byte path needs multiples of 8), rows
// of several load pairs per lane (hidden 600).
TEST(MoeKernelEmulation, DecodeDispatchMatchesTheReference) {
  const DispatchCase cases[] = {{1, 8, 2, "random"},  {1, 64, 6, "random"}, {3, 8, 1, "random"},
                                {16, 64, 6, "random"}, {16, 4, 4, "random"}, {12, 8, 2, "one"},
                                {9, 8, 2, "few"},      {20, 4, 2, "one"}};  // 20 rows: three row chunks
  for (const DispatchCase& c : cases) {
    for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
      // 600: rows longer than one round of 32 lanes x 16 bytes (bf16 and fp16 reach the third of a
      // lane's four loads in flight, fp32 all four and a second round).
      for (const int64_t hidden : {40, 64, 600}) {
        if (hidden == 600 && c.tokens > 3) continue;
        const int64_t inter = hidden == 40 ? 24 : hidden == 64 ? 48 : 264;
        at::manual_seed(static_cast<uint64_t>(c.tokens * 5 + c.experts + hidden));
        const auto experts = make_experts(c.experts, hidden, inter, dtype);
        const at::Tensor x = at::randn({c.tokens, hidden}).to(dtype);
        const Routing r = fixed_routing(permute_ids({c.tokens, c.experts, c.top_k, c.layout}), dtype);
        const at::Tensor ref = moe_dispatch(x, r, experts, Activation::SiLU, Backend::Reference);
        // fp32: the GEMV adds 600-long products in another order than ATen's GEMM (a few ulps of
        // outputs near 20); low precision: a rounding flip carries through down.
        test::Tolerance tol = test::rounding_tolerance(dtype);
        tol = dtype == at::kFloat ? test::Tolerance{1e-4, 1e-5} : test::Tolerance{2 * tol.atol, 2 * tol.rtol};
        for (const bool vectorized : {false, true}) {
          if (vectorized && hidden % 8 != 0) continue;
          const std::string what = fmt::format("N{} E{} k{} {} {} H{} vec {}", c.tokens, c.experts, c.top_k, c.layout,
                                               c10::toString(dtype), hidden, vectorized);
          test::expect_close(emulate_decode_dispatch(x, r, experts, all_local(c.experts), vectorized), ref, tol, what);
        }
      }
    }
  }
}

// The GEMV lane's loads in flight change when its weights arrive, not the order they are added
// in, and its room for rows changes nothing about one row's sum: the one-token kernel's lane
// (one row, four or eight loads in flight: moe_decode_r1, moe_decode_r1l8) gives the default's
// partial sums bit for bit, for rows shorter than, as long as, and longer than one round.
TEST(MoeKernelMath, LoadsInFlightKeepTheLaneSums) {
  using S = km::StorageOf<km::Precision::kBf16>::type;
  for (const int k : {64, 1408, 2048, 4096, 4104}) {
    at::manual_seed(static_cast<uint64_t>(k));
    const at::Tensor w = at::randn({k}).to(at::kBFloat16), x = at::randn({3, k}).to(at::kBFloat16);
    const S* wp = static_cast<const S*>(w.const_data_ptr());
    const S* xr[km::kGemvRows];
    for (int r = 0; r < km::kGemvRows; ++r) xr[r] = static_cast<const S*>(x.const_data_ptr()) + std::min(r, 2) * k;
    for (int lane = 0; lane < km::kWarp; ++lane) {
      float narrow[km::kGemvRows], wide[km::kGemvRows];
      km::gemv_lane<km::Precision::kBf16, 8, S>(wp, xr, 3, k, lane, narrow);
      km::gemv_lane<km::Precision::kBf16, 8, S, km::kExpertLoadsInFlightWide>(wp, xr, 3, k, lane, wide);
      EXPECT_EQ(std::memcmp(narrow, wide, sizeof(narrow)), 0) << "k " << k << " lane " << lane;
      for (const int in_flight : {km::kExpertLoadsInFlight, km::kExpertLoadsInFlightWide}) {
        float one[1];
        if (in_flight == km::kExpertLoadsInFlight) {
          km::gemv_lane<km::Precision::kBf16, 8, S, km::kExpertLoadsInFlight, 1>(wp, xr, 1, k, lane, one);
        } else {
          km::gemv_lane<km::Precision::kBf16, 8, S, km::kExpertLoadsInFlightWide, 1>(wp, xr, 1, k, lane, one);
        }
        EXPECT_EQ(std::memcmp(one, narrow, sizeof(one)), 0) << "one row, k " << k << " lane " << lane << " in flight " << in_flight;
      }
    }
  }
}

// The fused SwiGLU's pairing: gate row j of a block's first four warps has its up row split + j
// four warps on, in the same block; every pair once, the block's spare warps inactive; the plain
// mapping reads every row once; both grids are as wide.
TEST(MoeKernelMath, ExpertGemvRowsPairEachGateRowWithItsUpRow) {
  for (const int split : {1, 4, 21, 24, 1408}) {
    const int out = 2 * split, blocks = km::expert_gemv_blocks(out, split, true);
    EXPECT_EQ(blocks, km::expert_gemv_blocks(out, split, false)) << split;
    std::vector<int> fused(static_cast<size_t>(out), 0), plain(static_cast<size_t>(out), 0);
    for (int b = 0; b < blocks; ++b) {
      for (int w = 0; w < km::kExpertGemvWarps; ++w) {
        const km::ExpertGemvRow p = km::expert_gemv_row(b, w, out, split, false);
        if (p.active) ++plain[static_cast<size_t>(p.o)];
        const km::ExpertGemvRow r = km::expert_gemv_row(b, w, out, split, true);
        EXPECT_EQ(r.gate, w < km::kExpertGemvWarps / 2);
        if (!r.active) {
          EXPECT_GE(r.column, split);
          continue;
        }
        ++fused[static_cast<size_t>(r.o)];
        if (!r.gate) continue;
        EXPECT_EQ(r.o, r.column);
        const km::ExpertGemvRow up = km::expert_gemv_row(b, w + km::kExpertGemvWarps / 2, out, split, true);
        EXPECT_TRUE(up.active && !up.gate);
        EXPECT_EQ(up.o, split + r.column);
        EXPECT_EQ(up.column, r.column);
      }
    }
    EXPECT_EQ(fused, std::vector<int>(static_cast<size_t>(out), 1)) << split;
    EXPECT_EQ(plain, std::vector<int>(static_cast<size_t>(out), 1)) << split;
  }
}

// The separate SwiGLU, element by element over the valid rows: what the fused epilogue replaces.
template <km::Precision P>
void separate_swiglu(const at::Tensor& h, at::Tensor& a, int valid_rows) {
  using S = typename km::StorageOf<P>::type;
  const int64_t inter = a.size(1);
  const S* hp = static_cast<const S*>(h.const_data_ptr());
  S* ap = static_cast<S*>(a.mutable_data_ptr());
  for (int64_t i = 0; i < valid_rows * inter; ++i) {
    const int64_t row = i / inter, c = i % inter;
    ap[i] = km::from_f<P>(km::swiglu<P>(km::to_f<P>(hp[row * 2 * inter + c]), km::to_f<P>(hp[row * 2 * inter + inter + c])));
  }
}

// The gate/up GEMV with the SwiGLU in its epilogue equals the plain GEMV's [M, 2I] output then the
// separate SwiGLU, bit for bit (the emulation runs the kernel's own lane code, its block mapping
// and both epilogues): every dtype, both load paths, widths whose last block has empty pairs,
// several row chunks (20 rows on one expert), int8 experts.
TEST(MoeKernelEmulation, FusedSwigluIsTheGemvThenTheSwiglu) {
  int runs = 0;
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    for (const DispatchCase& c : {DispatchCase{1, 8, 2, "random"}, DispatchCase{16, 64, 6, "random"},
                                  DispatchCase{20, 4, 2, "one"}}) {
      for (const int64_t hidden : {40, 64}) {
        for (const int64_t inter : {24, 21, 1}) {
          for (const bool int8 : {false, true}) {
            if (int8 && dtype != at::kFloat) continue;
            at::manual_seed(static_cast<uint64_t>(c.tokens + hidden + inter));
            const auto experts = int8 ? make_int8_experts(c.experts, hidden, inter) : make_experts(c.experts, hidden, inter, dtype);
            const at::Tensor x = at::randn({c.tokens, hidden}).to(dtype);
            const at::Tensor ids = permute_ids({c.tokens, c.experts, c.top_k, c.layout});
            const Plan plan = emulate_permute(ids.reshape({-1}), static_cast<int>(c.experts));
            const GemvWeights gu = gate_up_of(experts, all_local(c.experts));
            const int64_t m = c.tokens * c.top_k;
            const int valid = plan.offsets[static_cast<size_t>(c.experts)];
            for (const bool vectorized : {false, true}) {
              if (vectorized && hidden % (int8 ? 16 : 8) != 0) continue;  // the launcher's condition
              const std::string what = fmt::format("N{} E{} k{} {} H{} I{} int8 {} vec {}", c.tokens, c.experts,
                                                   c.top_k, c10::toString(dtype), hidden, inter, int8, vectorized);
              at::Tensor h = at::zeros({m, 2 * inter}, x.options()), apart = at::zeros({m, inter}, x.options());
              at::Tensor fused = at::zeros({m, inter}, x.options());
              emulate_gemv(plan, gu, true, static_cast<int>(c.top_k), x, h, vectorized, false);
              emulate_gemv(plan, gu, true, static_cast<int>(c.top_k), x, fused, vectorized, true);
              switch (dtype) {
                case at::kFloat: separate_swiglu<km::Precision::kFp32>(h, apart, valid); break;
                case at::kBFloat16: separate_swiglu<km::Precision::kBf16>(h, apart, valid); break;
                default: separate_swiglu<km::Precision::kFp16>(h, apart, valid); break;
              }
              EXPECT_TRUE(at::equal(fused, apart)) << what;
              ++runs;
            }
          }
        }
      }
    }
  }
  // dtypes x cases x hiddens x widths x both paths; int8 experts (fp32 x): cases x widths x (H40's
  // scalar path + H64's two).
  EXPECT_EQ(runs, 3 * 3 * 2 * 3 * 2 + 3 * 3 * 3);
}

// int8 experts through the same GEMV (int8 rows, 16 per load, the row's sum times its scale)
// against the reference, which dequantises each expert's weights to the model dtype and runs the
// same chain. fp32: summation order and where the scale is applied (after the sum, not on each
// weight); bf16/fp16: the reference's dequantised weights are rounded to the model dtype (a
// relative 2^-9 or 2^-12 per weight) where the kernel's are exact, on top of the dense bound.
TEST(MoeKernelEmulation, Int8DecodeDispatchMatchesTheReference) {
  const DispatchCase cases[] = {{1, 8, 2, "random"}, {1, 64, 6, "random"}, {16, 64, 6, "random"},
                                {12, 8, 2, "one"},   {20, 4, 2, "one"}};
  for (const DispatchCase& c : cases) {
    for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
      for (const int64_t hidden : {40, 64, 608}) {
        if (hidden == 608 && c.tokens > 3) continue;
        const int64_t inter = hidden == 40 ? 24 : hidden == 64 ? 48 : 272;
        at::manual_seed(static_cast<uint64_t>(c.tokens * 7 + c.experts + hidden));
        const auto experts = make_int8_experts(c.experts, hidden, inter);
        const at::Tensor x = at::randn({c.tokens, hidden}).to(dtype);
        const Routing r = fixed_routing(permute_ids({c.tokens, c.experts, c.top_k, c.layout}), dtype);
        const at::Tensor ref = moe_dispatch(x, r, experts, Activation::SiLU, Backend::Reference);
        test::Tolerance tol = test::rounding_tolerance(dtype);
        tol = dtype == at::kFloat ? test::Tolerance{1e-4, 1e-5} : test::Tolerance{4 * tol.atol, 4 * tol.rtol};
        for (const bool vectorized : {false, true}) {
          if (vectorized && (hidden % 16 != 0 || inter % 16 != 0)) continue;
          const std::string what = fmt::format("int8 N{} E{} k{} {} {} H{} vec {}", c.tokens, c.experts, c.top_k,
                                               c.layout, c10::toString(dtype), hidden, vectorized);
          test::expect_close(emulate_decode_dispatch(x, r, experts, all_local(c.experts), vectorized), ref, tol, what);
        }
      }
    }
  }
}

// Experts another rank holds: their slots add nothing (the reference skips `remote` experts).
TEST(MoeKernelEmulation, RemoteExpertsAreSkipped) {
  at::manual_seed(3);
  auto experts = make_experts(8, 32, 16, at::kFloat);
  std::vector<uint8_t> local = all_local(8);
  for (const int e : {1, 4, 6}) {
    local[static_cast<size_t>(e)] = 0;
    experts[static_cast<size_t>(e)] = ExpertWeights{};
    experts[static_cast<size_t>(e)].remote = true;
  }
  const at::Tensor x = at::randn({6, 32});
  const Routing r = fixed_routing(random_ids(6, 8, 2), at::kFloat);
  const at::Tensor ref = moe_dispatch(x, r, experts, Activation::SiLU, Backend::Reference);
  test::expect_close(emulate_decode_dispatch(x, r, experts, local, true), ref, test::rounding_tolerance(at::kFloat),
                     "remote");
}

// The combine, given the experts' outputs as the reference computes them (one gated MLP per
// expert on its grouped rows), gives the reference's output bit for bit: same order, same
// roundings. Up to 4096 tokens, 64 experts top-6, every token on one expert, fp32 and
// model-dtype weights.
TEST(MoeKernelEmulation, CombineRoundsExactlyAsTheReference) {
  const DispatchCase cases[] = {{1, 8, 2, "random"},     {5, 64, 6, "random"},  {300, 16, 2, "one"},
                                {4096, 64, 6, "random"}, {4096, 8, 2, "random"}, {100, 8, 1, "few"}};
  for (const DispatchCase& c : cases) {
    for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
      for (const at::ScalarType weight_dtype : {at::kFloat, dtype}) {
        at::manual_seed(static_cast<uint64_t>(c.tokens + c.experts * 3));
        const int64_t hidden = 24, inter = 16;
        const auto experts = make_experts(c.experts, hidden, inter, dtype);
        const at::Tensor x = at::randn({c.tokens, hidden}).to(dtype);
        const Routing r = fixed_routing(permute_ids({c.tokens, c.experts, c.top_k, c.layout}), weight_dtype);
        const Plan plan = emulate_permute(r.expert_ids.reshape({-1}), static_cast<int>(c.experts));
        at::Tensor y = at::zeros({c.tokens * c.top_k, hidden}, dtype);
        const at::Tensor order = at::tensor(std::vector<int64_t>(plan.order.begin(), plan.order.end()), at::kLong);
        for (int e : plan.active) {
          const int64_t begin = plan.offsets[static_cast<size_t>(e)], rows = plan.counts[static_cast<size_t>(e)];
          const at::Tensor tokens = at::div(order.narrow(0, begin, rows), c.top_k, "floor");
          y.narrow(0, begin, rows).copy_(gated_mlp(x.index_select(0, tokens), experts[static_cast<size_t>(e)], Activation::SiLU));
        }
        const at::Tensor out = emulate_combine(r.expert_ids, r.weights, plan, all_local(c.experts), y);
        const at::Tensor ref = moe_dispatch(x, r, experts, Activation::SiLU, Backend::Reference);
        EXPECT_TRUE(at::equal(out, ref)) << fmt::format("N{} E{} k{} {} {} weights {}: max diff {}", c.tokens,
                                                        c.experts, c.top_k, c.layout, c10::toString(dtype),
                                                        c10::toString(weight_dtype),
                                                        (out.to(at::kDouble) - ref.to(at::kDouble)).abs().max().item<double>());
      }
    }
  }
}

// ---- the kernels on a GPU ----

TEST(MoeCuda, RouterKernelMatchesTheReference) {
  if (!have_gpu()) GTEST_SKIP() << "needs a CUDA build and a GPU";
  const at::Device cuda(at::kCUDA, 0);
  int64_t flips = 0, slots = 0;
  for (RouterCase c : router_cases()) {
    for (const at::ScalarType dtype : {c.dtype, at::kHalf}) {
      c.dtype = dtype;
      at::manual_seed(static_cast<uint64_t>(c.tokens * 13 + c.experts + c.top_k));
      const at::Tensor x = at::randn({c.tokens, 32}).to(dtype).to(cuda);
      const at::Tensor w = (at::randn({c.experts, 32}) * 0.5).to(dtype).to(cuda);
      const std::string what = fmt::format("N{} E{} k{} {} {}", c.tokens, c.experts, c.top_k, kind_name(c.kind),
                                           c10::toString(dtype));
      const Routing ref = moe_route(x, w, c.top_k, c.kind, Backend::Reference);
      // The router kernel over cuBLAS's logits (up to 16 tokens moe_route computes them in the
      // same launch: tests/ops/moe_token_test.cpp), so that the emulation below sees the same ones.
      const Routing gpu = moe_route(x, w, c.top_k, c.kind, Backend::Cuda, RouterLogits::Separate);
      const double ptol = c.kind == RouterKind::SoftmaxModelDtype && dtype != at::kFloat ? 1e-2 : 1e-6;
      test::expect_close(gpu.probs, ref.probs, {1e-7, ptol}, what + " probs");
      flips += expect_same_topk(gpu, ref, score_tolerance(c), router_weight_tolerance(c), what);
      slots += c.tokens * c.top_k;
      // The kernel's own arithmetic, emulated on the host from the same logits.
      const Routing emu = emulate_router(at::linear(x, w).cpu(), c.top_k, c.kind);
      test::expect_close(gpu.probs, emu.probs, {1e-7, ptol}, what + " probs vs emulation");
    }
  }
  EXPECT_LE(flips * 50, slots) << flips << " of " << slots;
}

TEST(MoeCuda, RouterKernelTiesGoToTheLowerExpertId) {
  if (!have_gpu()) GTEST_SKIP() << "needs a CUDA build and a GPU";
  // x = 0 makes every logit 0: all experts tie; at::topk on CUDA keeps the lowest ids too.
  const at::Tensor x = at::zeros({4, 16}, at::kBFloat16).cuda();
  const at::Tensor w = at::randn({64, 16}).to(at::kBFloat16).cuda();
  const Routing gpu = moe_route(x, w, 6, RouterKind::SoftmaxModelDtype, Backend::Cuda);
  EXPECT_TRUE(at::equal(gpu.expert_ids.cpu(), at::arange(6, at::kLong).repeat({4, 1}))) << gpu.expert_ids;
  const Routing ref = moe_route(x, w, 6, RouterKind::SoftmaxModelDtype, Backend::Reference);
  EXPECT_TRUE(at::equal(std::get<0>(ref.expert_ids.cpu().sort(-1)), at::arange(6, at::kLong).repeat({4, 1})))
      << "at::topk on CUDA keeps other tied experts: " << ref.expert_ids;
}

// The kernel dispatch (decode GEMV path and prefill GEMM path) against the reference on the GPU.
TEST(MoeCuda, DispatchMatchesTheReference) {
  if (!have_gpu()) GTEST_SKIP() << "needs a CUDA build and a GPU";
  const at::Device cuda(at::kCUDA, 0);
  const DispatchCase cases[] = {{1, 8, 2, "random"},    {1, 64, 6, "random"},     {3, 8, 1, "random"},
                                {16, 64, 6, "random"},   {12, 8, 2, "one"},        {9, 8, 2, "few"},
                                {17, 16, 2, "random"},   {300, 16, 2, "one"},      {4096, 64, 6, "random"},
                                {4096, 8, 2, "random"}};
  for (const DispatchCase& c : cases) {
    for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
      for (const int64_t hidden : {40, 256}) {
        const int64_t inter = hidden == 40 ? 24 : 96;
        at::manual_seed(static_cast<uint64_t>(c.tokens * 5 + c.experts + hidden));
        const auto experts = make_experts(c.experts, hidden, inter, dtype, cuda);
        const ExpertTable table = make_expert_table(experts);
        ASSERT_TRUE(table.defined()) << table.why;
        const at::Tensor x = at::randn({c.tokens, hidden}).to(dtype).to(cuda);
        Routing r = fixed_routing(permute_ids({c.tokens, c.experts, c.top_k, c.layout}), dtype);
        r.expert_ids = r.expert_ids.to(cuda);
        r.weights = r.weights.to(cuda);
        const std::string what = fmt::format("N{} E{} k{} {} {} H{}", c.tokens, c.experts, c.top_k, c.layout,
                                             c10::toString(dtype), hidden);
        const at::Tensor ref = moe_dispatch(x, r, experts, Activation::SiLU, Backend::Reference);
        const at::Tensor gpu = moe_dispatch(x, r, experts, Activation::SiLU, Backend::Cuda, &table);
        const at::Tensor again = moe_dispatch(x, r, experts, Activation::SiLU, Backend::Cuda, &table);
        // fp32: another summation order than ATen's GEMMs. bf16, fp16: the decode kernels round the
        // SwiGLU product once where the reference rounds gate, up, the SiLU and the product, and
        // down's sum cancels: at H256 its terms reach 70 where an output is 7, so the two differ by
        // an ulp of the terms (0.5 in bf16, seen on an H100 for N12 E8 k2 "one"), many of the
        // output's. Each is held to the fp32 truth from the same rounded inputs instead: the
        // kernel's worst error at most twice the reference's.
        test::Tolerance tol = test::rounding_tolerance(dtype);
        tol = dtype == at::kFloat ? test::Tolerance{1e-4, 1e-5} : test::Tolerance{4 * tol.atol, 4 * tol.rtol};
        if (dtype == at::kFloat) {
          test::expect_close(gpu, ref, tol, what);
        } else {
          const Routing rf{r.expert_ids.cpu(), r.weights.cpu().to(at::kFloat), {}};
          const at::Tensor truth =
              moe_dispatch(x.cpu().to(at::kFloat), rf, on_host(experts, at::kFloat), Activation::SiLU, Backend::Reference);
          test::expect_as_accurate(gpu, ref, truth, what);
        }
        EXPECT_TRUE(at::equal(gpu, again)) << what << ": not deterministic";
        if (c.tokens <= kMoeDecodeMaxTokens) {  // the decode kernels, emulated on the host from the same inputs
          Routing rh{r.expert_ids.cpu(), r.weights.cpu(), {}};
          test::expect_close(gpu, emulate_decode_dispatch(x.cpu(), rh, on_host(experts), all_local(c.experts), true), tol,
                             what + " vs emulation");
        }
        // Without the table (and with int8 experts) the GEMM chain per expert runs.
        test::expect_close(moe_dispatch(x, r, experts, Activation::SiLU, Backend::Cuda), ref, tol, what + " no table");
      }
    }
  }
}

TEST(MoeCuda, DispatchSkipsRemoteExpertsAndRunsInt8ExpertsThroughTheTable) {
  if (!have_gpu()) GTEST_SKIP() << "needs a CUDA build and a GPU";
  const at::Device cuda(at::kCUDA, 0);
  auto experts = make_experts(8, 64, 32, at::kBFloat16, cuda);
  for (const int e : {2, 5}) {
    experts[static_cast<size_t>(e)] = ExpertWeights{};
    experts[static_cast<size_t>(e)].remote = true;
  }
  const ExpertTable table = make_expert_table(experts);
  ASSERT_TRUE(table.defined()) << table.why;
  const at::Tensor x = at::randn({4, 64}).to(at::kBFloat16).to(cuda);
  Routing r = fixed_routing(random_ids(4, 8, 2).to(cuda), at::kBFloat16);
  r.weights = r.weights.to(cuda);
  const at::Tensor ref = moe_dispatch(x, r, experts, Activation::SiLU, Backend::Reference);
  test::Tolerance tol = test::rounding_tolerance(at::kBFloat16);
  tol = {2 * tol.atol, 2 * tol.rtol};
  test::expect_close(moe_dispatch(x, r, experts, Activation::SiLU, Backend::Cuda, &table), ref, tol, "remote");

  // int8 experts: the table holds their rows and scales; decode through it, prefill (and no
  // table) through the per-expert chain; each against the reference and the emulation.
  const auto int8 = make_int8_experts(8, 64, 32, cuda);
  const ExpertTable int8_table = make_expert_table(int8);
  ASSERT_TRUE(int8_table.defined()) << int8_table.why;
  EXPECT_TRUE(int8_table.int8);
  ASSERT_TRUE(int8_table.scales.defined());
  EXPECT_EQ(int8_table.scales.sizes(), (std::vector<int64_t>{3, 8}));
  const at::Tensor x32 = x.to(at::kFloat);
  Routing r32 = r;
  r32.weights = r.weights.to(at::kFloat);
  for (const auto& [input, routing] : {std::pair{x, r}, std::pair{x32, r32}}) {
    const at::ScalarType dtype = input.scalar_type();
    test::Tolerance t8 = test::rounding_tolerance(dtype);
    t8 = dtype == at::kFloat ? test::Tolerance{1e-4, 1e-5} : test::Tolerance{4 * t8.atol, 4 * t8.rtol};
    const at::Tensor ref8 = moe_dispatch(input, routing, int8, Activation::SiLU, Backend::Reference);
    const at::Tensor gpu8 = moe_dispatch(input, routing, int8, Activation::SiLU, Backend::Cuda, &int8_table);
    test::expect_close(gpu8, ref8, t8, std::string("int8 table ") + c10::toString(dtype));
    std::vector<ExpertWeights> host;
    for (const auto& e : int8) {
      ExpertWeights h;
      h.gate_up = Linear::int8(e.gate_up.weight.cpu(), e.gate_up.scale.cpu());
      h.gate = Linear::int8(h.gate_up.weight.narrow(0, 0, 32), h.gate_up.scale.narrow(0, 0, 32));
      h.up = Linear::int8(h.gate_up.weight.narrow(0, 32, 32), h.gate_up.scale.narrow(0, 32, 32));
      h.down = Linear::int8(e.down.weight.cpu(), e.down.scale.cpu());
      host.push_back(std::move(h));
    }
    Routing rh{routing.expert_ids.cpu(), routing.weights.cpu(), {}};
    test::expect_close(gpu8, emulate_decode_dispatch(input.cpu(), rh, host, all_local(8), true), t8,
                       std::string("int8 table vs emulation ") + c10::toString(dtype));
    test::expect_close(moe_dispatch(input, routing, int8, Activation::SiLU, Backend::Cuda), ref8, t8,
                       std::string("int8 no table ") + c10::toString(dtype));
  }
}

// The decode kernels at real models' shapes. The cases above are small (hidden 40 and 256 run only
// the first of a lane's four weight loads in a round): here DeepSeekMoE-16B's routed experts
// (hidden 2048, inter 1408, 64 experts, top-6) in bf16 and fp16, and int8 experts at hidden 4096
// (every load of a round), at 1 and 8 tokens, against the reference dispatch. The weights are at a
// model's scale (0.02).
TEST(MoeCuda, DecodeDispatchAtRealShapesMatchesTheReference) {
  if (!have_gpu()) GTEST_SKIP() << "needs a CUDA build and a GPU";
  const at::Device cuda(at::kCUDA, 0);
  struct Shape {
    int64_t hidden, inter, experts, top_k;
    bool int8;
  };
  for (const Shape sh : {Shape{2048, 1408, 64, 6, false}, Shape{4096, 1408, 8, 2, true}}) {
    for (const at::ScalarType dtype : {at::kBFloat16, at::kHalf}) {
      at::manual_seed(static_cast<uint64_t>(sh.hidden + sh.experts));
      const auto experts = sh.int8 ? make_int8_experts(sh.experts, sh.hidden, sh.inter, cuda, 0.02)
                                   : make_experts(sh.experts, sh.hidden, sh.inter, dtype, cuda, 0.02);
      const ExpertTable table = make_expert_table(experts);
      ASSERT_TRUE(table.defined()) << table.why;
      EXPECT_EQ(table.int8, sh.int8);
      for (const int64_t tokens : {1, 8}) {
        const at::Tensor x = at::randn({tokens, sh.hidden}, at::TensorOptions().device(cuda)).to(dtype);
        Routing r = fixed_routing(random_ids(tokens, sh.experts, sh.top_k), dtype);
        r.expert_ids = r.expert_ids.to(cuda);
        r.weights = r.weights.to(cuda);
        const std::string what = fmt::format("N{} E{} k{} H{} I{} {}{}", tokens, sh.experts, sh.top_k, sh.hidden,
                                             sh.inter, c10::toString(dtype), sh.int8 ? " int8" : "");
        const at::Tensor ref = moe_dispatch(x, r, experts, Activation::SiLU, Backend::Reference);
        const at::Tensor gpu = moe_dispatch(x, r, experts, Activation::SiLU, Backend::Cuda, &table);
        test::Tolerance tol = test::rounding_tolerance(dtype);
        tol = {4 * tol.atol, 4 * tol.rtol};  // as DispatchMatchesTheReference
        test::expect_close(gpu, ref, tol, what);
        EXPECT_TRUE(at::equal(gpu, moe_dispatch(x, r, experts, Activation::SiLU, Backend::Cuda, &table)))
            << what << ": not deterministic";
        // The measuring variants (moe_decode_r1, moe_decode_r1l8): the one-token kernel with four
        // and eight weight loads in flight a lane; the same sums in the same order, bit for bit
        // (at eight tokens, and for int8 weights, the default kernel runs).
        for (const int loads : {0, km::kExpertLoadsInFlightWide}) {
          ExpertTable variant = table;
          variant.one_row = true;
          variant.loads_in_flight = loads;
          EXPECT_TRUE(at::equal(gpu, moe_dispatch(x, r, experts, Activation::SiLU, Backend::Cuda, &variant)))
              << what << ": one_row, loads_in_flight " << loads;
        }
      }
    }
  }
}

// A decode step's dispatch captured in a CUDA graph and replayed with other inputs gives what it
// gives eagerly: nothing in it reads the host. One token (the router with its logits in its
// launch, the dispatch's two launches with shared experts inside) and two (the staged kernels,
// the shared MLP apart).
TEST(MoeCuda, DispatchReplaysInACudaGraph) {
#ifndef EFFARCH_WITH_CUDA
  GTEST_SKIP() << "needs a CUDA build and a GPU";
#else
  if (!have_gpu()) GTEST_SKIP() << "needs a CUDA build and a GPU";
  const at::Device cuda(at::kCUDA, 0);
  const auto experts = make_experts(64, 128, 64, at::kBFloat16, cuda);
  const GatedMlpWeights shared = make_experts(1, 128, 128, at::kBFloat16, cuda)[0];  // two experts' width
  const ExpertTable table = make_expert_table(experts, &shared);
  ASSERT_EQ(table.shared_slots, 2) << table.shared_why;
  const at::Tensor router = at::randn({64, 128}).to(at::kBFloat16).to(cuda);
  for (const int64_t tokens : {1, 2}) {
    at::Tensor x = at::randn({tokens, 128}).to(at::kBFloat16).to(cuda);
    const auto step = [&] {
      const Routing r = moe_route(x, router, 6, RouterKind::SoftmaxModelDtype, Backend::Cuda);
      return moe_dispatch(x, r, experts, Activation::SiLU, Backend::Cuda, &table, nullptr, &shared);
    };
    const at::Tensor eager_first = step();
    at::cuda::CUDAGraph graph;
    const at::Tensor captured = test::capture_into(graph, step);
    graph.replay();
    EXPECT_TRUE(at::equal(captured, eager_first)) << tokens << " token(s)";
    x.copy_(at::randn({tokens, 128}).to(at::kBFloat16));
    graph.replay();
    EXPECT_TRUE(at::equal(captured, step())) << tokens << " token(s)";
  }
#endif
}

TEST(MoeCuda, BackendCudaIsRefusedOffCuda) {
  const at::Tensor x = at::randn({2, 8});
  EXPECT_THROW(moe_route(x, at::randn({4, 8}), 2, RouterKind::SoftmaxFp32, Backend::Cuda), OpError);
}

}  // namespace
}  // namespace effarch::ops
