// The fused MLP activation (kernels/activation/): its per-element math (activation_math.h) run on
// the CPU for every element of the launch the binding would make (src/ops/activation_launch.cpp),
// against the reference (ops::activate, and activate(gate) * up): SiLU gated on the fused gate/up
// output, gelu_new plain (Phi), rows of awkward widths, every dtype. With a GPU: the CUDA kernel
// against the reference on the GPU, where each step rounds as the ATen kernels do (bitwise).

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cmath>

#include "../test_util.h"
#include "activation/activation_math.h"
#include "activation_launch.h"
#include "tolerance.h"
#include "effarch/common/error.h"
#include "effarch/ops/activation.h"
#include "effarch/ops/gated_mlp.h"

namespace effarch::ops {
namespace {

using test::scaled_error;
using test::ulp_distance;

template <typename T>
struct HostIo {
  static float load(const void* base, int64_t offset) { return static_cast<float>(static_cast<const T*>(base)[offset]); }
  static void store(void* base, int64_t offset, float v) { static_cast<T*>(base)[offset] = T(v); }
  static float round(float v) { return static_cast<float>(T(v)); }
  template <int kVec>
  static void load_vec(const void* base, int64_t offset, float (&v)[kVec]) {
    for (int k = 0; k < kVec; ++k) v[k] = load(base, offset + k);
  }
  template <int kVec>
  static void store_vec(void* base, int64_t offset, const float (&v)[kVec]) {
    for (int k = 0; k < kVec; ++k) store(base, offset + k, v[k]);
  }
};

template <typename T>
void run_all(const kernels::ActivationParams& p) {
  for (int64_t r = 0; r < p.rows; ++r) {
    for (int64_t c = 0; c < p.cols; ++c) kernels::act::activation_element<HostIo<T>>(p, r, c);
  }
}

// The kernel's vector path over every group of the launch, as its grid-stride loop visits them.
template <typename T>
void run_all_vector(const kernels::ActivationParams& p) {
  constexpr int kVec = kernels::act::kVectorElements<T>;
  for (int64_t g = 0; g < p.rows * (p.cols / kVec); ++g) kernels::act::activation_vector<HostIo<T>, kVec>(p, g);
}

at::Tensor emulate(Activation act, const at::Tensor& x, bool gated) {
  detail::ActivationLaunch l = detail::prepare_activation(act, x, gated);
  switch (x.scalar_type()) {
    case at::kBFloat16: run_all<c10::BFloat16>(l.params); break;
    case at::kHalf: run_all<c10::Half>(l.params); break;
    default: run_all<float>(l.params); break;
  }
  std::vector<int64_t> sizes = x.sizes().vec();
  sizes.back() = l.params.cols;
  return l.out.view(sizes);
}

at::Tensor reference(Activation act, const at::Tensor& x, bool gated) {
  return gated ? gated_activation(act, x, Backend::Reference) : activate(act, x, Backend::Reference);
}

struct Case {
  int64_t rows, cols;  // cols of the output
};
// {64, 2560}: a prefill's many rows (the kernel's vector path; 17 and 1 take its element path).
const Case kCases[] = {{1, 1}, {3, 17}, {1, 10240}, {2, 1000}, {1, 14336}, {64, 2560}};

at::Tensor make_input(const Case& c, bool gated, at::ScalarType dtype, at::Device device, int seed) {
  at::manual_seed(seed);
  // Hidden activations spread over the interesting range of both functions (|x| up to ~8).
  return (at::randn({c.rows, 1, gated ? 2 * c.cols : c.cols}) * 2.5).to(at::TensorOptions().dtype(dtype).device(device));
}

TEST(ActivationKernel, ScalarIsTheReferencesFp32Opmath) {
  EXPECT_EQ(0.7978845608028654f, static_cast<float>(std::sqrt(2.0 / M_PI)));
  EXPECT_EQ(0.044715f, static_cast<float>(0.044715));
}

// The host emulation against the CPU reference. What is expected, and measured (the printed
// lines): bf16 bitwise in every case; fp16 bitwise except gelu_new where the CPU's pow(x, 3)
// (powf, one rounding) differs from CUDA's round(round(x * x) * x), which the kernel follows:
// every differing element must be one of those; fp32 within 1e-6 on the values' scale (the CPU's
// vectorised exp and tanh against the host's expf and tanhf: measured 6.5e-7 at most; in ulps it
// is large only where 1 + tanh cancels to near zero).
TEST(ActivationKernel, HostEmulationMatchesTheReference) {
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    for (const auto& [act, gated] : {std::pair{Activation::SiLU, true}, {Activation::GeluNew, false},
                                     {Activation::SiLU, false}, {Activation::GeluNew, true}}) {
      int64_t worst = 0, differing = 0, total = 0;
      double scaled = 0.0;
      for (const Case& c : kCases) {
        const at::Tensor x = make_input(c, gated, dtype, at::kCPU, static_cast<int>(c.cols + c.rows));
        const at::Tensor ref = reference(act, x, gated);
        const at::Tensor got = emulate(act, x, gated);
        ASSERT_EQ(got.sizes(), ref.sizes());
        const at::Tensor d = ulp_distance(got, ref);
        const std::string what = fmt::format("{} {}{} cols {}", c10::toString(dtype),
                                             act == Activation::SiLU ? "silu" : "gelu_new", gated ? " gated" : "", c.cols);
        if (dtype == at::kBFloat16 || (dtype == at::kHalf && act == Activation::SiLU)) {
          EXPECT_EQ(d.max().item<int64_t>(), 0) << what;
        } else if (dtype == at::kHalf) {
          const at::Tensor g = gated ? x.narrow(-1, 0, c.cols) : x;
          const at::Tensor pow_differs = at::pow(g, 3.0) != (g * g) * g;  // the CPU's pow vs CUDA's steps
          EXPECT_EQ(((d > 0) & ~pow_differs).sum().item<int64_t>(), 0) << what << ": a difference not from pow";
        }
        worst = std::max(worst, d.max().item<int64_t>());
        scaled = std::max(scaled, scaled_error(got, ref));
        differing += (d > 0).sum().item<int64_t>();
        total += d.numel();
      }
      std::printf("activation emulation vs CPU reference, %s %s%s: worst %lld ulp, %lld of %lld elements differ, "
                  "scaled error %.3g\n",
                  c10::toString(dtype), act == Activation::SiLU ? "silu" : "gelu_new", gated ? " gated" : "",
                  static_cast<long long>(worst), static_cast<long long>(differing), static_cast<long long>(total), scaled);
      if (dtype == at::kFloat) EXPECT_LE(scaled, 1e-6);
    }
  }
}

TEST(ActivationKernel, GatedMlpWithTheFusedGateUpIsTheSplitProduct) {
  // gated_activation's reference is gated_mlp's former body: activate the gate half, times up.
  at::manual_seed(2);
  const at::Tensor h = at::randn({2, 3, 10}).to(at::kBFloat16);
  EXPECT_TRUE(at::equal(gated_activation(Activation::SiLU, h, Backend::Reference),
                        at::silu(h.narrow(-1, 0, 5)) * h.narrow(-1, 5, 5)));
}

// The vector path (16-byte groups of a row, one division a group) gives the element path's
// bits on every launch it takes: gelu_new and SiLU, plain and gated, several rows, every dtype;
// and it is taken only where whole aligned groups fit.
TEST(ActivationKernel, VectorPathIsTheElementPathBitForBit) {
  const Case cases[] = {{1, 10240}, {7, 1000}, {64, 2560}, {3, 24}};
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    for (const auto& [act, gated] : {std::pair{Activation::SiLU, true}, {Activation::GeluNew, false},
                                     {Activation::SiLU, false}, {Activation::GeluNew, true}}) {
      for (const Case& c : cases) {
        const at::Tensor x = make_input(c, gated, dtype, at::kCPU, static_cast<int>(c.cols + 3 * c.rows));
        detail::ActivationLaunch e = detail::prepare_activation(act, x, gated);
        detail::ActivationLaunch v = detail::prepare_activation(act, x, gated);
        const int64_t bytes = static_cast<int64_t>(x.element_size());
        ASSERT_TRUE(kernels::act::activation_vectorizes(v.params, bytes)) << c.rows << "x" << c.cols;
        switch (dtype) {
          case at::kBFloat16: run_all<c10::BFloat16>(e.params), run_all_vector<c10::BFloat16>(v.params); break;
          case at::kHalf: run_all<c10::Half>(e.params), run_all_vector<c10::Half>(v.params); break;
          default: run_all<float>(e.params), run_all_vector<float>(v.params); break;
        }
        EXPECT_TRUE(at::equal(v.out, e.out)) << c10::toString(dtype) << (gated ? " gated " : " ") << c.rows << "x"
                                             << c.cols;
      }
    }
  }
  // Where whole aligned groups do not fit, the element path runs.
  const at::Tensor odd = make_input({3, 17}, false, at::kBFloat16, at::kCPU, 1);
  EXPECT_FALSE(kernels::act::activation_vectorizes(detail::prepare_activation(Activation::GeluNew, odd, false).params, 2));
  // 12 columns: neither a row of out nor the up half (from column 12) fills whole groups of 8.
  const at::Tensor gate_up = make_input({2, 12}, true, at::kBFloat16, at::kCPU, 2);
  EXPECT_FALSE(kernels::act::activation_vectorizes(detail::prepare_activation(Activation::SiLU, gate_up, true).params, 2));
  const at::Tensor wide = make_input({2, 16}, false, at::kBFloat16, at::kCPU, 3);
  kernels::ActivationParams shifted = detail::prepare_activation(Activation::GeluNew, wide, false).params;
  EXPECT_TRUE(kernels::act::activation_vectorizes(shifted, 2));
  shifted.in = static_cast<const c10::BFloat16*>(shifted.in) + 1;  // 2 bytes past a 16-byte boundary
  EXPECT_FALSE(kernels::act::activation_vectorizes(shifted, 2));
}

TEST(Activation, BadArgumentsAndBackends) {
  const at::Tensor x = at::randn({2, 6});
  EXPECT_THROW_WITH(gated_activation(Activation::SiLU, x.narrow(-1, 0, 5), Backend::Reference), OpError,
                    {"activation", "gate_up"});
  EXPECT_THROW_WITH(activate(Activation::SiLU, x.to(at::kInt), Backend::Auto), OpError, {"activation", "dtype"});
  EXPECT_THROW_WITH(activate(Activation::SiLU, x, Backend::Cuda), OpError, {"activation", "cuda"});
  EXPECT_THROW_WITH(detail::prepare_activation(Activation::Relu, x, false), OpError, {"activation", "silu"});
  EXPECT_TRUE(has_activation_kernel(Activation::SiLU));
  EXPECT_TRUE(has_activation_kernel(Activation::GeluNew));
  EXPECT_FALSE(has_activation_kernel(Activation::Gelu));
  // Auto on the CPU, and an activation without a kernel under auto: the reference, bitwise.
  EXPECT_TRUE(at::equal(activate(Activation::Relu2, x, Backend::Auto), activate(Activation::Relu2, x)));
}

TEST(ActivationCuda, KernelIsBitwiseTheReference) {
  if (!(kBuiltWithCuda && at::hasCUDA())) GTEST_SKIP() << "needs a CUDA build and a GPU";
  const at::Device gpu(at::kCUDA, 0);
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    for (const auto& [act, gated] : {std::pair{Activation::SiLU, true}, {Activation::GeluNew, false},
                                     {Activation::SiLU, false}, {Activation::GeluNew, true}}) {
      for (const Case& c : kCases) {
        const at::Tensor x = make_input(c, gated, dtype, gpu, static_cast<int>(c.cols + c.rows));
        const at::Tensor ref = reference(act, x, gated);
        const at::Tensor got = gated ? gated_activation(act, x, Backend::Cuda) : activate(act, x, Backend::Cuda);
        const at::Tensor d = ulp_distance(got, ref);
        EXPECT_EQ(d.max().item<int64_t>(), 0)
            << c10::toString(dtype) << (act == Activation::SiLU ? " silu" : " gelu_new") << (gated ? " gated" : "")
            << " cols " << c.cols << ": " << (d > 0).sum().item<int64_t>() << " of " << d.numel() << " differ";
      }
    }
  }
}

}  // namespace
}  // namespace effarch::ops
