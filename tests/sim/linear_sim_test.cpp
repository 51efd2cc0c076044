// The linear layer's CUDA bindings (src/ops/linear_cuda.cpp: the dense and int8 GEMV, the rows GEMM) and
// those of the fused activation and add + norm (activation_cuda.cpp, add_norm_cuda.cpp) on the CPU
// executor, on host tensors. gemv_sim_test.cpp, int8_gemv_sim_test.cpp, rows_gemm_sim_test.cpp and
// activation_sim_test.cpp fill the kernels' params by hand; this runs the bindings' own operand handling
// (x reshaped, its strided rows passed on, a transposed or unaligned x copied, the bias cast, an out view
// checked), their params (the norm prologue's, the fused activations') and their plans from the device's
// SM count and L2 size, against the ops' references (Backend::Reference), as the GPU tests would.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "cuda_sim.h"
#include "sim_test.h"
// the op tests' comparisons (tests/ops)
#include "../ops/tolerance.h"
#include "common/launch.h"
#include "effarch/common/error.h"
#include "effarch/ops/activation.h"
#include "effarch/ops/add_norm.h"
#include "effarch/ops/linear.h"
#include "gemv/gemv_norm.h"
#include "ops/add_norm_launch.h"
#include "rows_gemm/rows_gemm_math.h"

namespace effarch::sim {
namespace {

using test::scaled_error;
using test::ulp_distance;

using namespace ::effarch::ops;
namespace k = ::effarch::kernels;

class LinearSim : public ::testing::Test {
 protected:
  void TearDown() override {
    reset_device();
    k::set_programmatic_launch_enabled(false);
  }
};

// A dense [out, in] layer of `dtype`, W ~ N(0, 1 / in) so that the outputs are about 1, with a bias of
// `bias_dtype` (none: no bias).
Linear make_layer(int64_t out, int64_t in, at::ScalarType dtype, std::optional<at::ScalarType> bias_dtype) {
  Linear layer((at::randn({out, in}) / std::sqrt(static_cast<double>(in))).to(dtype));
  if (bias_dtype) layer.bias = (at::randn({out}) / 4).to(*bias_dtype);
  return layer;
}

// The reference product: ops::linear on the CPU (its decode GEMV for fp32, bf16 and int8 weights up to
// 4 rows, else at::linear; an int8 weight dequantised to x's dtype), in x's dtype.
at::Tensor reference(const at::Tensor& x, const Linear& layer) { return linear(x, layer, Backend::Reference); }

// The GEMV kernels against the reference: tests/ops/gemv_test.cpp's expect_kernel_matches (the dense
// GEMV on a GPU against at::linear) and linear_test.cpp's int8 tests: both sides sum in fp32 and round
// once, so bf16 / fp16 differ by one rounding of the output (rounding_tolerance); fp32 by the sums' order,
// about sqrt(K) roundings of the partial sums.
test::Tolerance product_tolerance(at::ScalarType dtype, int64_t in) {
  test::Tolerance tol = test::rounding_tolerance(dtype);
  if (dtype == at::kFloat) tol.atol += 2.5e-7 * std::sqrt(static_cast<double>(in));
  return tol;
}
test::Tolerance widened(test::Tolerance tol, double factor) { return {factor * tol.atol, factor * tol.rtol}; }

double max_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

// f() must throw E whose message holds every one of `parts`.
template <class E, class F>
void expect_error(F f, const std::vector<std::string>& parts, const std::string& what) {
  try {
    f();
    ADD_FAILURE() << what << ": nothing thrown";
  } catch (const E& e) {
    for (const std::string& part : parts) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << what << ": " << e.what();
    }
  }
}

int vec_of(at::ScalarType dtype) { return 16 / static_cast<int>(c10::elementSize(dtype)); }

const char* act_name(Activation act) { return act == Activation::SiLU ? "silu" : "gelu_new"; }

// ---- the dense GEMV ----

// dense_gemv_cuda in every dtype, 1, 2 and kCudaDenseGemvMaxRows rows, with a bias of x's dtype and
// without, K a multiple of 8 (the 16-byte path) and 203 (the scalar loop, fp32's too), O that leaves the
// last block's warps idle: within the kernel's tolerance of the reference, one launch of the plan's grid
// for the H100's 132 SMs (the SM count the binding reads), the same bytes under both schedules.
TEST_F(LinearSim, DenseGemvMatchesTheReference) {
  struct Shape {
    int64_t out, in;
  };
  const Shape shapes[] = {{40, 1024}, {300, 64}, {77, 203}, {136, 520}};
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    for (const Shape& s : shapes) {
      for (const int64_t rows : {int64_t{1}, int64_t{2}, detail::kCudaDenseGemvMaxRows}) {
        at::manual_seed(rows * 1000 + s.out + s.in);
        const bool bias = rows != 2;
        const Linear layer = make_layer(s.out, s.in, dtype, bias ? std::optional(dtype) : std::nullopt);
        const at::Tensor x = at::randn({rows, s.in}).to(dtype);
        const std::string what =
            fmt::format("{} rows {} out {} in {} bias {}", name_of(dtype), rows, s.out, s.in, bias);
        reset_launches();
        const at::Tensor y = rows == 2 ? run_both_orders([&] { return detail::dense_gemv_cuda(x, layer); }, same_bytes)
                                       : detail::dense_gemv_cuda(x, layer);
        EXPECT_EQ(launches(), rows == 2 ? 2 : 1) << what;
        EXPECT_EQ(last_launch().grid.x, static_cast<unsigned>(k::gemv_plan(s.out, s.in, vec_of(dtype), 132).blocks))
            << what;
        ASSERT_EQ(y.sizes(), (at::IntArrayRef{rows, s.out})) << what;
        ASSERT_EQ(y.scalar_type(), dtype) << what;
        test::expect_close(y, reference(x, layer), product_tolerance(dtype, s.in), what);
      }
    }
  }
}

// A bias in another dtype than x (an fp32 bias beside bf16 weights: Linear takes it) and a strided one:
// the binding casts it to x's dtype (a contiguous copy), which the kernel reads. The same bytes as the layer
// with the bias already cast; within the tolerance of the reference, which adds the fp32 bias unrounded.
TEST_F(LinearSim, DenseGemvCastsTheBiasToXsDtype) {
  for (const auto& [out, in] : std::vector<std::pair<int64_t, int64_t>>{{136, 520}, {77, 203}}) {
    for (const int64_t rows : {1, 2}) {
      at::manual_seed(out + rows);
      const at::Tensor w = (at::randn({out, in}) / std::sqrt(static_cast<double>(in))).to(at::kBFloat16);
      const at::Tensor bias32 = at::randn({out}) / 4;
      const at::Tensor x = at::randn({rows, in}).to(at::kBFloat16);
      const std::string what = fmt::format("bf16 rows {} out {} in {}", rows, out, in);
      const Linear fp32_bias(w, bias32);
      const at::Tensor y = detail::dense_gemv_cuda(x, fp32_bias);
      EXPECT_TRUE(same_bytes(y, detail::dense_gemv_cuda(x, Linear(w, bias32.to(at::kBFloat16)))))
          << what << ": max diff " << max_diff(y, detail::dense_gemv_cuda(x, Linear(w, bias32.to(at::kBFloat16))));
      test::expect_close(y, reference(x, fp32_bias), product_tolerance(at::kBFloat16, in), what + " fp32 bias");
      // every other element of a longer tensor
      const at::Tensor strided = (at::randn({out, 2}) / 4).to(at::kBFloat16).select(1, 0);
      ASSERT_FALSE(strided.is_contiguous());
      EXPECT_TRUE(same_bytes(detail::dense_gemv_cuda(x, Linear(w, strided)),
                             detail::dense_gemv_cuda(x, Linear(w, strided.contiguous()))))
          << what << ": a strided bias";
    }
  }
}

// x's layouts the binding passes on or copies: [2, 1, K] (two rows; the result [2, 1, O]), rows further
// apart than K (a column range of a wider, NaN-filled tensor: the kernel reads through the row stride, on
// the 16-byte path where the stride keeps it), a range one element in (off 16 bytes: the scalar loop),
// and a transposed x (strided columns: copied first). The same bytes as the contiguous x where the kernel
// takes the same path; within the tolerance of the reference everywhere; x never written. A transposed
// weight is refused by name (the kernel streams its first weights before the grid dependency wait, so the
// binding makes no copy of it), before any launch.
TEST_F(LinearSim, DenseGemvTakesLeadingDimsAndStridedRows) {
  const int64_t out = 136, in = 520, rows = 3;
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    at::manual_seed(3);
    const Linear layer = make_layer(out, in, dtype, dtype);
    const at::Tensor x = at::randn({rows, in}).to(dtype);
    const at::Tensor x0 = x.clone();
    const std::string what = name_of(dtype);
    const at::Tensor base = detail::dense_gemv_cuda(x, layer);
    const at::Tensor ref = reference(x, layer);
    test::expect_close(base, ref, product_tolerance(dtype, in), what);

    const at::Tensor y3 = detail::dense_gemv_cuda(x.view({rows, 1, in}), layer);
    ASSERT_EQ(y3.sizes(), (at::IntArrayRef{rows, 1, out})) << what;
    EXPECT_TRUE(same_bytes(y3.view({rows, out}), base)) << what << ": [R, 1, K]";

    const at::Tensor wide = at::full({rows, in + 8}, NAN, dtype);
    const at::Tensor strided = wide.narrow(1, 0, in);
    strided.copy_(x);
    ASSERT_TRUE(k::gemv_vectorized(static_cast<int>(in), static_cast<int>(c10::elementSize(dtype)),
                                   reinterpret_cast<uintptr_t>(layer.weight.const_data_ptr()),
                                   reinterpret_cast<uintptr_t>(strided.const_data_ptr()), strided.stride(0)));
    const at::Tensor y_strided = run_both_orders([&] { return detail::dense_gemv_cuda(strided, layer); }, same_bytes);
    EXPECT_TRUE(same_bytes(y_strided, base))
        << what << ": rows " << in + 8 << " apart, max diff " << max_diff(y_strided, base);

    const at::Tensor offset = at::full({rows, in + 8}, NAN, dtype).narrow(1, 1, in);
    offset.copy_(x);
    ASSERT_FALSE(k::gemv_vectorized(static_cast<int>(in), static_cast<int>(c10::elementSize(dtype)),
                                    reinterpret_cast<uintptr_t>(layer.weight.const_data_ptr()),
                                    reinterpret_cast<uintptr_t>(offset.const_data_ptr()), offset.stride(0)));
    test::expect_close(detail::dense_gemv_cuda(offset, layer), ref, product_tolerance(dtype, in),
                       what + ": rows one element off 16 bytes");

    const at::Tensor transposed = x.t().contiguous().t();
    ASSERT_NE(transposed.stride(1), 1);
    EXPECT_TRUE(same_bytes(detail::dense_gemv_cuda(transposed, layer), base)) << what << ": transposed x";
    EXPECT_TRUE(at::equal(x, x0)) << what << ": x written";

    Linear transposed_weight = layer;
    transposed_weight.weight = layer.weight.t().contiguous().t();
    reset_launches();
    expect_error<OpError>([&] { detail::dense_gemv_cuda(x, transposed_weight); },
                          {"linear (dense GEMV)", "not contiguous"}, what + ": a transposed weight");
    EXPECT_EQ(launches(), 0) << what;
  }
}

// `out`: a column range of a wider buffer (the caller's rows, any stride apart): the result is that view,
// the same bytes as a new tensor's, and the buffer's other columns are untouched; a 3-D x writes its rows
// there. An out of the wrong shape, rows, dtype or rank, or with strided columns, is an OpError naming out,
// before any launch, the buffer untouched.
TEST_F(LinearSim, DenseGemvWritesIntoAColumnRange) {
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    for (const auto& [out, in] : std::vector<std::pair<int64_t, int64_t>>{{77, 203}, {136, 520}}) {
      for (const int64_t rows : {1, 3}) {
        at::manual_seed(rows + out);
        const Linear layer = make_layer(out, in, dtype, dtype);
        const at::Tensor x = at::randn({rows, 1, in}).to(dtype);
        const std::string what = fmt::format("{} rows {} out {} in {}", name_of(dtype), rows, out, in);
        const at::Tensor buffer = at::full({rows, out + 20}, 3.0, dtype);
        const at::Tensor cols = buffer.narrow(1, 7, out);
        const at::Tensor got = run_both_orders(
            [&] { return detail::dense_gemv_cuda(x, layer, nullptr, nullptr, &cols).clone(); }, same_bytes);
        const at::Tensor y = detail::dense_gemv_cuda(x, layer, nullptr, nullptr, &cols);
        EXPECT_EQ(y.data_ptr(), cols.data_ptr()) << what;
        ASSERT_EQ(y.sizes(), (at::IntArrayRef{rows, out})) << what;
        EXPECT_TRUE(same_bytes(cols, detail::dense_gemv_cuda(x, layer).view({rows, out}))) << what;
        EXPECT_TRUE(same_bytes(cols, got)) << what;
        test::expect_close(cols, reference(x, layer).view({rows, out}), product_tolerance(dtype, in), what);
        EXPECT_TRUE(at::equal(buffer.narrow(1, 0, 7), at::full({rows, 7}, 3.0, dtype))) << what << ": left columns";
        EXPECT_TRUE(at::equal(buffer.narrow(1, out + 7, 13), at::full({rows, 13}, 3.0, dtype)))
            << what << ": right columns";
      }
    }
  }
  at::manual_seed(4);
  const int64_t rows = 2, out = 40, in = 64;
  const Linear layer = make_layer(out, in, at::kBFloat16, at::kBFloat16);
  const at::Tensor x = at::randn({rows, in}).to(at::kBFloat16);
  const at::Tensor buffer = at::full({rows + 1, out + 20}, 3.0, at::kBFloat16);
  const at::Tensor buffer0 = buffer.clone();
  const at::Tensor transposed = at::full({out, rows}, 3.0, at::kBFloat16).t();
  const at::Tensor fp32 = at::full({rows, out}, 3.0);
  const std::vector<std::pair<std::string, at::Tensor>> bad = {
      {"one column too many", buffer.narrow(0, 0, rows).narrow(1, 0, out + 1)},
      {"one row too many", buffer.narrow(1, 0, out)},
      {"1-D", buffer.view({-1}).narrow(0, 0, rows * out)},
      {"strided columns", transposed},
      {"fp32", fp32},
  };
  for (const auto& [name, o] : bad) {
    reset_launches();
    expect_error<OpError>([&] { detail::dense_gemv_cuda(x, layer, nullptr, nullptr, &o); },
                          {"linear (dense GEMV)", "out", fmt::format("[{}, {}]", rows, out)}, name);
    EXPECT_EQ(launches(), 0) << name;
  }
  EXPECT_TRUE(at::equal(buffer, buffer0)) << "a refused out was written";
  EXPECT_TRUE(at::equal(transposed, at::full({rows, out}, 3.0, at::kBFloat16))) << "a refused out was written";
}

// Linear::cuda_gemv_unroll 4 (the default's own value) and 8 (the measuring variant: one row of x on the
// 16-byte path; elsewhere the default runs) give the default's bytes: a lane adds its vectors in the same
// order however many loads are in flight (gemv_math.h). 1, 2 and 8 rows, the 16-byte path and the scalar
// loop, every dtype. A value the kernel does not take is refused (an effarch::Error), before any launch.
TEST_F(LinearSim, DenseGemvUnrollVariantsGiveTheDefaultBits) {
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    for (const auto& [out, in] : std::vector<std::pair<int64_t, int64_t>>{{40, 1024}, {77, 203}}) {
      for (const int64_t rows : {int64_t{1}, int64_t{2}, detail::kCudaDenseGemvMaxRows}) {
        at::manual_seed(rows + in);
        Linear layer = make_layer(out, in, dtype, rows == 1 ? std::optional(dtype) : std::nullopt);
        const at::Tensor x = at::randn({rows, in}).to(dtype);
        const at::Tensor base = detail::dense_gemv_cuda(x, layer);
        for (const int unroll : {k::kGemvUnroll, k::kGemvUnrollWide}) {
          layer.cuda_gemv_unroll = unroll;
          const std::string what =
              fmt::format("{} rows {} out {} in {} unroll {}", name_of(dtype), rows, out, in, unroll);
          const at::Tensor y = rows == 1 && unroll == k::kGemvUnrollWide
                                   ? run_both_orders([&] { return detail::dense_gemv_cuda(x, layer); }, same_bytes)
                                   : detail::dense_gemv_cuda(x, layer);
          EXPECT_TRUE(same_bytes(y, base)) << what << ": max diff " << max_diff(y, base);
        }
      }
    }
  }
  const Linear good = make_layer(40, 64, at::kBFloat16, std::nullopt);
  const at::Tensor x = at::randn({1, 64}).to(at::kBFloat16);
  for (const int unroll : {1, 2, 16, -4}) {
    Linear layer = good;
    layer.cuda_gemv_unroll = unroll;
    reset_launches();
    expect_error<::effarch::Error>([&] { detail::dense_gemv_cuda(x, layer); },
                                   {"linear (dense GEMV)", "unroll must be 0, 4 or 8"},
                                   fmt::format("unroll {}", unroll));
    EXPECT_EQ(launches(), 0) << unroll;
  }
}

// Linear::cuda_gemv_split, the measuring knob of effarch kernels' dense_gemv_*_s1/_s2/_s4 rows: the
// forced split's grid (the plan's blocks at that split), within the product's tolerance of the reference;
// the plan's own split gives the default's bytes. 1, 2 and 8 rows, the 16-byte path and the scalar loop,
// every dtype; gated (at most 4 warps a row) equal to the forced-split product then the activation
// kernel. A split the kernel does not take is refused by name before any launch.
TEST_F(LinearSim, DenseGemvForcedSplitsMatchTheReference) {
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    for (const auto& [out, in] : std::vector<std::pair<int64_t, int64_t>>{{40, 1024}, {77, 203}}) {
      for (const int64_t rows : {int64_t{1}, int64_t{2}, detail::kCudaDenseGemvMaxRows}) {
        at::manual_seed(rows + in + 7);
        Linear layer = make_layer(out, in, dtype, rows == 1 ? std::optional(dtype) : std::nullopt);
        const at::Tensor x = at::randn({rows, in}).to(dtype);
        const at::Tensor base = detail::dense_gemv_cuda(x, layer), ref = reference(x, layer);
        const int planned = k::gemv_plan(out, in, vec_of(dtype), 132).split;
        for (const int split : {1, 2, 4, 8}) {
          layer.cuda_gemv_split = split;
          const std::string what = fmt::format("{} rows {} out {} in {} split {}", name_of(dtype), rows, out, in, split);
          reset_launches();
          const at::Tensor y = rows == 2 ? run_both_orders([&] { return detail::dense_gemv_cuda(x, layer); }, same_bytes)
                                         : detail::dense_gemv_cuda(x, layer);
          EXPECT_EQ(last_launch().grid.x,
                    static_cast<unsigned>(k::gemv_plan(out, in, vec_of(dtype), 132, false, split).blocks))
              << what;
          EXPECT_EQ(last_launch().grid.x, static_cast<unsigned>((out + 8 / split - 1) / (8 / split))) << what;
          test::expect_close(y, ref, product_tolerance(dtype, in), what);
          if (split == planned) EXPECT_TRUE(same_bytes(y, base)) << what << ": the plan's split, max diff " << max_diff(y, base);
        }
      }
    }
  }
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {  // gated: gate_up [2I, K], I odd
    at::manual_seed(90);
    const int64_t inter = 35, in = 520;
    Linear gate_up = make_layer(2 * inter, in, dtype, std::nullopt);
    const at::Tensor x = at::randn({1, 1, in}).to(dtype);
    for (const int split : {1, 2, 4}) {
      gate_up.cuda_gemv_split = split;
      const std::string what = fmt::format("{} gated split {}", name_of(dtype), split);
      const at::Tensor fused = detail::linear_activation_cuda(x, gate_up, Activation::SiLU, true);
      const at::Tensor apart = detail::activation_cuda(Activation::SiLU, detail::dense_gemv_cuda(x, gate_up), true);
      EXPECT_TRUE(same_bytes(fused, apart)) << what << ": max diff " << max_diff(fused, apart);
    }
    gate_up.cuda_gemv_split = 8;  // a block must hold a gate row and its up row
    reset_launches();
    expect_error<::effarch::Error>([&] { detail::linear_activation_cuda(x, gate_up, Activation::SiLU, true); },
                                   {"linear (dense GEMV)", "split must be 0 (the plan's), 1, 2, 4 or 8",
                                    "at most 4 with a gated activation"},
                                   "gated split 8");
    EXPECT_EQ(launches(), 0);
  }
  const Linear good = make_layer(40, 64, at::kBFloat16, std::nullopt);
  const at::Tensor x = at::randn({1, 64}).to(at::kBFloat16);
  for (const int split : {3, 16, -2}) {
    Linear layer = good;
    layer.cuda_gemv_split = split;
    reset_launches();
    expect_error<::effarch::Error>([&] { detail::dense_gemv_cuda(x, layer); },
                                   {"linear (dense GEMV)", "split must be 0 (the plan's), 1, 2, 4 or 8"},
                                   fmt::format("split {}", split));
    EXPECT_EQ(launches(), 0) << split;
  }
}

// The plan reads the device (sim::device_properties). On 4 SMs the split-K plan keeps one warp a row
// where 132 SMs split it: another grid and another order of the sums, within the tolerance of the
// reference and of each other (the kernel promises no bytes across plans). The L2 size bounds only the
// weights asked into L2 before the grid dependency wait under PDL (gemv_prefetch_vectors: 4 vectors a
// lane at 50 MiB, none at 1 MiB for this shape), which the sums never see: 1 MiB and 50 MiB, PDL on and
// off, give the same bytes (the executor's prefetch does nothing: what the L2 size changes is not seen here).
TEST_F(LinearSim, DenseGemvPlansForTheDevice) {
  const int64_t out = 300, in = 1024;
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    for (const int64_t rows : {1, 2}) {
      reset_device();
      at::manual_seed(rows + 40);
      const Linear layer = make_layer(out, in, dtype, dtype);
      const at::Tensor x = at::randn({rows, in}).to(dtype);
      const std::string what = fmt::format("{} rows {} out {} in {}", name_of(dtype), rows, out, in);
      const k::GemvPlan h100 = k::gemv_plan(out, in, vec_of(dtype), 132),
                        small = k::gemv_plan(out, in, vec_of(dtype), 4);
      ASSERT_NE(h100.split, small.split) << what;
      const at::Tensor y132 = detail::dense_gemv_cuda(x, layer);
      EXPECT_EQ(last_launch().grid.x, static_cast<unsigned>(h100.blocks)) << what;
      device_properties().multiProcessorCount = 4;
      const at::Tensor y4 = run_both_orders([&] { return detail::dense_gemv_cuda(x, layer); }, same_bytes);
      EXPECT_EQ(last_launch().grid.x, static_cast<unsigned>(small.blocks)) << what << ": 4 SMs";
      const at::Tensor ref = reference(x, layer);
      test::expect_close(y132, ref, product_tolerance(dtype, in), what + " 132 SMs");
      test::expect_close(y4, ref, product_tolerance(dtype, in), what + " 4 SMs");
      test::expect_close(y4, y132, product_tolerance(dtype, in), what + " 4 SMs against 132");
    }
  }
  // The L2 size: 4 SMs, 256 outputs of 1024 fp32 inputs: one warp a row, 8 vectors a lane.
  const int64_t l2_out = 256, l2_in = 1024;
  const k::GemvPlan plan = k::gemv_plan(l2_out, l2_in, 4, 4);
  ASSERT_EQ(plan.split, 1);
  ASSERT_EQ(k::gemv_prefetch_vectors(plan, l2_in / 4, 4, 50 << 20), 4);
  ASSERT_EQ(k::gemv_prefetch_vectors(plan, l2_in / 4, 4, 1 << 20), 0);
  for (const int64_t rows : {1, 2}) {
    at::manual_seed(rows + 50);
    const Linear layer = make_layer(l2_out, l2_in, at::kFloat, at::kFloat);
    const at::Tensor x = at::randn({rows, l2_in});
    device_properties().multiProcessorCount = 4;
    k::set_programmatic_launch_enabled(false);
    const at::Tensor base = detail::dense_gemv_cuda(x, layer);
    test::expect_close(base, reference(x, layer), product_tolerance(at::kFloat, l2_in), "L2 base");
    k::set_programmatic_launch_enabled(true);
    for (const int l2 : {50 << 20, 1 << 20}) {
      device_properties().l2CacheSize = l2;
      const at::Tensor y = detail::dense_gemv_cuda(x, layer);
      EXPECT_TRUE(same_bytes(y, base)) << "rows " << rows << " L2 " << l2 << " with PDL: max diff "
                                       << max_diff(y, base);
    }
    k::set_programmatic_launch_enabled(false);
    EXPECT_TRUE(same_bytes(detail::dense_gemv_cuda(x, layer), base)) << "rows " << rows << " L2 1 MiB";
  }
}

// ---- the norm in the GEMV's prologue ----

// A block boundary's add_norm arguments: x the residual stream [rows, 1, dim] (the model dtype, or fp32:
// residual_in_fp32), y and z (optional) the sublayer outputs, the norm (weights around 1).
struct Boundary {
  at::Tensor x, y, z;
  NormParams norm;
  const at::Tensor* zp() const { return z.defined() ? &z : nullptr; }
};

Boundary make_boundary(int64_t rows, int64_t dim, at::ScalarType dtype, bool layer_norm, bool with_z,
                       bool fp32_residual) {
  Boundary b;
  b.x = (at::randn({rows, 1, dim}) * 4 + 0.5).to(fp32_residual ? at::kFloat : dtype);
  b.y = at::randn({rows, 1, dim}).to(dtype);
  if (with_z) b.z = at::randn({rows, 1, dim}).to(dtype);
  b.norm.weight = (1 + 0.2 * at::randn({dim})).to(dtype);
  if (layer_norm) b.norm.bias = (0.1 * at::randn({dim})).to(dtype);
  b.norm.eps = layer_norm ? 1e-5 : 1e-6;
  b.norm.layer_norm = layer_norm;
  return b;
}

// The params NormedInput::prologue_for hands the GEMV (prepare_add_norm without the normed tensor), the
// GEMV given y as its stand-in (the layer's input shape; not read: a NaN stand-in gives the same bytes).
// RMSNorm and LayerNorm (with Phi's z), an fp32 residual beside bf16, 1 and 2 rows, O = 75 (the last
// block's spare warps reach the prologue's barriers). The product within the tolerance of the reference
// product of add_norm's normed rows, the residual written (the first block's) add_norm's bit for bit, and
// both the bytes of the add_norm kernel then the GEMV on the executor (gemv_norm.h's promise); x, y and z
// not written.
TEST_F(LinearSim, NormPrologueIsTheAddNormThenTheProduct) {
  struct Case {
    bool layer_norm, with_z, fp32_residual;
    int64_t dim;
  };
  const Case cases[] = {{false, false, false, 256}, {true, true, false, 320}, {false, false, true, 512}};
  for (const at::ScalarType dtype : {at::kBFloat16, at::kFloat}) {
    for (const Case& c : cases) {
      if (c.fp32_residual && dtype == at::kFloat) continue;  // the same thing
      for (const int64_t rows : {1, 2}) {
        at::manual_seed(c.dim + rows);
        const Boundary b = make_boundary(rows, c.dim, dtype, c.layer_norm, c.with_z, c.fp32_residual);
        const Linear layer = make_layer(75, c.dim, dtype, c.layer_norm ? std::optional(dtype) : std::nullopt);
        const std::string what =
            fmt::format("{} {}{} fp32 residual {} dim {} rows {}", name_of(dtype),
                        c.layer_norm ? "LayerNorm" : "RMSNorm", c.with_z ? " + z" : "", c.fp32_residual, c.dim, rows);
        const at::Tensor x0 = b.x.clone(), y0 = b.y.clone();
        detail::AddNormLaunch l = detail::prepare_add_norm(b.x, b.y, b.zp(), b.norm, /*with_normed=*/false);
        ASSERT_EQ(l.params.normed, nullptr) << what;
        ASSERT_EQ(k::gemvnorm::refusal(l.params, static_cast<int>(rows), static_cast<int>(c.dim), l.params.type),
                  nullptr)
            << what;
        struct Fused {
          at::Tensor y, residual;
        };
        const auto run = [&](const at::Tensor& stand_in) {
          l.residual.fill_(NAN);
          const at::Tensor y = detail::dense_gemv_cuda(stand_in, layer, nullptr, nullptr, nullptr, &l.params);
          return Fused{y, l.residual.clone()};
        };
        const Fused got = run_both_orders(
            [&] { return run(b.y); },
            [](const Fused& p, const Fused& q) { return same_bytes(p.y, q.y) && same_bytes(p.residual, q.residual); });
        ASSERT_EQ(got.y.sizes(), (at::IntArrayRef{rows, 1, 75})) << what;
        const AddNormResult ref = add_norm(b.x, b.y, b.zp(), b.norm, Backend::Reference);
        test::expect_close(got.y, reference(ref.normed, layer), product_tolerance(dtype, c.dim), what);
        ASSERT_EQ(got.residual.scalar_type(), ref.residual.scalar_type()) << what;
        EXPECT_TRUE(at::equal(got.residual.view(b.x.sizes()), ref.residual)) << what << ": the residual";
        const AddNormResult unfused = detail::add_norm_cuda(b.x, b.y, b.zp(), b.norm);
        const at::Tensor apart = detail::dense_gemv_cuda(unfused.normed, layer);
        EXPECT_TRUE(same_bytes(got.y, apart))
            << what << ": against the two kernels, max diff " << max_diff(got.y, apart);
        EXPECT_TRUE(same_bytes(got.residual.view(b.x.sizes()), unfused.residual)) << what << ": the kernels' residual";
        const Fused nan = run(at::full(b.y.sizes(), NAN, dtype));
        EXPECT_TRUE(same_bytes(nan.y, got.y) && same_bytes(nan.residual, got.residual)) << what << ": a NaN stand-in";
        EXPECT_TRUE(at::equal(b.x, x0) && at::equal(b.y, y0)) << what << ": an input written";
      }
    }
  }
}

// ---- the fused activations ----

// linear_activation_cuda: SiLU and gelu_new applied as the GEMV stores each output, every dtype. Plain
// (Phi's fc1: 1 and 3 rows of [R, 1, K]), gated (gate_up [2I, K], I odd, 1 and 2 rows: act(gate) * up,
// [R, 1, I]) and the tail from a row on into a column range of a wider buffer (from 33 of 99 on the 16-byte
// path, from 1 of 64 on the scalar loop). Each the bytes of the GEMV then the activation kernel on the
// executor (the binding's epilogue promises them; the gated shapes' plan is the plain one's), and within
// the tolerance of the reference activation of the reference product: that product may round one ulp
// apart from the kernel's, carried through the activation (twice the product's tolerance), and gated
// through both halves and their product (four times: tests/ops/gemv_test.cpp's gated bound).
TEST_F(LinearSim, LinearActivationIsTheProductThenTheActivation) {
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    for (const Activation act : {Activation::SiLU, Activation::GeluNew}) {
      const test::Tolerance tol = product_tolerance(dtype, 520);
      for (const int64_t rows : {1, 3}) {  // plain
        at::manual_seed(rows + 60);
        const Linear layer = make_layer(136, 520, dtype, dtype);
        const at::Tensor x = at::randn({rows, 1, 520}).to(dtype);
        const std::string what = fmt::format("{} {} plain rows {}", name_of(dtype), act_name(act), rows);
        const at::Tensor fused =
            rows == 3 ? run_both_orders([&] { return detail::linear_activation_cuda(x, layer, act); }, same_bytes)
                      : detail::linear_activation_cuda(x, layer, act);
        ASSERT_EQ(fused.sizes(), (at::IntArrayRef{rows, 1, 136})) << what;
        const at::Tensor apart = detail::activation_cuda(act, detail::dense_gemv_cuda(x, layer), false);
        EXPECT_TRUE(same_bytes(fused, apart)) << what << ": max diff " << max_diff(fused, apart);
        test::expect_close(fused, activate(act, reference(x, layer), Backend::Reference), widened(tol, 2), what);
      }
      for (const int64_t rows : {1, 2}) {  // gated
        at::manual_seed(rows + 70);
        const int64_t inter = 35, in = 520;
        const Linear gate_up = make_layer(2 * inter, in, dtype, rows == 2 ? std::optional(dtype) : std::nullopt);
        const at::Tensor x = at::randn({rows, 1, in}).to(dtype);
        const std::string what = fmt::format("{} {} gated rows {}", name_of(dtype), act_name(act), rows);
        ASSERT_EQ(k::gemv_plan(2 * inter, in, vec_of(dtype), 132, true).split,
                  k::gemv_plan(2 * inter, in, vec_of(dtype), 132).split)
            << what;
        const at::Tensor fused =
            rows == 2
                ? run_both_orders([&] { return detail::linear_activation_cuda(x, gate_up, act, true); }, same_bytes)
                : detail::linear_activation_cuda(x, gate_up, act, true);
        ASSERT_EQ(fused.sizes(), (at::IntArrayRef{rows, 1, inter})) << what;
        const at::Tensor apart = detail::activation_cuda(act, detail::dense_gemv_cuda(x, gate_up), true);
        EXPECT_TRUE(same_bytes(fused, apart)) << what << ": max diff " << max_diff(fused, apart);
        test::expect_close(fused, gated_activation(act, reference(x, gate_up), Backend::Reference), widened(tol, 4),
                           what);
      }
      {  // 3 rows: past kCudaGatedGemvMaxRows, the launcher refuses
        const Linear gate_up = make_layer(16, 64, dtype, std::nullopt);
        const at::Tensor x = at::randn({3, 64}).to(dtype);
        reset_launches();
        expect_error<::effarch::Error>([&] { detail::linear_activation_cuda(x, gate_up, act, true); },
                                       {"linear (dense GEMV)", "gated activation"}, "3 gated rows");
        EXPECT_EQ(launches(), 0);
      }
      for (const auto& [out, in, from] :
           std::vector<std::tuple<int64_t, int64_t, int64_t>>{{99, 40, 33}, {64, 203, 1}}) {  // the tail
        for (const int64_t rows : {1, 2}) {
          at::manual_seed(rows + out);
          const Linear layer = make_layer(out, in, dtype, rows == 1 ? std::optional(dtype) : std::nullopt);
          const at::Tensor x = at::randn({rows, 1, in}).to(dtype);
          const std::string what =
              fmt::format("{} {} tail from {} of {} in {} rows {}", name_of(dtype), act_name(act), from, out, in, rows);
          const at::Tensor buffer = at::full({rows, out + 24}, 3.0, dtype);
          const at::Tensor cols = buffer.narrow(1, 5, out);
          const at::Tensor got = detail::linear_activation_cuda(x, layer, act, false, from, &cols);
          EXPECT_EQ(got.data_ptr(), cols.data_ptr()) << what;
          ASSERT_EQ(got.sizes(), (at::IntArrayRef{rows, out})) << what;
          at::Tensor apart = detail::dense_gemv_cuda(x, layer).view({rows, out});
          apart.narrow(1, from, out - from)
              .copy_(detail::activation_cuda(act, apart.narrow(1, from, out - from), false));
          EXPECT_TRUE(same_bytes(cols, apart)) << what << ": max diff " << max_diff(cols, apart);
          at::Tensor ref = reference(x, layer).view({rows, out}).clone();
          ref.narrow(1, from, out - from).copy_(activate(act, ref.narrow(1, from, out - from), Backend::Reference));
          test::expect_close(cols, ref, widened(product_tolerance(dtype, in), 2), what);
          EXPECT_TRUE(at::equal(buffer.narrow(1, 0, 5), at::full({rows, 5}, 3.0, dtype))) << what << ": left columns";
          EXPECT_TRUE(at::equal(buffer.narrow(1, out + 5, 19), at::full({rows, 19}, 3.0, dtype)))
              << what << ": right columns";
        }
      }
    }
  }
}

// ---- the int8 GEMV ----

// int8_gemv_cuda on a layer from ops::quantize_int8 with a bias of x's dtype: fp32 and bf16 x, 1 to
// kCudaInt8GemvMaxRows rows, K on the 16-byte loads (512) and the scalar loop (37), within the tolerance of
// the reference (the CPU's int8 GEMV to 4 rows, the dequantised weight in x's dtype beyond; the tolerance
// of linear_test.cpp's int8 CUDA test and of the dense GEMV's). Then the layouts the binding passes on or
// copies: [3, 1, K], rows twice K apart (the same path: the same bytes), a transposed x and a transposed
// int8 weight (copied contiguous), an fp32 bias beside bf16 x (cast): each the bytes of the plain operands.
TEST_F(LinearSim, Int8GemvMatchesTheReference) {
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    for (const auto& [out, in] : std::vector<std::pair<int64_t, int64_t>>{{300, 512}, {9, 37}}) {
      at::manual_seed(out + in);
      const Linear layer = quantize_int8(
          Linear(at::randn({out, in}) / std::sqrt(static_cast<double>(in)), (at::randn({out}) / 4).to(dtype)));
      ASSERT_EQ(layer.format, WeightFormat::Int8);
      for (int64_t rows = 1; rows <= detail::kCudaInt8GemvMaxRows; ++rows) {
        const at::Tensor x = at::randn({rows, in}).to(dtype);
        const std::string what = fmt::format("{} rows {} out {} in {}", name_of(dtype), rows, out, in);
        reset_launches();
        const at::Tensor y = rows == 3 ? run_both_orders([&] { return detail::int8_gemv_cuda(x, layer); }, same_bytes)
                                       : detail::int8_gemv_cuda(x, layer);
        EXPECT_EQ(launches(), rows == 3 ? 2 : 1) << what;
        ASSERT_EQ(y.sizes(), (at::IntArrayRef{rows, out})) << what;
        ASSERT_EQ(y.scalar_type(), dtype) << what;
        test::expect_close(y, reference(x, layer), product_tolerance(dtype, in), what);
      }
      const int64_t rows = 3;
      const at::Tensor x = at::randn({rows, in}).to(dtype);
      const std::string what = fmt::format("{} out {} in {}", name_of(dtype), out, in);
      const at::Tensor base = detail::int8_gemv_cuda(x, layer);
      const at::Tensor y3 = detail::int8_gemv_cuda(x.view({rows, 1, in}), layer);
      ASSERT_EQ(y3.sizes(), (at::IntArrayRef{rows, 1, out})) << what;
      EXPECT_TRUE(same_bytes(y3.view({rows, out}), base)) << what << ": [R, 1, K]";
      const at::Tensor strided = at::full({rows, 2 * in}, NAN, dtype).narrow(1, 0, in);
      strided.copy_(x);
      EXPECT_TRUE(same_bytes(detail::int8_gemv_cuda(strided, layer), base)) << what << ": rows 2K apart";
      EXPECT_TRUE(same_bytes(detail::int8_gemv_cuda(x.t().contiguous().t(), layer), base)) << what << ": transposed x";
      Linear transposed = layer;
      transposed.weight = layer.weight.t().contiguous().t();
      ASSERT_FALSE(transposed.weight.is_contiguous());
      EXPECT_TRUE(same_bytes(detail::int8_gemv_cuda(x, transposed), base)) << what << ": a transposed weight";
      if (dtype == at::kBFloat16) {
        Linear fp32_bias = layer, cast = layer;
        fp32_bias.bias = at::randn({out}) / 4;
        cast.bias = fp32_bias.bias->to(dtype);
        const at::Tensor y = detail::int8_gemv_cuda(x, fp32_bias);
        EXPECT_TRUE(same_bytes(y, detail::int8_gemv_cuda(x, cast))) << what << ": an fp32 bias";
        test::expect_close(y, reference(x, fp32_bias), product_tolerance(dtype, in), what + " fp32 bias");
      }
    }
  }
}

// ---- the rows GEMM ----

// rows_gemm_cuda, bf16 and fp16, kCudaDenseGemvMaxRows + 1 to 32 rows (one and two 16-row tiles of x),
// N and K multiples of 16 (rows_gemm_shape_ok) with a 32-byte aligned weight, with and without a bias:
// two launches (the products, the splits' sum), within one rounding of the reference (tests/ops/
// rows_gemm_test.cpp's bound: both sum in fp32, in other orders). Then x as the binding's staging copies
// it: a view one element in (off 16 bytes) and rows 3 elements apart (a stride not a whole 16-byte piece)
// are cloned first, rows 16 elements apart are read in place: all the bytes of the contiguous x; x not
// written; [R, 1, K] keeps its shape.
TEST_F(LinearSim, RowsGemmMatchesTheReference) {
  for (const at::ScalarType dtype : {at::kBFloat16, at::kHalf}) {
    for (const auto& [out, in] : std::vector<std::pair<int64_t, int64_t>>{{48, 208}, {144, 512}}) {
      for (const int64_t rows : {detail::kCudaDenseGemvMaxRows + 1, int64_t{16}, int64_t{17}, int64_t{32}}) {
        at::manual_seed(rows + out + in);
        const Linear layer = make_layer(out, in, dtype, rows % 2 == 1 ? std::optional(dtype) : std::nullopt);
        ASSERT_TRUE(k::rows_gemm_shape_ok(rows, out, in));
        ASSERT_TRUE(k::rows_gemm_weight_aligned(layer.weight.const_data_ptr()));
        const at::Tensor x = at::randn({rows, in}).to(dtype);
        const std::string what = fmt::format("{} rows {} out {} in {}", name_of(dtype), rows, out, in);
        reset_launches();
        const at::Tensor y = rows == 17 ? run_both_orders([&] { return detail::rows_gemm_cuda(x, layer); }, same_bytes)
                                        : detail::rows_gemm_cuda(x, layer);
        EXPECT_EQ(launches(), rows == 17 ? 4 : 2) << what;
        ASSERT_EQ(y.sizes(), (at::IntArrayRef{rows, out})) << what;
        test::expect_close(y, reference(x, layer), test::rounding_tolerance(dtype), what);
      }
    }
    at::manual_seed(80);
    const int64_t rows = 17, out = 48, in = 208;
    const Linear layer = make_layer(out, in, dtype, dtype);
    const at::Tensor x = at::randn({rows, in}).to(dtype);
    const at::Tensor base = detail::rows_gemm_cuda(x, layer);
    struct View {
      const char* name;
      int64_t width, first;
      bool aligned;
    };
    for (const View& v : {View{"one element in", in + 16, 1, false}, View{"rows 3 apart", in + 3, 0, false},
                          View{"rows 16 apart", in + 16, 0, true}}) {
      const at::Tensor storage = at::full({rows, v.width}, NAN, dtype);
      const at::Tensor view = storage.narrow(1, v.first, in);
      view.copy_(x);
      const at::Tensor storage0 = storage.clone();
      const std::string what = fmt::format("{} x {}", name_of(dtype), v.name);
      ASSERT_EQ(k::rows_gemm_x_aligned(view.const_data_ptr(), view.stride(0)), v.aligned) << what;
      const at::Tensor y = detail::rows_gemm_cuda(view, layer);
      EXPECT_TRUE(same_bytes(y, base)) << what << ": max diff " << max_diff(y, base);
      EXPECT_TRUE(at::equal(storage.nan_to_num(0), storage0.nan_to_num(0))) << what << ": x written";
    }
    const at::Tensor y3 = detail::rows_gemm_cuda(x.view({rows, 1, in}), layer);
    ASSERT_EQ(y3.sizes(), (at::IntArrayRef{rows, 1, out}));
    EXPECT_TRUE(same_bytes(y3.view({rows, out}), base)) << name_of(dtype) << ": [R, 1, K]";
  }
  // The SM count the plan reads (sim::device_properties): 256 features of 4096 inputs split K 16 ways on
  // 132 SMs and 4 ways on 4 (the split launch's grid y), in the partial buffer the binding sizes from its
  // plan: both within the tolerance of the reference.
  at::manual_seed(81);
  const Linear layer = make_layer(256, 4096, at::kBFloat16, at::kBFloat16);
  const at::Tensor x = at::randn({9, 4096}).to(at::kBFloat16);
  ASSERT_EQ(k::rows_gemm_plan(256, 4096, 9, 132).splits, 16);
  ASSERT_EQ(k::rows_gemm_plan(256, 4096, 9, 4).splits, 4);
  const at::Tensor ref = reference(x, layer);
  for (const int sms : {132, 4}) {
    device_properties().multiProcessorCount = sms;
    reset_launches();
    const std::string what = fmt::format("{} SMs", sms);
    test::expect_close(detail::rows_gemm_cuda(x, layer), ref, test::rounding_tolerance(at::kBFloat16), what);
    ASSERT_EQ(launch_log().size(), 2u) << what << ": the split products, then the reduce";
    EXPECT_EQ(launch_log()[0].grid.y, static_cast<unsigned>(sms == 132 ? 16 : 4)) << what;
  }
}

// ---- the activation and add + norm kernels ----

// activation_cuda, plain and gated, SiLU and gelu_new, every dtype: [3, 1, C] (C 40, a whole number of
// 16-byte groups), rows of a wider NaN-filled tensor (C 33: the element path), a transposed x (copied).
// Against the reference with tests/ops/activation_kernel_test.cpp's bounds for the kernel's math on the
// CPU: bf16 bit for bit; fp16 bit for bit but for gelu_new where the CPU's pow(x, 3) rounds once and the
// kernel's x * x * x twice; fp32 within 1e-6 on the values' scale (the CPU's vectorised exp and tanh).
TEST_F(LinearSim, ActivationMatchesTheReference) {
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    for (const Activation act : {Activation::SiLU, Activation::GeluNew}) {
      for (const bool gated : {false, true}) {
        for (const int layout : {0, 1, 2}) {
          const int64_t rows = 3, cols = layout == 1 ? 33 : 40, width = gated ? 2 * cols : cols;
          at::manual_seed(layout * 10 + cols);
          const at::Tensor values = (at::randn({rows, width}) * 2.5).to(dtype);
          at::Tensor x;
          if (layout == 0) x = values.view({rows, 1, width});
          if (layout == 1) {
            x = at::full({rows, width + 5}, NAN, dtype).narrow(1, 0, width);
            x.copy_(values);
          }
          if (layout == 2) x = values.t().contiguous().t();
          const std::string what =
              fmt::format("{} {}{} layout {}", name_of(dtype), act_name(act), gated ? " gated" : "", layout);
          const at::Tensor got =
              layout == 0 ? run_both_orders([&] { return detail::activation_cuda(act, x, gated); }, same_bytes)
                          : detail::activation_cuda(act, x, gated);
          const at::Tensor ref =
              gated ? gated_activation(act, x, Backend::Reference) : activate(act, x, Backend::Reference);
          ASSERT_EQ(got.sizes(), ref.sizes()) << what;
          ASSERT_EQ(got.scalar_type(), dtype) << what;
          if (dtype == at::kFloat) {
            EXPECT_LE(scaled_error(got, ref), 1e-6) << what;
          } else if (dtype == at::kHalf && act == Activation::GeluNew) {
            const at::Tensor g = (gated ? x.narrow(-1, 0, cols) : x).reshape(got.sizes());
            const at::Tensor pow_differs = at::pow(g, 3.0) != (g * g) * g;
            EXPECT_EQ(((ulp_distance(got, ref) > 0) & ~pow_differs).sum().item<int64_t>(), 0)
                << what << ": a difference not from pow";
            EXPECT_LE(scaled_error(got, ref), 4 * unit_roundoff(dtype)) << what;
          } else {
            EXPECT_TRUE(at::equal(got, ref)) << what << ": max diff " << max_diff(got, ref);
          }
        }
      }
    }
  }
}

// add_norm_cuda against add_norm's reference, fp32 and bf16: RMSNorm and LayerNorm, Phi's z, an fp32
// residual beside bf16, 2-3 rows (the element shape; also 32 threads a row) and 130 (a prefill: the
// launcher's vector shape), [R, 1, H] inputs. tests/ops/add_norm_test.cpp's bounds: the residual bit for
// bit; the normed rows (the row sums in another order) within one ulp in bf16, within 1e-6 on the values'
// scale in fp32.
TEST_F(LinearSim, AddNormMatchesTheReference) {
  struct Case {
    int64_t rows, dim;
    bool layer_norm, with_z, fp32_residual;
    int threads;
  };
  const Case cases[] = {{2, 320, false, false, false, 0},
                        {2, 320, false, false, false, 32},
                        {3, 1000, true, true, false, 0},
                        {2, 256, false, false, true, 0},
                        {130, 264, true, false, false, 0}};
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    for (const Case& c : cases) {
      if (c.fp32_residual && dtype == at::kFloat) continue;
      at::manual_seed(c.rows + c.dim);
      Boundary b = make_boundary(c.rows, c.dim, dtype, c.layer_norm, c.with_z, c.fp32_residual);
      b.norm.cuda_threads = c.threads;
      const std::string what = fmt::format("{} {}{} fp32 residual {} rows {} dim {} threads {}", name_of(dtype),
                                           c.layer_norm ? "LayerNorm" : "RMSNorm", c.with_z ? " + z" : "",
                                           c.fp32_residual, c.rows, c.dim, c.threads);
      const AddNormResult got =
          run_both_orders([&] { return detail::add_norm_cuda(b.x, b.y, b.zp(), b.norm); },
                          [](const AddNormResult& p, const AddNormResult& q) {
                            return same_bytes(p.residual, q.residual) && same_bytes(p.normed, q.normed);
                          });
      const AddNormResult ref = add_norm(b.x, b.y, b.zp(), b.norm, Backend::Reference);
      ASSERT_EQ(got.residual.sizes(), ref.residual.sizes()) << what;
      ASSERT_EQ(got.normed.sizes(), ref.normed.sizes()) << what;
      ASSERT_EQ(got.residual.scalar_type(), ref.residual.scalar_type()) << what;
      ASSERT_EQ(got.normed.scalar_type(), ref.normed.scalar_type()) << what;
      EXPECT_TRUE(at::equal(got.residual, ref.residual)) << what << ": the residual";
      if (dtype == at::kFloat) {
        EXPECT_LE(scaled_error(got.normed, ref.normed), 1e-6) << what;
      } else {
        EXPECT_LE(ulp_distance(got.normed, ref.normed).max().item<int64_t>(), 1) << what;
      }
    }
  }
}

}  // namespace
}  // namespace effarch::sim
