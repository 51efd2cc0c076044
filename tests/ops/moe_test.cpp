// MoE router and dispatch against plainly written versions: the router's normalisation per model,
// and the dispatch against a dense loop over every expert for every token (awkward sizes: one
// token, experts nobody chose, top-1, top-k = E, bf16); experts with no tokens are never read.

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <fmt/format.h>

#include "../test_util.h"
#include "tolerance.h"
#include "effarch/common/error.h"
#include "effarch/ops/moe.h"

namespace effarch::ops {
namespace {


std::vector<ExpertWeights> random_experts(int64_t num, int64_t hidden, int64_t inter, at::ScalarType dtype) {
  std::vector<ExpertWeights> e;
  for (int64_t i = 0; i < num; ++i) {
    e.push_back({(at::randn({inter, hidden}) * 0.2).to(dtype), (at::randn({inter, hidden}) * 0.2).to(dtype),
                 (at::randn({hidden, inter}) * 0.2).to(dtype)});
  }
  return e;
}

// Every expert on every token in float64, kept where the token chose it: the definition.
at::Tensor naive_moe(const at::Tensor& x, const Routing& r, const std::vector<ExpertWeights>& experts) {
  const auto d = [](const at::Tensor& t) { return t.to(at::kDouble); };
  const int64_t n = x.size(0), k = r.expert_ids.size(1);
  at::Tensor out = at::zeros({n, x.size(1)}, at::kDouble);
  for (int64_t t = 0; t < n; ++t) {
    const at::Tensor xt = d(x[t]).unsqueeze(0);
    for (size_t e = 0; e < experts.size(); ++e) {
      const ExpertWeights& w = experts[e];
      const at::Tensor y = at::linear(at::silu(at::linear(xt, d(w.gate.weight))) * at::linear(xt, d(w.up.weight)), d(w.down.weight))[0];
      for (int64_t j = 0; j < k; ++j) {
        if (r.expert_ids[t][j].item<int64_t>() == static_cast<int64_t>(e)) out[t] += y * d(r.weights[t][j]);
      }
    }
  }
  return out;
}

double max_excess(const at::Tensor& actual, const at::Tensor& expected, double atol, double rtol) {
  return test::max_excess(actual, expected, {atol, rtol});
}

struct Case {
  int64_t tokens, experts, top_k;
};

class MoeDispatch : public ::testing::TestWithParam<Case> {};

TEST_P(MoeDispatch, MatchesDenseLoopOverEveryExpert) {
  const Case c = GetParam();
  for (const RouterKind kind :
       {RouterKind::SoftmaxFp32Renormalized, RouterKind::SoftmaxFp32, RouterKind::SoftmaxModelDtype}) {
    at::manual_seed(static_cast<uint64_t>(c.tokens * 13 + c.experts * 7 + c.top_k + static_cast<int>(kind)));
    const int64_t hidden = 12, inter = 20;
    const at::Tensor x = at::randn({c.tokens, hidden});
    const at::Tensor router = at::randn({c.experts, hidden});
    const auto experts = random_experts(c.experts, hidden, inter, at::kFloat);
    const Routing r = moe_route(x, router, c.top_k, kind);
    ASSERT_EQ(r.expert_ids.sizes(), (std::vector<int64_t>{c.tokens, c.top_k}));
    const at::Tensor out = moe_dispatch(x, r, experts);
    EXPECT_LE(max_excess(out, naive_moe(x, r, experts), 1e-5, 1e-5), 0.0)
        << fmt::format("N={} E={} k={} router {}", c.tokens, c.experts, c.top_k, static_cast<int>(kind));
  }
}

INSTANTIATE_TEST_SUITE_P(Awkward, MoeDispatch,
                         ::testing::Values(Case{1, 8, 2}, Case{7, 5, 2}, Case{33, 8, 1}, Case{9, 4, 4}, Case{64, 16, 3}),
                         [](const auto& info) {
                           const Case& c = info.param;
                           return fmt::format("N{}_E{}_k{}", c.tokens, c.experts, c.top_k);
                         });

TEST(MoeRoute, NormalisationPerModel) {
  at::manual_seed(3);
  const at::Tensor x = at::randn({10, 6});
  const at::Tensor router = at::randn({5, 6});
  const at::Tensor probs = at::softmax(at::linear(x, router).to(at::kDouble), -1);

  const Routing mixtral = moe_route(x, router, 2, RouterKind::SoftmaxFp32Renormalized);
  EXPECT_EQ(mixtral.weights.scalar_type(), at::kFloat);
  EXPECT_TRUE(at::allclose(mixtral.weights.sum(-1), at::ones({10}), 1e-6, 1e-6));  // renormalised
  const at::Tensor top = probs.gather(1, mixtral.expert_ids);
  EXPECT_TRUE(at::allclose(mixtral.weights.to(at::kDouble), top / top.sum(-1, true), 1e-6, 1e-6));
  // The chosen experts are the two most probable, in descending order.
  EXPECT_TRUE(at::equal(mixtral.expert_ids, std::get<1>(at::topk(probs, 2, -1))));

  const Routing jamba = moe_route(x, router, 2, RouterKind::SoftmaxFp32);
  EXPECT_TRUE(at::allclose(jamba.weights.to(at::kDouble), probs.gather(1, jamba.expert_ids), 1e-6, 1e-6));
  EXPECT_TRUE((jamba.weights.sum(-1) < 1.0).all().item<bool>());  // not renormalised
  EXPECT_TRUE(at::equal(jamba.expert_ids, std::get<1>(at::topk(probs, 2, -1))));  // the weights are of these

  // bf16: Jamba's weights are cast to the model dtype; DeepSeekMoE's softmax itself runs in it.
  const at::Tensor xb = x.to(at::kBFloat16), rb = router.to(at::kBFloat16);
  const Routing jb = moe_route(xb, rb, 2, RouterKind::SoftmaxFp32);
  EXPECT_EQ(jb.weights.scalar_type(), at::kBFloat16);
  const Routing ds = moe_route(xb, rb, 3, RouterKind::SoftmaxModelDtype);
  EXPECT_EQ(ds.weights.scalar_type(), at::kBFloat16);
  const at::Tensor scores_bf16 = at::softmax(at::linear(xb, rb), -1);
  EXPECT_TRUE(at::equal(ds.weights, scores_bf16.gather(1, ds.expert_ids)));
  // DeepSeekMoE's top 3 of its own bf16 scores (ties, which bf16 makes likely, broken as topk does).
  EXPECT_TRUE(at::equal(ds.expert_ids, std::get<1>(at::topk(scores_bf16, 3, -1))));
  EXPECT_EQ(ds.probs.scalar_type(), at::kFloat);
}

TEST(MoeDispatchOnly, Bf16RoundsOncePerExpert) {
  at::manual_seed(4);
  const at::Tensor x = at::randn({17, 16}).to(at::kBFloat16);
  const at::Tensor router = at::randn({6, 16}).to(at::kBFloat16);
  const auto experts = random_experts(6, 16, 24, at::kBFloat16);
  for (const RouterKind kind :
       {RouterKind::SoftmaxFp32Renormalized, RouterKind::SoftmaxFp32, RouterKind::SoftmaxModelDtype}) {
    const Routing r = moe_route(x, router, 2, kind);
    const at::Tensor out = moe_dispatch(x, r, experts);
    EXPECT_EQ(out.scalar_type(), at::kBFloat16);
    EXPECT_LE(max_excess(out, naive_moe(x, r, experts), 3e-2, 3e-2), 0.0);
  }
}

TEST(MoeDispatchOnly, ExpertsWithoutTokensAreNotRun) {
  // One token, top-2 of 8: six experts get nothing. Give them undefined weights: running any of
  // them would throw, so passing proves the dispatch touches only the chosen experts.
  at::manual_seed(5);
  const at::Tensor x = at::randn({1, 8});
  auto experts = random_experts(8, 8, 8, at::kFloat);
  const Routing r = moe_route(x, at::randn({8, 8}), 2, RouterKind::SoftmaxFp32Renormalized);
  const at::Tensor chosen = r.expert_ids[0];
  for (int64_t e = 0; e < 8; ++e) {
    if (!(chosen == e).any().item<bool>()) experts[static_cast<size_t>(e)] = ExpertWeights{};
  }
  EXPECT_NO_THROW(moe_dispatch(x, r, experts));
}

TEST(MoeDispatchOnly, ArgumentErrors) {
  const at::Tensor x = at::randn({4, 8});
  const auto experts = random_experts(3, 8, 8, at::kFloat);
  EXPECT_THROW_WITH(moe_route(x, at::randn({3, 8}), 4, RouterKind::SoftmaxFp32), OpError, {"top_k 4", "1..3"});
  EXPECT_THROW_WITH(moe_route(x, at::randn({3, 7}), 2, RouterKind::SoftmaxFp32), OpError, {"router_weight"});
  Routing r = moe_route(x, at::randn({3, 8}), 2, RouterKind::SoftmaxFp32);
  EXPECT_THROW_WITH(moe_dispatch(x.narrow(0, 0, 3), r, experts), OpError, {"expert_ids", "N = 3"});
  Routing bad = r;
  bad.expert_ids = r.expert_ids.clone().fill_(5);
  EXPECT_THROW_WITH(moe_dispatch(x, bad, experts), OpError, {"expert id", "3 experts"});
  bad.expert_ids = r.expert_ids.clone().fill_(-1);
  EXPECT_THROW_WITH(moe_dispatch(x, bad, experts), OpError, {"expert_ids", "negative"});

  // The experts that run are checked against x: shape, dtype. Route every token to expert 1.
  Routing to_one = r;
  to_one.expert_ids = at::ones({4, 1}, at::kLong);
  to_one.weights = at::ones({4, 1});
  auto wrong = experts;
  wrong[1].down = at::randn({8, 9});
  EXPECT_THROW_WITH(moe_dispatch(x, to_one, wrong), OpError, {"experts[1].down", "[8, 9]", "expected [8, 8]"});
  wrong = experts;
  wrong[1].up = at::randn({8, 7});
  EXPECT_THROW_WITH(moe_dispatch(x, to_one, wrong), OpError, {"experts[1].up", "[8, 7]"});
  wrong = experts;
  wrong[1].gate.weight = at::Tensor();
  EXPECT_THROW_WITH(moe_dispatch(x, to_one, wrong), OpError, {"experts[1].gate", "undefined"});
  wrong = experts;
  wrong[1] = {experts[1].gate.weight.to(at::kBFloat16), experts[1].up.weight.to(at::kBFloat16),
              experts[1].down.weight.to(at::kBFloat16)};
  EXPECT_THROW_WITH(moe_dispatch(x, to_one, wrong), OpError, {"experts[1]", "BFloat16", "x has Float"});
  wrong = experts;
  wrong[0].gate.weight = at::Tensor();  // expert 0 gets no token: never read, so never checked
  EXPECT_NO_THROW(moe_dispatch(x, to_one, wrong));
}

}  // namespace
}  // namespace effarch::ops
