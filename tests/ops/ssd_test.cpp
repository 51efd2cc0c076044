// Mamba-2 SSD: the chunked reference against the recurrence written out token by token in
// float64 (L = 1, L < chunk, a multiple of it, not a multiple, many chunks; 1 and several
// groups; from zeros and from a state; dt clamped), decode steps continuing a prefill, bf16
// inputs, the gated RMSNorm per group, argument errors.

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <string>

#include <fmt/format.h>

#include "../test_util.h"
#include "tolerance.h"
#include "effarch/common/error.h"
#include "effarch/ops/ssd.h"

namespace effarch::ops {
namespace {

struct Problem {
  at::Tensor x, dt, B, C;  // [Bt, L, H, P], [Bt, L, H], [Bt, L, G, N]
  SsdArgs args;
  at::Tensor state0;  // [Bt, H, P, N]
};

Problem random_problem(int64_t batch, int64_t len, int64_t heads, int64_t p, int64_t groups, int64_t n, int64_t chunk,
                       at::ScalarType dtype) {
  Problem pr;
  pr.x = at::randn({batch, len, heads, p}).to(dtype);
  pr.dt = (at::randn({batch, len, heads}) * 0.5 - 1.0).to(dtype);
  pr.B = at::randn({batch, len, groups, n}).to(dtype);
  pr.C = at::randn({batch, len, groups, n}).to(dtype);
  pr.args.A = -at::exp(at::randn({heads}) * 0.5);
  pr.args.D = at::randn({heads}).to(dtype);
  pr.args.dt_bias = (at::randn({heads}) * 0.3).to(dtype);
  pr.args.chunk_size = chunk;
  pr.state0 = at::randn({batch, heads, p, n});
  return pr;
}

struct Naive {
  at::Tensor y, state;
};
Naive naive(const Problem& pr, bool from_state) {
  const auto d = [](const at::Tensor& t) { return t.to(at::kDouble); };
  const int64_t b = pr.x.size(0), len = pr.x.size(1), h = pr.x.size(2), p = pr.x.size(3);
  const int64_t g = pr.B.size(2), n = pr.B.size(3);
  at::Tensor s = from_state ? d(pr.state0).clone() : at::zeros({b, h, p, n}, at::kDouble);
  at::Tensor y = at::zeros({b, len, h, p}, at::kDouble);
  for (int64_t t = 0; t < len; ++t) {
    for (int64_t hh = 0; hh < h; ++hh) {
      const int64_t gg = hh / (h / g);
      at::Tensor dt = d(pr.dt.select(1, t).select(1, hh)) + d(*pr.args.dt_bias)[hh];  // [Bt]
      dt = at::where(dt > 20, dt, at::log1p(at::exp(dt)));
      dt = at::clamp(dt, pr.args.dt_min, pr.args.dt_max);
      const at::Tensor xt = d(pr.x.select(1, t).select(1, hh));                        // [Bt, P]
      const at::Tensor bt = d(pr.B.select(1, t).select(1, gg));                        // [Bt, N]
      const at::Tensor ct = d(pr.C.select(1, t).select(1, gg));
      const at::Tensor sh = s.select(1, hh);                                           // [Bt, P, N]
      sh.copy_(at::exp(dt * d(pr.args.A)[hh]).view({b, 1, 1}) * sh +
               (dt.view({b, 1}) * bt).unsqueeze(1) * xt.unsqueeze(2));
      y.select(1, t).select(1, hh).copy_((sh * ct.unsqueeze(1)).sum(2) + d(*pr.args.D)[hh] * xt);
    }
  }
  return {y, s};
}

void expect_close(const at::Tensor& actual, const at::Tensor& expected, double tol, const std::string& what) {
  test::expect_close(actual, expected, {tol, tol}, what);
}

struct Case {
  int64_t batch, len, heads, p, groups, n, chunk;
};

class SsdSizes : public ::testing::TestWithParam<Case> {};

TEST_P(SsdSizes, MatchesTokenByTokenRecurrence) {
  const Case c = GetParam();
  for (const bool from_state : {false, true}) {
    at::manual_seed(static_cast<uint64_t>(c.len * 7 + c.chunk + c.groups + from_state));
    const Problem pr = random_problem(c.batch, c.len, c.heads, c.p, c.groups, c.n, c.chunk, at::kFloat);
    const Naive ref = naive(pr, from_state);
    at::Tensor state = from_state ? pr.state0.clone() : at::full({c.batch, c.heads, c.p, c.n}, 3.0f);
    const at::Tensor y = ssd_chunk_scan(pr.x, pr.dt, pr.B, pr.C, pr.args, state, from_state);
    const std::string what = fmt::format("L={} chunk={} G={} from_state={}", c.len, c.chunk, c.groups, from_state);
    EXPECT_EQ(y.scalar_type(), at::kFloat);
    expect_close(y, ref.y, 1e-4, what + " y");
    expect_close(state, ref.state, 1e-4, what + " state");
  }
}

INSTANTIATE_TEST_SUITE_P(Awkward, SsdSizes,
                         ::testing::Values(Case{1, 1, 4, 3, 1, 5, 4}, Case{2, 3, 4, 3, 2, 5, 8},   // L < chunk
                                           Case{1, 8, 6, 2, 3, 4, 4}, Case{2, 13, 4, 5, 2, 3, 4},  // multiple / not
                                           Case{1, 57, 8, 4, 1, 6, 5}, Case{1, 33, 4, 4, 4, 2, 1}),
                         [](const auto& info) {
                           const Case& c = info.param;
                           return fmt::format("L{}_Q{}_H{}_G{}", c.len, c.chunk, c.heads, c.groups);
                         });

TEST(Ssd, ClampedDtAndBf16) {
  at::manual_seed(9);
  Problem pr = random_problem(2, 19, 4, 3, 2, 4, 6, at::kBFloat16);
  pr.args.dt_min = 0.2;
  pr.args.dt_max = 0.9;
  const Naive ref = naive(pr, false);
  at::Tensor state = at::zeros({2, 4, 3, 4});
  const at::Tensor y = ssd_chunk_scan(pr.x, pr.dt, pr.B, pr.C, pr.args, state, false);
  expect_close(y, ref.y, 1e-4, "bf16 inputs, fp32 inside");
  expect_close(state, ref.state, 1e-4, "state");
}

// Long chunks whose first half decays strongly (dt A about -10 a token: the cumulative sums
// reach about -1300) and whose second half barely decays (dt about 0.02), so many decays near 1
// matter there. Taken as exp(cumsum[i] - cumsum[j]), those keep only ~1e-4 of their precision
// (the ulp of -1300); summed within the segment, and the decays to the chunk's end as suffix
// sums, they keep fp32's. Errors relative to the largest output and state entry.
TEST(Ssd, LongChunkWithStrongDecayKeepsPrecision) {
  at::manual_seed(12);
  Problem pr = random_problem(1, 512, 2, 3, 1, 4, 256, at::kFloat);  // two full chunks
  const at::Tensor half = at::ones({1, 128, 2});
  const at::Tensor chunk = at::cat({half * 4.0, half * -3.9}, 1);  // softplus: about 4, then 0.02
  pr.dt = at::cat({chunk, chunk}, 1) + at::randn({1, 512, 2}) * 0.1;
  pr.args.A = -(at::rand({2}) * 2.0 + 1.5);
  const Naive ref = naive(pr, false);
  at::Tensor state = at::zeros({1, 2, 3, 4});
  const at::Tensor y = ssd_chunk_scan(pr.x, pr.dt, pr.B, pr.C, pr.args, state, false);
  const auto rel = [](const at::Tensor& a, const at::Tensor& e) {
    return (a.to(at::kDouble) - e).abs().max().item<double>() / e.abs().max().item<double>();
  };
  EXPECT_LE(rel(y, ref.y), 2e-6) << "y";  // 1.2e-7 here; 2.2e-5 from differences of cumsums
  EXPECT_LE(rel(state, ref.state), 2e-6) << "state";  // 4e-7; 5.4e-5
}

TEST(Ssd, DecodeStepsContinuePrefill) {
  at::manual_seed(10);
  const int64_t prompt = 11, steps = 5;
  const Problem pr = random_problem(2, prompt + steps, 4, 3, 2, 5, 4, at::kFloat);
  at::Tensor whole_state = at::zeros({2, 4, 3, 5});
  const at::Tensor whole = ssd_chunk_scan(pr.x, pr.dt, pr.B, pr.C, pr.args, whole_state, false);
  at::Tensor state = at::zeros({2, 4, 3, 5});
  const auto head = [&](const at::Tensor& t) { return t.narrow(1, 0, prompt); };
  ssd_chunk_scan(head(pr.x), head(pr.dt), head(pr.B), head(pr.C), pr.args, state, false);
  for (int64_t t = prompt; t < prompt + steps; ++t) {
    const auto at_t = [&](const at::Tensor& x) { return x.select(1, t); };
    const at::Tensor yt = ssd_state_update(at_t(pr.x), at_t(pr.dt), at_t(pr.B), at_t(pr.C), pr.args, state);
    expect_close(yt, whole.select(1, t), 1e-5, fmt::format("decode step {}", t));
  }
  expect_close(state, whole_state, 1e-5, "state after decode");
}

TEST(Ssd, GatedRmsNormPerGroup) {
  at::manual_seed(11);
  const at::Tensor y = at::randn({2, 3, 12}), z = at::randn({2, 3, 12}), w = at::randn({12});
  for (const int64_t group : {12, 4, 3}) {
    const at::Tensor out = gated_rms_norm(y, z, w, group, 1e-5);
    const at::Tensor h = (y * at::silu(z)).to(at::kDouble).view({2, 3, 12 / group, group});
    const at::Tensor ref = (h / at::sqrt(h.pow(2).mean(-1, true) + 1e-5)).view({2, 3, 12}) * w.to(at::kDouble);
    expect_close(out, ref, 1e-5, fmt::format("group size {}", group));
  }
  EXPECT_THROW_WITH(gated_rms_norm(y, z, w, 5, 1e-5), OpError, {"gated_rms_norm", "group size 5", "12 channels"});
  EXPECT_THROW_WITH(gated_rms_norm(y, z.narrow(-1, 0, 6), w, 4, 1e-5), OpError, {"z", "[2, 3, 6]", "[2, 3, 12]"});
  EXPECT_THROW_WITH(gated_rms_norm(y, z, w.narrow(0, 0, 6), 4, 1e-5), OpError, {"weight", "[12]"});
  EXPECT_THROW_WITH(gated_rms_norm(y, z.to(at::kLong), w, 4, 1e-5), OpError, {"z", "dtype"});
}

TEST(Ssd, ArgumentErrors) {
  const Problem pr = random_problem(1, 4, 4, 3, 2, 5, 4, at::kFloat);
  at::Tensor bad = at::zeros({1, 4, 3, 4});
  EXPECT_THROW_WITH(ssd_chunk_scan(pr.x, pr.dt, pr.B, pr.C, pr.args, bad, false), OpError, {"state", "[1, 4, 3, 5]"});
  at::Tensor state = at::zeros({1, 4, 3, 5});
  const Problem three = random_problem(1, 4, 4, 3, 3, 5, 4, at::kFloat);
  EXPECT_THROW_WITH(ssd_chunk_scan(three.x, three.dt, three.B, three.C, pr.args, state, false), OpError,
                    {"3 groups do not divide 4 heads"});
  EXPECT_THROW_WITH(ssd_chunk_scan(pr.x, pr.dt.narrow(1, 0, 3), pr.B, pr.C, pr.args, state, false), OpError, {"dt"});
  EXPECT_THROW_WITH(ssd_state_update(pr.x.select(1, 0), pr.dt.select(1, 0), pr.B.select(1, 0), pr.C.select(1, 0),
                                     pr.args, bad),
                    OpError, {"ssd_state_update", "state"});
}

}  // namespace
}  // namespace effarch::ops
