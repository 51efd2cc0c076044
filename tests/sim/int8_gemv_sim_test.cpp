// The weight-only int8 GEMV (kernels/int8_gemv: a decode step's product with int8 weights and fp32
// per-row scales) run by the CPU executor through its launcher: 1-8 rows of x in fp32, bf16 and
// fp16, lengths that take the 16-byte loads (multiples of 16, one past a warp's 512) and the scalar
// loop (7, 37, 300), output counts that leave a block's warps idle, with and without a bias, and
// strided rows of x and y, against the dequantised product in fp64, y = x (q scale[:, None])^T + bias,
// within fp32 accumulation and one rounding to the element type. Which loop the launcher picks
// (the 16-byte loads only for aligned rows) is told by a sum whose fp32 rounding depends on the
// order of its terms; rows past the maximum are refused. Every launch runs under both schedules of
// the executor, which must give the same bytes.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "cuda_sim.h"
// the kernel's per-dtype translation units, host-compiled
#include "int8_gemv/int8_gemv_bf16.cu"
#include "int8_gemv/int8_gemv_fp16.cu"
#include "int8_gemv/int8_gemv_fp32.cu"
#include "sim_test.h"

namespace effarch::sim {
namespace {

namespace k = ::effarch::kernels;

struct Int8Operands {
  at::Tensor x;      // [R, K], maybe a view with rows further apart
  at::Tensor q;      // int8 [O, K]
  at::Tensor scale;  // fp32 [O]
  at::Tensor bias;   // [O] or undefined
};

Int8Operands operands(int64_t rows, int64_t out, int64_t in, at::ScalarType dtype, bool bias, int64_t x_stride) {
  Int8Operands o;
  o.x = at::randn({rows, x_stride}).to(dtype).narrow(1, 0, in);
  o.q = at::randint(-127, 128, {out, in}).to(at::kChar);
  // steps of a row's largest weight over 127, a different one each row
  o.scale = (at::rand({out}) + 0.25) / (127 * std::sqrt(static_cast<double>(in)));
  if (bias) o.bias = (at::randn({out}) / 4).to(dtype);
  return o;
}

k::Int8GemvParams params_for(const Int8Operands& o) {
  k::Int8GemvParams p;
  p.rows = static_cast<int>(o.x.size(0));
  p.in = static_cast<int>(o.x.size(1));
  p.out = static_cast<int>(o.q.size(0));
  p.x_type = element_of(o.x.scalar_type());
  p.x = o.x.const_data_ptr();
  p.x_row_stride = o.x.stride(0);
  p.q = o.q.const_data_ptr<int8_t>();
  p.scale = o.scale.const_data_ptr<float>();
  if (o.bias.defined()) p.bias = o.bias.const_data_ptr();
  return p;
}

// y's storage [R, y_stride] (filled with 7 first: the columns past O stay so); y its first O columns.
at::Tensor run_int8_gemv(k::Int8GemvParams p, at::ScalarType dtype, int64_t y_stride) {
  at::Tensor storage = at::full({p.rows, y_stride}, 7, dtype);
  p.y = storage.mutable_data_ptr();
  p.y_row_stride = y_stride;
  EXPECT_TRUE(k::int8_gemv(p, nullptr).ok());
  return storage;
}

// fp64 from the same inputs: x (q scale[:, None])^T + bias.
at::Tensor reference(const Int8Operands& o) {
  const at::Tensor w = o.q.to(at::kDouble) * o.scale.to(at::kDouble).unsqueeze(1);
  at::Tensor y = at::mm(o.x.to(at::kDouble), w.t());
  return o.bias.defined() ? y + o.bias.to(at::kDouble) : y;
}

// |y - ref| within the kernel's fp32 sum of K products, its scale and bias (e: (K + 2) fp32
// roundings of the terms' magnitudes), and one rounding to the element type: u |ref| + (1 + u) e.
void expect_within_rounding(const at::Tensor& y, const Int8Operands& o, const std::string& what) {
  const at::Tensor ref = reference(o);
  const at::Tensor w = o.q.to(at::kDouble).abs() * o.scale.to(at::kDouble).unsqueeze(1);
  at::Tensor magnitude = at::mm(o.x.to(at::kDouble).abs(), w.t());
  if (o.bias.defined()) magnitude = magnitude + o.bias.to(at::kDouble).abs();
  const double u = unit_roundoff(o.x.scalar_type());
  const at::Tensor e = magnitude * ((o.x.size(1) + 2) * std::ldexp(1.0, -24));
  const at::Tensor diff = (y.to(at::kDouble) - ref).abs();
  const double excess = (diff - (u * ref.abs() + (1 + u) * e)).max().item<double>();
  EXPECT_LE(excess, 0.0) << what << ": max |y - ref| " << diff.max().item<double>() << " of max |ref| "
                         << ref.abs().max().item<double>();
}

TEST(Int8GemvSim, EveryRowCountAndLengthMatchesTheReference) {
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    // (out, in): 16-byte loads for in 16, 64, 528 (a second pass for lanes 0 and 1), the scalar
    // loop for 7, 37, 300; out 1, 9, 20, 3: blocks of 8 warps with idle ones
    for (const auto& [out, in] :
         std::vector<std::pair<int64_t, int64_t>>{{1, 16}, {9, 37}, {20, 64}, {9, 300}, {17, 528}, {3, 7}}) {
      for (int64_t rows = 1; rows <= k::kInt8GemvMaxRows; ++rows) {
        const bool bias = rows % 2 == 0;
        at::manual_seed(rows * 1000 + out * 10 + in);
        const Int8Operands o = operands(rows, out, in, dtype, bias, in);
        const std::string what = fmt::format("{} rows {} out {} in {} bias {}", name_of(dtype), rows, out, in, bias);
        const k::Int8GemvParams p = params_for(o);
        const at::Tensor y = run_both_orders([&] { return run_int8_gemv(p, dtype, out); }, same_bytes);
        expect_within_rounding(y, o, what);
      }
    }
  }
}

TEST(Int8GemvSim, StridedRowsOfXAndY) {
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    for (const auto& [out, in] : std::vector<std::pair<int64_t, int64_t>>{{9, 64}, {12, 37}, {10, 528}}) {
      // rows twice as far apart (the 16-byte loads where in allows them), and one element further
      // (rows off 16 bytes: the scalar loop)
      for (const int64_t x_stride : {2 * in, in + 1}) {
        for (const int64_t rows : {3, 8}) {
          at::manual_seed(rows * 100 + x_stride);
          const Int8Operands o = operands(rows, out, in, dtype, true, x_stride);
          const std::string what =
              fmt::format("{} rows {} out {} in {} x stride {}", name_of(dtype), rows, out, in, x_stride);
          const int64_t y_stride = out + 5;
          const k::Int8GemvParams p = params_for(o);
          const at::Tensor storage = run_both_orders([&] { return run_int8_gemv(p, dtype, y_stride); }, same_bytes);
          expect_within_rounding(storage.narrow(1, 0, out), o, what);
          EXPECT_TRUE(at::equal(storage.narrow(1, out, y_stride - out), at::full({rows, y_stride - out}, 7, dtype)))
              << what << ": the columns between y's rows";
        }
      }
    }
  }
}

// fp32 x: 2^24 then 31 ones, weights 1, scale 1. The 16-byte loads give lane 0 the first 16 (its
// ones each round away: 2^24 + 1 is a tie to 2^24) and lane 1 the next 16: 2^24 + 16. The scalar
// loop gives lane k element k, and the shuffles' sums keep 2^24 + 30. Exact: 2^24 + 31.
TEST(Int8GemvSim, SixteenByteLoadsOnlyForAlignedRows) {
  constexpr int64_t kIn = 32;
  const float vector_sum = 16777216.0f + 16, scalar_sum = 16777216.0f + 30;
  at::Tensor x_storage = at::ones({2 * kIn + 8});
  const at::Tensor q_storage = at::ones({kIn + 16}, at::kChar), scale = at::ones({1});
  struct Case {
    const char* name;
    int64_t x_offset, x_row_stride, q_offset;
    float expect;
  };
  for (const Case& c : std::vector<Case>{{"aligned", 0, kIn, 0, vector_sum},
                                         {"x one float off 16 bytes", 1, kIn, 0, scalar_sum},
                                         {"x's rows 33 apart", 0, kIn + 1, 0, scalar_sum},
                                         {"q one byte off 16 bytes", 0, kIn, 1, scalar_sum}}) {
    x_storage.fill_(1);
    x_storage[c.x_offset] = 16777216.0f;
    x_storage[c.x_offset + c.x_row_stride] = 16777216.0f;
    k::Int8GemvParams p;
    p.rows = 2;
    p.in = kIn;
    p.out = 1;
    p.x_type = k::ElementType::kFloat32;
    p.x = x_storage.const_data_ptr<float>() + c.x_offset;
    p.x_row_stride = c.x_row_stride;
    p.q = q_storage.const_data_ptr<int8_t>() + c.q_offset;
    p.scale = scale.const_data_ptr<float>();
    const at::Tensor y = run_both_orders([&] { return run_int8_gemv(p, at::kFloat, 1); }, same_bytes);
    EXPECT_EQ(y[0][0].item<float>(), c.expect) << c.name;
    EXPECT_EQ(y[1][0].item<float>(), c.expect) << c.name;
  }
}

TEST(Int8GemvSim, RefusesRowsPastItsMaximumAndLaunchesNothingForNoRows) {
  at::manual_seed(3);
  const Int8Operands o = operands(k::kInt8GemvMaxRows + 1, 4, 16, at::kFloat, false, 16);
  const at::Tensor y = at::zeros({k::kInt8GemvMaxRows + 1, 4});
  k::Int8GemvParams p = params_for(o);
  p.y = y.mutable_data_ptr();
  p.y_row_stride = 4;
  reset_launches();
  EXPECT_FALSE(k::int8_gemv(p, nullptr).ok());
  p.rows = 0;
  EXPECT_TRUE(k::int8_gemv(p, nullptr).ok());
  EXPECT_EQ(launches(), 0);
  p.rows = k::kInt8GemvMaxRows;
  EXPECT_TRUE(k::int8_gemv(p, nullptr).ok());
  EXPECT_EQ(launches(), 1);
  EXPECT_EQ(last_launch().grid.x, 1u);  // 4 features: one block of 8 warps
  EXPECT_EQ(last_launch().block.x, 256u);
}

}  // namespace
}  // namespace effarch::sim
