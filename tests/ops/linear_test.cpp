// ops::linear: the one call every projection runs through, against at::linear, with its bytes
// and format as results record them, and errors that say what does not fit.

#include <ATen/ATen.h>
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

}  // namespace
}  // namespace effarch::ops
