// Mamba's CUDA bindings (src/ops/selective_scan_cuda.cpp, causal_conv1d_cuda.cpp, ssd_cuda.cpp) called
// directly on CPU tensors, their kernels run by the CPU executor, against the ops' ATen references
// (Backend::Reference). The kernel sim tests fill the params by hand; these run the bindings' own
// filling (the mixer's strided views, dtype casts, workspaces) and launch plans (the selective
// scan's split from the SM count), and compare every output and every state written in place.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "../ops/tolerance.h"
#include "cuda_sim.h"
#include "sim_test.h"
// the ops (their references) and the bindings' declarations
#include "effarch/ops/causal_conv1d.h"
#include "effarch/ops/linear.h"
#include "effarch/ops/selective_scan.h"
#include "effarch/ops/ssd.h"
#include "ops/ssd_cuda.h"

namespace effarch::sim {
namespace {

namespace ops = ::effarch::ops;
using ops::Backend;

using Tol = test::Tolerance;  // |actual - expected| <= atol + rtol |expected| (tests/ops/tolerance.h)
// Both sides compute in fp32 and round once (tests/ops/tolerance.h's rounding_tolerance):
// selective_scan_kernel_test.cpp's {1e-5, 1e-5} for the scan and its fp32 state, one bf16 ulp for
// bf16 results.
const Tol kFp32 = test::rounding_tolerance(at::kFloat);
Tol rounding(at::ScalarType t) { return test::rounding_tolerance(t); }

double max_abs(const at::Tensor& t) { return t.numel() == 0 ? 0.0 : t.to(at::kDouble).abs().max().item<double>(); }

// ssd_cuda_test.cpp's y_tol: y sums many terms of both signs, an absolute floor of 1e-6 of its largest value.
Tol ssd_y_tol(const at::Tensor& ref) { return {std::max(kFp32.atol, 1e-6 * max_abs(ref)), kFp32.rtol}; }
// ssd_cuda_test.cpp's tc_tolerance: the tensor-core products round C B^T, the scaled B and the start
// state to bf16 before their fp32 sums (docs/mamba2.md, "Tensor cores"): two bf16 roundings.
Tol ssd_tc_tol(const at::Tensor& ref) {
  const double unit = 1.0 / 256;
  return {2.0 * unit * std::max(max_abs(ref), 1.0), 2.0 * unit};
}

// tests/ops/tolerance.h's comparison (a NaN, an element nobody wrote, fails it), and the dtype.
void expect_output(const at::Tensor& actual, const at::Tensor& expected, Tol tol, const std::string& what) {
  ASSERT_TRUE(actual.defined()) << what << ": undefined";
  EXPECT_EQ(actual.scalar_type(), expected.scalar_type()) << what << ": dtype";
  test::expect_close(actual, expected, tol, what);
}

std::optional<at::Tensor> maybe(bool on, const at::Tensor& t) {
  return on ? std::optional<at::Tensor>(t) : std::nullopt;
}

// The executor's device back to an H100's 132 SMs and the forward schedule around every test.
class MambaBindingsSim : public ::testing::Test {
 protected:
  void SetUp() override {
    reset_device();
    set_schedule(Schedule::Forward);
  }
  void TearDown() override {
    reset_device();
    set_schedule(Schedule::Forward);
  }
};

// ---------------------------------------------------------------------------------------------
// Mamba-1: the selective scan's prefill and decode step.

struct ScanCase {
  int64_t batch, dim, dstate, len;
  bool mixer;  // the mixer's channel-last views, else contiguous [B, X, L]
  bool full;   // z, D, delta_bias and softplus, else none of them (delta already step sizes)
};

struct ScanProblem {
  at::Tensor u, delta, B, C, z;  // [Bt, D, L], [Bt, D, L], [Bt, N, L], [Bt, N, L], [Bt, D, L]
  ops::SelectiveScanArgs args;
  at::Tensor state0;  // [Bt, D, N] fp32
  bool full = false;
  std::optional<at::Tensor> gate() const { return maybe(full, z); }
};

// As tests/ops/selective_scan_kernel_test.cpp builds them: in the mixer's layout u and z are halves
// of one [Bt, L, 2D] in_proj output, delta the transpose of dt_proj's [Bt, L, D], B and C columns of
// x_proj's [Bt, L, R + 2N] output after R = 3 (channel-last, not 16-byte aligned).
ScanProblem make_scan_problem(const ScanCase& c, at::ScalarType dtype, uint64_t seed) {
  at::manual_seed(static_cast<int64_t>(seed));
  ScanProblem p;
  const int64_t b = c.batch, d = c.dim, n = c.dstate, l = c.len;
  if (c.mixer) {
    const at::Tensor xz = at::randn({b, l, 2 * d}).to(dtype);
    p.u = xz.narrow(2, 0, d).transpose(1, 2);
    p.z = xz.narrow(2, d, d).transpose(1, 2);
    p.delta = (at::randn({b, l, d}) * 0.5 - 1.0).to(dtype).transpose(1, 2);
    const at::Tensor proj = at::randn({b, l, 3 + 2 * n}).to(dtype);
    p.B = proj.narrow(2, 3, n).transpose(1, 2);
    p.C = proj.narrow(2, 3 + n, n).transpose(1, 2);
  } else {
    p.u = at::randn({b, d, l}).to(dtype);
    p.z = at::randn({b, d, l}).to(dtype);
    p.delta = (at::randn({b, d, l}) * 0.5 - 1.0).to(dtype);
    p.B = at::randn({b, n, l}).to(dtype);
    p.C = at::randn({b, n, l}).to(dtype);
  }
  p.full = c.full;
  if (!c.full) p.delta = (p.delta.to(at::kFloat).sigmoid() * 0.2).to(dtype);  // already step sizes
  p.args.A = -at::exp(at::log(at::arange(1, n + 1, at::kFloat)).expand({d, n}) + at::randn({d, n}) * 0.1);
  if (c.full) {
    p.args.D = at::randn({d});
    p.args.delta_bias = at::randn({d}) * 0.3;
  }
  p.args.delta_softplus = c.full;
  p.state0 = at::randn({b, d, n});
  return p;
}

// A time range [from, from + len) of the problem's sequence.
ScanProblem time_slice(const ScanProblem& p, int64_t from, int64_t len) {
  ScanProblem s = p;
  for (at::Tensor* t : {&s.u, &s.delta, &s.B, &s.C, &s.z}) *t = t->narrow(2, from, len);
  return s;
}

struct Outputs {
  at::Tensor y, state;
};
bool same_outputs(const Outputs& a, const Outputs& b) { return same_bytes(a.y, b.y) && same_bytes(a.state, b.state); }

// The state a call starts from: `state` when from_state, else garbage the call must not read.
at::Tensor start_state(const at::Tensor& state, bool from_state) {
  return from_state ? state.clone() : at::full_like(state, 7.0f);
}

Outputs binding_scan(const ScanProblem& p, const at::Tensor& state, bool from_state) {
  Outputs r{at::Tensor(), start_state(state, from_state)};
  r.y = ops::detail::selective_scan_cuda(p.u, p.delta, p.B, p.C, p.gate(), p.args, r.state, from_state);
  return r;
}

Outputs reference_scan(const ScanProblem& p, const at::Tensor& state, bool from_state) {
  Outputs r{at::Tensor(), start_state(state, from_state)};
  r.y = ops::selective_scan(p.u, p.delta, p.B, p.C, p.gate(), p.args, r.state, from_state, Backend::Reference);
  return r;
}

void expect_scan_close(const Outputs& got, const Outputs& ref, at::ScalarType dtype, const std::string& what) {
  expect_output(got.y, ref.y, rounding(dtype), what + ": y");
  // the state stays fp32 whatever the inputs: the reference widens them before any arithmetic
  expect_output(got.state, ref.state, kFp32, what + ": the state");
}

// Every prefill kernel the binding picks from args.cuda_segment and cuda_lane_steps (the
// warp-per-channel kernel, 16, with 16 or 8 steps a lane; the thread-per-channel kernel, 0, over
// one piece; the 32-channel kernel at 8 and 4:
// chunks of 64 and 32 steps, which 37 and 70 are not multiples of), from zeros and from a state,
// with and without z / D / delta_bias / softplus.
TEST_F(MambaBindingsSim, SelectiveScanPrefillMatchesTheReference) {
  const std::vector<ScanCase> cases = {{2, 40, 16, 37, true, true}, {1, 33, 6, 70, false, false}};
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    for (const ScanCase& c : cases) {
      for (const bool from_state : {false, true}) {
        ScanProblem p = make_scan_problem(c, dtype, static_cast<uint64_t>(c.dim * 7 + c.len + from_state));
        const Outputs ref = reference_scan(p, p.state0, from_state);
        for (const auto& [segment, steps] : {std::pair{16, 16}, {16, 8}, {8, 16}, {4, 16}, {0, 16}}) {
          p.args.cuda_segment = segment;
          p.args.cuda_lane_steps = steps;
          const std::string what =
              fmt::format("{} B {} D {} N {} L {} mixer {} full {} from_state {} {}", name_of(dtype), c.batch, c.dim,
                          c.dstate, c.len, c.mixer, c.full, from_state, ops::selective_scan_variant_name(p.args));
          const Outputs got = run_both_orders([&] { return binding_scan(p, p.state0, from_state); }, same_outputs);
          expect_scan_close(got, ref, dtype, what);
        }
      }
    }
  }
}

// A prompt from zeros, then the next tokens from the state it left (the binding's own state
// against the reference's), as the engine continues a sequence in pieces.
TEST_F(MambaBindingsSim, SelectiveScanContinuesFromItsState) {
  const ScanCase c{2, 40, 16, 45 + 70, true, true};
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    ScanProblem p = make_scan_problem(c, dtype, 21);
    p.args.cuda_segment = 8;
    const ScanProblem first = time_slice(p, 0, 45), second = time_slice(p, 45, 70);
    const Outputs got1 = binding_scan(first, p.state0, false), ref1 = reference_scan(first, p.state0, false);
    expect_scan_close(got1, ref1, dtype, fmt::format("{} the prompt", name_of(dtype)));
    const Outputs got2 = binding_scan(second, got1.state, true), ref2 = reference_scan(second, ref1.state, true);
    expect_scan_close(got2, ref2, dtype, fmt::format("{} the continuation", name_of(dtype)));
  }
}

// args.cuda_split -1: the binding plans the pieces from the device's SM count (132 by default, then
// 4), which must reach the launch (its grid's z is the pieces) and give the reference's results.
// Batch 2 x 2 tiles of 32 channels, 21 chunks of 32 steps: 5 pieces on 132 SMs (the length's
// limit), 4 on 4 SMs (enough for 4 blocks an SM).
TEST_F(MambaBindingsSim, SelectiveScanSplitsAsPlannedForTheSmCount) {
  const ScanCase c{2, 40, 16, 645, true, true};
  ScanProblem p = make_scan_problem(c, at::kFloat, 33);
  p.args.cuda_segment = 4;
  p.args.cuda_split = -1;
  std::vector<int> planned;
  for (const bool from_state : {true, false}) {
    const Outputs ref = reference_scan(p, p.state0, from_state);
    for (const int sms : {0, 4}) {  // 0: the executor's default device
      if (sms > 0) device_properties().multiProcessorCount = sms;
      const int sm_count = device_properties().multiProcessorCount;
      if (sms == 0) {
        EXPECT_EQ(sm_count, 132) << "the executor's default device";
      }
      const int pieces = ops::selective_scan_cuda_pieces(p.args, c.batch, c.dim, c.len, sm_count);
      if (from_state) planned.push_back(pieces);
      const std::string what = fmt::format("{} SMs, {} pieces, from_state {}", sm_count, pieces, from_state);
      reset_launches();
      const Outputs got = from_state
                              ? run_both_orders([&] { return binding_scan(p, p.state0, from_state); }, same_outputs)
                              : binding_scan(p, p.state0, from_state);
      EXPECT_GT(pieces, 1) << what;
      EXPECT_EQ(launches(), from_state ? 4 : 2) << what << ": the split's two launches (per schedule)";
      EXPECT_EQ(last_launch().grid.z, static_cast<unsigned>(pieces)) << what << ": the launch's pieces";
      expect_scan_close(got, ref, at::kFloat, what);
      reset_device();
    }
  }
  ASSERT_EQ(planned.size(), 2u);
  EXPECT_NE(planned[0], planned[1]) << "the SM count changes the plan";
  // An explicit count, bf16, segment 8, whatever the device: 200 steps are 4 chunks of 64, a piece each.
  ScanProblem q = make_scan_problem({1, 33, 16, 200, false, true}, at::kBFloat16, 34);
  q.args.cuda_segment = 8;
  q.args.cuda_split = 4;
  EXPECT_EQ(ops::selective_scan_cuda_pieces(q.args, 1, 33, 200, 132), 4);
  reset_launches();
  const Outputs got = binding_scan(q, q.state0, true);
  EXPECT_EQ(last_launch().grid.z, 4u) << "cuda_split 4";
  expect_scan_close(got, reference_scan(q, q.state0, true), at::kBFloat16, "bf16 cuda_split 4");
  // The pieces kernel plans from its blocks of 128 channels and chunks of 32 steps: batch 2 x 1
  // block, 21 chunks, pieces of at least 4 chunks: 5 pieces, whose two passes reach the grid.
  p.args.cuda_segment = 0;
  const int pieces = ops::selective_scan_cuda_pieces(p.args, c.batch, c.dim, c.len, 132);
  EXPECT_EQ(pieces, 5);
  for (const bool from_state : {true, false}) {
    reset_launches();
    const Outputs got0 = run_both_orders([&] { return binding_scan(p, p.state0, from_state); }, same_outputs);
    EXPECT_EQ(launches(), 4) << "the pieces kernel's two launches (per schedule)";
    EXPECT_EQ(last_launch().grid.z, static_cast<unsigned>(pieces)) << "the pieces kernel's pass 2";
    expect_scan_close(got0, reference_scan(p, p.state0, from_state), at::kFloat,
                      fmt::format("pieces kernel, from_state {}", from_state));
  }
}

// The decode step's inputs as the mixer has them: u and z halves of in_proj's [Bt, 2D] output;
// dt_low, B and C columns of x_proj's [Bt, R + 2N] output (R = 4 leaves B and C on 16-byte
// boundaries, the update's vector path; R = 3 does not, the lane-per-state path); dt_proj [D, R].
struct StepProblem {
  at::Tensor u, delta, B, C, z, dt_low, dt_proj;
  ops::SelectiveScanArgs args;
  at::Tensor state0;
  bool full = false;
  std::optional<at::Tensor> gate() const { return maybe(full, z); }
};

// exact_dt: dt_low and dt_proj small multiples of 1/4 and 1/8, so every order of the projection's
// fp32 sum is exact and rounds to the same delta (the fused kernel's sum against ops::linear's).
StepProblem make_step_problem(int64_t batch, int64_t dim, int64_t n, int64_t rank, at::ScalarType dtype, bool full,
                              bool exact_dt, uint64_t seed) {
  at::manual_seed(static_cast<int64_t>(seed));
  StepProblem p;
  const at::Tensor xz = at::randn({batch, 2 * dim}).to(dtype);
  p.u = xz.narrow(1, 0, dim);
  p.z = xz.narrow(1, dim, dim);
  at::Tensor proj = at::randn({batch, rank + 2 * n});
  if (exact_dt) proj.narrow(1, 0, rank).copy_(at::randint(-4, 5, {batch, rank}) / 4.0);
  proj = proj.to(dtype);
  p.dt_low = proj.narrow(1, 0, rank);
  p.B = proj.narrow(1, rank, n);
  p.C = proj.narrow(1, rank + n, n);
  p.dt_proj = (exact_dt ? at::randint(-4, 5, {dim, rank}) / 8.0 : at::randn({dim, rank}) / 2).to(dtype);
  p.delta = full ? (at::randn({batch, dim}) * 0.5 - 1.0).to(dtype) : (at::rand({batch, dim}) * 0.2).to(dtype);
  p.full = full;
  p.args.A = -at::exp(at::log(at::arange(1, n + 1, at::kFloat)).expand({dim, n}) + at::randn({dim, n}) * 0.1);
  if (full) {
    p.args.D = at::randn({dim});
    p.args.delta_bias = at::randn({dim}) * 0.3;
  }
  p.args.delta_softplus = full;
  p.state0 = at::randn({batch, dim, n});
  return p;
}

// The one-token update against the reference step, on the same state (copied), both paths.
TEST_F(MambaBindingsSim, SelectiveStateUpdateMatchesTheReferenceStep) {
  const int64_t batch = 2, dim = 40, n = 16;
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    for (const bool full : {true, false}) {
      unsigned grid[2] = {0, 0};
      for (const int64_t rank : {4, 3}) {
        const StepProblem p = make_step_problem(batch, dim, n, rank, dtype, full, false, 40 + rank + full);
        const std::string what = fmt::format("{} full {} rank {}", name_of(dtype), full, rank);
        const Outputs got = run_both_orders(
            [&] {
              Outputs r{at::Tensor(), p.state0.clone()};
              r.y = ops::detail::selective_state_update_cuda(p.u, p.delta, p.B, p.C, p.gate(), p.args, r.state);
              return r;
            },
            same_outputs);
        grid[rank == 4 ? 0 : 1] = last_launch().grid.x;
        Outputs ref{at::Tensor(), p.state0.clone()};
        ref.y = ops::selective_state_update(p.u, p.delta, p.B, p.C, p.gate(), p.args, ref.state, Backend::Reference);
        expect_scan_close(got, ref, dtype, what);
      }
      // 4 threads a channel on the vector path, 16 on the other: the two paths ran
      EXPECT_LT(grid[0], grid[1]) << name_of(dtype) << ": the aligned B and C take the vector path";
    }
  }
}

// The update with dt_proj fused (delta = dt_low dt_proj^T computed by the kernel) against the
// reference's ops::linear then step. bf16 takes exact_dt (see make_step_problem): otherwise the two
// fp32 sums can round delta to neighbouring bf16 values, and the state differs by more than fp32's.
TEST_F(MambaBindingsSim, SelectiveStateUpdateDtProjMatchesTheReferenceStep) {
  const int64_t batch = 2, dim = 40, n = 16;
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    for (const bool full : {true, false}) {
      for (const int64_t rank : {4, 3}) {
        StepProblem p = make_step_problem(batch, dim, n, rank, dtype, full, dtype != at::kFloat, 50 + rank + full);
        p.args.delta_softplus = true;  // the mixer's (and delta may be negative here)
        const std::string what = fmt::format("{} full {} rank {}", name_of(dtype), full, rank);
        const Outputs got = run_both_orders(
            [&] {
              Outputs r{at::Tensor(), p.state0.clone()};
              r.y = ops::detail::selective_state_update_dt_proj_cuda(p.u, p.dt_low, p.dt_proj, p.B, p.C, p.gate(),
                                                                     p.args, r.state);
              return r;
            },
            same_outputs);
        Outputs ref{at::Tensor(), p.state0.clone()};
        ref.y = ops::selective_state_update_dt_proj(p.u, p.dt_low, ops::Linear(p.dt_proj), p.B, p.C, p.gate(), p.args,
                                                    ref.state, Backend::Reference);
        expect_scan_close(got, ref, dtype, what);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The causal conv: prefill, decode update, and the update fused into in_proj's GEMV.

// [Bt, D, L] filled with NaN in the entries' layout for an output of x (causal_conv1d.cpp's
// empty_like_layout: channel-last for a channel-last x), so an element the kernel skips shows.
at::Tensor nan_like_layout(const at::Tensor& x3) {
  const bool channel_last = x3.size(1) > 1 && x3.size(2) > 1 && x3.stride(1) == 1;
  if (channel_last) return at::full({x3.size(0), x3.size(2), x3.size(1)}, NAN, x3.options()).transpose(1, 2);
  return at::full(x3.sizes(), NAN, x3.options());
}

struct ConvCase {
  int64_t batch, dim, len, width;
  bool channel_last;  // x the first D channels of a [Bt, L, 2D] projection, viewed [Bt, D, L]
  bool silu, bias, fp32_weight, state, vector;
};

// The prefill: out and the final state (the last W inputs) against the reference. The binding gets
// the weight as the entry passes it, the [D, W] view of HF's [D, 1, W] conv weight.
TEST_F(MambaBindingsSim, CausalConv1dPrefillMatchesTheReference) {
  const std::vector<ConvCase> cases = {
      {2, 40, 37, 4, true, true, true, false, true, false},
      {1, 24, 3, 4, false, false, true, true, true, false},   // L < W: the state zero-padded on the left
      {2, 64, 21, 3, true, true, false, false, false, true},  // the 8-channel vector variant
      {1, 16, 30, 2, true, true, true, true, true, true},
  };
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    for (const ConvCase& c : cases) {
      at::manual_seed(c.dim * 100 + c.len);
      const at::Tensor x = c.channel_last
                               ? at::randn({c.batch, c.len, 2 * c.dim}).to(dtype).narrow(2, 0, c.dim).transpose(1, 2)
                               : at::randn({c.batch, c.dim, c.len}).to(dtype);
      const at::ScalarType wt = c.fp32_weight ? at::kFloat : dtype;
      const at::Tensor weight = (at::randn({c.dim, 1, c.width}) / 2).to(wt);
      // with an fp32 weight a bias in x's dtype: a mix the binding casts to fp32
      const std::optional<at::Tensor> bias = maybe(c.bias, (at::randn({c.dim}) / 4).to(dtype));
      const at::Tensor state0 = at::full({c.batch, c.dim, c.width}, 7, dtype);
      const std::string what = fmt::format(
          "{} B {} D {} L {} W {} channel_last {} silu {} bias {} fp32 weight {} state {} vector {}", name_of(dtype),
          c.batch, c.dim, c.len, c.width, c.channel_last, c.silu, c.bias, c.fp32_weight, c.state, c.vector);
      const Outputs got = run_both_orders(
          [&] {
            Outputs r{nan_like_layout(x), c.state ? state0.clone() : at::Tensor()};
            ops::detail::causal_conv1d_cuda(x, weight.select(1, 0), bias, c.silu, r.y, r.state, c.vector);
            return r;
          },
          [&](const Outputs& a, const Outputs& b) {
            return same_bytes(a.y, b.y) && (!c.state || same_bytes(a.state, b.state));
          });
      at::Tensor ref_state = state0.clone();
      const at::Tensor ref =
          ops::causal_conv1d(x, weight, bias, c.silu, c.state ? &ref_state : nullptr, Backend::Reference);
      expect_output(got.y, ref, rounding(dtype), what + ": out");
      if (c.state) {
        EXPECT_TRUE(same_bytes(got.state, ref_state)) << what << ": the final state";
      }
    }
  }
}

// The decode update: one token (x [Bt, D]) or three ([Bt, D, 3], channel-last), the state rolled in
// place; a state stored [Bt, W, D] (strided) on half the runs.
TEST_F(MambaBindingsSim, CausalConv1dUpdateMatchesTheReference) {
  const int64_t batch = 2, dim = 40, width = 4;
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    for (const int64_t tokens : {0, 3}) {  // 0: a [Bt, D] token
      for (const bool strided_state : {false, true}) {
        at::manual_seed(60 + tokens + strided_state);
        const at::Tensor x = tokens == 0 ? at::randn({batch, 2 * dim}).to(dtype).narrow(1, dim, dim)
                                         : at::randn({batch, tokens, dim}).to(dtype).transpose(1, 2);
        const at::Tensor weight = (at::randn({dim, 1, width}) / 2).to(dtype);
        const at::Tensor bias = (at::randn({dim}) / 4).to(dtype);
        const at::Tensor state0 = strided_state ? at::randn({batch, width, dim}).to(dtype).transpose(1, 2)
                                                : at::randn({batch, dim, width}).to(dtype);
        const bool silu = strided_state;
        const std::string what =
            fmt::format("{} tokens {} strided state {}", name_of(dtype), std::max<int64_t>(tokens, 1), strided_state);
        const at::Tensor x3 = x.dim() == 2 ? x.unsqueeze(2) : x;
        const Outputs got = run_both_orders(
            [&] {
              Outputs r{nan_like_layout(x3), state0.clone()};
              ops::detail::causal_conv1d_update_cuda(x3, r.state, weight.select(1, 0), bias, silu, r.y);
              return r;
            },
            same_outputs);
        at::Tensor ref_state = state0.clone();
        const at::Tensor ref = ops::causal_conv1d_update(x, ref_state, weight, bias, silu, Backend::Reference);
        expect_output(x.dim() == 2 ? got.y.select(2, 0) : got.y, ref, rounding(dtype), what + ": out");
        EXPECT_TRUE(same_bytes(got.state, ref_state)) << what << ": the rolled state";
      }
    }
  }
}

// A decode step through in_proj with the conv update in the GEMV's epilogue (the conv's channels
// in_proj's outputs begin .. begin + D - 1) against ops::linear then the reference update. Inputs
// small multiples of 1/4 and 1/8: every projection is exact in fp32 whatever the order of its sum,
// so both sides round it alike and the state it is rolled into is compared bit for bit.
TEST_F(MambaBindingsSim, LinearConvUpdateMatchesTheReference) {
  const int64_t batch = 2, hidden = 32, dim = 24, width = 4, outputs = 2 * dim + 8;
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    for (const int64_t begin : {int64_t{8}, outputs - dim}) {
      const bool in_bias = begin == 8, silu = begin == 8;
      at::manual_seed(70 + begin);
      const at::Tensor x = (at::randint(-4, 5, {batch, hidden}) / 4.0).to(dtype);
      const ops::Linear in_proj((at::randint(-4, 5, {outputs, hidden}) / 8.0).to(dtype),
                                maybe(in_bias, (at::randint(-4, 5, {outputs}) / 8.0).to(dtype)));
      const at::Tensor weight = (at::randn({dim, 1, width}) / 2).to(dtype);
      const at::Tensor bias = (at::randn({dim}) / 4).to(dtype);
      const at::Tensor state0 = begin == 8 ? at::randn({batch, width, dim}).to(dtype).transpose(1, 2)
                                           : at::randn({batch, dim, width}).to(dtype);
      const std::string what = fmt::format("{} begin {} in_proj bias {}", name_of(dtype), begin, in_bias);
      struct Fused {
        at::Tensor projection, conv, state;
      };
      const Fused got = run_both_orders(
          [&] {
            Fused f{at::Tensor(), at::full({batch, dim}, NAN, x.options()), state0.clone()};
            f.projection = ops::detail::linear_conv_update_cuda(x, in_proj, begin, f.state, weight.select(1, 0), bias,
                                                                silu, f.conv);
            return f;
          },
          [](const Fused& a, const Fused& b) {
            return same_bytes(a.projection, b.projection) && same_bytes(a.conv, b.conv) && same_bytes(a.state, b.state);
          });
      at::Tensor ref_state = state0.clone();
      const ops::ProjectedConv ref =
          ops::linear_conv_update(x, in_proj, begin, ref_state, weight, bias, silu, Backend::Reference);
      EXPECT_TRUE(same_bytes(got.projection, ref.projection)) << what << ": the projection";
      expect_output(got.projection, ref.projection, kFp32, what + ": the projection");
      expect_output(got.conv, ref.conv, rounding(dtype), what + ": the conv");
      EXPECT_TRUE(same_bytes(got.state, ref_state)) << what << ": the rolled state";
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Mamba-2: the chunked scan, the decode step, the gated RMSNorm.

struct SsdCase {
  int64_t batch, len, heads, head_dim, groups, d_state, chunk;
};

struct SsdProblem {
  at::Tensor x, dt, B, C;
  ops::SsdArgs args;
  at::Tensor state0;  // [Bt, H, P, N]
};

// x, B and C as the mixer has them: [Bt, L, H, P] and [Bt, L, G, N] views of the conv's [Bt, L,
// HP + 2GN] output; dt [Bt, L, H] columns of a wider projection. `step`: the decode step's [Bt, H,
// P], [Bt, G, N] and [Bt, H] (no time dim). `full`: D, dt_bias and softplus, else none of them (dt
// already step sizes); `clamp`: dt clamped to [0.3, 0.8].
SsdProblem make_ssd_problem(const SsdCase& c, at::ScalarType dtype, bool full, bool clamp, bool step, uint64_t seed) {
  at::manual_seed(static_cast<int64_t>(seed));
  SsdProblem p;
  const int64_t hp = c.heads * c.head_dim, gn = c.groups * c.d_state;
  std::vector<int64_t> lead = {c.batch};
  if (!step) lead.push_back(c.len);
  auto sized = [&](std::vector<int64_t> tail) {
    std::vector<int64_t> s = lead;
    s.insert(s.end(), tail.begin(), tail.end());
    return s;
  };
  const int64_t last = static_cast<int64_t>(lead.size());
  const at::Tensor xbc = at::randn(sized({hp + 2 * gn})).to(dtype);
  p.x = xbc.narrow(last, 0, hp).view(sized({c.heads, c.head_dim}));
  p.B = xbc.narrow(last, hp, gn).view(sized({c.groups, c.d_state}));
  p.C = xbc.narrow(last, hp + gn, gn).view(sized({c.groups, c.d_state}));
  const at::Tensor raw =
      full ? at::randn(sized({c.heads + 3})) * 0.5 - 1.0 : at::rand(sized({c.heads + 3})) * 0.9 + 0.05;
  p.dt = raw.to(dtype).narrow(last, 3, c.heads);
  p.args.A = -at::exp(at::randn({c.heads}) * 0.5);
  p.args.chunk_size = c.chunk;
  if (full) {
    p.args.D = at::randn({c.heads});
    p.args.dt_bias = at::randn({c.heads}) * 0.3;
  }
  p.args.dt_softplus = full;
  if (clamp) {
    p.args.dt_min = 0.3;
    p.args.dt_max = 0.8;
  }
  p.state0 = at::randn({c.batch, c.heads, c.head_dim, c.d_state});
  return p;
}

SsdProblem ssd_time_slice(const SsdProblem& p, int64_t from, int64_t len) {
  SsdProblem s = p;
  for (at::Tensor* t : {&s.x, &s.dt, &s.B, &s.C}) *t = t->narrow(1, from, len);
  return s;
}

Outputs binding_ssd_scan(const SsdProblem& p, const at::Tensor& state, bool from_state) {
  Outputs r{at::Tensor(), start_state(state, from_state)};
  r.y = ops::detail::ssd_chunk_scan_cuda(p.x, p.dt, p.B, p.C, p.args, r.state, from_state);
  return r;
}

Outputs reference_ssd_scan(const SsdProblem& p, const at::Tensor& state, bool from_state) {
  Outputs r{at::Tensor(), start_state(state, from_state)};
  r.y = ops::ssd_chunk_scan(p.x, p.dt, p.B, p.C, p.args, r.state, from_state, Backend::Reference);
  return r;
}

// A prompt from zeros (37 tokens, chunks of 16: the last chunk short), then 20 more from the state
// it left (dt clamped there), groups 1 and 2; fp32 (the FMA products), bf16 on tensor cores (the
// default) and bf16 on the FMA products.
TEST_F(MambaBindingsSim, SsdChunkScanMatchesTheReference) {
  const std::vector<SsdCase> cases = {{2, 57, 4, 16, 1, 16, 16}, {1, 57, 4, 8, 2, 32, 16}};
  struct Products {
    at::ScalarType dtype;
    ops::SsdScanProducts products;
  };
  for (const Products pr :
       {Products{at::kFloat, ops::SsdScanProducts::Auto}, Products{at::kBFloat16, ops::SsdScanProducts::Auto},
        Products{at::kBFloat16, ops::SsdScanProducts::Fma}}) {
    for (size_t i = 0; i < cases.size(); ++i) {
      const SsdCase& c = cases[i];
      const bool full = i == 0;
      SsdProblem p = make_ssd_problem(c, pr.dtype, full, false, false, 80 + i);
      p.args.products = pr.products;
      const bool tc = ops::ssd_scan_uses_tensor_cores(pr.dtype, c.d_state, pr.products);
      const std::string what =
          fmt::format("{} {} B {} H {} P {} G {} N {} Q {} full {}", name_of(pr.dtype), tc ? "tensor cores" : "fma",
                      c.batch, c.heads, c.head_dim, c.groups, c.d_state, c.chunk, full);
      const auto y_tol = [&](const at::Tensor& ref) { return tc ? ssd_tc_tol(ref) : ssd_y_tol(ref); };
      const auto state_tol = [&](const at::Tensor& ref) { return tc ? ssd_tc_tol(ref) : kFp32; };
      const SsdProblem first = ssd_time_slice(p, 0, 37);
      const Outputs got1 = run_both_orders([&] { return binding_ssd_scan(first, p.state0, false); }, same_outputs);
      const Outputs ref1 = reference_ssd_scan(first, p.state0, false);
      expect_output(got1.y, ref1.y, y_tol(ref1.y), what + ", the prompt: y");
      expect_output(got1.state, ref1.state, state_tol(ref1.state), what + ", the prompt: the state");
      SsdProblem second = ssd_time_slice(p, 37, 20);
      second.args.dt_min = 0.3;
      second.args.dt_max = 0.8;
      const Outputs got2 = binding_ssd_scan(second, got1.state, true);
      const Outputs ref2 = reference_ssd_scan(second, ref1.state, true);
      expect_output(got2.y, ref2.y, y_tol(ref2.y), what + ", the continuation: y");
      expect_output(got2.state, ref2.state, state_tol(ref2.state), what + ", the continuation: the state");
    }
  }
}

// The decode step against the reference step on the same state (copied): groups 1 and 2, with
// and without D / dt_bias / softplus, dt clamped on half the runs.
TEST_F(MambaBindingsSim, SsdStateUpdateMatchesTheReferenceStep) {
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    for (const int64_t groups : {1, 2}) {
      for (const bool full : {true, false}) {
        const SsdCase c{2, 1, 4, 16, groups, 16, 1};
        const SsdProblem p = make_ssd_problem(c, dtype, full, !full, true, 90 + groups + full);
        const std::string what = fmt::format("{} G {} full {}", name_of(dtype), groups, full);
        const Outputs got = run_both_orders(
            [&] {
              Outputs r{at::Tensor(), p.state0.clone()};
              r.y = ops::detail::ssd_state_update_cuda(p.x, p.dt, p.B, p.C, p.args, r.state);
              return r;
            },
            same_outputs);
        Outputs ref{at::Tensor(), p.state0.clone()};
        ref.y = ops::ssd_state_update(p.x, p.dt, p.B, p.C, p.args, ref.state, Backend::Reference);
        // the inputs are widened to fp32 before any arithmetic on both sides
        expect_output(got.y, ref.y, ssd_y_tol(ref.y), what + ": y");
        expect_output(got.state, ref.state, kFp32, what + ": the state");
      }
    }
  }
}

// The mixer's call (y fp32 from the scan, z a view of in_proj's bf16 output, the weight bf16, out in
// bf16 or ATen's promoted fp32) and all in one dtype; one group and four. Tolerances as
// ssd_cuda_test.cpp states them: one rounding of the output dtype, two where y itself is bf16.
TEST_F(MambaBindingsSim, GatedRmsNormMatchesTheReference) {
  const int64_t d = 96;
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    for (const bool y_fp32 : {true, false}) {
      if (dtype == at::kFloat && !y_fp32) continue;
      for (const int64_t group : {d, d / 4}) {
        for (const std::optional<at::ScalarType> out_dtype : {std::optional<at::ScalarType>(), std::optional(dtype)}) {
          at::manual_seed(group + y_fp32);
          const at::Tensor y = (at::randn({2, 5, d}) * 2.0).to(y_fp32 ? at::kFloat : dtype);
          const at::Tensor z = (at::randn({2, 5, d + 7}) * 2.0).to(dtype).narrow(2, 3, d);
          const at::Tensor w = at::randn({d}).to(dtype);
          const std::string what = fmt::format("{} y fp32 {} group {} out_dtype {}", name_of(dtype), y_fp32, group,
                                               out_dtype ? name_of(*out_dtype) : "none");
          const at::Tensor got = run_both_orders(
              [&] { return ops::detail::gated_rms_norm_cuda(y, z, w, group, 1e-5, out_dtype); }, same_bytes);
          const at::Tensor ref = ops::gated_rms_norm(y, z, w, group, 1e-5, Backend::Reference, out_dtype);
          Tol tol = rounding(ref.scalar_type());
          if (!y_fp32) tol = {2 * tol.atol, 2 * tol.rtol};
          expect_output(got, ref, tol, what);
        }
      }
    }
  }
}

}  // namespace
}  // namespace effarch::sim
