// The rows GEMM (kernels/rows_gemm: a batched decode step's dense product, 9-64 rows, on tensor
// cores through common/tile_mma.h, whose host tiles every lane computes whole) run by the CPU
// executor through its launcher: bf16 and fp16, 9-64 rows (one to four 16-row tiles of x, the
// last part zeros), K with a slab tail, N with idle warps and a second block of features, one
// split of K and several (an uneven last one), a bias or none, strided rows of x and y, against
// the product in fp64 from the same inputs, y = x W^T + bias, within fp32 accumulation and one
// rounding to the element type; and the shapes, alignments and element types it refuses. Every
// launch runs under both schedules of the executor, which must give the same bytes.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "cuda_sim.h"
// the kernel's per-dtype translation units, host-compiled
#include "rows_gemm/rows_gemm_bf16.cu"
#include "rows_gemm/rows_gemm_fp16.cu"
#include "sim_test.h"

namespace effarch::sim {
namespace {

namespace k = ::effarch::kernels;

struct GemmOperands {
  at::Tensor x;     // [R, K], maybe a view with rows further apart
  at::Tensor w;     // [N, K]
  at::Tensor bias;  // [N] or undefined
};

GemmOperands operands(int64_t rows, int64_t out, int64_t in, at::ScalarType dtype, bool bias, int64_t x_stride) {
  GemmOperands o;
  o.x = at::randn({rows, x_stride}).to(dtype).narrow(1, 0, in);
  o.w = (at::randn({out, in}) / std::sqrt(static_cast<double>(in))).to(dtype);
  if (bias) o.bias = (at::randn({out}) / 4).to(dtype);
  return o;
}

k::RowsGemmParams params_for(const GemmOperands& o, int sm_count) {
  k::RowsGemmParams p;
  p.rows = static_cast<int>(o.x.size(0));
  p.in = static_cast<int>(o.x.size(1));
  p.out = static_cast<int>(o.w.size(0));
  p.x_type = element_of(o.x.scalar_type());
  p.x = o.x.const_data_ptr();
  p.x_row_stride = o.x.stride(0);
  p.w = o.w.const_data_ptr();
  if (o.bias.defined()) p.bias = o.bias.const_data_ptr();
  p.sm_count = sm_count;
  return p;
}

struct GemmRun {
  at::Tensor y;        // y's storage [R, y_stride], 7 past column N
  at::Tensor partial;  // fp32 [splits, rows_pad, N], NaN before the launch
};

GemmRun run_rows_gemm(k::RowsGemmParams p, at::ScalarType dtype, int64_t y_stride) {
  const k::RowsGemmPlan plan = k::rows_gemm_plan(p.out, p.in, p.rows, p.sm_count);
  GemmRun r{at::full({p.rows, y_stride}, 7, dtype), at::full({plan.splits, plan.rows_pad, p.out}, NAN)};
  p.y = r.y.mutable_data_ptr();
  p.y_row_stride = y_stride;
  p.partial = r.partial.mutable_data_ptr<float>();
  reset_launches();
  EXPECT_TRUE(k::rows_gemm(p, nullptr).ok());
  EXPECT_EQ(launches(), 2);  // the products, then the reduce
  return r;
}

bool same_run(const GemmRun& a, const GemmRun& b) { return same_bytes(a.y, b.y) && same_bytes(a.partial, b.partial); }

// |actual - ref| within `sums` fp32 roundings of the terms' magnitudes (e) and then one rounding
// with unit roundoff u (0: none): u |ref| + (1 + u) e.
void expect_within(const at::Tensor& actual, const at::Tensor& ref, const at::Tensor& magnitude, double u, int64_t sums,
                   const std::string& what) {
  const at::Tensor e = magnitude * (sums * std::ldexp(1.0, -24));
  const at::Tensor diff = (actual.to(at::kDouble) - ref).abs();
  const double excess = (diff - (u * ref.abs() + (1 + u) * e)).max().item<double>();
  EXPECT_LE(excess, 0.0) << what << ": max |actual - ref| " << diff.max().item<double>() << " of max |ref| "
                         << ref.abs().max().item<double>();
}

// y: the fp64 product and bias, within the kernel's fp32 sums (K products, the splits, the bias)
// and one rounding to the element type.
void expect_y_within_rounding(const at::Tensor& y, const GemmOperands& o, int splits, const std::string& what) {
  at::Tensor ref = at::mm(o.x.to(at::kDouble), o.w.to(at::kDouble).t());
  at::Tensor magnitude = at::mm(o.x.to(at::kDouble).abs(), o.w.to(at::kDouble).abs().t());
  if (o.bias.defined()) {
    ref = ref + o.bias.to(at::kDouble);
    magnitude = magnitude + o.bias.to(at::kDouble).abs();
  }
  expect_within(y, ref, magnitude, unit_roundoff(o.x.scalar_type()), o.x.size(1) + splits + 1, what);
}

// The partial buffer: split s holds the fp32 product over its K range for x's rows, zeros for
// the padding rows past them (their staged x is zeros).
void expect_partial_sums(const at::Tensor& partial, const GemmOperands& o, const k::RowsGemmPlan& plan,
                         const std::string& what) {
  const int64_t rows = o.x.size(0), in = o.x.size(1);
  for (int s = 0; s < plan.splits; ++s) {
    const int64_t k0 = int64_t{s} * plan.split_k, len = std::min<int64_t>(plan.split_k, in - k0);
    const at::Tensor x = o.x.narrow(1, k0, len).to(at::kDouble), w = o.w.narrow(1, k0, len).to(at::kDouble);
    const std::string split = fmt::format("{}: split {} (K {} .. {})", what, s, k0, k0 + len);
    expect_within(partial[s].narrow(0, 0, rows), at::mm(x, w.t()), at::mm(x.abs(), w.abs().t()), 0, len, split);
    EXPECT_TRUE(
        at::equal(partial[s].narrow(0, rows, plan.rows_pad - rows), at::zeros({plan.rows_pad - rows, o.w.size(0)})))
        << split << ": the padding rows";
  }
}

struct Shape {
  int64_t rows, out, in;
  int sm_count;  // 4: a small GPU, whose plan splits K where the length allows (0: 132 SMs)
  int splits;    // what the plan makes of it
};

TEST(RowsGemmSim, EveryTileCountSplitAndTailMatchesTheReference) {
  const std::vector<Shape> shapes = {
      {9, 48, 80, 0, 1},     // one tile of x, seven rows of it zeros; a slab and a K tail of 16
      {17, 96, 208, 0, 1},   // two tiles; warps 6 and 7 idle; three slabs and a tail
      {33, 32, 144, 0, 1},   // three tiles
      {64, 96, 256, 0, 1},   // four whole tiles, four whole slabs
      {9, 144, 64, 0, 1},    // a second block of features, one warp of it busy
      {16, 16, 16, 0, 1},    // one tile, one k-step
      {9, 48, 528, 4, 2},    // splits of 320 and 208 (the second's last slab a tail of 16)
      {17, 32, 1024, 4, 2},  // 32 rows of partial sums: two splits
      {9, 32, 1024, 4, 4},   // 16 rows: four
  };
  for (const at::ScalarType dtype : {at::kBFloat16, at::kHalf}) {
    for (const Shape& s : shapes) {
      for (const bool bias : {false, true}) {
        at::manual_seed(s.rows * 1000 + s.out * 10 + s.in);
        const GemmOperands o = operands(s.rows, s.out, s.in, dtype, bias, s.in);
        const k::RowsGemmParams p = params_for(o, s.sm_count);
        const k::RowsGemmPlan plan = k::rows_gemm_plan(p.out, p.in, p.rows, p.sm_count);
        const std::string what = fmt::format("{} rows {} out {} in {} splits {} bias {}", name_of(dtype), s.rows, s.out,
                                             s.in, plan.splits, bias);
        ASSERT_EQ(plan.splits, s.splits) << what;
        const GemmRun r = run_both_orders([&] { return run_rows_gemm(p, dtype, s.out); }, same_run);
        expect_y_within_rounding(r.y, o, plan.splits, what);
        expect_partial_sums(r.partial, o, plan, what);
      }
    }
  }
}

TEST(RowsGemmSim, StridedRowsOfXAndY) {
  for (const at::ScalarType dtype : {at::kBFloat16, at::kHalf}) {
    for (const Shape& s : std::vector<Shape>{{17, 48, 208, 0, 1}, {9, 32, 528, 4, 2}}) {
      at::manual_seed(s.rows + s.in);
      const int64_t x_stride = s.in + 24, y_stride = s.out + 3;
      const GemmOperands o = operands(s.rows, s.out, s.in, dtype, true, x_stride);
      const k::RowsGemmParams p = params_for(o, s.sm_count);
      const std::string what =
          fmt::format("{} rows {} out {} in {} x stride {}", name_of(dtype), s.rows, s.out, s.in, x_stride);
      ASSERT_EQ(k::rows_gemm_plan(p.out, p.in, p.rows, p.sm_count).splits, s.splits) << what;
      const GemmRun r = run_both_orders([&] { return run_rows_gemm(p, dtype, y_stride); }, same_run);
      expect_y_within_rounding(r.y.narrow(1, 0, s.out), o, s.splits, what);
      EXPECT_TRUE(at::equal(r.y.narrow(1, s.out, y_stride - s.out), at::full({s.rows, y_stride - s.out}, 7, dtype)))
          << what << ": the columns between y's rows";
    }
  }
}

TEST(RowsGemmSim, RefusesWhatItCannotTile) {
  at::manual_seed(5);
  const at::Tensor x = at::randn({70, 72}).to(at::kBFloat16), w = at::randn({48, 64}).to(at::kBFloat16);
  const at::Tensor y = at::zeros({70, 48}, at::kBFloat16), partial = at::zeros({4096});
  k::RowsGemmParams good;
  good.rows = 9;
  good.in = 64;
  good.out = 48;
  good.x = x.const_data_ptr();
  good.x_row_stride = 72;
  good.w = w.const_data_ptr();
  good.y = y.mutable_data_ptr();
  good.y_row_stride = 48;
  good.partial = partial.mutable_data_ptr<float>();
  struct Case {
    const char* name;
    void (*change)(k::RowsGemmParams&);
  };
  const std::vector<Case> cases = {
      {"8 rows", [](k::RowsGemmParams& p) { p.rows = 8; }},
      {"65 rows", [](k::RowsGemmParams& p) { p.rows = 65; }},
      {"N 40", [](k::RowsGemmParams& p) { p.out = 40; }},
      {"K 40", [](k::RowsGemmParams& p) { p.in = 40; }},
      {"x's rows 68 apart", [](k::RowsGemmParams& p) { p.x_row_stride = 68; }},
      {"x off 16 bytes", [](k::RowsGemmParams& p) { p.x = static_cast<const __nv_bfloat16*>(p.x) + 4; }},
      {"W off 32 bytes", [](k::RowsGemmParams& p) { p.w = static_cast<const __nv_bfloat16*>(p.w) + 8; }},
      {"no partial buffer", [](k::RowsGemmParams& p) { p.partial = nullptr; }},
      {"partial off 32 bytes", [](k::RowsGemmParams& p) { p.partial += 4; }},
      {"fp32", [](k::RowsGemmParams& p) { p.x_type = k::ElementType::kFloat32; }},
  };
  for (const Case& c : cases) {
    k::RowsGemmParams p = good;
    c.change(p);
    reset_launches();
    EXPECT_FALSE(k::rows_gemm(p, nullptr).ok()) << c.name;
    EXPECT_EQ(launches(), 0) << c.name;
  }
  reset_launches();
  EXPECT_TRUE(k::rows_gemm(good, nullptr).ok());
  EXPECT_EQ(launches(), 2);
}

}  // namespace
}  // namespace effarch::sim
