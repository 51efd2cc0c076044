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

// One row of x past L1 (K 8200 and 10250: over 32 KB in fp32) runs two output rows a pass sharing
// each x load (src/ops/cpu/gemv.cpp): each output is the same bits as that row's product alone (a
// one-row layer, which runs the single-row loop), for odd and even row counts, fp32, bf16 and
// int8 weights, with the vector tails (8200 = 512 x 16 + 8, 10250 = 640 x 16 + 8 + 2); and within
// rounding of at::linear.
TEST(Linear, DecodeGemvPairsOfRowsGiveEachRowsOwnBits) {
  at::manual_seed(8);
  for (const int64_t in : {int64_t{8200}, int64_t{10250}}) {
    for (const int64_t out : {int64_t{7}, int64_t{64}}) {
      const at::Tensor w32 = at::randn({out, in}) / std::sqrt(static_cast<double>(in));
      const at::Tensor b = at::randn({out});
      const at::Tensor x = at::randn({1, in});
      for (const int kind : {0, 1, 2}) {
        const Linear layer = kind == 0 ? Linear(w32, b) : kind == 1 ? Linear(w32.to(at::kBFloat16), b)
                                                                    : quantize_int8(Linear(w32, b));
        const std::string what = fmt::format("K {} O {} weights {}", in, out, format_name(layer));
        const at::Tensor y = linear(x, layer);
        for (int64_t o = 0; o < out; ++o) {
          Linear one = layer;
          one.weight = layer.weight.narrow(0, o, 1);
          one.bias = layer.bias->narrow(0, o, 1);
          if (layer.format == WeightFormat::Int8) one.scale = layer.scale.narrow(0, o, 1);
          EXPECT_TRUE(at::equal(linear(x, one), y.narrow(1, o, 1))) << what << " row " << o;
        }
        test::expect_close(y, at::linear(x, dense_weight(layer, at::kFloat), b), test::Tolerance{2e-5, 2e-5}, what);
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

// x's strides do not change the product: a contiguous [B, 1, K] with strides (K, 1, 1) (the
// transpose of a [B, K, 1] column, as Mamba's decode step makes) runs as the same [B, K] matrix
// product as the canonical layout, bit for bit, in the shape asked (at::matmul would have run it
// as B separate single-row products, each reading the whole weight). Past the CPU GEMV's rows, so
// at::linear runs; bf16 and fp32, with and without bias.
TEST(Linear, TransposedColumnRowsRunAsOneMatrixProduct) {
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    const at::Tensor w = (at::randn({48, 64}) / 8.0).to(dtype), b = at::randn({48}).to(dtype);
    const at::Tensor rows = at::randn({32, 64}).to(dtype);
    const at::Tensor column = rows.unsqueeze(2).transpose(1, 2);  // [32, 1, 64], strides (64, 1, 1)
    ASSERT_TRUE(column.is_contiguous());
    ASSERT_EQ(column.stride(1), 1);
    const at::Tensor canonical = rows.view({32, 1, 64});  // strides (64, 64, 1)
    for (const bool with_bias : {false, true}) {
      const Linear layer = with_bias ? Linear(w, b) : Linear(w);
      const at::Tensor got = linear(column, layer), want = linear(canonical, layer);
      EXPECT_EQ(got.sizes(), (at::IntArrayRef{32, 1, 48}));
      EXPECT_TRUE(at::equal(got, want)) << c10::toString(dtype) << " bias " << with_bias;
      EXPECT_TRUE(at::equal(got.view({32, 48}), at::linear(rows, w, with_bias ? std::optional<at::Tensor>(b) : std::nullopt)))
          << c10::toString(dtype) << " bias " << with_bias;
    }
  }
}

// --- int8 weights: the quantiser, the reference (dequantise then matmul), the decode GEMV -----

TEST(Int8, QuantiserStepsAndRoundTrip) {
  at::manual_seed(21);
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    at::Tensor w = (at::randn({37, 53}) * at::rand({37, 1}) * 3).to(dtype);
    w[5].zero_();  // an all-zero row
    const auto [q, scale] = quantize_int8(w);
    ASSERT_EQ(q.scalar_type(), at::kChar);
    ASSERT_EQ(scale.scalar_type(), at::kFloat);
    ASSERT_EQ(scale.sizes(), (at::IntArrayRef{37}));
    const at::Tensor wf = w.to(at::kFloat);
    // The step is each row's largest magnitude over 127, so that element maps to +-127.
    const at::Tensor amax = wf.abs().amax(1);
    EXPECT_TRUE(at::allclose(scale.narrow(0, 0, 5), amax.narrow(0, 0, 5) / 127, 1e-7, 0));
    EXPECT_EQ(scale[5].item<float>(), 1.0f);
    EXPECT_EQ(q[5].abs().sum().item<int64_t>(), 0);
    EXPECT_EQ(q.abs().amax(1).narrow(0, 0, 5).min().item<int64_t>(), 127);
    EXPECT_LE(q.abs().max().item<int64_t>(), 127);  // -128 never used: symmetric
    // Every element within half a step of its dequantised value.
    const at::Tensor err = (q.to(at::kFloat) * scale.unsqueeze(1) - wf).abs();
    // (plus fp32 rounding of w / scale and q * scale: a few 1e-5 of a step for |q| near 127).
    EXPECT_TRUE((err <= scale.unsqueeze(1) * 0.5001).all().item<bool>()) << c10::toString(dtype);
    // dense_weight is exactly q * scale, rounded once to the dtype asked for.
    const Linear layer = quantize_int8(Linear(w));
    EXPECT_EQ(layer.format, WeightFormat::Int8);
    EXPECT_EQ(format_name(layer), "int8");
    EXPECT_TRUE(at::equal(dense_weight(layer, at::kFloat), q.to(at::kFloat) * scale.unsqueeze(1)));
    for (const at::ScalarType to : {at::kBFloat16, at::kHalf}) {
      const at::Tensor d = dense_weight(layer, to);
      EXPECT_EQ(d.scalar_type(), to);
      EXPECT_TRUE(at::equal(d, (q.to(at::kFloat) * scale.unsqueeze(1)).to(to))) << c10::toString(to);
    }
    EXPECT_EQ(layer.bytes(), 37u * 53u + 37u * 4u);
  }
  EXPECT_THROW_WITH(quantize_int8(at::ones({3, 4}, at::kLong)), OpError, {"quantize_int8", "float"});
}

TEST(Int8, ProductsMatchTheDequantisedReference) {
  at::manual_seed(22);
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    for (int64_t in : {1, 7, 16, 37, 130}) {
      for (int64_t out : {1, 5, 64, 300}) {
        const Linear layer = quantize_int8(Linear(at::randn({out, in}) / std::sqrt(static_cast<double>(in)),
                                                  at::randn({out}).to(dtype)));
        const at::Tensor wf = dense_weight(layer, at::kFloat);
        // 1-4 rows: the int8 GEMV; 9 rows: the reference (dequantise, then at::linear).
        for (int64_t rows : {1, 2, 3, 4, 9}) {
          const at::Tensor x = at::randn({rows, in}).to(dtype);
          const std::string what = fmt::format("{} in {} out {} rows {}", c10::toString(dtype), in, out, rows);
          const at::Tensor y = linear(x, layer);
          EXPECT_EQ(y.scalar_type(), dtype) << what;
          test::expect_close(y, at::linear(x.to(at::kFloat), wf, layer.bias->to(at::kFloat)).to(dtype),
                             test::rounding_tolerance(dtype), what);
        }
      }
    }
  }
}

TEST(Int8, ArgumentErrors) {
  Linear layer = quantize_int8(Linear(at::randn({4, 6})));
  layer.scale = at::ones({3});
  EXPECT_THROW_WITH(linear(at::randn({1, 6}), layer), OpError, {"int8", "scales [4]", "[3]"});
  layer.scale = at::Tensor();
  EXPECT_THROW_WITH(linear(at::randn({2, 6}), layer), OpError, {"int8", "no scales"});
  EXPECT_THROW_WITH(parse_weight_format("int4", "--weights"), UsageError, {"--weights", "int4", "dense", "int8"});
  EXPECT_EQ(parse_weight_format("int8", "--weights"), WeightFormat::Int8);
  EXPECT_EQ(weight_format_option(WeightFormat::Dense), "dense");
}

// The CUDA int8 GEMV (kernels/int8_gemv) against the same reference: 1-8 rows, lengths that take
// the 16-byte loads (multiples of 16) and the scalar loop (37), a strided row view of x, a bias.
TEST(Int8, CudaGemvMatchesTheDequantisedReference) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  at::manual_seed(23);
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    for (int64_t in : {16, 37, 512, 4096}) {
      for (int64_t out : {1, 9, 300}) {
        Linear layer = quantize_int8(Linear(at::randn({out, in}) / std::sqrt(static_cast<double>(in)),
                                            at::randn({out}).to(dtype)));
        layer.weight = layer.weight.cuda();
        layer.scale = layer.scale.cuda();
        layer.bias = layer.bias->cuda();
        const at::Tensor wf = dense_weight(layer, at::kFloat);
        for (int64_t rows = 1; rows <= 8; ++rows) {
          const at::Tensor x = at::randn({rows, in}, at::kCUDA).to(dtype);
          const std::string what = fmt::format("{} in {} out {} rows {}", c10::toString(dtype), in, out, rows);
          const at::Tensor expect = at::linear(x.to(at::kFloat), wf, layer.bias->to(at::kFloat)).to(dtype);
          test::expect_close(linear(x, layer), expect, test::rounding_tolerance(dtype), what);
        }
        // Rows 2 apart in a wider buffer: the kernel reads them through x's row stride.
        const at::Tensor wide = at::randn({3, 2 * in}, at::kCUDA).to(dtype);
        const at::Tensor view = wide.narrow(1, 0, in);
        test::expect_close(linear(view, layer),
                           at::linear(view.to(at::kFloat), wf, layer.bias->to(at::kFloat)).to(dtype),
                           test::rounding_tolerance(dtype), "strided rows");
      }
    }
  }
}

}  // namespace
}  // namespace effarch::ops
