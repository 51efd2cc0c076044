// Mamba-1's selective scan kernels (kernels/selective_scan) run by the CPU executor through their
// launchers, on the mixer's channel-last views, against the recurrence in fp64: the 32-channel
// prefill kernel at segments 8 and 4, unsplit and split over time, the warp-per-channel kernel
// (segment 16) with 16 and 8 steps a lane (lanes16, lanes8), the thread-per-channel kernel
// (segment 0, "pieces") over one piece and split, from a state and from zeros, d_state 1, 16 and
// 64 (the pieces kernel to 16); the one-token update, reading delta or computing it from dt_proj, continuing the
// prefill's state.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <tuple>
#include <vector>

#include "cuda_sim.h"
// the kernels' per-dtype translation units, host-compiled
#include "selective_scan/selective_scan.h"
#include "selective_scan/selective_scan_bf16.cu"
#include "selective_scan/selective_scan_fp16.cu"
#include "selective_scan/selective_scan_fp32.cu"
#include "sim_test.h"

namespace effarch::sim {
namespace {

namespace k = ::effarch::kernels;

// The inputs as the mixer has them: u, delta and z [B, D, L] views of [B, L, D]; B and C [B, N, L]
// views of [B, L, N]; A [D, N], D and the bias [D], the state [B, D, N] in fp32.
struct Inputs {
  at::Tensor u, delta, bm, cm, z, a, d, bias, state0;
};

Inputs make_inputs(int64_t batch, int64_t dim, int64_t len, int64_t n, at::ScalarType dtype, uint64_t seed) {
  at::manual_seed(static_cast<int64_t>(seed));
  Inputs in;
  in.u = at::randn({batch, len, dim}).to(dtype).transpose(1, 2);
  in.delta = (at::randn({batch, len, dim}) - 2).to(dtype).transpose(1, 2);
  in.bm = at::randn({batch, len, n}).to(dtype).transpose(1, 2);
  in.cm = at::randn({batch, len, n}).to(dtype).transpose(1, 2);
  in.z = at::randn({batch, len, dim}).to(dtype).transpose(1, 2);
  in.a = -at::exp(at::randn({dim, n}) / 2);
  in.d = at::randn({dim});
  in.bias = at::randn({dim}) / 4;
  in.state0 = at::randn({batch, dim, n});
  return in;
}

struct Result {
  at::Tensor y, state;
};

// The recurrence token by token in fp64 from the inputs' values.
Result reference(const Inputs& in, bool from_state) {
  const at::Tensor u = in.u.to(at::kDouble), bm = in.bm.to(at::kDouble), cm = in.cm.to(at::kDouble);
  const at::Tensor v = in.delta.to(at::kDouble) + in.bias.to(at::kDouble).view({1, -1, 1});
  const at::Tensor dt = at::where(v > 20, v, at::log1p(at::exp(v)));
  const at::Tensor a = in.a.to(at::kDouble);
  at::Tensor h = from_state ? in.state0.to(at::kDouble) : at::zeros_like(in.state0, at::kDouble);
  std::vector<at::Tensor> ys;
  for (int64_t t = 0; t < u.size(2); ++t) {
    const at::Tensor dtt = dt.select(2, t).unsqueeze(2);  // [B, D, 1]
    h = at::exp(dtt * a.unsqueeze(0)) * h + dtt * bm.select(2, t).unsqueeze(1) * u.select(2, t).unsqueeze(2);
    ys.push_back((h * cm.select(2, t).unsqueeze(1)).sum(2) + in.d.to(at::kDouble) * u.select(2, t));
  }
  const at::Tensor y = at::stack(ys, 2) * at::silu(in.z.to(at::kDouble));
  return {y, h};
}

k::SelectiveScanParams params_for(const Inputs& in, at::Tensor& y, at::Tensor& state) {
  k::SelectiveScanParams p;
  p.batch = static_cast<int>(in.u.size(0));
  p.dim = static_cast<int>(in.u.size(1));
  p.seqlen = static_cast<int>(in.u.size(2));
  p.dstate = static_cast<int>(in.a.size(1));
  p.input_type = element_of(in.u.scalar_type());
  p.u = in.u.const_data_ptr();
  p.u_batch_stride = in.u.stride(0), p.u_dim_stride = in.u.stride(1), p.u_time_stride = in.u.stride(2);
  p.delta = in.delta.const_data_ptr();
  p.delta_batch_stride = in.delta.stride(0), p.delta_dim_stride = in.delta.stride(1);
  p.delta_time_stride = in.delta.stride(2);
  p.B = in.bm.const_data_ptr();
  p.B_batch_stride = in.bm.stride(0), p.B_state_stride = in.bm.stride(1), p.B_time_stride = in.bm.stride(2);
  p.C = in.cm.const_data_ptr();
  p.C_batch_stride = in.cm.stride(0), p.C_state_stride = in.cm.stride(1), p.C_time_stride = in.cm.stride(2);
  p.z = in.z.const_data_ptr();
  p.z_batch_stride = in.z.stride(0), p.z_dim_stride = in.z.stride(1), p.z_time_stride = in.z.stride(2);
  p.y = y.mutable_data_ptr();
  p.y_batch_stride = y.stride(0), p.y_dim_stride = y.stride(1), p.y_time_stride = y.stride(2);
  p.A = in.a.const_data_ptr<float>();
  p.A_dim_stride = in.a.stride(0), p.A_state_stride = in.a.stride(1);
  p.D = in.d.const_data_ptr<float>();
  p.D_stride = 1;
  p.delta_bias = in.bias.const_data_ptr<float>();
  p.delta_bias_stride = 1;
  p.state = state.mutable_data_ptr<float>();
  p.state_batch_stride = state.stride(0), p.state_dim_stride = state.stride(1), p.state_state_stride = state.stride(2);
  return p;
}

Result prefill(const Inputs& in, bool from_state, int segment, int pieces, int lane_steps = 16) {
  const int64_t batch = in.u.size(0), dim = in.u.size(1), len = in.u.size(2), n = in.a.size(1);
  Result r{at::zeros({batch, len, dim}, in.u.options()).transpose(1, 2), in.state0.clone()};
  k::SelectiveScanParams p = params_for(in, r.y, r.state);
  p.from_state = from_state;
  p.segment = segment;
  p.lane_steps = lane_steps;
  at::Tensor states, dtsum;
  if (pieces > 1) {
    const k::scan::SplitPlan plan = k::scan::split_plan(len, segment, pieces);
    p.pieces = plan.pieces;
    p.piece_chunks = plan.piece_chunks;
    states = at::full({batch, plan.pieces, n, dim}, NAN);
    dtsum = at::full({batch, plan.pieces, dim}, NAN);
    p.split_states = states.mutable_data_ptr<float>();
    p.split_dtsum = dtsum.mutable_data_ptr<float>();
  }
  EXPECT_TRUE(k::selective_scan_fwd(p, nullptr).ok());
  return r;
}

void expect_close(const Result& r, const Result& ref, at::ScalarType dtype, const std::string& what) {
  const double bound = dtype == at::kFloat ? 2e-5 : 1.6e-2;
  EXPECT_LE(max_rel_error(r.y, ref.y), bound) << what << ": y";
  EXPECT_LE(max_rel_error(r.state, ref.state), dtype == at::kFloat ? 2e-5 : 1e-4) << what << ": the state";
}

TEST(SelectiveScanSim, PrefillMatchesTheRecurrence) {
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    for (const auto& [batch, dim, len, n] : std::vector<std::tuple<int64_t, int64_t, int64_t, int64_t>>{
             {1, 40, 37, 16}, {2, 32, 1, 16}, {1, 33, 150, 1}, {1, 64, 70, 64}, {1, 9, 300, 16}, {1, 130, 70, 5}}) {
      for (const bool from_state : {false, true}) {
        // segment, pieces, lane steps: lanes8's tiles are 256 steps, so L 300 crosses one; the
        // pieces kernel's chunks are 32 steps, its blocks 128 channels (D 130: a partial one)
        for (const auto& [segment, pieces, steps] : std::vector<std::tuple<int, int, int>>{
                 {8, 1, 16}, {4, 1, 16}, {16, 1, 16}, {16, 1, 8}, {4, 3, 16}, {0, 1, 16}, {0, 3, 16}}) {
          if (segment == k::scan::kPiecesSegment && n > k::scan::kPiecesMaxStates) continue;
          const Inputs in = make_inputs(batch, dim, len, n, dtype, static_cast<uint64_t>(dim * 7 + len));
          const std::string what =
              fmt::format("{} B {} D {} L {} N {} from_state {} segment {} pieces {} lane steps {}", name_of(dtype),
                          batch, dim, len, n, from_state, segment, pieces, steps);
          const Result r = run_both_orders(
              [&] { return prefill(in, from_state, segment, pieces, steps); },
              [](const Result& a, const Result& b) { return same_bytes(a.y, b.y) && same_bytes(a.state, b.state); });
          expect_close(r, reference(in, from_state), dtype, what);
        }
      }
    }
  }
}

// The pieces kernel keeps 16 states a channel in registers: its launcher refuses d_state 17 by
// name, whatever the binding would have said first.
TEST(SelectiveScanSim, PiecesKernelRefusesDstateAbove16) {
  const Inputs in = make_inputs(1, 8, 4, 17, at::kFloat, 3);
  Result r{at::zeros({1, 4, 8}).transpose(1, 2), in.state0.clone()};
  k::SelectiveScanParams p = params_for(in, r.y, r.state);
  p.segment = k::scan::kPiecesSegment;
  const k::LaunchStatus status = k::selective_scan_fwd(p, nullptr);
  EXPECT_FALSE(status.ok());
  EXPECT_STREQ(status.what, "selective_scan_fwd: the pieces kernel takes d_state up to 16");
}

// One token on the state a prefill left: the update kernel (delta read, or computed from
// dt_proj and dt_low) against the recurrence over the prompt and the token.
TEST(SelectiveScanSim, UpdateContinuesThePrefill) {
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    for (const bool fused_dt : {false, true}) {
      const int64_t batch = 2, dim = 48, len = 9, n = 16, rank = 6;
      const Inputs all = make_inputs(batch, dim, len + 1, n, dtype, 5);
      // the token's delta from dt_proj [D, R] and dt_low [B, R], rounded once as the projection is
      const at::Tensor dt_proj = (at::randn({dim, rank}) / 2).to(dtype), dt_low = at::randn({batch, rank}).to(dtype);
      Inputs full = all;
      if (fused_dt) {
        const at::Tensor token_delta = at::mm(dt_low.to(at::kDouble), dt_proj.to(at::kDouble).t()).to(dtype);
        at::Tensor delta = all.delta.contiguous().clone();
        delta.select(2, len).copy_(token_delta);
        full.delta = delta.transpose(1, 2).contiguous().transpose(1, 2);
      }
      Inputs prompt = full;
      for (at::Tensor* t : {&prompt.u, &prompt.delta, &prompt.bm, &prompt.cm, &prompt.z}) *t = t->narrow(2, 0, len);
      const Result pre = prefill(prompt, false, 8, 1);
      Inputs token = full;
      for (at::Tensor* t : {&token.u, &token.delta, &token.bm, &token.cm, &token.z}) *t = t->narrow(2, len, 1);
      Result r{at::zeros({batch, 1, dim}, dtype).transpose(1, 2), pre.state.clone()};
      k::SelectiveScanParams p = params_for(token, r.y, r.state);
      if (fused_dt) {
        p.delta = nullptr;
        p.dt_proj = dt_proj.const_data_ptr();
        p.dt_proj_dim_stride = rank, p.dt_proj_rank_stride = 1;
        p.dt_low = dt_low.const_data_ptr();
        p.dt_low_batch_stride = rank, p.dt_low_rank_stride = 1;
        p.dt_rank = static_cast<int>(rank);
      }
      EXPECT_TRUE(k::selective_state_update(p, nullptr).ok());
      const Result ref = reference(full, false);
      const std::string what = fmt::format("{} fused dt_proj {}", name_of(dtype), fused_dt);
      expect_close({r.y, r.state}, {ref.y.narrow(2, len, 1), ref.state}, dtype, what);
    }
  }
}

}  // namespace
}  // namespace effarch::sim
