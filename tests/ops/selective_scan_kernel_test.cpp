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

#include <optional>
#include <string>

#include <fmt/format.h>

#include "../test_util.h"
#include "effarch/common/error.h"
#include "effarch/ops/selective_scan.h"
#include "selective_scan/selective_scan_math.h"
#include "selective_scan_launch.h"
#include "tolerance.h"

namespace effarch::ops {
namespace {

namespace scan = kernels::scan;

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

Problem make_problem(const Case& c, at::ScalarType dtype, bool mixer_layout, bool full, at::Device device) {
  const auto opt = at::TensorOptions().dtype(dtype).device(device);
  Problem p;
  const int64_t b = c.batch, d = c.dim, n = c.dstate, l = c.len;
  if (mixer_layout) {
    const at::Tensor xz = at::randn({b, l, 2 * d}, opt);
    p.u = xz.narrow(2, 0, d).transpose(1, 2);
    p.z = xz.narrow(2, d, d).transpose(1, 2);
    p.delta = (at::randn({b, l, d}, opt.dtype(at::kFloat)) * 0.5 - 1.0).to(dtype).transpose(1, 2);
    const at::Tensor proj = at::randn({b, l, 3 + 2 * n}, opt);  // dt_rank 3, then B, then C
    p.B = proj.narrow(2, 3, n).transpose(1, 2);
    p.C = proj.narrow(2, 3 + n, n).transpose(1, 2);
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

const Case kCases[] = {
    {1, 1, 1, 1},     {2, 33, 16, 1},   {1, 40, 16, 7},  {2, 33, 16, 64},  {1, 32, 16, 65},
    {3, 70, 17, 130}, {1, 8, 64, 200},  {1, 5, 256, 70}, {2, 64, 16, 517}, {1, 3, 128, 129},
};

// Both kernel variants (8- and 4-step warp segments: chunks of 64 and 32 steps).
TEST(SelectiveScanKernelEmulated, PrefillMatchesTheReference) {
  for (const Case& c : kCases) {
    for (const bool mixer_layout : {true, false}) {
      for (const bool full : {false, true}) {
        for (const bool from_state : {false, true}) {
          at::manual_seed(static_cast<uint64_t>(c.len * 13 + c.dim * 7 + c.dstate + full + 2 * from_state));
          Problem p = make_problem(c, at::kFloat, mixer_layout, full, at::kCPU);
          const Result ref = reference_scan(p, full, from_state);
          for (const int segment : {8, 4}) {
            p.args.cuda_segment = segment;
            const Result got = emulated_scan(p, full, from_state);
            const std::string what = fmt::format("{} mixer_layout={} full={} from_state={} segment={}", name(c),
                                                 mixer_layout, full, from_state, segment);
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
  for (const auto& [split, segment] : {std::pair{1, 8}, {64, 8}, {97, 8}, {33, 4}, {97, 4}}) {
    p.args.cuda_segment = segment;
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
    test::expect_close(y, whole.y, {1e-5, 1e-5}, fmt::format("split at {}, segment {}: y", split, segment));
    test::expect_close(state, whole.state, {1e-5, 1e-5}, fmt::format("split at {}, segment {}: state", split, segment));
  }
}

TEST(SelectiveScanKernelEmulated, UpdateMatchesTheReference) {
  for (const Case& c : kCases) {
    for (const bool full : {false, true}) {
      at::manual_seed(static_cast<uint64_t>(c.dim * 3 + c.dstate + full));
      const Problem p = make_problem(c, at::kFloat, /*mixer_layout=*/true, full, at::kCPU);
      const auto first = [](const at::Tensor& t) { return t.select(2, 0); };
      const std::optional<at::Tensor> z = full ? std::optional<at::Tensor>(first(p.z)) : std::nullopt;
      at::Tensor s_ref = p.state0.clone(), s_got = p.state0.clone();
      const at::Tensor y_ref = selective_state_update(first(p.u), first(p.delta), first(p.B), first(p.C), z, p.args,
                                                      s_ref, Backend::Reference);
      const detail::SelectiveScanLaunch launch = detail::prepare_selective_scan(
          first(p.u), first(p.delta), first(p.B), first(p.C), z, p.args, s_got, false, "test");
      scan::emulate_update(launch.params);
      const std::string what = fmt::format("{} full={}", name(c), full);
      test::expect_close(launch.result(), y_ref, {1e-5, 1e-5}, what + " y");
      test::expect_close(s_got, s_ref, {1e-5, 1e-5}, what + " state");
    }
  }
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

TEST(SelectiveScanKernelEmulated, SegmentOtherThan8Or4IsRefusedByName) {
  const Problem p = make_problem({1, 4, 16, 8}, at::kFloat, true, true, at::kCPU);
  SelectiveScanArgs args = p.args;
  args.cuda_segment = 6;
  at::Tensor state = p.state0.clone();
  EXPECT_THROW_WITH(detail::prepare_selective_scan(p.u, p.delta, p.B, p.C, p.z, args, state, false, "selective_scan"),
                    OpError, {"selective_scan: cuda_segment must be 8 or 4, got 6"});
}

TEST(SelectiveScanKernelEmulated, SharedMemoryFitsAnH100BlockForEveryDstate) {
  for (const int segment : {8, 4}) {
    EXPECT_LE(scan::shared_floats(16, segment) * 4, 48 * 1024);  // Mamba's d_state: no opt-in needed
    EXPECT_LE(scan::shared_floats(kernels::kSelectiveScanMaxStates, segment) * 4, 227 * 1024);
  }
  // Two blocks of the 4-step variant share an SM at Mamba's d_state (228 KiB of shared memory).
  EXPECT_LE(2 * scan::shared_floats(16, 4) * 4, 228 * 1024);
  EXPECT_EQ(scan::num_slices(1), 1);
  EXPECT_EQ(scan::num_slices(16), 1);
  EXPECT_EQ(scan::num_slices(17), 2);
}

// ---- The kernels on a GPU, every dtype. ----

bool have_kernel() { return kBuiltWithCuda && at::hasCUDA(); }

TEST(SelectiveScanCuda, PrefillMatchesTheReference) {
  if (!have_kernel()) GTEST_SKIP() << "needs a CUDA build and a GPU";
  const Case cases[] = {{1, 1, 1, 1},     {2, 33, 16, 1},   {1, 40, 16, 7},     {2, 33, 16, 64},
                        {3, 70, 17, 130}, {1, 5, 256, 70},  {2, 64, 16, 517},   {1, 130, 64, 1000},
                        {1, 512, 16, 4096}, {2, 96, 128, 333}};
  for (const Case& c : cases) {
    for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
      for (const bool mixer_layout : {true, false}) {
        for (const bool from_state : {false, true}) {
          at::manual_seed(static_cast<uint64_t>(c.len + c.dim + from_state));
          Problem p = make_problem(c, dtype, mixer_layout, /*full=*/true, at::Device(at::kCUDA, 0));
          const Result ref = reference_scan(p, true, from_state);
          for (const int segment : {8, 4}) {
            p.args.cuda_segment = segment;
            at::Tensor state = from_state ? p.state0.clone() : at::full_like(p.state0, 7.0f);
            const at::Tensor y = selective_scan(p.u, p.delta, p.B, p.C, p.z, p.args, state, from_state, Backend::Cuda);
            const std::string what = fmt::format("{} {} mixer_layout={} from_state={} segment={}", name(c),
                                                 c10::toString(dtype), mixer_layout, from_state, segment);
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

TEST(SelectiveScanCuda, UpdateMatchesTheReference) {
  if (!have_kernel()) GTEST_SKIP() << "needs a CUDA build and a GPU";
  for (const Case& c : {Case{1, 1, 1, 1}, Case{2, 33, 16, 1}, Case{4, 5120, 16, 1}, Case{2, 70, 256, 1}}) {
    for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
      at::manual_seed(static_cast<uint64_t>(c.dim + c.dstate));
      const Problem p = make_problem(c, dtype, /*mixer_layout=*/true, /*full=*/true, at::Device(at::kCUDA, 0));
      const auto first = [](const at::Tensor& t) { return t.select(2, 0); };
      at::Tensor s_ref = p.state0.clone(), s_got = p.state0.clone();
      const at::Tensor y_ref = selective_state_update(first(p.u), first(p.delta), first(p.B), first(p.C),
                                                      first(p.z), p.args, s_ref, Backend::Reference);
      const at::Tensor y = selective_state_update(first(p.u), first(p.delta), first(p.B), first(p.C), first(p.z),
                                                  p.args, s_got, Backend::Cuda);
      const std::string what = fmt::format("{} {}", name(c), c10::toString(dtype));
      test::expect_close(y, y_ref, test::rounding_tolerance(dtype), what + " y");
      test::expect_close(s_got, s_ref, {1e-5, 1e-5}, what + " state");
    }
  }
}

}  // namespace
}  // namespace effarch::ops
