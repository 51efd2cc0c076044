// Mamba-2's kernels (kernels/ssd) run by the CPU executor through their launchers, against the
// recurrence in fp64: the chunked scan's four stages (the fp32 FMA loops, and for bf16 the tile
// products through common/tile_mma.h, whose host tiles the executor runs a lane at a time),
// prompts not a multiple of the chunk, groups 1 and 2, from zeros and from a state, dt clamped;
// the one-token update continuing the scan's state; the gated RMSNorm.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <tuple>
#include <vector>

#include "cuda_sim.h"
// the kernels' per-dtype translation units, host-compiled
#include "sim_test.h"
#include "ssd/ssd_bf16.cu"
#include "ssd/ssd_fp16.cu"
#include "ssd/ssd_fp32.cu"

namespace effarch::sim {
namespace {

namespace k = ::effarch::kernels;

struct Shape {
  int64_t batch, len, heads, head_dim, groups, d_state;
};

// x [B, L, H, P], dt [B, L, H], B and C [B, L, G, N]; A, D, dt_bias [H]; the state [B, H, P, N].
struct Inputs {
  at::Tensor x, dt, bm, cm, a, d, bias, state0;
};

Inputs make_inputs(const Shape& s, at::ScalarType dtype, uint64_t seed) {
  at::manual_seed(static_cast<int64_t>(seed));
  return {at::randn({s.batch, s.len, s.heads, s.head_dim}).to(dtype),
          (at::randn({s.batch, s.len, s.heads}) - 1).to(dtype),
          at::randn({s.batch, s.len, s.groups, s.d_state}).to(dtype),
          at::randn({s.batch, s.len, s.groups, s.d_state}).to(dtype),
          -at::exp(at::randn({s.heads}) / 2),
          at::randn({s.heads}),
          at::randn({s.heads}) / 4,
          at::randn({s.batch, s.heads, s.head_dim, s.d_state})};
}

struct Result {
  at::Tensor y, state;
};

double dt_of(double raw, double bias, bool clamp, double lo, double hi) {
  const double v = raw + bias;
  double dt = v > 20 ? v : std::log1p(std::exp(v));
  if (clamp) dt = std::min(std::max(dt, lo), hi);
  return dt;
}

// The recurrence token by token in fp64.
Result reference(const Inputs& in, const Shape& s, bool from_state, bool clamp, double lo, double hi) {
  const at::Tensor x = in.x.to(at::kDouble), bm = in.bm.to(at::kDouble), cm = in.cm.to(at::kDouble);
  at::Tensor h = from_state ? in.state0.to(at::kDouble) : at::zeros_like(in.state0, at::kDouble);
  at::Tensor y = at::zeros({s.batch, s.len, s.heads, s.head_dim}, at::kDouble);
  const int64_t per_group = s.heads / s.groups;
  for (int64_t b = 0; b < s.batch; ++b) {
    for (int64_t t = 0; t < s.len; ++t) {
      for (int64_t hd = 0; hd < s.heads; ++hd) {
        const int64_t g = hd / per_group;
        const double dt = dt_of(in.dt[b][t][hd].item<double>(), in.bias[hd].item<double>(), clamp, lo, hi);
        const double decay = std::exp(dt * in.a[hd].item<double>());
        const at::Tensor xt = x[b][t][hd];  // [P]
        h[b][hd] = decay * h[b][hd] + dt * at::outer(xt, bm[b][t][g]);
        y[b][t][hd] = at::mv(h[b][hd], cm[b][t][g]) + in.d[hd].item<double>() * xt;
      }
    }
  }
  return {y, h};
}

k::SsdHeadParams head_params(const Inputs& in, bool clamp, float lo, float hi) {
  k::SsdHeadParams h;
  h.A = in.a.const_data_ptr<float>();
  h.D = in.d.const_data_ptr<float>();
  h.dt_bias = in.bias.const_data_ptr<float>();
  h.dt_clamp = clamp;
  h.dt_min = lo;
  h.dt_max = hi;
  return h;
}

Result scan(const Inputs& in, const Shape& s, int chunk, bool tensor_cores, bool from_state, bool clamp) {
  Result r{at::zeros({s.batch, s.len, s.heads, s.head_dim}), in.state0.clone()};
  k::SsdScanParams p;
  p.batch = static_cast<int>(s.batch), p.seqlen = static_cast<int>(s.len), p.heads = static_cast<int>(s.heads);
  p.head_dim = static_cast<int>(s.head_dim), p.groups = static_cast<int>(s.groups);
  p.d_state = static_cast<int>(s.d_state);
  p.chunk = chunk;
  p.nchunks = static_cast<int>((s.len + chunk - 1) / chunk);
  p.from_state = from_state;
  p.x_type = element_of(in.x.scalar_type());
  p.tensor_cores = tensor_cores;
  p.head = head_params(in, clamp, 0.05f, 0.6f);
  p.x = in.x.const_data_ptr();
  p.x_batch_stride = in.x.stride(0), p.x_time_stride = in.x.stride(1), p.x_head_stride = in.x.stride(2);
  p.x_dim_stride = in.x.stride(3);
  p.dt = in.dt.const_data_ptr();
  p.dt_batch_stride = in.dt.stride(0), p.dt_time_stride = in.dt.stride(1), p.dt_head_stride = in.dt.stride(2);
  p.B = in.bm.const_data_ptr();
  p.B_batch_stride = in.bm.stride(0), p.B_time_stride = in.bm.stride(1), p.B_group_stride = in.bm.stride(2);
  p.B_state_stride = in.bm.stride(3);
  p.C = in.cm.const_data_ptr();
  p.C_batch_stride = in.cm.stride(0), p.C_time_stride = in.cm.stride(1), p.C_group_stride = in.cm.stride(2);
  p.C_state_stride = in.cm.stride(3);
  p.state = r.state.mutable_data_ptr<float>();
  p.state_batch_stride = r.state.stride(0), p.state_head_stride = r.state.stride(1);
  p.state_dim_stride = r.state.stride(2), p.state_state_stride = r.state.stride(3);
  p.y = r.y.mutable_data_ptr<float>();
  p.y_batch_stride = r.y.stride(0), p.y_time_stride = r.y.stride(1), p.y_head_stride = r.y.stride(2);
  p.y_dim_stride = r.y.stride(3);
  const int64_t per_token = s.batch * s.heads * p.nchunks * chunk;
  at::Tensor ws = at::full({k::ssd_scan_workspace_floats(p)}, NAN);
  p.dt_ws = ws.mutable_data_ptr<float>();
  p.a_ws = p.dt_ws + per_token;
  p.cs_ws = p.a_ws + per_token;
  p.states_ws = p.cs_ws + per_token;
  EXPECT_TRUE(k::ssd_chunk_scan(p, nullptr).ok());
  return r;
}

TEST(SsdSim, ChunkedScanMatchesTheRecurrence) {
  const std::vector<Shape> shapes = {{1, 70, 4, 16, 1, 16}, {2, 33, 4, 32, 2, 32}, {1, 5, 2, 16, 2, 64}};
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    for (const Shape& s : shapes) {
      for (const bool tensor_cores : {false, true}) {
        if (tensor_cores && dtype == at::kFloat) continue;  // bf16 / fp16 only
        for (const bool from_state : {false, true}) {
          const bool clamp = from_state;  // time_step_limit on half the runs
          const Inputs in = make_inputs(s, dtype, static_cast<uint64_t>(s.len * 3 + s.d_state));
          const std::string what =
              fmt::format("{} B {} L {} H {} P {} G {} N {} tensor cores {} from_state {}", name_of(dtype), s.batch,
                          s.len, s.heads, s.head_dim, s.groups, s.d_state, tensor_cores, from_state);
          const Result r = run_both_orders(
              [&] { return scan(in, s, 32, tensor_cores, from_state, clamp); },
              [](const Result& a, const Result& b) { return same_bytes(a.y, b.y) && same_bytes(a.state, b.state); });
          const Result ref = reference(in, s, from_state, clamp, 0.05, 0.6);
          // bf16 inputs are exact in the reference; the tile products round C B^T and the decayed
          // x to bf16 on the way (ssd_tc_math.h), the FMA path does not
          const double bound = dtype == at::kFloat ? 2e-5 : tensor_cores ? 2e-2 : 1e-4;
          EXPECT_LE(max_rel_error(r.y, ref.y), bound) << what << ": y";
          EXPECT_LE(max_rel_error(r.state, ref.state), bound) << what << ": the state";
        }
      }
    }
  }
}

// One token on the state the scan left, against the recurrence over the prompt and the token.
TEST(SsdSim, UpdateContinuesTheScan) {
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    const Shape all{2, 10, 4, 16, 2, 16};
    const Inputs in = make_inputs(all, dtype, 9);
    Shape prompt_shape = all;
    prompt_shape.len = all.len - 1;
    Inputs prompt = in;
    for (at::Tensor* t : {&prompt.x, &prompt.dt, &prompt.bm, &prompt.cm}) *t = t->narrow(1, 0, prompt_shape.len);
    const Result pre = scan(prompt, prompt_shape, 4, false, false, false);
    at::Tensor state = pre.state.clone(), y = at::zeros({all.batch, all.heads, all.head_dim});
    const at::Tensor x = in.x.select(1, all.len - 1), dt = in.dt.select(1, all.len - 1);
    const at::Tensor bm = in.bm.select(1, all.len - 1), cm = in.cm.select(1, all.len - 1);
    k::SsdUpdateParams p;
    p.batch = static_cast<int>(all.batch), p.heads = static_cast<int>(all.heads);
    p.head_dim = static_cast<int>(all.head_dim), p.groups = static_cast<int>(all.groups);
    p.d_state = static_cast<int>(all.d_state);
    p.x_type = element_of(dtype);
    p.head = head_params(in, false, 0.f, 0.f);
    p.x = x.const_data_ptr();
    p.x_batch_stride = x.stride(0), p.x_head_stride = x.stride(1), p.x_dim_stride = x.stride(2);
    p.dt = dt.const_data_ptr();
    p.dt_batch_stride = dt.stride(0), p.dt_head_stride = dt.stride(1);
    p.B = bm.const_data_ptr();
    p.B_batch_stride = bm.stride(0), p.B_group_stride = bm.stride(1), p.B_state_stride = bm.stride(2);
    p.C = cm.const_data_ptr();
    p.C_batch_stride = cm.stride(0), p.C_group_stride = cm.stride(1), p.C_state_stride = cm.stride(2);
    p.state = state.mutable_data_ptr<float>();
    p.state_batch_stride = state.stride(0), p.state_head_stride = state.stride(1);
    p.state_dim_stride = state.stride(2), p.state_state_stride = state.stride(3);
    p.y = y.mutable_data_ptr<float>();
    p.y_batch_stride = y.stride(0), p.y_head_stride = y.stride(1), p.y_dim_stride = y.stride(2);
    EXPECT_TRUE(k::ssd_state_update(p, nullptr).ok());
    const Result ref = reference(in, all, false, false, 0, 0);
    EXPECT_LE(max_rel_error(y, ref.y.select(1, all.len - 1)), 2e-5) << name_of(dtype) << ": y";
    EXPECT_LE(max_rel_error(state, ref.state), 2e-5) << name_of(dtype) << ": the state";
  }
}

// out = rmsnorm_per_group(y * silu(z)) * weight, the groups' sums in fp64.
TEST(SsdSim, GatedRmsNormMatchesTheReference) {
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    for (const auto& [rows, dim, group] : std::vector<std::tuple<int64_t, int, int>>{{3, 256, 256}, {2, 96, 32}}) {
      at::manual_seed(dim + group);
      const at::Tensor y = at::randn({rows, dim}), z = at::randn({rows, dim}).to(dtype);
      const at::Tensor w = (1 + at::randn({dim}) / 4).to(dtype);
      at::Tensor out = at::zeros({rows, dim}, dtype);
      k::GatedRmsNormParams p;
      p.rows = rows, p.dim = dim, p.group_size = group, p.eps = 1e-5f;
      p.y_type = k::ElementType::kFloat32, p.z_type = element_of(dtype);
      p.weight_type = element_of(dtype), p.out_type = element_of(dtype);
      p.y = y.const_data_ptr(), p.y_row_stride = dim, p.y_dim_stride = 1;
      p.z = z.const_data_ptr(), p.z_row_stride = dim, p.z_dim_stride = 1;
      p.weight = w.const_data_ptr(), p.weight_stride = 1;
      p.out = out.mutable_data_ptr(), p.out_row_stride = dim, p.out_dim_stride = 1;
      run_both_orders(
          [&] {
            EXPECT_TRUE(k::gated_rms_norm(p, nullptr).ok());
            return out.clone();
          },
          same_bytes);
      const at::Tensor g = (y.to(at::kDouble) * at::silu(z.to(at::kDouble))).view({rows, dim / group, group});
      const at::Tensor ref = (g * at::rsqrt(g.pow(2).mean(-1, true) + 1e-5)).view({rows, dim}) * w.to(at::kDouble);
      EXPECT_LE(max_rel_error(out, ref), dtype == at::kFloat ? 1e-5 : 1.6e-2) << name_of(dtype) << " dim " << dim;
    }
  }
}

}  // namespace
}  // namespace effarch::sim
