// The selective scan's CUDA kernels (kernels/selective_scan/) against the ATen reference, the oracle.
//
// Without a GPU the kernels' own block algorithm runs in its host emulation (selective_scan_math.h:
// every block, each phase for all threads before the next), on launches prepared by the same host
// code the CUDA binding uses (src/ops/selective_scan_launch.cpp): chunking, the cross-warp state
// combination, the carry between chunks, padding past the sequence and the channels, strides,
// from_state and the state written are all checked here in float32. The GPU tests run the real
// kernels for every dtype and skip without a GPU.

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <set>
#include <string>

#include <fmt/format.h>

#include "../test_util.h"
#include "effarch/common/error.h"
#include "effarch/model/catalog.h"
#include "effarch/ops/selective_scan.h"
#include "selective_scan/selective_scan_math.h"
#include "selective_scan_launch.h"
#include "tolerance.h"

namespace effarch::ops {
namespace {

namespace scan = kernels::scan;
using kernels::SelectiveScanParams;

struct Case {
  int64_t batch, dim, dstate, len;
};

std::string name(const Case& c) { return fmt::format("B={} D={} N={} L={}", c.batch, c.dim, c.dstate, c.len); }

// Inputs as the Mamba mixer hands them over (channel-last views of [B, L, X] projections: u, z and
// delta transposed, B and C narrowed out of one projection) or time contiguous [B, X, L].
struct Problem {
  at::Tensor u, delta, B, C, z;
  SelectiveScanArgs args;
  at::Tensor state0;
};

// `rank`: the columns of the mixer's projection before B (dt_rank): 4 leaves B and C on 16-byte
// boundaries in fp32 (and 8-byte in bf16), which the update's vector path needs; 3 does not.
Problem make_problem(const Case& c, at::ScalarType dtype, bool mixer_layout, bool full, at::Device device,
                     int64_t rank = 3) {
  const auto opt = at::TensorOptions().dtype(dtype).device(device);
  Problem p;
  const int64_t b = c.batch, d = c.dim, n = c.dstate, l = c.len;
  if (mixer_layout) {
    const at::Tensor xz = at::randn({b, l, 2 * d}, opt);
    p.u = xz.narrow(2, 0, d).transpose(1, 2);
    p.z = xz.narrow(2, d, d).transpose(1, 2);
    p.delta = (at::randn({b, l, d}, opt.dtype(at::kFloat)) * 0.5 - 1.0).to(dtype).transpose(1, 2);
    const at::Tensor proj = at::randn({b, l, rank + 2 * n}, opt);  // dt_rank columns, then B, then C
    p.B = proj.narrow(2, rank, n).transpose(1, 2);
    p.C = proj.narrow(2, rank + n, n).transpose(1, 2);
  } else {
    p.u = at::randn({b, d, l}, opt);
    p.z = at::randn({b, d, l}, opt);
    p.delta = (at::randn({b, d, l}, opt.dtype(at::kFloat)) * 0.5 - 1.0).to(dtype);
    p.B = at::randn({b, n, l}, opt);
    p.C = at::randn({b, n, l}, opt);
  }
  if (!full) p.delta = (p.delta.to(at::kFloat).sigmoid() * 0.2).to(dtype);  // already step sizes
  const auto fopt = at::TensorOptions().dtype(at::kFloat).device(device);
  p.args.A = -at::exp(at::log(at::arange(1, n + 1, fopt)).expand({d, n}) + at::randn({d, n}, fopt) * 0.1);
  if (full) {
    p.args.D = at::randn({d}, fopt);
    p.args.delta_bias = at::randn({d}, fopt) * 0.3;
  }
  p.args.delta_softplus = full;
  p.state0 = at::randn({b, d, n}, fopt);
  return p;
}

std::optional<at::Tensor> gate(const Problem& p, bool full) { return full ? std::optional<at::Tensor>(p.z) : std::nullopt; }

struct Result {
  at::Tensor y, state;
};

Result reference_scan(const Problem& p, bool full, bool from_state) {
  at::Tensor state = from_state ? p.state0.clone() : at::full_like(p.state0, 7.0f);
  const at::Tensor y = selective_scan(p.u, p.delta, p.B, p.C, gate(p, full), p.args, state, from_state,
                                      Backend::Reference);
  return {y, state};
}

Result emulated_scan(const Problem& p, bool full, bool from_state) {
  at::Tensor state = from_state ? p.state0.clone() : at::full_like(p.state0, 7.0f);
  const detail::SelectiveScanLaunch launch =
      detail::prepare_selective_scan(p.u, p.delta, p.B, p.C, gate(p, full), p.args, state, from_state, "test");
  scan::emulate_scan(launch.params);
  return {launch.result(), state};
}

// The unsplit prefill kernels (SelectiveScanArgs): the 32-channel kernel's 8- and 4-step warp
// segments, the warp-per-channel kernel with 16 or 8 steps a lane (lanes16, lanes8), and the
// thread-per-channel kernel over one piece (segment 0, "pieces", d_state up to 16).
using Variant = SelectiveScanVariant;
// Whether a variant's kernel takes d_state (the pieces kernel holds a channel's states in
// registers: up to 16; larger is refused).
bool takes(const Variant& v, int64_t dstate) {
  SelectiveScanArgs args;
  v.apply(args);
  return dstate <= selective_scan_max_dstate(args);
}
const Variant kUnsplitVariants[] = {{8, 16}, {4, 16}, {16, 16}, {16, 8}, {0, 16}};

const Case kCases[] = {
    {1, 1, 1, 1},     {2, 33, 16, 1},   {1, 40, 16, 7},  {2, 33, 16, 64},  {1, 32, 16, 65},
    {3, 70, 17, 130}, {1, 8, 64, 200},  {1, 5, 256, 70}, {2, 64, 16, 517}, {1, 3, 128, 129},
};

// Every kernel variant: 8- and 4-step warp segments (chunks of 64 and 32 steps), and a warp per
// channel with 16 or 8 steps per lane (tiles of 512 or 256 steps; cases past one tile: 517, and
// 1100 below).
TEST(SelectiveScanKernelEmulated, PrefillMatchesTheReference) {
  for (const Case& c : kCases) {
    for (const bool mixer_layout : {true, false}) {
      for (const bool full : {false, true}) {
        for (const bool from_state : {false, true}) {
          at::manual_seed(static_cast<uint64_t>(c.len * 13 + c.dim * 7 + c.dstate + full + 2 * from_state));
          Problem p = make_problem(c, at::kFloat, mixer_layout, full, at::kCPU);
          const Result ref = reference_scan(p, full, from_state);
          for (const Variant& v : kUnsplitVariants) {
            if (!takes(v, c.dstate)) continue;
            v.apply(p.args);
            const Result got = emulated_scan(p, full, from_state);
            const std::string what = fmt::format("{} mixer_layout={} full={} from_state={} {}", name(c), mixer_layout,
                                                 full, from_state, selective_scan_variant_name(p.args));
            test::expect_close(got.y, ref.y, {1e-5, 1e-5}, what + " y");
            test::expect_close(got.state, ref.state, {1e-5, 1e-5}, what + " state");
          }
        }
      }
    }
  }
}

// Two prefills, the second from the first's state, give the one prefill of the whole.
TEST(SelectiveScanKernelEmulated, ContinuingFromTheStateEqualsOneScan) {
  const Case c{2, 40, 16, 150};
  at::manual_seed(5);
  Problem p = make_problem(c, at::kFloat, /*mixer_layout=*/true, /*full=*/true, at::kCPU);
  const Result whole = reference_scan(p, true, false);
  const std::pair<int, Variant> splits[] = {{1, {8, 16}},   {64, {8, 16}},  {97, {8, 16}}, {33, {4, 16}}, {97, {4, 16}},
                                           {1, {16, 16}}, {97, {16, 16}}, {1, {16, 8}},  {97, {16, 8}},
                                           {1, {0, 16}},  {97, {0, 16}},  {97, {0, 16, 3}}};
  for (const auto& [split, v] : splits) {
    v.apply(p.args);
    const char* variant = selective_scan_variant_name(p.args);
    at::Tensor state = at::zeros_like(p.state0);
    const auto part = [&](const at::Tensor& t, int64_t from, int64_t len) { return t.narrow(2, from, len); };
    const auto run = [&](int64_t from, int64_t len, bool from_state) {
      const detail::SelectiveScanLaunch launch = detail::prepare_selective_scan(
          part(p.u, from, len), part(p.delta, from, len), part(p.B, from, len), part(p.C, from, len),
          part(p.z, from, len), p.args, state, from_state, "test");
      scan::emulate_scan(launch.params);
      return launch.result();
    };
    const at::Tensor y = at::cat({run(0, split, false), run(split, c.len - split, true)}, 2);
    test::expect_close(y, whole.y, {1e-5, 1e-5}, fmt::format("split at {}, {}: y", split, variant));
    test::expect_close(state, whole.state, {1e-5, 1e-5}, fmt::format("split at {}, {}: state", split, variant));
  }
}

// Both paths of the update kernel: a lane per state (B misaligned after 3 columns, or d_state not
// a multiple of 4) and the vector path (after 4 columns), which the mixer's real shapes take.
TEST(SelectiveScanKernelEmulated, UpdateMatchesTheReference) {
  for (const Case& c : kCases) {
    for (const bool full : {false, true}) {
      for (const int64_t rank : {3, 4}) {
        at::manual_seed(static_cast<uint64_t>(c.dim * 3 + c.dstate + full + rank));
        const Problem p = make_problem(c, at::kFloat, /*mixer_layout=*/true, full, at::kCPU, rank);
        const auto first = [](const at::Tensor& t) { return t.select(2, 0); };
        const std::optional<at::Tensor> z = full ? std::optional<at::Tensor>(first(p.z)) : std::nullopt;
        at::Tensor s_ref = p.state0.clone(), s_got = p.state0.clone();
        const at::Tensor y_ref = selective_state_update(first(p.u), first(p.delta), first(p.B), first(p.C), z, p.args,
                                                        s_ref, Backend::Reference);
        const detail::SelectiveScanLaunch launch = detail::prepare_selective_scan(
            first(p.u), first(p.delta), first(p.B), first(p.C), z, p.args, s_got, false, "test");
        const std::string what = fmt::format("{} full={} rank={}", name(c), full, rank);
        EXPECT_EQ(scan::update_vectorized(launch.params, 4), rank == 4 && c.dstate % 4 == 0) << what;
        scan::emulate_update(launch.params);
        test::expect_close(launch.result(), y_ref, {1e-5, 1e-5}, what + " y");
        test::expect_close(s_got, s_ref, {1e-5, 1e-5}, what + " state");
      }
    }
  }
}

// The vector path's conditions one by one: each breaks it, and the update then takes the
// lane-per-state path (the emulation above runs both).
TEST(SelectiveScanKernelEmulated, UpdateVectorPathNeedsContiguousAlignedGroups) {
  alignas(16) static float state[2 * 8 * 16], A[8 * 16];
  alignas(16) static float bc[2 * (16 + 2 * 16)];
  const auto params = [&] {
    SelectiveScanParams p;
    p.batch = 2, p.dim = 8, p.dstate = 16;
    p.state = state, p.state_batch_stride = 8 * 16, p.state_dim_stride = 16, p.state_state_stride = 1;
    p.A = A, p.A_dim_stride = 16, p.A_state_stride = 1;
    p.B = bc + 16, p.B_batch_stride = 48, p.B_state_stride = 1;
    p.C = bc + 32, p.C_batch_stride = 48, p.C_state_stride = 1;
    return p;
  };
  EXPECT_TRUE(scan::update_vectorized(params(), 4));
  EXPECT_TRUE(scan::update_vectorized(params(), 2));  // bf16 / fp16: 8-byte groups
  const std::vector<std::pair<const char*, void (*)(SelectiveScanParams&)>> breaks = {
      {"d_state 18", [](SelectiveScanParams& p) { p.dstate = 18; }},
      {"strided state", [](SelectiveScanParams& p) { p.state_state_stride = 2; }},
      {"strided A", [](SelectiveScanParams& p) { p.A_state_stride = 8; }},
      {"strided B", [](SelectiveScanParams& p) { p.B_state_stride = 2; }},
      {"strided C", [](SelectiveScanParams& p) { p.C_state_stride = 2; }},
      {"state row", [](SelectiveScanParams& p) { p.state_dim_stride = 18; }},
      {"state batch", [](SelectiveScanParams& p) { p.state_batch_stride = 130; }},
      {"state base", [](SelectiveScanParams& p) { p.state += 1; }},
      {"A row", [](SelectiveScanParams& p) { p.A_dim_stride = 17; }},
      {"A base", [](SelectiveScanParams& p) { p.A += 2; }},
      {"B base", [](SelectiveScanParams& p) { p.B = static_cast<const float*>(p.B) + 1; }},
      {"C base", [](SelectiveScanParams& p) { p.C = static_cast<const float*>(p.C) + 3; }},
      {"B rows", [](SelectiveScanParams& p) { p.B_batch_stride = 50; }},
      {"C rows", [](SelectiveScanParams& p) { p.C_batch_stride = 47; }},
  };
  for (const auto& [what, apply] : breaks) {
    SelectiveScanParams p = params();
    apply(p);
    EXPECT_FALSE(scan::update_vectorized(p, 4)) << what;
  }
  // 2-byte elements need 8-byte groups only: a B two elements past a 16-byte boundary still takes it.
  SelectiveScanParams half = params();
  half.B = reinterpret_cast<const char*>(half.B) + 8;
  EXPECT_TRUE(scan::update_vectorized(half, 2));
  EXPECT_FALSE(scan::update_vectorized(half, 4));
}

// Mamba-1's dt_proj fused into the update: the inputs of ops::selective_state_update_dt_proj as
// the mixer hands them over (dt_low the first R columns of the x_proj output, B and C after them).
struct DtProjProblem {
  at::Tensor u, dt_low, B, C, z;
  Linear dt_proj;
  SelectiveScanArgs args;
  at::Tensor state0;
};

DtProjProblem make_dt_proj_problem(int64_t batch, int64_t dim, int64_t dstate, int64_t rank, at::ScalarType dtype,
                                   at::Device device) {
  const auto opt = at::TensorOptions().dtype(dtype).device(device);
  const auto fopt = opt.dtype(at::kFloat);
  DtProjProblem p;
  const at::Tensor xz = at::randn({batch, 2 * dim}, opt);
  p.u = xz.narrow(1, 0, dim);
  p.z = xz.narrow(1, dim, dim);
  const at::Tensor proj = at::randn({batch, rank + 2 * dstate}, opt);
  p.dt_low = proj.narrow(1, 0, rank);
  p.B = proj.narrow(1, rank, dstate);
  p.C = proj.narrow(1, rank + dstate, dstate);
  p.dt_proj = Linear((at::randn({dim, rank}, fopt) / std::sqrt(static_cast<double>(rank))).to(dtype));
  p.args.A = -at::exp(at::log(at::arange(1, dstate + 1, fopt)).expand({dim, dstate}) + at::randn({dim, dstate}, fopt) * 0.1);
  p.args.D = at::randn({dim}, fopt);
  p.args.delta_bias = at::randn({dim}, fopt) * 0.3 - 1.0;
  p.state0 = at::randn({batch, dim, dstate}, fopt);
  return p;
}

// The reference: dt_proj as its own projection, then the update (what the op runs unfused).
Result dt_proj_reference(const DtProjProblem& p) {
  at::Tensor state = p.state0.clone();
  const at::Tensor delta = linear(p.dt_low, p.dt_proj, Backend::Reference);
  const at::Tensor y = selective_state_update(p.u, delta, p.B, p.C, p.z, p.args, state, Backend::Reference);
  return {y, state};
}

struct DtProjCase {
  int64_t batch, dim, dstate, rank;
};
const DtProjCase kDtProjCases[] = {{1, 1, 1, 1},   {2, 33, 16, 3},  {1, 40, 16, 16},  {3, 70, 17, 17},
                                   {1, 8, 64, 160}, {2, 5, 256, 33}, {1, 160, 16, 160}};

// The kernel's own code (the lanes' partial dot products over the rank, their shuffle tree, one
// rounding) in its host emulation against the projection then the update, float32.
TEST(SelectiveScanKernelEmulated, UpdateWithFusedDtProjMatchesTheReference) {
  for (const DtProjCase& c : kDtProjCases) {
    at::manual_seed(static_cast<uint64_t>(c.dim * 7 + c.rank));
    const DtProjProblem p = make_dt_proj_problem(c.batch, c.dim, c.dstate, c.rank, at::kFloat, at::kCPU);
    const Result ref = dt_proj_reference(p);
    at::Tensor state = p.state0.clone();
    const detail::SelectiveScanLaunch launch = detail::prepare_selective_state_update_dt_proj(
        p.u, p.dt_low, p.dt_proj.weight, p.B, p.C, p.z, p.args, state, "test");
    EXPECT_EQ(launch.params.delta, nullptr);
    EXPECT_EQ(launch.params.dt_rank, c.rank);
    const std::string what = fmt::format("B={} D={} N={} R={}", c.batch, c.dim, c.dstate, c.rank);
    // B after R columns: the vector path where R and d_state are multiples of 4 (the real shapes).
    EXPECT_EQ(scan::update_vectorized(launch.params, 4), c.rank % 4 == 0 && c.dstate % 4 == 0) << what;
    scan::emulate_update(launch.params);
    test::expect_close(launch.result(), ref.y, {1e-5, 1e-5}, what + " y");
    test::expect_close(state, ref.state, {1e-5, 1e-5}, what + " state");
  }
}

// Off the GPU the op is the unfused path itself: bit for bit the projection then the update, for
// auto and reference; the fused kernel is for CUDA only, and never for int8 or a biased dt_proj.
TEST(SelectiveScanKernelEmulated, FusedDtProjOffTheGpuIsTheProjectionThenTheUpdate) {
  at::manual_seed(5);
  const DtProjProblem p = make_dt_proj_problem(2, 24, 16, 5, at::kFloat, at::kCPU);
  for (const Backend backend : {Backend::Auto, Backend::Reference}) {
    EXPECT_FALSE(selective_state_update_dt_proj_fuses(p.u, p.dt_low, p.dt_proj, backend));
    at::Tensor s_fused = p.state0.clone(), s_plain = p.state0.clone();
    const at::Tensor y = selective_state_update_dt_proj(p.u, p.dt_low, p.dt_proj, p.B, p.C, p.z, p.args, s_fused, backend);
    const at::Tensor delta = linear(p.dt_low, p.dt_proj, backend);
    const at::Tensor y_plain = selective_state_update(p.u, delta, p.B, p.C, p.z, p.args, s_plain, backend);
    EXPECT_TRUE(at::equal(y, y_plain)) << backend_name(backend);
    EXPECT_TRUE(at::equal(s_fused, s_plain)) << backend_name(backend);
  }
  at::Tensor state = p.state0.clone();
  const Linear wrong(at::randn({23, 5}));
  EXPECT_THROW_WITH(selective_state_update_dt_proj(p.u, p.dt_low, wrong, p.B, p.C, p.z, p.args, state),
                    OpError, {"selective_state_update_dt_proj", "dt_proj must be [24, R]"});
  EXPECT_THROW_WITH(
      selective_state_update_dt_proj(p.u, p.dt_low.narrow(1, 0, 4), p.dt_proj, p.B, p.C, p.z, p.args, state), OpError,
      {"selective_state_update_dt_proj", "dt_low"});
  if (!kBuiltWithCuda || !at::hasCUDA()) return;
  const at::Device gpu(at::kCUDA, 0);
  const at::Tensor u = p.u.to(gpu), dt_low = p.dt_low.to(gpu);
  Linear dense(p.dt_proj.weight.to(gpu));
  EXPECT_TRUE(selective_state_update_dt_proj_fuses(u, dt_low, dense, Backend::Auto));
  EXPECT_FALSE(selective_state_update_dt_proj_fuses(u, dt_low, dense, Backend::Reference));
  EXPECT_FALSE(selective_state_update_dt_proj_fuses(u, dt_low, quantize_int8(dense), Backend::Auto));
  EXPECT_FALSE(selective_state_update_dt_proj_fuses(u, dt_low, Linear(dense.weight, at::zeros({24}, u.options())),
                                                    Backend::Auto));
}

// Inputs in a mix of dtypes are widened to float32 for the kernels (no rounding the reference
// does not do), and the result comes back in u's dtype.
TEST(SelectiveScanKernelEmulated, MixedInputDtypesRunInFloat32) {
  const Case c{1, 33, 16, 40};
  at::manual_seed(9);
  Problem p = make_problem(c, at::kBFloat16, /*mixer_layout=*/true, /*full=*/true, at::kCPU);
  p.delta = p.delta.to(at::kFloat);
  const Result ref = reference_scan(p, true, false);
  at::Tensor state = at::zeros_like(p.state0);
  const detail::SelectiveScanLaunch launch =
      detail::prepare_selective_scan(p.u, p.delta, p.B, p.C, p.z, p.args, state, false, "test");
  EXPECT_EQ(launch.params.input_type, kernels::ElementType::kFloat32);
  scan::emulate_scan(launch.params);
  const at::Tensor y = launch.result();
  EXPECT_EQ(y.scalar_type(), at::kBFloat16);
  test::expect_close(y, ref.y, test::rounding_tolerance(at::kBFloat16), "mixed dtypes y");
  test::expect_close(state, ref.state, {1e-5, 1e-5}, "mixed dtypes state");
}

// The launch's output follows the input layout: channel-last y for the mixer's channel-last u (so
// out_proj reads y's transpose without a copy), time-contiguous otherwise.
TEST(SelectiveScanKernelEmulated, OutputLayoutFollowsTheInput) {
  const Case c{2, 8, 4, 5};
  for (const bool mixer_layout : {true, false}) {
    const Problem p = make_problem(c, at::kFloat, mixer_layout, true, at::kCPU);
    at::Tensor state = at::zeros_like(p.state0);
    const detail::SelectiveScanLaunch launch =
        detail::prepare_selective_scan(p.u, p.delta, p.B, p.C, p.z, p.args, state, false, "test");
    EXPECT_EQ(launch.y.stride(mixer_layout ? 1 : 2), 1) << "mixer_layout=" << mixer_layout;
    EXPECT_EQ(launch.params.y_time_stride, mixer_layout ? c.dim : 1);
  }
}

TEST(SelectiveScanKernelEmulated, DstateAbove256IsRefusedByName) {
  const Problem p = make_problem({1, 4, 257, 3}, at::kFloat, true, true, at::kCPU);
  at::Tensor state = p.state0.clone();
  try {
    detail::prepare_selective_scan(p.u, p.delta, p.B, p.C, p.z, p.args, state, false, "selective_scan");
    FAIL() << "d_state 257 was prepared";
  } catch (const OpError& e) {
    EXPECT_NE(std::string(e.what()).find("selective_scan: the CUDA kernel takes d_state up to 256, got 257"),
              std::string::npos)
        << e.what();
  }
}

TEST(SelectiveScanKernelEmulated, SegmentOtherThan4Or8Or16IsRefusedByName) {
  const Problem p = make_problem({1, 4, 16, 8}, at::kFloat, true, true, at::kCPU);
  SelectiveScanArgs args = p.args;
  args.cuda_segment = 6;
  at::Tensor state = p.state0.clone();
  EXPECT_THROW_WITH(detail::prepare_selective_scan(p.u, p.delta, p.B, p.C, p.z, args, state, false, "selective_scan"),
                    OpError, {"selective_scan: cuda_segment must be 0, 4, 8 or 16, got 6"});
  EXPECT_THROW_WITH(selective_scan_cuda_pieces(args, 1, 4, 8, 132), OpError, {"cuda_segment must be 0, 4, 8 or 16"});
  // 1 was the lane-per-state variant, removed (slower than lanes16 on an H100): refused like any other.
  for (const int bad : {1, 2, -1, 32}) {
    args.cuda_segment = bad;
    EXPECT_THROW_WITH(selective_scan_cuda_pieces(args, 1, 4, 8, 132), OpError,
                      {fmt::format("cuda_segment must be 0, 4, 8 or 16, got {}", bad)});
    EXPECT_THROW_WITH(
        detail::prepare_selective_scan(p.u, p.delta, p.B, p.C, p.z, args, state, false, "selective_scan"), OpError,
        {fmt::format("selective_scan: cuda_segment must be 0, 4, 8 or 16, got {}", bad)});
  }
  // The 16-step kernel has no split: asking for one is an error, not a silent unsplit run.
  args.cuda_segment = 16;
  for (const int split : {-1, 3}) {
    args.cuda_split = split;
    EXPECT_THROW_WITH(
        detail::prepare_selective_scan(p.u, p.delta, p.B, p.C, p.z, args, state, false, "selective_scan"), OpError,
        {"selective_scan: cuda_split", "needs cuda_segment 0, 4 or 8"});
  }
  args.cuda_split = 0;
  EXPECT_EQ(selective_scan_cuda_pieces(args, 1, 5120, 32768, 132), 1);
  EXPECT_STREQ(selective_scan_variant_name(args), "lanes16");
  args.cuda_lane_steps = 8;
  EXPECT_STREQ(selective_scan_variant_name(args), "lanes8");
  EXPECT_NO_THROW(detail::prepare_selective_scan(p.u, p.delta, p.B, p.C, p.z, args, state, false, "selective_scan"));
  // A lane scans 16 or 8 steps; other counts, and lane steps for the 32-channel kernel, are refused.
  for (const int bad : {4, 12, 32, 0}) {
    args.cuda_lane_steps = bad;
    EXPECT_THROW_WITH(detail::prepare_selective_scan(p.u, p.delta, p.B, p.C, p.z, args, state, false, "selective_scan"),
                      OpError, {fmt::format("selective_scan: cuda_lane_steps must be 16 or 8, got {}", bad)});
  }
  args.cuda_lane_steps = 8;
  args.cuda_segment = 4;
  EXPECT_THROW_WITH(detail::prepare_selective_scan(p.u, p.delta, p.B, p.C, p.z, args, state, false, "selective_scan"),
                    OpError, {"selective_scan: cuda_lane_steps 8 needs cuda_segment 16", "got 4"});
  EXPECT_THROW_WITH(selective_scan_cuda_pieces(args, 1, 4, 8, 132), OpError, {"cuda_lane_steps 8 needs"});
}

// One variant against the reference across its tiles: the mixer's and time-contiguous layouts
// (the second takes the element-by-element loads), with and without a start state, and A as
// drawn and scaled down 1000x: then the state decays by about exp(-0.15) over 512 steps instead of
// to nothing, so the state carried from tile to tile is what the later outputs depend on. With
// slow decay y and the state sum ~1000 steps each (|y| up to ~100, with cancellation), so two fp32
// orders of the same sums differ by ~1e-5 of their scale, and the tolerances scale with it. (At
// L=1100 against a float64 recurrence the fp32 reference's state is off by 3.6e-5 at |h| up to
// 23; the 4- and 8-step kernels differ from the reference as much.)
void expect_variant_across_tiles(std::initializer_list<Case> cases, Variant v) {
  for (const Case& c : cases) {
    for (const bool mixer_layout : {true, false}) {
      for (const bool from_state : {false, true}) {
        for (const double a_scale : {1.0, 1e-3}) {
          at::manual_seed(static_cast<uint64_t>(c.len + c.dim + c.dstate + from_state));
          Problem p = make_problem(c, at::kFloat, mixer_layout, /*full=*/true, at::kCPU);
          p.args.A = p.args.A * a_scale;
          const Result ref = reference_scan(p, true, from_state);
          v.apply(p.args);
          const Result got = emulated_scan(p, true, from_state);
          const std::string what = fmt::format("{} {} mixer_layout={} from_state={} A x {}", name(c),
                                               selective_scan_variant_name(p.args), mixer_layout, from_state, a_scale);
          const double y_scale = a_scale < 1.0 ? ref.y.abs().max().item<double>() : 1.0;
          const double h_scale = a_scale < 1.0 ? ref.state.abs().max().item<double>() : 1.0;
          test::expect_close(got.y, ref.y, {1e-5 * y_scale, 1e-5}, what + " y");
          test::expect_close(got.state, ref.state, {1e-5 * h_scale, 1e-5}, what + " state");
        }
      }
    }
  }
}

// The warp-per-channel kernel over several tiles (512 steps for lanes16, 256 for lanes8), a
// channel count that leaves a partial block of 8, d_state that is not a multiple of the 8 staged
// states.
TEST(SelectiveScanKernelEmulated, LanesKernelAcrossTilesAndPartialBlocks) {
  expect_variant_across_tiles({{1, 13, 16, 1100}, {2, 8, 5, 600}, {1, 17, 24, 1024}}, {scan::kLanesSegment, 16});
  expect_variant_across_tiles({{1, 13, 16, 1100}, {2, 8, 5, 300}, {1, 17, 24, 512}}, {scan::kLanesSegment, 8});
}

// The thread-per-channel kernel: one piece and several (its two passes and the workspace), a
// partial last tile of 16 steps and a last piece shorter than a chunk, channels that leave a
// partial block of 128, d_state 16, 5 and 1 (the states past d_state padded with zeros).
TEST(SelectiveScanKernelEmulated, PiecesKernelAcrossPiecesTilesAndPartialBlocks) {
  for (const int split : {0, 2, 5, 9}) {
    expect_variant_across_tiles({{1, 130, 16, 1100}, {2, 8, 5, 301}, {1, 129, 1, 77}},
                                {scan::kPiecesSegment, 16, split});
  }
}

// A channel's states live in the pieces kernel's registers, 16 of them: d_state 17 is refused by
// name for the prefill (the update does not run it; the launcher's own refusal: SelectiveScanSim).
TEST(SelectiveScanKernelEmulated, PiecesKernelRefusesDstateAbove16ByName) {
  const Problem p = make_problem({1, 4, 17, 8}, at::kFloat, true, true, at::kCPU);
  SelectiveScanArgs args = p.args;
  args.cuda_segment = scan::kPiecesSegment;
  at::Tensor state = p.state0.clone();
  EXPECT_THROW_WITH(detail::prepare_selective_scan(p.u, p.delta, p.B, p.C, p.z, args, state, false, "selective_scan"),
                    OpError, {"selective_scan: cuda_segment 0 (the pieces kernel)", "d_state up to 16, got 17"});
  const auto first = [](const at::Tensor& t) { return t.select(2, 0); };
  EXPECT_NO_THROW(detail::prepare_selective_scan(first(p.u), first(p.delta), first(p.B), first(p.C), first(p.z), args,
                                                 state, false, "selective_state_update"));
  EXPECT_STREQ(selective_scan_variant_name(args), "pieces");
  args.cuda_split = 3;
  EXPECT_STREQ(selective_scan_variant_name(args), "pieces");
}

TEST(SelectiveScanKernelEmulated, SharedMemoryFitsAnH100BlockForEveryDstate) {
  for (const int segment : {8, 4}) {
    EXPECT_LE(scan::shared_floats(16, segment) * 4, 48 * 1024);  // Mamba's d_state: no opt-in needed
    EXPECT_LE(scan::shared_floats(kernels::kSelectiveScanMaxStates, segment) * 4, 227 * 1024);
  }
  // Two blocks of the 4-step variant share an SM at Mamba's d_state (228 KiB of shared memory).
  EXPECT_LE(2 * scan::shared_floats(16, 4) * 4, 228 * 1024);
  // The 16-step kernel: two blocks share an SM at every d_state (two blocks a SM is its design).
  using L16 = scan::lanes::Layout<16>;
  using L8 = scan::lanes::Layout<8>;
  EXPECT_LE(2 * (scan::lanes::shared_floats<16>(kernels::kSelectiveScanMaxStates) * 4 + 1024), 228 * 1024);
  EXPECT_EQ(L16::pos(15), 15);
  EXPECT_EQ(L16::pos(16), 20);  // each lane's 16 steps start 16-byte aligned
  EXPECT_EQ(L16::pos(L16::kTile - 1), L16::kRow - scan::lanes::kPad - 1);
  // lanes8: four blocks share an SM at Mamba's d_state (its launch bounds ask for four), two at 256.
  EXPECT_LE(4 * (scan::lanes::shared_floats<8>(16) * 4 + 1024), 228 * 1024);
  EXPECT_LE(2 * (scan::lanes::shared_floats<8>(kernels::kSelectiveScanMaxStates) * 4 + 1024), 228 * 1024);
  EXPECT_EQ(L8::kTile, 256);
  EXPECT_EQ(L8::pos(7), 7);
  EXPECT_EQ(L8::pos(8), 12);  // each lane's 8 steps start 16-byte aligned
  EXPECT_EQ(L8::pos(L8::kTile - 1), L8::kRow - scan::lanes::kPad - 1);
  // The lanes' first steps (the first of each eight lanes' 16-byte read) start on distinct 4-bank
  // groups: no bank conflicts.
  for (const int items : {16, 8}) {
    std::set<int> banks;
    for (int lane = 0; lane < 8; ++lane) {
      const int start = items == 16 ? L16::pos(16 * lane) : L8::pos(8 * lane);
      EXPECT_EQ(start % 4, 0) << items;
      banks.insert(start % 32);
    }
    EXPECT_EQ(banks.size(), 8u) << items << " steps a lane: lanes' reads share a bank";
  }
  EXPECT_EQ(scan::num_slices(1), 1);
  EXPECT_EQ(scan::num_slices(16), 1);
  EXPECT_EQ(scan::num_slices(17), 2);
}

// What an sm_120/121 block (DGX Spark's GB10) may opt into: 99 KiB of dynamic shared memory (an
// H100's 227 KiB). A kernel asking for more fails at cudaFuncSetAttribute (allow_dynamic_shared).
constexpr int64_t kSm121BlockBytes = 101376;

// On a DGX Spark (sm_121, 99 KiB a block) the default prefill, lanes16, launches at every built-in
// Mamba-1 config's d_state (Mamba, Falcon-Mamba, Jamba: 16) and at every d_state the kernels take
// (up to 256), where otherwise those models would not run there at all. The other variants (seg4,
// seg8, the split's two passes) fit at every d_state too. lanes16 takes 81 KiB at d_state 16: one
// block an sm_121 SM (two on an H100), a matter of speed only.
TEST(SelectiveScanKernelEmulated, SharedMemoryFitsAnSm121BlockForEveryDstate) {
  EXPECT_EQ(SelectiveScanArgs{}.cuda_segment, scan::kLanesSegment);  // the default is lanes16
  size_t mamba1 = 0;
  for (const std::string& name : model::builtin_model_names()) {
    const model::ModelConfig config = model::resolve_model(name).config;
    if (!config.mamba || config.mamba->version != 1) continue;
    ++mamba1;
    const int dstate = static_cast<int>(config.mamba->d_state);
    EXPECT_LE(scan::lanes::shared_floats<16>(dstate) * 4, kSm121BlockBytes) << name;
  }
  EXPECT_GE(mamba1, 4u);  // Mamba-130M, Mamba-2.8B, Jamba and the tiny ones
  for (int dstate = 1; dstate <= kernels::kSelectiveScanMaxStates; ++dstate) {
    EXPECT_LE(scan::lanes::shared_floats<16>(dstate) * 4, kSm121BlockBytes) << "d_state " << dstate;
    EXPECT_LE(scan::lanes::shared_floats<8>(dstate) * 4, kSm121BlockBytes) << "d_state " << dstate;
    for (const int segment : {8, 4}) {
      EXPECT_LE(scan::shared_floats(dstate, segment) * 4, kSm121BlockBytes) << "d_state " << dstate;
      EXPECT_LE(scan::split_local_shared_floats(dstate, segment) * 4, kSm121BlockBytes) << "d_state " << dstate;
    }
  }
  EXPECT_EQ(scan::lanes::shared_floats<16>(16) * 4, 82976);
  EXPECT_EQ(scan::lanes::shared_floats<16>(kernels::kSelectiveScanMaxStates) * 4, 98336);  // 3 KiB to spare
  EXPECT_EQ(scan::lanes::shared_floats<8>(16) * 4, 50208);                                 // two blocks an sm_121 SM
}

// ---- The sequence split (SelectiveScanArgs::cuda_split) ----

// The split's two passes against the reference: pieces of several chunks, of one, and a last piece
// shorter than a chunk (130 steps in chunks of 64: 128 + 2); more pieces asked for than there are
// chunks (clamped); d_state 16, 17, 64 and 256 (one to 16 slices); channels not a multiple of 32.
TEST(SelectiveScanKernelEmulated, SplitMatchesTheReference) {
  const Case cases[] = {{2, 33, 16, 130}, {1, 40, 17, 517}, {2, 64, 16, 1000}, {1, 5, 64, 200},
                        {1, 3, 256, 70},  {1, 8, 16, 1},    {2, 35, 16, 64}};
  for (const Case& c : cases) {
    for (const bool full : {false, true}) {
      for (const bool from_state : {false, true}) {
        at::manual_seed(static_cast<uint64_t>(c.len * 5 + c.dim + c.dstate + full + 2 * from_state));
        Problem p = make_problem(c, at::kFloat, /*mixer_layout=*/c.len != 200, full, at::kCPU);
        const Result ref = reference_scan(p, full, from_state);
        for (const int segment : {8, 4, 0}) {
          if (segment == scan::kPiecesSegment && c.dstate > scan::kPiecesMaxStates) continue;
          for (const int pieces : {1, 2, 3, 7}) {
            p.args.cuda_segment = segment;
            p.args.cuda_split = pieces;
            at::Tensor state = from_state ? p.state0.clone() : at::full_like(p.state0, 7.0f);
            const detail::SelectiveScanLaunch launch = detail::prepare_selective_scan(
                p.u, p.delta, p.B, p.C, gate(p, full), p.args, state, from_state, "test");
            const int64_t chunks = (c.len + scan::chunk_steps(segment) - 1) / scan::chunk_steps(segment);
            const std::string what = fmt::format("{} full={} from_state={} segment={} cuda_split={} (pieces {})",
                                                 name(c), full, from_state, segment, pieces, launch.params.pieces);
            // The split runs whenever there are two chunks to split; never more pieces than chunks.
            EXPECT_EQ(launch.params.pieces > 1, pieces > 1 && chunks > 1) << what;
            EXPECT_LE(launch.params.pieces, std::max<int64_t>(chunks, 1)) << what;
            EXPECT_EQ(launch.workspace.defined(), launch.params.pieces > 1) << what;
            scan::emulate_scan(launch.params);
            test::expect_close(launch.result(), ref.y, {1e-5, 1e-5}, what + " y");
            test::expect_close(state, ref.state, {1e-5, 1e-5}, what + " state");
          }
        }
      }
    }
  }
}

// The piece plan: clamped to one piece per chunk, chunks spread evenly, pieces whole chunks.
TEST(SelectiveScanKernelEmulated, SplitPlanClampsToTheChunks) {
  EXPECT_EQ(scan::split_plan(130, 8, 2).pieces, 2);  // 3 chunks of 64: 2 + 1 (the last 2 steps)
  EXPECT_EQ(scan::split_plan(130, 8, 2).piece_chunks, 2);
  EXPECT_EQ(scan::split_plan(130, 8, 7).pieces, 3);  // more pieces than chunks: one per chunk
  EXPECT_EQ(scan::split_plan(130, 8, 7).piece_chunks, 1);
  EXPECT_EQ(scan::split_plan(64, 8, 4).pieces, 1);   // one chunk: no split
  EXPECT_EQ(scan::split_plan(640, 4, 6).pieces, 5);  // 20 chunks in 6: 4 per piece, 5 pieces
  EXPECT_EQ(scan::split_plan(640, 4, 6).piece_chunks, 4);
  EXPECT_EQ(scan::split_plan(1, 4, 1).pieces, 1);
  // At most the grid's z extent (2^24 chunks: pieces of 257, 65281 of them).
  EXPECT_EQ(scan::split_plan(int64_t{1} << 30, 8, 100000).pieces, 65281);
}

// The launcher's choice: mamba-2.8b (d_inner 5120: 160 blocks of 32 channels) on 132 SMs.
TEST(SelectiveScanKernelEmulated, AutoSplitFillsTheGpu) {
  SelectiveScanArgs args;
  args.cuda_segment = 4;
  args.cuda_split = -1;
  // Batch 1: 4 pieces bring 160 blocks to 640 >= 4 x 132.
  EXPECT_EQ(selective_scan_cuda_pieces(args, 1, 5120, 32768, 132), 4);
  EXPECT_EQ(selective_scan_cuda_pieces(args, 2, 5120, 32768, 132), 2);
  EXPECT_EQ(selective_scan_cuda_pieces(args, 4, 5120, 32768, 132), 1);  // 640 blocks already
  // Short sequences: pieces of at least kSplitMinPieceChunks chunks (512 steps: 16 chunks of 32).
  EXPECT_EQ(selective_scan_cuda_pieces(args, 1, 768, 512, 132), 4);
  EXPECT_EQ(selective_scan_cuda_pieces(args, 1, 768, 100, 132), 1);
  EXPECT_EQ(selective_scan_cuda_pieces(args, 1, 768, 32768, 132), 22);  // ceil(528 / 24)
  EXPECT_EQ(selective_scan_cuda_pieces(args, 1, 5120, 32768, 0), 1);    // no SM count: no split
  args.cuda_split = 0;
  EXPECT_EQ(selective_scan_cuda_pieces(args, 1, 5120, 32768, 132), 1);
  args.cuda_split = 7;
  EXPECT_EQ(selective_scan_cuda_pieces(args, 1, 5120, 70, 132), 3);  // 3 chunks of 32
  args.cuda_segment = 8;
  EXPECT_EQ(selective_scan_cuda_pieces(args, 1, 5120, 70, 132), 2);  // 2 chunks of 64
  // The pieces kernel: blocks of 128 channels (40 for mamba-2.8b), chunks of 32 steps.
  args.cuda_segment = scan::kPiecesSegment;
  args.cuda_split = -1;
  EXPECT_EQ(selective_scan_cuda_pieces(args, 1, 5120, 4096, 132), 13);  // 14 wanted: 128 chunks in 10s
  EXPECT_EQ(selective_scan_cuda_pieces(args, 1, 5120, 512, 132), 4);    // pieces of at least 4 chunks
  EXPECT_EQ(selective_scan_cuda_pieces(args, 16, 5120, 4096, 132), 1);  // 640 blocks already
  args.cuda_split = 0;
  EXPECT_EQ(selective_scan_cuda_pieces(args, 1, 5120, 4096, 132), 1);
}

TEST(SelectiveScanKernelEmulated, SplitBelowMinusOneIsRefusedByName) {
  const Problem p = make_problem({1, 4, 16, 8}, at::kFloat, true, true, at::kCPU);
  SelectiveScanArgs args = p.args;
  args.cuda_split = -2;
  at::Tensor state = p.state0.clone();
  EXPECT_THROW_WITH(detail::prepare_selective_scan(p.u, p.delta, p.B, p.C, p.z, args, state, false, "selective_scan"),
                    OpError, {"selective_scan: cuda_split must be -1 (auto), 0 (off) or a piece count, got -2"});
  EXPECT_THROW_WITH(selective_scan_cuda_pieces(args, 1, 4, 8, 132), OpError, {"cuda_split", "got -2"});
}

// The one-token update ignores the split; the auto split's piece count follows the SM count, and
// its prefill matches the reference.
TEST(SelectiveScanKernelEmulated, SplitIsPrefillOnly) {
  const Problem p = make_problem({1, 64, 16, 4096}, at::kFloat, true, true, at::kCPU);
  SelectiveScanArgs args = p.args;
  args.cuda_segment = 4;
  args.cuda_split = -1;
  at::Tensor state = p.state0.clone();
  const auto first = [](const at::Tensor& t) { return t.select(2, 0); };
  const detail::SelectiveScanLaunch update = detail::prepare_selective_scan(
      first(p.u), first(p.delta), first(p.B), first(p.C), first(p.z), args, state, false, "test", 132);
  EXPECT_EQ(update.params.pieces, 1);
  EXPECT_FALSE(update.workspace.defined());
  const detail::SelectiveScanLaunch prefill =
      detail::prepare_selective_scan(p.u, p.delta, p.B, p.C, p.z, args, state, false, "test", 132);
  EXPECT_EQ(prefill.params.pieces, selective_scan_cuda_pieces(args, 1, 64, 4096, 132));
  EXPECT_GT(prefill.params.pieces, 1);
  // Piece states and dt sums, one slot per piece.
  EXPECT_EQ(prefill.workspace.numel(), int64_t{1} * prefill.params.pieces * 64 * (16 + 1));
  scan::emulate_scan(prefill.params);
  at::Tensor ref_state = p.state0.clone();
  const at::Tensor ref = selective_scan(p.u, p.delta, p.B, p.C, p.z, p.args, ref_state, false, Backend::Reference);
  test::expect_close(prefill.result(), ref, {1e-5, 1e-5}, "auto split y");
  test::expect_close(state, ref_state, {1e-5, 1e-5}, "auto split state");
}

// ---- The kernels on a GPU, every dtype. ----

bool have_kernel() { return kBuiltWithCuda && at::hasCUDA(); }

TEST(SelectiveScanCuda, PrefillMatchesTheReference) {
  if (!have_kernel()) GTEST_SKIP() << "needs a CUDA build and a GPU";
  const Case cases[] = {{1, 1, 1, 1},     {2, 33, 16, 1},   {1, 40, 16, 7},     {2, 33, 16, 64},
                        {3, 70, 17, 130}, {1, 5, 256, 70},  {2, 64, 16, 517},   {1, 130, 64, 1000},
                        {1, 512, 16, 4096}, {2, 96, 128, 333}, {1, 13, 24, 1100}};
  for (const Case& c : cases) {
    for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
      for (const bool mixer_layout : {true, false}) {
        for (const bool from_state : {false, true}) {
          at::manual_seed(static_cast<uint64_t>(c.len + c.dim + from_state));
          Problem p = make_problem(c, dtype, mixer_layout, /*full=*/true, at::Device(at::kCUDA, 0));
          const Result ref = reference_scan(p, true, from_state);
          for (const Variant& v : kUnsplitVariants) {
            if (!takes(v, c.dstate)) continue;
            v.apply(p.args);
            at::Tensor state = from_state ? p.state0.clone() : at::full_like(p.state0, 7.0f);
            const at::Tensor y = selective_scan(p.u, p.delta, p.B, p.C, p.z, p.args, state, from_state, Backend::Cuda);
            const std::string what =
                fmt::format("{} {} mixer_layout={} from_state={} {}", name(c), c10::toString(dtype), mixer_layout,
                            from_state, selective_scan_variant_name(p.args));
            EXPECT_EQ(y.scalar_type(), dtype) << what;
            const test::Tolerance tol = test::rounding_tolerance(dtype);
            test::expect_close(y, ref.y, tol, what + " y");
            test::expect_close(state, ref.state, {1e-5, 1e-5}, what + " state");
          }
        }
      }
    }
  }
}

// The split on a GPU: forced piece counts (several, clamped to the chunks) and the launcher's own
// choice (-1), both segments; and twice the same bits (no atomics).
TEST(SelectiveScanCuda, SplitMatchesTheReference) {
  if (!have_kernel()) GTEST_SKIP() << "needs a CUDA build and a GPU";
  const Case cases[] = {{2, 33, 16, 130}, {1, 40, 17, 517},   {1, 130, 64, 1000},
                        {1, 512, 16, 4096}, {2, 96, 128, 333}, {1, 5, 256, 70}};
  for (const Case& c : cases) {
    for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
      for (const bool from_state : {false, true}) {
        at::manual_seed(static_cast<uint64_t>(c.len + c.dim + from_state));
        Problem p = make_problem(c, dtype, /*mixer_layout=*/true, /*full=*/true, at::Device(at::kCUDA, 0));
        const Result ref = reference_scan(p, true, from_state);
        for (const int segment : {8, 4, 0}) {
          if (segment == scan::kPiecesSegment && c.dstate > scan::kPiecesMaxStates) continue;
          for (const int split : {-1, 2, 3, 7}) {
            p.args.cuda_segment = segment;
            p.args.cuda_split = split;
            at::Tensor state = from_state ? p.state0.clone() : at::full_like(p.state0, 7.0f);
            const at::Tensor y = selective_scan(p.u, p.delta, p.B, p.C, p.z, p.args, state, from_state, Backend::Cuda);
            const std::string what = fmt::format("{} {} from_state={} segment={} cuda_split={}", name(c),
                                                 c10::toString(dtype), from_state, segment, split);
            EXPECT_EQ(y.scalar_type(), dtype) << what;
            test::expect_close(y, ref.y, test::rounding_tolerance(dtype), what + " y");
            test::expect_close(state, ref.state, {1e-5, 1e-5}, what + " state");
            at::Tensor again = from_state ? p.state0.clone() : at::zeros_like(p.state0);
            const at::Tensor y2 = selective_scan(p.u, p.delta, p.B, p.C, p.z, p.args, again, from_state, Backend::Cuda);
            EXPECT_TRUE(at::equal(y, y2)) << what << ": two runs differ";
            EXPECT_TRUE(at::equal(state, again)) << what << ": two runs' states differ";
          }
        }
      }
    }
  }
}

TEST(SelectiveScanCuda, UpdateMatchesTheReference) {
  if (!have_kernel()) GTEST_SKIP() << "needs a CUDA build and a GPU";
  // rank 3: the lane-per-state path; rank 4: the vector path (d_state a multiple of 4), which the
  // mixer's shapes take (Mamba-2.8B's at batch 4 and 32 among them).
  for (const Case& c : {Case{1, 1, 1, 1}, Case{2, 33, 16, 1}, Case{4, 5120, 16, 1}, Case{32, 5120, 16, 1},
                        Case{2, 70, 256, 1}}) {
    for (const int64_t rank : {3, 4}) {
      for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
        at::manual_seed(static_cast<uint64_t>(c.dim + c.dstate + rank));
        const Problem p = make_problem(c, dtype, /*mixer_layout=*/true, /*full=*/true, at::Device(at::kCUDA, 0), rank);
        const auto first = [](const at::Tensor& t) { return t.select(2, 0); };
        at::Tensor s_ref = p.state0.clone(), s_got = p.state0.clone();
        const at::Tensor y_ref = selective_state_update(first(p.u), first(p.delta), first(p.B), first(p.C),
                                                        first(p.z), p.args, s_ref, Backend::Reference);
        const at::Tensor y = selective_state_update(first(p.u), first(p.delta), first(p.B), first(p.C), first(p.z),
                                                    p.args, s_got, Backend::Cuda);
        const std::string what = fmt::format("{} rank={} {}", name(c), rank, c10::toString(dtype));
        test::expect_close(y, y_ref, test::rounding_tolerance(dtype), what + " y");
        test::expect_close(s_got, s_ref, {1e-5, 1e-5}, what + " state");
      }
    }
  }
}

// The fused dt_proj on the GPU, every dtype, the real Mamba-2.8B shape among awkward ones. fp32
// within 1e-5; bf16 / fp16 within the dtype's rounding, y and state alike: the kernel sums the
// projection in another order than the GEMV, so a delta may round to the neighbouring value.
TEST(SelectiveScanCuda, UpdateWithFusedDtProjMatchesTheReference) {
  if (!have_kernel()) GTEST_SKIP() << "needs a CUDA build and a GPU";
  for (const DtProjCase& c : {DtProjCase{1, 1, 1, 1}, DtProjCase{2, 33, 16, 3}, DtProjCase{3, 70, 17, 17},
                              DtProjCase{1, 5120, 16, 160}, DtProjCase{32, 5120, 16, 160}, DtProjCase{2, 70, 256, 33}}) {
    for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
      at::manual_seed(static_cast<uint64_t>(c.dim + c.rank));
      const DtProjProblem p = make_dt_proj_problem(c.batch, c.dim, c.dstate, c.rank, dtype, at::Device(at::kCUDA, 0));
      ASSERT_TRUE(selective_state_update_dt_proj_fuses(p.u, p.dt_low, p.dt_proj, Backend::Auto));
      const Result ref = dt_proj_reference(p);
      at::Tensor state = p.state0.clone();
      const at::Tensor y =
          selective_state_update_dt_proj(p.u, p.dt_low, p.dt_proj, p.B, p.C, p.z, p.args, state, Backend::Cuda);
      const std::string what = fmt::format("B={} D={} N={} R={} {}", c.batch, c.dim, c.dstate, c.rank,
                                           c10::toString(dtype));
      test::expect_close(y, ref.y, test::rounding_tolerance(dtype), what + " y");
      test::expect_close(state, ref.state, dtype == at::kFloat ? test::Tolerance{1e-5, 1e-5} : test::rounding_tolerance(dtype),
                         what + " state");
    }
  }
}

}  // namespace
}  // namespace effarch::ops
