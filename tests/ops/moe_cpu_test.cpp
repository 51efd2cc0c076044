// The CPU MoE dispatch (src/ops/cpu/moe_dispatch.cpp) against the ATen reference dispatch
// (src/ops/moe.cpp), same routing, same weights: decode-sized groups (the grouped GEMV), prefill
// sizes (a GEMM per expert), gate/up fused or separate, biases, every float dtype, 64 experts
// with top-6, every token on one expert, experts nobody chose left undefined.

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <fmt/format.h>

#include "tolerance.h"
#include "effarch/ops/moe.h"

namespace effarch::ops {
namespace {

// Experts as Weights::gated_mlp builds them when `fused`: gate and up are row views of gate_up.
std::vector<ExpertWeights> make_experts(int64_t num, int64_t hidden, int64_t inter, at::ScalarType dtype, bool fused,
                                        bool bias) {
  std::vector<ExpertWeights> experts;
  const auto b = [&](int64_t n) { return bias ? std::optional<at::Tensor>((at::randn({n}) * 0.1).to(dtype)) : std::nullopt; };
  for (int64_t e = 0; e < num; ++e) {
    ExpertWeights w;
    const at::Tensor gate_up = (at::randn({2 * inter, hidden}) * 0.2).to(dtype);
    const std::optional<at::Tensor> gate_up_bias = b(2 * inter);
    w.gate = Linear(gate_up.narrow(0, 0, inter).contiguous(),
                    bias ? std::optional<at::Tensor>(gate_up_bias->narrow(0, 0, inter)) : std::nullopt);
    w.up = Linear(gate_up.narrow(0, inter, inter).contiguous(),
                  bias ? std::optional<at::Tensor>(gate_up_bias->narrow(0, inter, inter)) : std::nullopt);
    if (fused) {
      w.gate_up = Linear(gate_up, gate_up_bias);
      w.gate.weight = gate_up.narrow(0, 0, inter);
      w.up.weight = gate_up.narrow(0, inter, inter);
    }
    w.down = Linear((at::randn({hidden, inter}) * 0.2).to(dtype), b(hidden));
    experts.push_back(std::move(w));
  }
  return experts;
}

struct Case {
  int64_t tokens, experts, top_k;
};

std::string case_name(const Case& c) { return fmt::format("N{}_E{}_k{}", c.tokens, c.experts, c.top_k); }

class MoeDispatchCpu : public ::testing::TestWithParam<Case> {};

TEST_P(MoeDispatchCpu, MatchesTheReference) {
  const Case c = GetParam();
  const int64_t hidden = 40, inter = 36;  // not multiples of the kernels' 16-wide steps
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    for (const bool fused : {true, false}) {
      for (const bool bias : {false, true}) {
        at::manual_seed(static_cast<uint64_t>(c.tokens * 31 + c.experts * 7 + c.top_k) + (fused ? 1 : 0));
        const at::Tensor x = at::randn({c.tokens, hidden}).to(dtype);
        const auto experts = make_experts(c.experts, hidden, inter, dtype, fused, bias);
        for (const RouterKind kind : {RouterKind::SoftmaxFp32Renormalized, RouterKind::SoftmaxModelDtype}) {
          const Routing r = moe_route(x, at::randn({c.experts, hidden}).to(dtype), c.top_k, kind);
          const at::Tensor cpu = moe_dispatch(x, r, experts, Activation::SiLU, Backend::Cpu);
          const at::Tensor ref = moe_dispatch(x, r, experts, Activation::SiLU, Backend::Reference);
          EXPECT_EQ(cpu.scalar_type(), dtype);
          // Low precision: the products round to the dtype between gate/up, the activation and
          // down, and a one-ulp difference in one of them carries through: twice the rounding.
          test::Tolerance tol = test::rounding_tolerance(dtype);
          if (dtype != at::kFloat) tol = {2 * tol.atol, 2 * tol.rtol};
          test::expect_close(cpu, ref, tol,
                             fmt::format("{} {} fused {} bias {} router {}", case_name(c), c10::toString(dtype),
                                         fused, bias, static_cast<int>(kind)));
        }
      }
    }
  }
}

// N 1-2: every expert gets at most 4 rows (the grouped GEMV); 5 tokens on 4 experts top-4: every
// expert gets 5 rows (a GEMM each); 64 experts top-6 (DeepSeekMoE's shape); 257 tokens.
INSTANTIATE_TEST_SUITE_P(Sizes, MoeDispatchCpu,
                         ::testing::Values(Case{1, 8, 2}, Case{2, 8, 2}, Case{3, 4, 3}, Case{5, 4, 4}, Case{1, 64, 6},
                                           Case{40, 64, 6}, Case{257, 8, 2}, Case{33, 8, 1}),
                         [](const auto& info) { return case_name(info.param); });

TEST(MoeDispatchCpuOnly, EveryTokenOnOneExpertAndUnchosenExpertsUndefined) {
  at::manual_seed(11);
  for (const int64_t tokens : {1, 3, 50}) {
    const at::Tensor x = at::randn({tokens, 24});
    auto experts = make_experts(6, 24, 20, at::kFloat, true, false);
    for (size_t e = 0; e < experts.size(); ++e) {
      if (e != 4) experts[e] = ExpertWeights{};  // never read: running one would throw
    }
    Routing r;
    r.expert_ids = at::full({tokens, 1}, 4, at::kLong);
    r.weights = at::rand({tokens, 1});
    const at::Tensor cpu = moe_dispatch(x, r, experts, Activation::SiLU, Backend::Cpu);
    const at::Tensor ref = moe_dispatch(x, r, experts, Activation::SiLU, Backend::Reference);
    test::expect_close(cpu, ref, test::rounding_tolerance(at::kFloat), fmt::format("{} tokens", tokens));
  }
}

TEST(MoeDispatchCpuOnly, OtherActivationsAndZeroTokens) {
  at::manual_seed(12);
  const at::Tensor x = at::randn({6, 16});
  const auto experts = make_experts(4, 16, 12, at::kFloat, true, false);
  const Routing r = moe_route(x, at::randn({4, 16}), 2, RouterKind::SoftmaxFp32);
  for (const Activation act : {Activation::GeluTanh, Activation::Relu}) {
    test::expect_close(moe_dispatch(x, r, experts, act, Backend::Cpu),
                       moe_dispatch(x, r, experts, act, Backend::Reference), test::rounding_tolerance(at::kFloat),
                       "activation");
  }
  Routing none;
  none.expert_ids = at::zeros({0, 2}, at::kLong);
  none.weights = at::zeros({0, 2});
  EXPECT_EQ(moe_dispatch(x.narrow(0, 0, 0), none, experts, Activation::SiLU, Backend::Cpu).sizes(),
            (std::vector<int64_t>{0, 16}));
}

// --weights int8 experts, as Weights::gated_mlp builds them: gate_up quantised, gate and up views
// of its rows and scales.
std::vector<ExpertWeights> quantized(const std::vector<ExpertWeights>& experts) {
  std::vector<ExpertWeights> q;
  for (const ExpertWeights& w : experts) {
    ExpertWeights e;
    e.gate_up = quantize_int8(w.gate_up);
    const int64_t inter = w.inter();
    e.gate = Linear::int8(e.gate_up.weight.narrow(0, 0, inter), e.gate_up.scale.narrow(0, 0, inter));
    e.up = Linear::int8(e.gate_up.weight.narrow(0, inter, inter), e.gate_up.scale.narrow(0, inter, inter));
    e.down = quantize_int8(w.down);
    q.push_back(std::move(e));
  }
  return q;
}

TEST(MoeDispatchCpuOnly, Int8ExpertsMatchTheReference) {
  at::manual_seed(13);
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    for (const int64_t tokens : {1, 2, 37}) {  // grouped GEMV, then GEMMs
      const at::Tensor x = at::randn({tokens, 40}).to(dtype);
      const auto experts = quantized(make_experts(8, 40, 36, dtype, true, false));
      const Routing r = moe_route(x, at::randn({8, 40}).to(dtype), 2, RouterKind::SoftmaxFp32Renormalized);
      test::Tolerance tol = test::rounding_tolerance(dtype);
      if (dtype != at::kFloat) tol = {2 * tol.atol, 2 * tol.rtol};
      test::expect_close(moe_dispatch(x, r, experts, Activation::SiLU, Backend::Cpu),
                         moe_dispatch(x, r, experts, Activation::SiLU, Backend::Reference), tol,
                         fmt::format("{} tokens {}", tokens, c10::toString(dtype)));
    }
  }
}

}  // namespace
}  // namespace effarch::ops
