// Mamba-2 SSD: the chunked reference against the recurrence written out token by token in
// float64 (L = 1, L < chunk, a multiple of it, not a multiple, many chunks; 1 and several
// groups; from zeros and from a state; dt clamped), decode steps continuing a prefill, bf16
// inputs, the gated RMSNorm per group, argument errors; each on both implementations (the ATen
// reference and the fused CPU kernel that auto runs on the CPU). Then the CPU kernel against the
// reference (the oracle) on awkward sizes, every dtype, with and without D / bias / softplus /
// clamp, the mixer's strided views, and decode steps continuing a CPU prefill.

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
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
  for (const Backend backend : {Backend::Reference, Backend::Auto}) {
  for (const bool from_state : {false, true}) {
    at::manual_seed(static_cast<uint64_t>(c.len * 7 + c.chunk + c.groups + from_state));
    const Problem pr = random_problem(c.batch, c.len, c.heads, c.p, c.groups, c.n, c.chunk, at::kFloat);
    const Naive ref = naive(pr, from_state);
    at::Tensor state = from_state ? pr.state0.clone() : at::full({c.batch, c.heads, c.p, c.n}, 3.0f);
    const at::Tensor y = ssd_chunk_scan(pr.x, pr.dt, pr.B, pr.C, pr.args, state, from_state, backend);
    const std::string what = fmt::format("{} L={} chunk={} G={} from_state={}", backend_name(backend), c.len, c.chunk,
                                         c.groups, from_state);
    EXPECT_EQ(y.scalar_type(), at::kFloat);
    expect_close(y, ref.y, 1e-4, what + " y");
    expect_close(state, ref.state, 1e-4, what + " state");
  }
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
  for (const Backend backend : {Backend::Reference, Backend::Auto}) {
    at::Tensor state = at::zeros({2, 4, 3, 4});
    const at::Tensor y = ssd_chunk_scan(pr.x, pr.dt, pr.B, pr.C, pr.args, state, false, backend);
    const std::string what(backend_name(backend));
    expect_close(y, ref.y, 1e-4, what + ": bf16 inputs, fp32 inside");
    expect_close(state, ref.state, 1e-4, what + ": state");
  }
}

// Long chunks whose first half decays strongly (dt A about -10 a token: the cumulative sums
// reach about -1300) and whose second half barely decays (dt about 0.02), so many decays near 1
// matter there. Taken as exp(cumsum[i] - cumsum[j]), those keep only ~1e-4 of their precision
// (the ulp of -1300); summed within the segment, and the decays to the chunk's end as suffix
// sums, they keep fp32's. Errors relative to the largest output and state entry. The CPU
// kernel's token-by-token recurrence has no such sums; it is held to the same bound.
TEST(Ssd, LongChunkWithStrongDecayKeepsPrecision) {
  at::manual_seed(12);
  Problem pr = random_problem(1, 512, 2, 3, 1, 4, 256, at::kFloat);  // two full chunks
  const at::Tensor half = at::ones({1, 128, 2});
  const at::Tensor chunk = at::cat({half * 4.0, half * -3.9}, 1);  // softplus: about 4, then 0.02
  pr.dt = at::cat({chunk, chunk}, 1) + at::randn({1, 512, 2}) * 0.1;
  pr.args.A = -(at::rand({2}) * 2.0 + 1.5);
  const Naive ref = naive(pr, false);
  const auto rel = [](const at::Tensor& a, const at::Tensor& e) {
    return (a.to(at::kDouble) - e).abs().max().item<double>() / e.abs().max().item<double>();
  };
  for (const Backend backend : {Backend::Reference, Backend::Auto}) {
    at::Tensor state = at::zeros({1, 2, 3, 4});
    const at::Tensor y = ssd_chunk_scan(pr.x, pr.dt, pr.B, pr.C, pr.args, state, false, backend);
    EXPECT_LE(rel(y, ref.y), 2e-6) << backend_name(backend) << " y";  // 1.2e-7 here; 2.2e-5 from differences of cumsums
    EXPECT_LE(rel(state, ref.state), 2e-6) << backend_name(backend) << " state";  // 4e-7; 5.4e-5
  }
}

TEST(Ssd, DecodeStepsContinuePrefill) {
  at::manual_seed(10);
  const int64_t prompt = 11, steps = 5;
  const Problem pr = random_problem(2, prompt + steps, 4, 3, 2, 5, 4, at::kFloat);
  for (const Backend backend : {Backend::Reference, Backend::Auto}) {
    at::Tensor whole_state = at::zeros({2, 4, 3, 5});
    const at::Tensor whole = ssd_chunk_scan(pr.x, pr.dt, pr.B, pr.C, pr.args, whole_state, false, backend);
    at::Tensor state = at::zeros({2, 4, 3, 5});
    const auto head = [&](const at::Tensor& t) { return t.narrow(1, 0, prompt); };
    ssd_chunk_scan(head(pr.x), head(pr.dt), head(pr.B), head(pr.C), pr.args, state, false, backend);
    const std::string what(backend_name(backend));
    for (int64_t t = prompt; t < prompt + steps; ++t) {
      const auto at_t = [&](const at::Tensor& x) { return x.select(1, t); };
      const at::Tensor yt =
          ssd_state_update(at_t(pr.x), at_t(pr.dt), at_t(pr.B), at_t(pr.C), pr.args, state, backend);
      expect_close(yt, whole.select(1, t), 1e-5, fmt::format("{}: decode step {}", what, t));
    }
    expect_close(state, whole_state, 1e-5, what + ": state after decode");
  }
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

// ---- The fused CPU kernel (src/ops/cpu/ssd.cpp) against the ATen reference, the oracle. ----
// y is fp32 on both sides and both compute in fp32 from the same inputs, so every input dtype
// is held to the fp32 tolerance (the inputs' rounding is common to both): the state within
// 1e-5, y within 1e-5 or a millionth of its largest entry where that is larger. y sums N
// products: at N = 128, L = 300 (max |y| 86) the chunked reference is itself 3.2e-5 from the
// float64 recurrence and the kernel 1.1e-5; they differ by 3.4e-5.
const test::Tolerance kFp32 = test::rounding_tolerance(at::kFloat);
test::Tolerance y_tol(const at::Tensor& ref) {
  const double scale = ref.numel() == 0 ? 0.0 : ref.abs().max().item<double>();
  return {std::max(kFp32.atol, 1e-6 * scale), kFp32.rtol};
}

struct Variant {
  bool full;   // D, dt_bias and softplus (else none of them, dt already positive)
  bool clamp;  // dt clamped to [0.3, 0.8]
};

Problem variant_problem(const Case& c, at::ScalarType dtype, Variant v) {
  Problem pr = random_problem(c.batch, c.len, c.heads, c.p, c.groups, c.n, c.chunk, dtype);
  if (!v.full) {
    pr.args.D.reset();
    pr.args.dt_bias.reset();
    pr.args.dt_softplus = false;
    pr.dt = (at::rand({c.batch, c.len, c.heads}) * 0.2 + 0.01).to(dtype);  // step sizes themselves
  }
  if (v.clamp) {
    pr.args.dt_min = 0.3;
    pr.args.dt_max = 0.8;
  }
  return pr;
}

class SsdCpuKernel : public ::testing::TestWithParam<Case> {};

TEST_P(SsdCpuKernel, MatchesReference) {
  const Case c = GetParam();
  ASSERT_TRUE(has_cpu_kernel(OpFamily::SsdScan));
  ASSERT_TRUE(has_cpu_kernel(OpFamily::SsdStateUpdate));
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    for (const Variant v : {Variant{true, false}, Variant{false, false}, Variant{true, true}, Variant{false, true}}) {
      for (const bool from_state : {false, true}) {
        at::manual_seed(static_cast<uint64_t>(c.len * 13 + c.p + c.n + 2 * v.full + 4 * v.clamp + from_state));
        const Problem pr = variant_problem(c, dtype, v);
        const std::string what =
            fmt::format("{} B={} L={} H={} P={} G={} N={} Q={} full={} clamp={} from_state={}", c10::toString(dtype),
                        c.batch, c.len, c.heads, c.p, c.groups, c.n, c.chunk, v.full, v.clamp, from_state);
        at::Tensor ref_state = from_state ? pr.state0.clone() : at::full({c.batch, c.heads, c.p, c.n}, 3.0f);
        at::Tensor cpu_state = ref_state.clone();
        const at::Tensor ref = ssd_chunk_scan(pr.x, pr.dt, pr.B, pr.C, pr.args, ref_state, from_state, Backend::Reference);
        const at::Tensor y = ssd_chunk_scan(pr.x, pr.dt, pr.B, pr.C, pr.args, cpu_state, from_state, Backend::Cpu);
        EXPECT_EQ(y.scalar_type(), at::kFloat) << what;
        test::expect_close(y, ref, y_tol(ref), what + " y");
        test::expect_close(cpu_state, ref_state, kFp32, what + " state");
        // The one-token update from that state, token 0's inputs again.
        const auto at0 = [](const at::Tensor& t) { return t.select(1, 0); };
        const at::Tensor ref1 = ssd_state_update(at0(pr.x), at0(pr.dt), at0(pr.B), at0(pr.C), pr.args, ref_state,
                                                 Backend::Reference);
        const at::Tensor y1 =
            ssd_state_update(at0(pr.x), at0(pr.dt), at0(pr.B), at0(pr.C), pr.args, cpu_state, Backend::Cpu);
        EXPECT_EQ(y1.scalar_type(), at::kFloat) << what;
        test::expect_close(y1, ref1, y_tol(ref1), what + " update y");
        test::expect_close(cpu_state, ref_state, kFp32, what + " update state");
      }
    }
  }
}

// L = 1, 7, 17, 300 over several chunk sizes; P and N not multiples of the 8-lane vector (and
// P above and below the kernel's 16-row block and its 4-row step); 1, 2 and 4 groups; batch 1
// and 3. The last is a mamba2-130m head (P 64, N 128) over enough work to run threaded.
INSTANTIATE_TEST_SUITE_P(Awkward, SsdCpuKernel,
                         ::testing::Values(Case{1, 1, 4, 3, 1, 5, 4}, Case{3, 1, 8, 19, 2, 13, 256},
                                           Case{1, 7, 4, 5, 4, 17, 4}, Case{3, 7, 6, 20, 2, 8, 16},
                                           Case{1, 17, 8, 33, 4, 3, 4}, Case{3, 17, 4, 7, 1, 33, 8},
                                           Case{1, 300, 4, 5, 2, 13, 64}, Case{3, 300, 2, 17, 1, 9, 256},
                                           Case{2, 300, 4, 64, 1, 128, 256}),
                         [](const auto& info) {
                           const Case& c = info.param;
                           return fmt::format("B{}_L{}_H{}_P{}_G{}_N{}_Q{}", c.batch, c.len, c.heads, c.p, c.groups,
                                              c.n, c.chunk);
                         });

// The mixer's layouts (src/model/blocks/mamba2.cpp): x, B and C are views of the channel-last
// conv output [Bt, L, conv_dim] (x [Bt, L, H, P] with strides (L cd, cd, P, 1)), dt a narrow of
// the in_proj output; the decode step selects token 0 of those. Also a channel-first conv output
// (time innermost) and a state that is a view into a larger buffer.
TEST(SsdCpuKernel, StridedViewsAsTheMixerPassesThem) {
  const int64_t b = 2, len = 23, h = 6, p = 12, g = 2, di = h * p;
  // N = 16: the kernel updates the state view's rows in place; N = 20: through a copy.
  for (const int64_t n : {16, 20}) {
  const int64_t cd = di + 2 * g * n;
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    for (const bool channel_last : {true, false}) {
      at::manual_seed(21 + channel_last);
      const at::Tensor conv = channel_last ? at::randn({b, len, cd}).to(dtype)
                                           : at::randn({b, cd, len}).to(dtype).transpose(1, 2);  // [Bt, L, cd]
      const at::Tensor proj = (at::randn({b, len, di + cd + h}) * 0.5 - 1.0).to(dtype);
      const at::Tensor dt = proj.narrow(2, di + cd, h);  // [Bt, L, H], strides (L W, W, 1)
      const at::Tensor x = conv.narrow(2, 0, di).view({b, len, h, p});
      const at::Tensor B = conv.narrow(2, di, g * n).view({b, len, g, n});
      const at::Tensor C = conv.narrow(2, di + g * n, g * n).view({b, len, g, n});
      ASSERT_FALSE(x.is_contiguous());
      SsdArgs args;
      args.A = -at::exp(at::randn({h}) * 0.5);
      args.D = at::randn({h}).to(dtype);
      args.dt_bias = (at::randn({h}) * 0.3).to(dtype);
      args.chunk_size = 8;
      const at::Tensor state0 = at::randn({b, h, p, n});
      at::Tensor ref_state = state0.clone();
      at::Tensor big = at::zeros({b, h, p, n + 5});
      at::Tensor cpu_state = big.narrow(3, 2, n);  // not contiguous
      cpu_state.copy_(state0);
      const std::string what = fmt::format("{} N={} channel_last={}", c10::toString(dtype), n, channel_last);
      const at::Tensor ref = ssd_chunk_scan(x, dt, B, C, args, ref_state, true, Backend::Reference);
      const at::Tensor y = ssd_chunk_scan(x, dt, B, C, args, cpu_state, true, Backend::Auto);
      test::expect_close(y, ref, y_tol(ref), what + " y");
      test::expect_close(cpu_state, ref_state, kFp32, what + " state");
      const auto at0 = [](const at::Tensor& t) { return t.select(1, 0); };
      const at::Tensor ref1 = ssd_state_update(at0(x), at0(dt), at0(B), at0(C), args, ref_state, Backend::Reference);
      const at::Tensor y1 = ssd_state_update(at0(x), at0(dt), at0(B), at0(C), args, cpu_state, Backend::Auto);
      test::expect_close(y1, ref1, y_tol(ref1), what + " update y");
      test::expect_close(cpu_state, ref_state, kFp32, what + " update state");
      EXPECT_EQ(big.narrow(3, 0, 2).abs().sum().item<double>(), 0.0) << what << ": wrote outside the state view";
      EXPECT_EQ(big.narrow(3, n + 2, 3).abs().sum().item<double>(), 0.0) << what << ": wrote outside the state view";
    }
  }
  }
}

// A CPU prefill, then CPU decode steps and a CPU multi-token continuation, against one CPU
// prefill of the whole (and that against the reference's), with the time_step_limit clamp on as
// the prefill applies it. Decode at mamba2-130m's head shape with enough heads to run threaded.
TEST(SsdCpuKernel, DecodeStepsAndContinuationEqualOneLongerPrefill) {
  for (const Case c : {Case{2, 0, 4, 5, 2, 13, 8}, Case{1, 0, 32, 64, 1, 128, 256}}) {
    at::manual_seed(31 + c.p);
    const int64_t prompt = 9, steps = 4, more = 6, len = prompt + steps + more;
    Problem pr = random_problem(c.batch, len, c.heads, c.p, c.groups, c.n, c.chunk, at::kFloat);
    pr.args.dt_min = 0.2;
    pr.args.dt_max = 0.9;
    at::Tensor whole_state = at::zeros({c.batch, c.heads, c.p, c.n});
    at::Tensor ref_state = whole_state.clone();
    const at::Tensor whole = ssd_chunk_scan(pr.x, pr.dt, pr.B, pr.C, pr.args, whole_state, false, Backend::Cpu);
    const at::Tensor ref = ssd_chunk_scan(pr.x, pr.dt, pr.B, pr.C, pr.args, ref_state, false, Backend::Reference);
    test::expect_close(whole, ref, y_tol(ref), "whole prefill against the reference");
    at::Tensor state = at::zeros({c.batch, c.heads, c.p, c.n});
    const auto part = [&](const at::Tensor& t, int64_t from, int64_t count) { return t.narrow(1, from, count); };
    const at::Tensor y0 = ssd_chunk_scan(part(pr.x, 0, prompt), part(pr.dt, 0, prompt), part(pr.B, 0, prompt),
                                         part(pr.C, 0, prompt), pr.args, state, false, Backend::Cpu);
    test::expect_close(y0, part(whole, 0, prompt), y_tol(whole), "prompt");
    for (int64_t t = prompt; t < prompt + steps; ++t) {
      const auto at_t = [&](const at::Tensor& x) { return x.select(1, t); };
      const at::Tensor yt = ssd_state_update(at_t(pr.x), at_t(pr.dt), at_t(pr.B), at_t(pr.C), pr.args, state,
                                             Backend::Cpu);
      test::expect_close(yt, whole.select(1, t), y_tol(whole), fmt::format("P={} decode step {}", c.p, t));
    }
    const int64_t from = prompt + steps;
    const at::Tensor y2 = ssd_chunk_scan(part(pr.x, from, more), part(pr.dt, from, more), part(pr.B, from, more),
                                         part(pr.C, from, more), pr.args, state, true, Backend::Cpu);
    test::expect_close(y2, part(whole, from, more), y_tol(whole), "continuation");
    test::expect_close(state, whole_state, kFp32, "final state");
  }
}

TEST(SsdCpuKernel, EmptySequenceZeroesOrKeepsTheState) {
  const Problem pr = random_problem(1, 0, 4, 3, 2, 5, 4, at::kFloat);
  at::Tensor state = at::ones({1, 4, 3, 5});
  EXPECT_EQ(ssd_chunk_scan(pr.x, pr.dt, pr.B, pr.C, pr.args, state, true, Backend::Cpu).sizes(),
            (at::IntArrayRef{1, 0, 4, 3}));
  EXPECT_EQ(state.sum().item<double>(), 60.0);
  ssd_chunk_scan(pr.x, pr.dt, pr.B, pr.C, pr.args, state, false, Backend::Cpu);
  EXPECT_EQ(state.abs().sum().item<double>(), 0.0);
}

}  // namespace
}  // namespace effarch::ops
