// The MoE CUDA binding (src/ops/moe_cuda.cpp) on the CPU executor: the router and dispatch entry
// points the ops call on a GPU, with the expert table make_expert_table builds at load, run on
// host tensors. moe_sim_test.cpp fills the kernels' params by hand; this runs the binding's own
// filling (the table's columns and the shared experts folded in them, the slots, the strides),
// its choice of path (one token, decode, a step under graph capture, prefill with the counts on
// the host) and its workspaces, against the ATen reference dispatch and router. These are the
// GPU tests' checks of tests/ops/moe_token_test.cpp and moe_cuda_test.cpp, which otherwise wait
// for a GPU.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "cuda_sim.h"
#include "sim_test.h"
// the test data and comparisons of the op tests (tests/ops)
#include "../ops/moe_emulation.h"
#include "effarch/common/error.h"
#include "effarch/ops/gated_mlp.h"
#include "effarch/ops/moe.h"

namespace effarch::sim {
namespace {

using namespace ::effarch::ops;
using namespace ::effarch::ops::moe_emulation;

class MoeDispatchSim : public ::testing::Test {
 protected:
  void TearDown() override { reset_device(); }
};

// The experts' ids a dispatch ran check_expert on, in order.
struct Checked {
  std::vector<int64_t> ids;
  std::function<void(int64_t)> fn() {
    return [this](int64_t e) { ids.push_back(e); };
  }
};

detail::CudaDispatch dispatch(const at::Tensor& x, const Routing& r, const std::vector<ExpertWeights>& experts,
                              const ExpertTable* table, const GatedMlpWeights* shared = nullptr,
                              Checked* checked = nullptr) {
  Checked none;
  return detail::moe_dispatch_cuda(x, r, experts, Activation::SiLU, table, nullptr, shared,
                                   (checked != nullptr ? checked : &none)->fn());
}

// A shared MLP of `slots` experts' width, as Weights::gated_mlp builds one.
GatedMlpWeights make_shared_mlp(int64_t slots, int64_t hidden, int64_t inter, at::ScalarType dtype) {
  return make_experts(1, hidden, slots * inter, dtype)[0];
}

// The tolerance of the decode dispatch against the reference (tests/ops/moe_cuda_test.cpp's).
test::Tolerance dispatch_tolerance(at::ScalarType dtype, double widen = 2) {
  const test::Tolerance tol = test::rounding_tolerance(dtype);
  return dtype == at::kFloat ? test::Tolerance{1e-4, 1e-5} : test::Tolerance{widen * tol.atol, widen * tol.rtol};
}

std::vector<at::ScalarType> dtypes(bool int8) {
  return int8 ? std::vector<at::ScalarType>{at::kFloat, at::kBFloat16}
              : std::vector<at::ScalarType>{at::kFloat, at::kBFloat16, at::kHalf};
}

// One token through the table: the two launches (no permute) equal the staged kernels (permute,
// GEMV, GEMV, combine) bit for bit, every dtype, int8 experts (with rows of 40 bytes: the scalar
// loads), a remote expert, repeated and out-of-range ids; the measuring variants (one_row, eight loads in flight) too;
// within the decode tolerance of the reference; the same bytes under both schedules.
TEST_F(MoeDispatchSim, OneTokenTwoLaunchesAreTheStagedKernels) {
  struct Shape {
    int64_t hidden, inter, experts, top_k;
    bool int8;
  };
  const Shape shapes[] = {{40, 24, 8, 2, false}, {64, 48, 64, 6, false}, {96, 40, 8, 2, true}};
  for (const Shape sh : shapes) {
    for (const at::ScalarType dtype : dtypes(sh.int8)) {
      at::manual_seed(static_cast<uint64_t>(sh.hidden + sh.experts));
      auto experts = sh.int8 ? make_int8_experts(sh.experts, sh.hidden, sh.inter)
                             : make_experts(sh.experts, sh.hidden, sh.inter, dtype);
      if (sh.hidden == 40) {  // an expert another rank holds (expert parallelism)
        experts[3] = ExpertWeights{};
        experts[3].remote = true;
      }
      const ExpertTable table = make_expert_table(experts);
      ASSERT_TRUE(table.defined()) << table.why;
      const int64_t elem = sh.int8 ? 1 : static_cast<int64_t>(c10::elementSize(dtype));
      EXPECT_EQ(table.aligned, (sh.hidden * elem) % 16 == 0 && (sh.inter * elem) % 16 == 0);  // else scalar loads
      ExpertTable staged = table;
      staged.fused_token = false;
      const at::Tensor x = at::randn({1, sh.hidden}).to(dtype);
      Routing r = fixed_routing(random_ids(1, sh.experts, sh.top_k), dtype == at::kFloat ? at::kFloat : dtype);
      if (sh.hidden == 40) r.expert_ids[0][0] = 3;  // the remote expert
      const std::string what = fmt::format("H{} I{} E{} k{} {}{}", sh.hidden, sh.inter, sh.experts, sh.top_k,
                                           name_of(dtype), sh.int8 ? " int8" : "");
      reset_launches();
      const at::Tensor fused = run_both_orders([&] { return dispatch(x, r, experts, &table).out; }, same_bytes);
      EXPECT_EQ(launches(), 2 * 2) << what << ": two launches a schedule";
      const at::Tensor apart = dispatch(x, r, experts, &staged).out;
      EXPECT_TRUE(same_bytes(fused, apart))
          << what << ": max diff " << (fused.to(at::kDouble) - apart.to(at::kDouble)).abs().max().item<double>();
      for (const int loads : {0, km::kExpertLoadsInFlightWide}) {
        ExpertTable variant = table;
        variant.one_row = true;
        variant.loads_in_flight = loads;
        EXPECT_TRUE(same_bytes(fused, dispatch(x, r, experts, &variant).out)) << what << ": loads " << loads;
      }
      const at::Tensor ref = moe_dispatch(x, r, experts, Activation::SiLU, Backend::Reference);
      test::expect_close(fused, ref, dispatch_tolerance(dtype, 4), what + " vs reference");
    }
  }
  // Repeated and out-of-range ids: the two launches still equal the staged kernels (an id outside
  // 0..E-1 is dropped on both, which moe_route never makes).
  at::manual_seed(11);
  const auto experts = make_experts(8, 64, 32, at::kBFloat16);
  const ExpertTable table = make_expert_table(experts);
  ExpertTable staged = table;
  staged.fused_token = false;
  const at::Tensor x = at::randn({1, 64}).to(at::kBFloat16);
  for (const std::vector<int64_t>& ids : std::vector<std::vector<int64_t>>{{5, 5, 1}, {2, 9, -1, 0}}) {
    const Routing r = fixed_routing(at::tensor(ids, at::kLong).view({1, -1}), at::kBFloat16);
    EXPECT_TRUE(same_bytes(dispatch(x, r, experts, &table).out, dispatch(x, r, experts, &staged).out))
        << fmt::format("ids {}", fmt::join(ids, ","));
  }
}

// DeepSeekMoE's shared experts folded in the table (two experts' width): the table's columns
// point at them, the one-token dispatch returns the sum with them added, within the tolerance of
// the reference dispatch plus the shared MLP; the staged path (shared MLP apart) agrees; another
// MLP than the table's is not folded.
TEST_F(MoeDispatchSim, SharedExpertsRunInsideTheTwoLaunches) {
  for (const at::ScalarType dtype : dtypes(false)) {
    at::manual_seed(7);
    const int64_t hidden = 64, inter = 32, num = 16;
    const auto experts = make_experts(num, hidden, inter, dtype);
    const GatedMlpWeights shared = make_shared_mlp(2, hidden, inter, dtype);
    const ExpertTable table = make_expert_table(experts, &shared);
    ASSERT_EQ(table.shared_slots, 2) << table.shared_why;
    ASSERT_EQ(table.pointers.sizes(), (std::vector<int64_t>{3, num + 2}));
    const int64_t elem = static_cast<int64_t>(c10::elementSize(dtype));
    const auto base = reinterpret_cast<int64_t>(shared.gate_up.weight.const_data_ptr());
    for (int64_t j = 0; j < 2; ++j) {  // column E + j: gate rows j I.., up rows 2I + j I.., the whole down
      EXPECT_EQ(table.pointers[0][num + j].item<int64_t>(), base + j * inter * hidden * elem) << j;
      EXPECT_EQ(table.pointers[1][num + j].item<int64_t>(), base + (2 * inter + j * inter) * hidden * elem) << j;
      EXPECT_EQ(table.pointers[2][num + j].item<int64_t>(),
                reinterpret_cast<int64_t>(shared.down.weight.const_data_ptr()))
          << j;
    }
    const at::Tensor x = at::randn({1, hidden}).to(dtype);
    const Routing r = fixed_routing(random_ids(1, num, 6), dtype);
    const std::string what = fmt::format("DeepSeekMoE-like, {}", name_of(dtype));
    const detail::CudaDispatch d = run_both_orders(
        [&] { return dispatch(x, r, experts, &table, &shared); },
        [](const detail::CudaDispatch& a, const detail::CudaDispatch& b) { return same_bytes(a.out, b.out); });
    EXPECT_TRUE(d.with_shared) << what;
    const at::Tensor ref = moe_dispatch(x, r, experts, Activation::SiLU, Backend::Reference, nullptr, nullptr, &shared);
    test::expect_close(d.out, ref, dispatch_tolerance(dtype, 4), what + " vs reference");
    ExpertTable staged = table;
    staged.fused_token = false;
    const detail::CudaDispatch s = dispatch(x, r, experts, &staged, &shared);
    EXPECT_FALSE(s.with_shared) << what << ": the staged path adds the shared MLP apart";
    test::expect_close(s.out + gated_mlp(x, shared, Activation::SiLU, Backend::Reference), d.out,
                       dispatch_tolerance(dtype, 4), what + " vs staged");
    // Another MLP than the one the table folded: the routed sum only, the caller adds it.
    const GatedMlpWeights other = make_shared_mlp(2, hidden, inter, dtype);
    const detail::CudaDispatch o = dispatch(x, r, experts, &table, &other);
    EXPECT_FALSE(o.with_shared) << what;
    EXPECT_TRUE(same_bytes(o.out, dispatch(x, r, experts, &table).out)) << what;
  }
}

// The decode path for a few tokens (permute, the GEMV over the table twice, the combine; no host
// sync), and any token count while the stream is captured into a CUDA graph: dense and int8
// experts, against the reference; check_expert is left to the prefill path.
TEST_F(MoeDispatchSim, DecodeStepsRunTheGemvOverTheTable) {
  for (const bool int8 : {false, true}) {
    for (const at::ScalarType dtype : dtypes(int8)) {
      at::manual_seed(3);
      const auto experts = int8 ? make_int8_experts(8, 64, 48) : make_experts(8, 64, 48, dtype);
      const ExpertTable table = make_expert_table(experts);
      ASSERT_TRUE(table.defined()) << table.why;
      for (const int64_t tokens : {int64_t{3}, kMoeDecodeMaxTokens + 4}) {
        for (const bool capturing : {false, true}) {
          if (tokens <= kMoeDecodeMaxTokens && capturing) continue;
          set_stream_capturing(capturing);
          const at::Tensor x = at::randn({tokens, 64}).to(dtype);
          const Routing r = fixed_routing(random_ids(tokens, 8, 2), dtype);
          const std::string what = fmt::format("{} tokens{} {}{}", tokens, capturing ? " (capturing)" : "",
                                               name_of(dtype), int8 ? " int8" : "");
          Checked checked;
          reset_launches();
          const at::Tensor out = dispatch(x, r, experts, &table, nullptr, &checked).out;
          const bool gemv = tokens <= kMoeDecodeMaxTokens || capturing;
          if (gemv) {
            EXPECT_EQ(launches(), 4) << what << ": permute, GEMV, GEMV, combine";
            EXPECT_TRUE(checked.ids.empty()) << what;
          } else {
            EXPECT_EQ(launches(), 2) << what << ": permute and combine around the per-expert GEMMs";
            EXPECT_FALSE(checked.ids.empty()) << what;
          }
          const at::Tensor ref = moe_dispatch(x, r, experts, Activation::SiLU, Backend::Reference);
          test::expect_close(out, ref, dispatch_tolerance(dtype, 4), what + " vs reference");
        }
      }
      set_stream_capturing(false);
    }
  }
}

// Prefill without the grouped path (the executor's device is no CUDA device for
// at::_grouped_mm): the counts read on the host, a GEMM chain per expert over the permuted rows,
// the combine kernel. Experts no token chose are not checked; every token on one expert; an id
// outside 0..E-1 is refused by name; without the table the same path runs.
TEST_F(MoeDispatchSim, PrefillReadsTheCountsAndRunsEachExpert) {
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    at::manual_seed(5);
    const auto experts = make_experts(8, 48, 40, dtype);
    const ExpertTable table = make_expert_table(experts);
    const int64_t tokens = 40;
    const at::Tensor x = at::randn({tokens, 48}).to(dtype);
    Routing r = fixed_routing(random_ids(tokens, 8, 2), dtype);
    r.expert_ids.select(1, 0).fill_(6);       // expert 6 in every token's first slot
    r.expert_ids.select(1, 1).remainder_(4);  // experts 4, 5 and 7 get nothing else
    r.expert_ids.select(1, 1).masked_fill_(r.expert_ids.select(1, 1) == 6, 0);
    const std::string what = fmt::format("prefill {}", name_of(dtype));
    Checked checked;
    const at::Tensor out =
        run_both_orders([&] { return dispatch(x, r, experts, &table, nullptr, &checked).out; }, same_bytes);
    const at::Tensor unique = std::get<0>(at::_unique(r.expert_ids.reshape({-1}), /*sorted=*/true));
    const std::vector<int64_t> used(unique.data_ptr<int64_t>(), unique.data_ptr<int64_t>() + unique.numel());
    // run_both_orders ran it twice: each used expert checked once a run, in ascending id.
    std::vector<int64_t> twice = used;
    twice.insert(twice.end(), used.begin(), used.end());
    EXPECT_EQ(checked.ids, twice) << what;
    const at::Tensor ref = moe_dispatch(x, r, experts, Activation::SiLU, Backend::Reference);
    test::expect_close(out, ref, dispatch_tolerance(dtype, 4), what + " vs reference");
    EXPECT_TRUE(same_bytes(out, dispatch(x, r, experts, nullptr).out)) << what << ": without the table";
  }
  const auto experts = make_experts(4, 32, 16, at::kFloat);
  const at::Tensor x = at::randn({20, 32});
  Routing r = fixed_routing(random_ids(20, 4, 2), at::kFloat);
  r.expert_ids[7][1] = 4;
  try {
    dispatch(x, r, experts, nullptr);
    ADD_FAILURE() << "an expert id outside 0..3 was not refused";
  } catch (const ::effarch::OpError& e) {
    EXPECT_NE(std::string(e.what()).find("expert_ids holds 1 id(s) outside 0..3"), std::string::npos) << e.what();
  }
}

// The router kernel on precomputed logits and with the logits' product in its launch (one block
// a token) against the reference router, every router kind and dtype: the same experts up to a
// tie within the reference scores' resolution, and weights of the reference's dtype.
TEST_F(MoeDispatchSim, RouterMatchesTheReference) {
  int64_t flips = 0, slots = 0;
  for (const RouterKind kind :
       {RouterKind::SoftmaxFp32Renormalized, RouterKind::SoftmaxFp32, RouterKind::SoftmaxModelDtype}) {
    for (const at::ScalarType dtype : dtypes(false)) {
      for (const auto& [tokens, experts, k] :
           std::vector<std::tuple<int64_t, int64_t, int64_t>>{{1, 8, 2}, {5, 64, 6}}) {
        at::manual_seed(static_cast<uint64_t>(tokens * 100 + experts));
        const at::Tensor x = at::randn({tokens, 96}).to(dtype);
        const at::Tensor w = (at::randn({experts, 96}) * 0.1).to(dtype);
        const std::string what = fmt::format("{} N{} E{} k{} {}", kind_name(kind), tokens, experts, k, name_of(dtype));
        const Routing ref = moe_route(x, w, k, kind, Backend::Reference);
        const Routing logits = detail::moe_route_cuda(at::mm(x, w.t()), k, kind);
        const Routing fused = run_both_orders([&] { return detail::moe_route_tokens_cuda(x, w, k, kind); },
                                              [](const Routing& a, const Routing& b) {
                                                return same_bytes(a.expert_ids, b.expert_ids) &&
                                                       same_bytes(a.weights, b.weights) && same_bytes(a.probs, b.probs);
                                              });
        const double tol = kind == RouterKind::SoftmaxModelDtype && dtype != at::kFloat ? 1e-2 : 1e-5;
        const test::Tolerance weight_tol{1e-6, kind == RouterKind::SoftmaxFp32Renormalized ? 1e-5 : tol};
        flips += expect_same_topk(logits, ref, tol, weight_tol, what + " (logits)");
        flips += expect_same_topk(fused, ref, tol, weight_tol, what + " (in one launch)");
        test::expect_close(fused.probs, ref.probs, {1e-7, tol}, what + " probs");
        slots += 2 * tokens * k;
      }
    }
  }
  EXPECT_LE(flips * 20, slots) << flips << " of " << slots << " slots chose another expert";
}

}  // namespace
}  // namespace effarch::sim
