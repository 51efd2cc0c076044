// ops::linear: the one call every projection runs through, against at::linear, with its bytes
// and format as results record them, and errors that say what does not fit.

#include <cmath>

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include "../test_util.h"
#include "tolerance.h"
#include "effarch/common/error.h"
#include "effarch/ops/linear.h"

namespace effarch::ops {
namespace {

TEST(Linear, MatchesAtLinearWithAndWithoutBias) {
  const at::Tensor x = at::randn({2, 3, 8});
  const at::Tensor w = at::randn({5, 8});
  const at::Tensor b = at::randn({5});
  EXPECT_TRUE(at::equal(linear(x, Linear(w)), at::linear(x, w)));
  EXPECT_TRUE(at::equal(linear(x, Linear(w, b)), at::linear(x, w, b)));
  const Linear layer(w, b);
  EXPECT_EQ(layer.in_features(), 8);
  EXPECT_EQ(layer.out_features(), 5);
}

TEST(Linear, BytesAndFormatComeFromTheWeightItself) {
  const Linear fp32(at::zeros({4, 6}), at::zeros({4}));
  EXPECT_EQ(fp32.bytes(), (4u * 6u + 4u) * 4u);
  EXPECT_EQ(format_name(fp32), "float32");
  const Linear bf16(at::zeros({4, 6}, at::kBFloat16));
  EXPECT_EQ(bf16.bytes(), 4u * 6u * 2u);
  EXPECT_EQ(format_name(bf16), "bfloat16");
}

TEST(Linear, MismatchesAreOpErrorsThatSayWhat) {
  const Linear layer(at::randn({5, 8}));
  EXPECT_THROW_WITH(linear(at::randn({2, 7}), layer), OpError, {"linear", "[2, 7]", "8 input features"});
  EXPECT_THROW_WITH(linear(at::randn({2, 8}), Linear(at::randn({5}))), OpError, {"linear", "[out, in]", "[5]"});
  EXPECT_THROW_WITH(linear(at::randn({2, 8}), Linear()), OpError, {"linear", "undefined"});
}


// The decode path (few rows, CPU, fp32 or bf16 weights) runs its own threaded GEMV: it must
// agree with at::linear for every row count it takes, awkward widths (vector tails), with and
// without bias, fp32 and bf16, and leading dims kept. Weights scaled like a trained layer's.
TEST(Linear, DecodeGemvMatchesAtLinear) {
  at::manual_seed(7);
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    for (int64_t in : {1, 7, 8, 16, 37, 130, 1024}) {
      for (int64_t out : {1, 5, 64, 300}) {
        const at::Tensor w = (at::randn({out, in}) / std::sqrt(static_cast<double>(in))).to(dtype);
        const at::Tensor b = at::randn({out}).to(dtype);
        for (int64_t rows : {1, 2, 3, 4}) {
          const at::Tensor x = at::randn({rows, 1, in}).to(dtype);
          const std::string what = fmt::format("{} in {} out {} rows {}", c10::toString(dtype), in, out, rows);
          const at::Tensor y = linear(x, Linear(w, b));
          EXPECT_EQ(y.scalar_type(), dtype) << what;
          test::expect_close(y, at::linear(x.to(at::kFloat), w.to(at::kFloat), b.to(at::kFloat)).to(dtype),
                             test::rounding_tolerance(dtype), what + " bias");
          test::expect_close(linear(x, Linear(w)), at::linear(x.to(at::kFloat), w.to(at::kFloat)).to(dtype),
                             test::rounding_tolerance(dtype), what);
        }
      }
    }
  }
}

TEST(Linear, DecodeGemvKeepsLeadingDimsAndNonContiguousInput) {
  const at::Tensor w = at::randn({24, 40}) / 6.0;
  const at::Tensor x = at::randn({40, 2}).t();  // [2, 40], transposed view
  test::expect_close(linear(x, Linear(w)), at::linear(x, w), test::rounding_tolerance(at::kFloat), "transposed");
  const at::Tensor x3 = at::randn({1, 1, 40});
  EXPECT_EQ(linear(x3, Linear(w)).sizes(), (at::IntArrayRef{1, 1, 24}));
}

}  // namespace
}  // namespace effarch::ops
