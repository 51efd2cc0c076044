// The rows GEMM (kernels/rows_gemm: a batched decode step's dense projections, 9-64 rows, on
// tensor cores): its split-K plan on the real decode shapes, the kernels' own per-block code
// (kernels/rows_gemm/rows_gemm_math.h; tile products through common/tile_mma.h's host loops) run by
// a host emulation that walks every block, slab and warp in the kernel's order against at::linear
// in fp32 on awkward sizes, when ops::linear takes it, and on a GPU the kernels themselves against
// at::linear for bf16 and fp16 (RowsGemmCuda.*, skipped without one).

#include <cmath>
#include <cstdint>
#include <optional>
#include <vector>

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include "../test_util.h"
#include "cuda_graph_capture.h"
#include "effarch/ops/backend.h"
#include "effarch/ops/linear.h"
#include "rows_gemm/rows_gemm_math.h"
#include "linear_problem.h"
#include "tolerance.h"

namespace effarch::ops {
namespace {

using kernels::RowsGemmParams;
using kernels::RowsGemmPlan;
namespace tile = kernels::tile;

// ---- the plan ----

void expect_covers(const RowsGemmPlan& p, int out, int in, int rows, const std::string& what) {
  EXPECT_GE(int64_t{p.feature_blocks} * kernels::kRowsGemmFeatures, out) << what;
  EXPECT_LT(int64_t{p.feature_blocks - 1} * kernels::kRowsGemmFeatures, out) << what;
  EXPECT_EQ(p.split_k % kernels::kRowsGemmSlab, 0) << what;
  EXPECT_GE(int64_t{p.splits} * p.split_k, in) << what;      // every k in a split
  EXPECT_LT(int64_t{p.splits - 1} * p.split_k, in) << what;  // no empty split
  EXPECT_GE(p.splits, 1) << what;
  EXPECT_LE(p.splits, kernels::kRowsGemmMaxSplits) << what;
  EXPECT_EQ(p.rows_pad, p.frags * 16) << what;
  EXPECT_GE(p.rows_pad, rows) << what;
  EXPECT_LT(p.rows_pad - 16, rows) << what;
}

TEST(RowsGemmPlan, DecodeShapesAtBatch32) {
  struct Shape {
    const char* name;
    int out, in, splits, split_k;
  };
  // 132 SMs: the split doubles while the blocks are under 2 x 132 = 264, a split keeps 256 of K and
  // the partial sums (splits x 32 rows x N fp32, written and read) stay within a quarter of the weight.
  const Shape shapes[] = {
      {"mamba-2.8b in_proj", 10240, 2560, 4, 640},   // 80 feature blocks: 320 blocks
      {"mamba-2.8b out_proj", 2560, 5120, 8, 640},   // 20: 160 (16 splits would write 10 MB of sums for 26 MB)
      {"mamba-2.8b x_proj", 192, 5120, 8, 640},      // 2 blocks of features, the second a quarter used
      {"phi-2 fc2", 2560, 10240, 16, 640},
      {"llama-3-8b gate_up", 28672, 4096, 2, 2048},  // 224: 448
      {"llama-3-8b down", 4096, 14336, 16, 896},
  };
  for (const Shape& s : shapes) {
    const RowsGemmPlan p = kernels::rows_gemm_plan(s.out, s.in, 32, 132);
    expect_covers(p, s.out, s.in, 32, s.name);
    EXPECT_EQ(p.splits, s.splits) << s.name;
    EXPECT_EQ(p.split_k, s.split_k) << s.name;
    EXPECT_EQ(p.frags, 2) << s.name;
    if (p.splits > 1) EXPECT_LE(int64_t{2} * p.splits * p.rows_pad * s.out * 4, int64_t{s.out} * s.in * 2 / 4) << s.name;
  }
  for (int rows : {9, 16, 17, 33, 48, 64}) {
    for (int out : {16, 144, 4096}) {
      for (int in : {16, 48, 1040, 14336}) {
        for (int sms : {1, 48, 132}) {
          expect_covers(kernels::rows_gemm_plan(out, in, rows, sms), out, in, rows,
                        fmt::format("R {} N {} K {} SMs {}", rows, out, in, sms));
        }
      }
    }
  }
  EXPECT_EQ(kernels::rows_gemm_plan(10240, 2560, 32, 1).splits, 1);  // one SM: the features fill it
}

TEST(RowsGemmPlan, ShapesAndAlignmentItTakes) {
  EXPECT_TRUE(kernels::rows_gemm_shape_ok(9, 16, 16));
  EXPECT_TRUE(kernels::rows_gemm_shape_ok(64, 10240, 2560));
  EXPECT_FALSE(kernels::rows_gemm_shape_ok(8, 10240, 2560));   // the GEMV's
  EXPECT_FALSE(kernels::rows_gemm_shape_ok(65, 10240, 2560));  // cuBLAS's
  EXPECT_FALSE(kernels::rows_gemm_shape_ok(32, 50280, 2560));  // Mamba-2.8B's vocabulary: not whole tiles
  EXPECT_FALSE(kernels::rows_gemm_shape_ok(32, 4096, 2568));
  alignas(32) static char buffer[256];
  EXPECT_TRUE(kernels::rows_gemm_aligned(buffer, buffer + 16, 2560, buffer + 64));
  EXPECT_FALSE(kernels::rows_gemm_aligned(buffer + 16, buffer, 2560, buffer));  // W off 32 bytes
  EXPECT_FALSE(kernels::rows_gemm_aligned(buffer, buffer + 8, 2560, buffer));   // x off 16
  EXPECT_FALSE(kernels::rows_gemm_aligned(buffer, buffer, 2564, buffer));       // x's rows off 8 elements
  EXPECT_FALSE(kernels::rows_gemm_aligned(buffer, buffer, 2560, reinterpret_cast<float*>(buffer + 16)));
}

// ---- the host emulation: the kernels' own code, block by block ----

using Problem = test::LinearProblem;


// The products kernel for every block (f, s): the slabs staged by all 256 threads, each warp's
// tile products over the slab, then its tiles stored; then the reduce for every output.
template <int kFrags>
at::Tensor emulate(const Problem& pr, int sm_count, RowsGemmPlan* plan_out = nullptr) {
  RowsGemmParams p;
  p.rows = static_cast<int>(pr.x.size(0));
  p.in = static_cast<int>(pr.w.size(1));
  p.out = static_cast<int>(pr.w.size(0));
  p.x = pr.x.const_data_ptr<float>();
  p.x_row_stride = pr.x.stride(0);
  p.w = pr.w.const_data_ptr<float>();
  p.bias = pr.bias ? pr.bias->const_data_ptr<float>() : nullptr;
  const RowsGemmPlan plan = kernels::rows_gemm_plan(p.out, p.in, p.rows, sm_count);
  EXPECT_EQ(plan.frags, kFrags);
  std::vector<float> partial(static_cast<size_t>(plan.splits) * plan.rows_pad * p.out, std::nanf(""));
  p.partial = partial.data();
  std::vector<float> xs(static_cast<size_t>(kFrags) * 16 * kernels::kRowsGemmXsLd);
  for (int f = 0; f < plan.feature_blocks; ++f) {
    for (int s = 0; s < plan.splits; ++s) {
      const kernels::RowsGemmBlock blk = kernels::rows_gemm_block(p, plan, f, s);
      tile::FragAcc acc[kernels::kRowsGemmWarps][kFrags];
      for (auto& warp : acc) {
        for (auto& a : warp) tile::zero(a);
      }
      for (int k0 = blk.k_begin; k0 < blk.k_end; k0 += kernels::kRowsGemmSlab) {
        std::fill(xs.begin(), xs.end(), std::nanf(""));  // anything not staged would show
        for (int tid = 0; tid < kernels::kRowsGemmThreads; ++tid) {
          kernels::rows_gemm_stage_x<float>(p, kFrags * 16, k0, blk.k_end, tid, kernels::kRowsGemmThreads, xs.data());
        }
        const int k_len = std::min(kernels::kRowsGemmSlab, blk.k_end - k0);
        for (int warp = 0; warp < kernels::kRowsGemmWarps; ++warp) {
          const int n0 = blk.n_base + warp * 16;
          if (n0 < p.out) kernels::rows_gemm_warp_slab<float, kFrags>(p, n0, k0, k_len, xs.data(), acc[warp]);
        }
      }
      for (int warp = 0; warp < kernels::kRowsGemmWarps; ++warp) {
        const int n0 = blk.n_base + warp * 16;
        if (n0 < p.out) kernels::rows_gemm_store<kFrags>(p, plan, s, n0, acc[warp]);
      }
    }
  }
  at::Tensor y = at::empty({p.rows, p.out});
  for (int r = 0; r < p.rows; ++r) {
    for (int n = 0; n < p.out; ++n) y[r][n] = kernels::rows_gemm_output<float>(p, plan, r, n);
  }
  if (plan_out != nullptr) *plan_out = plan;
  return y;
}

at::Tensor emulate_launch(const Problem& pr, int sm_count, RowsGemmPlan* plan = nullptr) {
  switch ((pr.x.size(0) + 15) / 16) {
    case 1: return emulate<1>(pr, sm_count, plan);
    case 2: return emulate<2>(pr, sm_count, plan);
    case 3: return emulate<3>(pr, sm_count, plan);
    default: return emulate<4>(pr, sm_count, plan);
  }
}


TEST(RowsGemmEmulation, MatchesAtLinearOnAwkwardSizes) {
  at::manual_seed(31);
  for (int64_t rows : {9, 16, 17, 31, 48, 64}) {
    for (int64_t out : {16, 144, 256}) {  // 144: a second block with one warp of features
      for (int64_t in : {16, 48, 80, 1040}) {  // slabs of 64 with tails of 16, 48; split K ranges
        const bool bias = (rows + out + in) % 2 == 1;
        const Problem pr = test::make_linear_problem(rows, out, in, bias);
        for (int sms : {1, 132}) {  // one split; as many as the plan allows
          RowsGemmPlan plan;
          const at::Tensor got = emulate_launch(pr, sms, &plan);
          const std::string what = fmt::format("R {} N {} K {} bias {} splits {}", rows, out, in, bias, plan.splits);
          EXPECT_TRUE(at::isfinite(got).all().item<bool>()) << what;
          test::expect_close(got, test::linear_reference(pr), {2e-5, 2e-5}, what);
        }
      }
    }
  }
}

TEST(RowsGemmEmulation, StridedRowsAndSplitsGiveTheSameProduct) {
  at::manual_seed(32);
  const Problem pr = test::make_linear_problem(40, 256, 2560, true, /*row_stride=*/2560 + 24);
  RowsGemmPlan one, many;
  const at::Tensor a = emulate_launch(pr, 1, &one), b = emulate_launch(pr, 132, &many);
  EXPECT_EQ(one.splits, 1);
  EXPECT_GT(many.splits, 1);
  test::expect_close(a, test::linear_reference(pr), {2e-5, 2e-5}, "one split");
  test::expect_close(b, test::linear_reference(pr), {2e-5, 2e-5}, "split K");
}

// ---- when ops::linear takes it ----

TEST(RowsGemm, AppliesOnlyUnderBackendCudaOnAGpuForWholeTiles) {
  // Off the GPU (and for fp32, and outside 9-64 rows) never: ops::linear keeps at::linear.
  const Linear layer(at::randn({64, 32}).to(at::kBFloat16));
  EXPECT_FALSE(detail::rows_gemm_applies(at::randn({32, 32}).to(at::kBFloat16), layer, Backend::Cuda));
  if (!kBuiltWithCuda || !at::hasCUDA()) return;
  const auto cuda = at::TensorOptions().device(at::kCUDA);
  const Linear w(at::randn({64, 32}, cuda).to(at::kBFloat16));
  const at::Tensor x32 = at::randn({32, 32}, cuda).to(at::kBFloat16);
  EXPECT_TRUE(detail::rows_gemm_applies(x32, w, Backend::Cuda));
  EXPECT_FALSE(detail::rows_gemm_applies(x32, w, Backend::Auto));  // cuBLAS until a GPU has timed it
  EXPECT_FALSE(detail::rows_gemm_applies(x32, w, Backend::Reference));
  EXPECT_FALSE(detail::rows_gemm_applies(x32.narrow(0, 0, 8), w, Backend::Cuda));                // the GEMV's
  EXPECT_FALSE(detail::rows_gemm_applies(at::randn({65, 32}, cuda).to(at::kBFloat16), w, Backend::Cuda));
  EXPECT_FALSE(detail::rows_gemm_applies(x32.to(at::kFloat), Linear(w.weight.to(at::kFloat)), Backend::Cuda));
  EXPECT_FALSE(detail::rows_gemm_applies(x32, Linear(at::randn({60, 32}, cuda).to(at::kBFloat16)), Backend::Cuda));
}

// ---- on a GPU ----

using test::cuda_layer;
using test::cuda_randn;
using test::have_gpu;

// The kernels against at::linear in fp32 on the same rounded inputs, rounded once: the sums differ
// in order (the tensor cores' and the splits'), within one rounding of the output.
void expect_kernel_matches(const at::Tensor& x, const Linear& layer, const std::string& what) {
  ASSERT_TRUE(detail::rows_gemm_applies(x, layer, Backend::Cuda)) << what;
  const at::ScalarType dtype = x.scalar_type();
  const at::Tensor expect =
      at::linear(x.to(at::kFloat), layer.weight.to(at::kFloat),
                 layer.bias ? std::optional<at::Tensor>(layer.bias->to(at::kFloat)) : std::nullopt)
          .to(dtype);
  const at::Tensor got = linear(x, layer, Backend::Cuda);
  test::expect_close(got, expect, test::rounding_tolerance(dtype), what);
  EXPECT_TRUE(at::equal(got, linear(x, layer, Backend::Cuda))) << what << ": not deterministic";
}

TEST(RowsGemmCuda, MatchesAtLinearOnAwkwardAndDecodeShapes) {
  if (!have_gpu()) GTEST_SKIP() << "needs a CUDA build and a GPU";
  at::manual_seed(33);
  for (const at::ScalarType dtype : {at::kBFloat16, at::kHalf}) {
    for (int64_t rows : {9, 16, 17, 32, 48, 64}) {
      for (const auto& [out, in] : std::vector<std::pair<int64_t, int64_t>>{
               {16, 16}, {144, 80}, {256, 1040}, {10240, 2560}, {2560, 5120}, {192, 5120}, {4096, 14336}}) {
        const bool bias = (rows + out) % 2 == 0;
        const Linear layer = cuda_layer(out, in, dtype, bias);
        expect_kernel_matches(cuda_randn({rows, in}, dtype), layer,
                              fmt::format("{} R {} N {} K {} bias {}", c10::toString(dtype), rows, out, in, bias));
      }
    }
    // Rows of x further apart than K, and a view that starts off 16 bytes (copied first).
    const Linear layer((cuda_randn({256, 512}, at::kFloat) / 16).to(dtype));
    expect_kernel_matches(cuda_randn({20, 512 + 8}, dtype).narrow(1, 0, 512), layer, "strided rows");
    expect_kernel_matches(cuda_randn({20 * 512 + 1}, dtype).narrow(0, 1, 20 * 512).view({20, 512}), layer,
                          "x off 16 bytes");
  }
}

#ifdef EFFARCH_WITH_CUDA
// The split buffer comes from the caching allocator inside the capture; the replays rewrite y
// with the products of whatever x holds (no host sync, nothing read back).
TEST(RowsGemmCuda, ReplaysInACudaGraph) {
  if (!have_gpu()) GTEST_SKIP() << "needs a CUDA build and a GPU";
  at::manual_seed(34);
  const Linear layer((cuda_randn({2560, 5120}, at::kFloat) / 64).to(at::kBFloat16));
  const at::Tensor x = cuda_randn({32, 1, 5120}, at::kBFloat16);
  (void)linear(x, layer, Backend::Cuda);  // warm-up outside the capture
  at::cuda::CUDAGraph graph;
  const at::Tensor y = test::capture_into(graph, [&] { return linear(x, layer, Backend::Cuda); });
  for (int i = 0; i < 2; ++i) {
    x.copy_(cuda_randn({32, 1, 5120}, at::kBFloat16));
    graph.replay();
    EXPECT_TRUE(at::equal(y, linear(x, layer, Backend::Cuda))) << "replay " << i;
  }
}
#endif

}  // namespace
}  // namespace effarch::ops
