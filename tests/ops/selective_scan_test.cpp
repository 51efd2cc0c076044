// selective_scan: the chunked ATen reference vs the recurrence written out token by token in
// doubles, on awkward sizes (L = 1, odd, one past a chunk, several chunks), with and without the
// optional D / z / delta bias, continuing from a state, bf16 inputs; decode steps continuing a
// prefill vs one prefill of the whole; argument errors. Both implementations on the CPU: the
// ATen reference (--backend reference) and the fused CPU kernel (auto), and the kernel against
// the reference on the same cases.

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <optional>
#include <string>

#include <fmt/format.h>

#include "../test_util.h"
#include "tolerance.h"
#include "effarch/common/error.h"
#include "effarch/ops/selective_scan.h"

namespace effarch::ops {
namespace {

struct Problem {
  at::Tensor u, delta, B, C, z;  // [Bt, D, L], [Bt, N, L]
  SelectiveScanArgs args;
  at::Tensor state0;  // [Bt, D, N] fp32
};

Problem random_problem(int64_t batch, int64_t dim, int64_t dstate, int64_t len, at::ScalarType dtype, bool full) {
  Problem p;
  p.u = at::randn({batch, dim, len}).to(dtype);
  // Pre-softplus deltas may be negative; without the softplus they are the step sizes themselves.
  p.delta = (full ? at::randn({batch, dim, len}) * 0.5 - 1.0 : at::rand({batch, dim, len}) * 0.2 + 0.01).to(dtype);
  p.B = at::randn({batch, dstate, len}).to(dtype);
  p.C = at::randn({batch, dstate, len}).to(dtype);
  p.z = at::randn({batch, dim, len}).to(dtype);
  // A = -exp(A_log) with A_log around log(1..N), as Mamba initialises it (plus noise).
  p.args.A = -at::exp(at::log(at::arange(1, dstate + 1, at::kFloat)).expand({dim, dstate}) +
                      at::randn({dim, dstate}) * 0.1);
  if (full) {
    p.args.D = at::randn({dim}).to(dtype);
    p.args.delta_bias = (at::randn({dim}) * 0.3).to(dtype);
  }
  p.args.delta_softplus = full;
  p.state0 = at::randn({batch, dim, dstate});
  return p;
}

// The recurrence exactly as written in docs/models.md (Mamba-1), one token at a time, in float64.
struct Naive {
  at::Tensor y, state;
};
Naive naive_scan(const Problem& p, bool use_z, bool from_state) {
  const auto d = [](const at::Tensor& t) { return t.to(at::kDouble); };
  const int64_t batch = p.u.size(0), dim = p.u.size(1), len = p.u.size(2), dstate = p.args.A.size(1);
  at::Tensor h = from_state ? d(p.state0).clone() : at::zeros({batch, dim, dstate}, at::kDouble);
  at::Tensor y = at::zeros({batch, dim, len}, at::kDouble);
  const at::Tensor A = d(p.args.A);
  for (int64_t t = 0; t < len; ++t) {
    at::Tensor dt = d(p.delta.select(2, t));
    if (p.args.delta_bias) dt = dt + d(*p.args.delta_bias);
    if (p.args.delta_softplus) dt = at::where(dt > 20, dt, at::log1p(at::exp(dt)));
    const at::Tensor ut = d(p.u.select(2, t));
    for (int64_t n = 0; n < dstate; ++n) {
      const at::Tensor hn = h.select(2, n);
      hn.copy_(at::exp(dt * A.select(1, n)) * hn + dt * d(p.B.select(2, t).select(1, n)).unsqueeze(1) * ut);
    }
    at::Tensor yt = (h * d(p.C.select(2, t)).unsqueeze(1)).sum(2);
    if (p.args.D) yt = yt + d(*p.args.D) * ut;
    if (use_z) yt = yt * at::silu(d(p.z.select(2, t)));
    y.select(2, t).copy_(yt);
  }
  return {y, h};
}

void expect_close(const at::Tensor& actual, const at::Tensor& expected, double atol, double rtol,
                  const std::string& what) {
  test::expect_close(actual, expected, {atol, rtol}, what);
}

struct Case {
  int64_t batch, dim, dstate, len;
};

class SelectiveScanSizes : public ::testing::TestWithParam<Case> {};

TEST_P(SelectiveScanSizes, MatchesTokenByTokenRecurrence) {
  const Case c = GetParam();
  for (const Backend backend : {Backend::Reference, Backend::Auto}) {
  for (const bool full : {false, true}) {
    for (const bool from_state : {false, true}) {
      at::manual_seed(static_cast<uint64_t>(c.len * 31 + c.dim + full + 2 * from_state));
      const Problem p = random_problem(c.batch, c.dim, c.dstate, c.len, at::kFloat, full);
      const Naive ref = naive_scan(p, full, from_state);
      at::Tensor state = from_state ? p.state0.clone() : at::full({c.batch, c.dim, c.dstate}, 7.0f);
      const std::optional<at::Tensor> z = full ? std::optional<at::Tensor>(p.z) : std::nullopt;
      const at::Tensor y = selective_scan(p.u, p.delta, p.B, p.C, z, p.args, state, from_state, backend);
      const std::string what =
          fmt::format("{} B={} D={} N={} L={} full={} from_state={} (chunk {})", backend_name(backend), c.batch,
                      c.dim, c.dstate, c.len, full, from_state, detail::selective_scan_chunk(c.len));
      EXPECT_EQ(y.scalar_type(), at::kFloat);
      expect_close(y, ref.y, 1e-4, 1e-4, what + " y");
      expect_close(state, ref.state, 1e-4, 1e-4, what + " final state");
    }
  }
  }
}

// The fused CPU kernel against the ATen reference (the oracle): same cases, every dtype, prefill
// from zeros and from a state, and the one-token update; fp32 within 1e-5 relative.
TEST_P(SelectiveScanSizes, CpuKernelMatchesReference) {
  const Case c = GetParam();
  ASSERT_TRUE(has_cpu_kernel(OpFamily::SelectiveScan));
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    for (const bool full : {false, true}) {
      for (const bool from_state : {false, true}) {
        at::manual_seed(static_cast<uint64_t>(c.len * 17 + c.dim + full + 2 * from_state));
        const Problem p = random_problem(c.batch, c.dim, c.dstate, c.len, dtype, full);
        const std::optional<at::Tensor> z = full ? std::optional<at::Tensor>(p.z) : std::nullopt;
        at::Tensor s_ref = from_state ? p.state0.clone() : at::full({c.batch, c.dim, c.dstate}, 7.0f);
        at::Tensor s_cpu = s_ref.clone();
        const at::Tensor y_ref = selective_scan(p.u, p.delta, p.B, p.C, z, p.args, s_ref, from_state, Backend::Reference);
        const at::Tensor y_cpu = selective_scan(p.u, p.delta, p.B, p.C, z, p.args, s_cpu, from_state, Backend::Cpu);
        const std::string what = fmt::format("{} B={} D={} N={} L={} full={} from_state={}", c10::toString(dtype),
                                             c.batch, c.dim, c.dstate, c.len, full, from_state);
        EXPECT_EQ(y_cpu.scalar_type(), dtype) << what;
        const test::Tolerance tol = dtype == at::kFloat ? test::Tolerance{1e-5, 1e-5} : test::rounding_tolerance(dtype);
        test::expect_close(y_cpu, y_ref, tol, what + " y");
        test::expect_close(s_cpu, s_ref, {1e-5, 1e-5}, what + " final state");

        const auto first = [](const at::Tensor& t) { return t.select(2, 0); };
        const std::optional<at::Tensor> z0 = full ? std::optional<at::Tensor>(first(p.z)) : std::nullopt;
        const at::Tensor u_ref = selective_state_update(first(p.u), first(p.delta), first(p.B), first(p.C), z0,
                                                        p.args, s_ref, Backend::Reference);
        const at::Tensor u_cpu = selective_state_update(first(p.u), first(p.delta), first(p.B), first(p.C), z0,
                                                        p.args, s_cpu, Backend::Cpu);
        test::expect_close(u_cpu, u_ref, tol, what + " update y");
        test::expect_close(s_cpu, s_ref, {1e-5, 1e-5}, what + " update state");
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Awkward, SelectiveScanSizes,
                         ::testing::Values(Case{1, 4, 3, 1}, Case{2, 5, 4, 7}, Case{3, 3, 16, 16}, Case{1, 6, 5, 17},
                                           Case{2, 4, 2, 50}, Case{1, 3, 4, 257}),
                         [](const auto& info) {
                           const Case& c = info.param;
                           return fmt::format("B{}_D{}_N{}_L{}", c.batch, c.dim, c.dstate, c.len);
                         });

// The CPU kernel updates the state's rows in place where they are fp32, contiguous over N and N
// is a multiple of 8 (the model's cache), else through a copy: a state that is a view into a
// larger buffer, and an A that is (or is not) contiguous over N, for N = 16 and N = 5; prefill
// and the one-token update against the reference, nothing written outside the view.
TEST(SelectiveScan, CpuKernelOnStateAndParameterViews) {
  for (const int64_t n : {16, 5}) {
    for (const bool a_rows : {true, false}) {
      at::manual_seed(40 + n + a_rows);
      Problem p = random_problem(2, 21, n, 9, at::kFloat, true);
      if (!a_rows) p.args.A = p.args.A.t().contiguous().t();  // stride 1 over D, not N
      at::Tensor s_ref = p.state0.clone();
      at::Tensor big = at::zeros({2, 21, n + 4});
      at::Tensor s_cpu = big.narrow(2, 1, n);
      s_cpu.copy_(p.state0);
      const std::string what = fmt::format("N={} A rows contiguous={}", n, a_rows);
      const at::Tensor y_ref = selective_scan(p.u, p.delta, p.B, p.C, p.z, p.args, s_ref, true, Backend::Reference);
      const at::Tensor y_cpu = selective_scan(p.u, p.delta, p.B, p.C, p.z, p.args, s_cpu, true, Backend::Cpu);
      test::expect_close(y_cpu, y_ref, {1e-5, 1e-5}, what + " y");
      test::expect_close(s_cpu, s_ref, {1e-5, 1e-5}, what + " state");
      const auto first = [](const at::Tensor& t) { return t.select(2, 0); };
      const at::Tensor u_ref = selective_state_update(first(p.u), first(p.delta), first(p.B), first(p.C), first(p.z),
                                                      p.args, s_ref, Backend::Reference);
      const at::Tensor u_cpu = selective_state_update(first(p.u), first(p.delta), first(p.B), first(p.C), first(p.z),
                                                      p.args, s_cpu, Backend::Cpu);
      test::expect_close(u_cpu, u_ref, {1e-5, 1e-5}, what + " update y");
      test::expect_close(s_cpu, s_ref, {1e-5, 1e-5}, what + " update state");
      EXPECT_EQ(big.narrow(2, 0, 1).abs().sum().item<double>(), 0.0) << what;
      EXPECT_EQ(big.narrow(2, n + 1, 3).abs().sum().item<double>(), 0.0) << what;
    }
  }
}

// The mixer's channel-last views (transposes of [B, L, X] projections) over full 16-channel
// blocks and a partial one (D = 37), where the CPU prefill reads fp32 inputs in place: against
// the reference in fp32, bf16 and fp16, with and without D / z / bias / softplus.
TEST(SelectiveScan, CpuKernelChannelLastFullBlocks) {
  const auto cl = [](const at::Tensor& t) { return t.transpose(1, 2).contiguous().transpose(1, 2); };
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    for (const bool full : {true, false}) {
      at::manual_seed(50 + full);
      const Problem p = random_problem(2, 37, 16, 19, dtype, full);
      const std::optional<at::Tensor> z = full ? std::optional<at::Tensor>(cl(p.z)) : std::nullopt;
      at::Tensor s_ref = p.state0.clone(), s_cpu = p.state0.clone();
      const at::Tensor y_ref =
          selective_scan(cl(p.u), cl(p.delta), cl(p.B), cl(p.C), z, p.args, s_ref, true, Backend::Reference);
      const at::Tensor y_cpu = selective_scan(cl(p.u), cl(p.delta), cl(p.B), cl(p.C), z, p.args, s_cpu, true, Backend::Cpu);
      const std::string what = fmt::format("{} full={}", c10::toString(dtype), full);
      const test::Tolerance tol = dtype == at::kFloat ? test::Tolerance{1e-5, 1e-5} : test::rounding_tolerance(dtype);
      test::expect_close(y_cpu, y_ref, tol, what + " y");
      test::expect_close(s_cpu, s_ref, {1e-5, 1e-5}, what + " state");
    }
  }
}

TEST(SelectiveScan, Bf16InputsRunInFp32) {
  at::manual_seed(5);
  const Problem p = random_problem(2, 6, 4, 41, at::kBFloat16, true);
  const Naive ref = naive_scan(p, true, false);
  for (const Backend backend : {Backend::Reference, Backend::Auto}) {
    at::Tensor state = at::zeros({2, 6, 4});
    const at::Tensor y = selective_scan(p.u, p.delta, p.B, p.C, p.z, p.args, state, false, backend);
    EXPECT_EQ(y.scalar_type(), at::kBFloat16);
    expect_close(y, ref.y, 2e-2, 1e-2, "bf16 y (one rounding)");
    expect_close(state, ref.state, 1e-4, 1e-4, "bf16 final state (fp32 inside)");
  }
}

TEST(SelectiveScan, StridedChannelLastViews) {
  // The mixer passes transposes of [B, L, D] projections; the result must not depend on layout.
  at::manual_seed(6);
  const Problem p = random_problem(2, 5, 3, 23, at::kFloat, true);
  const auto cl = [](const at::Tensor& t) { return t.transpose(1, 2).contiguous().transpose(1, 2); };
  for (const Backend backend : {Backend::Reference, Backend::Cpu}) {
    at::Tensor s1 = at::zeros({2, 5, 3}), s2 = at::zeros({2, 5, 3});
    const at::Tensor y1 = selective_scan(p.u, p.delta, p.B, p.C, p.z, p.args, s1, false, backend);
    const at::Tensor y2 = selective_scan(cl(p.u), cl(p.delta), cl(p.B), cl(p.C), cl(p.z), p.args, s2, false, backend);
    expect_close(y2, y1, 1e-6, 1e-6, "channel-last y");
    expect_close(s2, s1, 1e-6, 1e-6, "channel-last state");
    // A strided (non-contiguous) state, as a slice of a bigger cache would be.
    at::Tensor big = at::zeros({2, 5, 6});
    at::Tensor s3 = big.narrow(2, 1, 3);
    const at::Tensor y3 = selective_scan(cl(p.u), cl(p.delta), cl(p.B), cl(p.C), cl(p.z), p.args, s3, false, backend);
    expect_close(y3, y1, 1e-6, 1e-6, "strided-state y");
    expect_close(s3, s1, 1e-6, 1e-6, "strided state");
  }
}

TEST(SelectiveScan, DecodeStepsContinuePrefill) {
  at::manual_seed(7);
  const int64_t prompt = 19, steps = 6;
  const Problem p = random_problem(2, 5, 4, prompt + steps, at::kFloat, true);
  at::Tensor whole_state = at::zeros({2, 5, 4});
  const at::Tensor whole = selective_scan(p.u, p.delta, p.B, p.C, p.z, p.args, whole_state, false);

  at::Tensor state = at::zeros({2, 5, 4});
  const auto first = [&](const at::Tensor& t) { return t.narrow(2, 0, prompt); };
  const at::Tensor head = selective_scan(first(p.u), first(p.delta), first(p.B), first(p.C), first(p.z), p.args,
                                         state, false);
  expect_close(head, whole.narrow(2, 0, prompt), 1e-5, 1e-5, "prefill part");
  for (int64_t t = prompt; t < prompt + steps; ++t) {
    const auto at_t = [&](const at::Tensor& x) { return x.select(2, t); };
    const at::Tensor yt =
        selective_state_update(at_t(p.u), at_t(p.delta), at_t(p.B), at_t(p.C), at_t(p.z), p.args, state);
    expect_close(yt, whole.select(2, t), 1e-5, 1e-5, fmt::format("decode step {}", t));
  }
  expect_close(state, whole_state, 1e-5, 1e-5, "state after decode");

  // A multi-token continuation from the state equals the same tokens decoded one by one.
  at::Tensor state2 = at::zeros({2, 5, 4});
  selective_scan(first(p.u), first(p.delta), first(p.B), first(p.C), first(p.z), p.args, state2, false);
  const auto rest = [&](const at::Tensor& t) { return t.narrow(2, prompt, steps); };
  const at::Tensor tail =
      selective_scan(rest(p.u), rest(p.delta), rest(p.B), rest(p.C), rest(p.z), p.args, state2, true);
  expect_close(tail, whole.narrow(2, prompt, steps), 1e-5, 1e-5, "continued prefill");
}

TEST(SelectiveScan, LongPromptIsChunked) {
  EXPECT_EQ(detail::selective_scan_chunk(1), 1);
  EXPECT_EQ(detail::selective_scan_chunk(16), 16);
  EXPECT_LE(detail::selective_scan_chunk(4096), 64);  // ~2 sqrt(L) rounds, not L
  at::manual_seed(8);
  const Problem p = random_problem(1, 8, 4, 4096, at::kFloat, true);
  // Chunks of 46 tokens (and a partial last one), their states carried across 90 boundaries:
  // against the float64 recurrence, the reference and the CPU kernel, output and final state.
  const Naive want = naive_scan(p, true, false);
  for (const Backend backend : {Backend::Reference, Backend::Cpu}) {
    at::Tensor state = at::zeros({1, 8, 4});
    const at::Tensor y = selective_scan(p.u, p.delta, p.B, p.C, p.z, p.args, state, false, backend);
    expect_close(y, want.y, 1e-5, 1e-5, fmt::format("4096 tokens, {}", backend_name(backend)));
    expect_close(state, want.state, 1e-5, 1e-5, fmt::format("state after 4096 tokens, {}", backend_name(backend)));
  }
}

TEST(SelectiveScan, ArgumentErrors) {
  const Problem p = random_problem(2, 4, 3, 5, at::kFloat, true);
  at::Tensor state = at::zeros({2, 4, 3});
  at::Tensor bad_state = at::zeros({2, 4, 2});
  EXPECT_THROW_WITH(selective_scan(p.u, p.delta, p.B, p.C, p.z, p.args, bad_state, false), OpError,
                    {"ssm_state", "[2, 4, 2]", "[2, 4, 3]"});
  at::Tensor half_state = at::zeros({2, 4, 3}, at::kHalf);
  EXPECT_THROW_WITH(selective_scan(p.u, p.delta, p.B, p.C, p.z, p.args, half_state, false), OpError,
                    {"ssm_state", "float32"});
  EXPECT_THROW_WITH(selective_scan(p.u, p.delta.narrow(2, 0, 4), p.B, p.C, p.z, p.args, state, false), OpError,
                    {"delta", "[2, 4, 4]"});
  EXPECT_THROW_WITH(selective_scan(p.u, p.delta, p.C.narrow(1, 0, 2), p.C, p.z, p.args, state, false), OpError,
                    {"B"});
  EXPECT_THROW_WITH(selective_state_update(p.u.select(2, 0), p.delta.select(2, 0), p.B.select(2, 0),
                                           p.C.select(2, 0), std::nullopt, p.args, bad_state),
                    OpError, {"selective_state_update", "ssm_state"});
  EXPECT_THROW_WITH(selective_scan(p.u.to(at::kInt), p.delta, p.B, p.C, p.z, p.args, state, false), OpError,
                    {"u", "dtype"});
}

}  // namespace
}  // namespace effarch::ops
