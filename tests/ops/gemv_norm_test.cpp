// The dense GEMV's norm prologue (kernels/gemv/gemv_norm.h, ops::NormedInput): a decode step's
// block-boundary add + norm computed by every block of the GEMV that reads it.
// - Off the GPU: the prologue's phases run for every thread of a GEMV block as the kernel runs
//   them (each thread its virtual threads, each warp's butterflies over its virtual warps, those
//   sums in virtual warp order) give the add_norm kernel's emulated residual and normed rows bit
//   for bit, in the first block (which writes the residual) and another (which does not); what the
//   prologue refuses; ops::NormedInput's fallback (add_norm, then the product) for every op that
//   takes one.
// - With a GPU: the fused GEMV against add_norm then the GEMV, bit for bit, for the plain product,
//   the activation tail, the gated activation and the conv update, every dtype, both norms, an
//   fp32 residual, Phi's second addend, one and two rows.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include "../test_util.h"
#include "add_norm_emulation.h"
#include "add_norm_launch.h"
#include "common/warp_sum.h"
#include "effarch/common/error.h"
#include "effarch/ops/activation.h"
#include "effarch/ops/add_norm.h"
#include "effarch/ops/causal_conv1d.h"
#include "effarch/ops/linear.h"
#include "effarch/ops/normed_input.h"
#include "gemv/gemv_norm.h"
#include "linear_problem.h"

namespace effarch::ops {
namespace {

namespace gn = kernels::gemvnorm;
namespace an = kernels::addnorm;
using addnorm_emulation::HostIo;
using test::cuda_layer;
using test::cuda_randn;
using test::have_gpu;

// A block boundary's add + norm: x the residual (the model dtype or fp32), y (and z) the sublayer
// outputs, the norm's weights, all on `device`.
struct Boundary {
  at::Tensor x, y, z;
  NormParams norm;
  const at::Tensor* zp() const { return z.defined() ? &z : nullptr; }
};

Boundary make_boundary(int64_t rows, int64_t dim, at::ScalarType dtype, bool fp32_residual, bool layer_norm,
                       bool with_z, at::Device device = at::kCPU) {
  const auto o = at::TensorOptions().dtype(dtype).device(device);
  Boundary b;
  b.x = at::randn({rows, 1, dim}, o.dtype(fp32_residual ? at::kFloat : dtype));
  b.y = at::randn({rows, 1, dim}, o);
  if (with_z) b.z = at::randn({rows, 1, dim}, o);
  b.norm.weight = (1.0 + 0.1 * at::randn({dim}, o.dtype(at::kFloat))).to(dtype);
  b.norm.layer_norm = layer_norm;
  if (layer_norm) b.norm.bias = (0.1 * at::randn({dim}, o.dtype(at::kFloat))).to(dtype);
  b.norm.eps = 1e-5;
  return b;
}

// The GEMV block `block` of the prologue on the host: the device's reduction spelled out (each
// warp's xor butterfly over each of its virtual warps' lanes, kept where gn::virtual_warp names a
// warp of the row, then add_warp_sums), each thread's phases from gemv_norm.h; the normed rows
// into `normed` ([rows, dim] of the model dtype).
void run_prologue_block(kernels::AddNormParams a, int block, const at::Tensor& normed) {
  a.normed = normed.mutable_data_ptr();
  a.normed_row_stride = a.dim;
  if (block != 0) a.residual_out = nullptr;
  const int threads = an::threads_of(a);
  constexpr int kThreads = kernels::kGemvThreads, kWarps = kThreads / kernels::kWarpLanes;
  const auto block_sum = [&](const std::vector<std::array<float, gn::kPerThread>>& part) {
    std::vector<float> red(static_cast<size_t>(an::kMaxThreads / kernels::kWarpLanes), -1.0f);
    for (int warp = 0; warp < kWarps; ++warp) {
      for (int j = 0; j < gn::kPerThread; ++j) {
        float lanes[kernels::kWarpLanes];
        for (int lane = 0; lane < kernels::kWarpLanes; ++lane) lanes[lane] = part[warp * kernels::kWarpLanes + lane][j];
        const int w = gn::virtual_warp(warp, j, threads);
        if (w >= 0) red[w] = kernels::xor_butterfly_sum_emulated(lanes);
      }
    }
    return kernels::add_warp_sums(red.data(), threads / kernels::kWarpLanes);
  };
  std::vector<std::array<float, gn::kPerThread>> part(kThreads);
  for (int64_t row = 0; row < a.rows; ++row) {
    float p[gn::kPerThread];
    for (int tid = 0; tid < kThreads; ++tid) {
      gn::add_partials<HostIo>(a, row, tid, threads, p);
      std::copy(p, p + gn::kPerThread, part[tid].begin());
    }
    const float first = block_sum(part);
    float second = 0.0f;
    if (a.norm == kernels::NormType::kLayer) {
      for (int tid = 0; tid < kThreads; ++tid) {
        gn::variance_partials<HostIo>(a, row, tid, threads, an::mean_of(first, a.dim), p);
        std::copy(p, p + gn::kPerThread, part[tid].begin());
      }
      second = block_sum(part);
    }
    for (int tid = 0; tid < kThreads; ++tid) gn::norm_writes<HostIo>(a, row, tid, threads, first, second);
  }
}

TEST(GemvNormPrologue, PhasesGiveTheAddNormKernelsBits) {
  at::manual_seed(5);
  int runs = 0;
  // 64: 64 virtual threads (two warps of the block idle); 200: 256; 1000, 2560, 4096: 512, two a thread.
  for (const int64_t dim : {64, 200, 1000, 2560, 4096}) {
    for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
      for (const bool layer_norm : {false, true}) {
        for (const bool fp32_residual : {false, true}) {
          for (const bool with_z : {false, true}) {
            for (const int64_t rows : {1, 2}) {
              if (dtype == at::kFloat && fp32_residual) continue;  // the same thing
              const Boundary b = make_boundary(rows, dim, dtype, fp32_residual, layer_norm, with_z);
              const std::string what = fmt::format("dim {} {} {} fp32 residual {} z {} rows {}", dim,
                                                   c10::toString(dtype), layer_norm ? "LayerNorm" : "RMSNorm",
                                                   fp32_residual, with_z, rows);
              const AddNormResult expect = addnorm_emulation::emulate(b.x, b.y, b.zp(), b.norm);
              detail::AddNormLaunch l = detail::prepare_add_norm(b.x, b.y, b.zp(), b.norm, /*with_normed=*/false);
              ASSERT_EQ(l.params.normed, nullptr) << what;
              ASSERT_EQ(gn::refusal(l.params, static_cast<int>(rows), static_cast<int>(dim), l.params.type), nullptr)
                  << what;
              for (const int block : {0, 3}) {
                l.residual.zero_();
                const at::Tensor normed = at::empty({rows, dim}, b.y.options());
                run_prologue_block(l.params, block, normed);
                EXPECT_TRUE(at::equal(normed, expect.normed.view({rows, dim}))) << what << " block " << block;
                if (block == 0) {
                  EXPECT_TRUE(at::equal(l.residual, expect.residual.view({rows, dim}))) << what;
                } else {
                  EXPECT_EQ(l.residual.count_nonzero().item<int64_t>(), 0) << what << ": only the first block writes";
                }
              }
              ++runs;
            }
          }
        }
      }
    }
  }
  EXPECT_EQ(runs, 5 * 3 * 2 * 2 * 2 * 2 - 5 * 2 * 2 * 2);
}

TEST(GemvNormPrologue, WhatItRefuses) {
  const Boundary b = make_boundary(2, 2560, at::kBFloat16, true, true, false);
  const auto params = [&](const NormParams& norm) {
    return detail::prepare_add_norm(b.x, b.y, nullptr, norm, false).params;
  };
  const kernels::AddNormParams ok = params(b.norm);
  EXPECT_EQ(gn::refusal(ok, 2, 2560, ok.type), nullptr);
  EXPECT_NE(gn::refusal(ok, 3, 2560, ok.type), nullptr);  // more rows than a decode step's two
  EXPECT_NE(gn::refusal(ok, 2, 2048, ok.type), nullptr);  // the GEMV's inputs are not the norm's row
  EXPECT_NE(gn::refusal(ok, 2, 2560, kernels::ElementType::kFloat16), nullptr);  // another dtype than x's
  kernels::AddNormParams alias = ok;
  alias.residual_out = const_cast<void*>(alias.x);  // the first block would write what the others read
  EXPECT_NE(gn::refusal(alias, 2, 2560, ok.type), nullptr);
  kernels::AddNormParams no_bias = ok;
  no_bias.bias = nullptr;
  EXPECT_NE(gn::refusal(no_bias, 2, 2560, ok.type), nullptr);
  NormParams vector = b.norm;
  vector.cuda_shape = AddNormShape::Vector;  // the prologue computes the element shape's sums
  EXPECT_NE(gn::refusal(params(vector), 2, 2560, ok.type), nullptr);
  NormParams narrow = b.norm;
  narrow.cuda_threads = 128;  // 8 x 128 < 2560: the row does not stay in registers
  EXPECT_NE(gn::refusal(params(narrow), 2, 2560, ok.type), nullptr);
  narrow.cuda_threads = 512;
  EXPECT_EQ(gn::refusal(params(narrow), 2, 2560, ok.type), nullptr);
  const Boundary wide = make_boundary(1, 8192, at::kBFloat16, false, false, false);  // Llama-70B: beyond the cache
  const kernels::AddNormParams w = detail::prepare_add_norm(wide.x, wide.y, nullptr, wide.norm, false).params;
  EXPECT_NE(gn::refusal(w, 1, 8192, w.type), nullptr);
}

// Off the GPU a pending input is add_norm, then the op on its normed tensor: the same bits, its
// residual add_norm's; a tensor input has no residual.
TEST(NormedInput, OffTheGpuItIsTheAddNormThenTheOp) {
  at::manual_seed(6);
  for (const bool with_z : {false, true}) {
    const Boundary b = make_boundary(2, 16, at::kFloat, false, true, with_z);
    const AddNormResult r = add_norm(b.x, b.y, b.zp(), b.norm);
    const auto pending = [&] {
      return NormedInput::pending(b.x, b.y, b.zp(), b.norm, Backend::Auto);
    };
    const Linear layer(at::randn({24, 16}), at::randn({24}));
    EXPECT_EQ(pending().prologue_for(layer, Backend::Auto), nullptr);
    {
      const NormedInput in = pending();
      EXPECT_TRUE(at::equal(linear(in, layer), linear(r.normed, layer)));
      EXPECT_TRUE(at::equal(in.residual(), r.residual));
      EXPECT_TRUE(at::equal(in.tensor(), r.normed));
      EXPECT_EQ(in.sizes(), b.y.sizes());
    }
    {
      const NormedInput in = pending();
      EXPECT_TRUE(at::equal(linear_activation_tail(in, layer, Activation::GeluNew, 8),
                            linear_activation_tail(r.normed, layer, Activation::GeluNew, 8)));
      EXPECT_TRUE(at::equal(in.residual(), r.residual));
    }
    {
      const NormedInput in = pending();
      EXPECT_TRUE(at::equal(linear_gated_activation(in, layer, Activation::SiLU),
                            linear_gated_activation(r.normed, layer, Activation::SiLU)));
    }
    {
      const NormedInput in = pending().view({2, 16});
      const at::Tensor weight = at::randn({10, 4}), bias = at::randn({10}), state0 = at::randn({2, 10, 4});
      at::Tensor state = state0.clone(), expect_state = state0.clone();
      const ProjectedConv got = linear_conv_update(in, layer, 6, state, weight, bias, true);
      const ProjectedConv expect = linear_conv_update(r.normed.view({2, 16}), layer, 6, expect_state, weight, bias, true);
      EXPECT_TRUE(at::equal(got.projection, expect.projection));
      EXPECT_TRUE(at::equal(got.conv, expect.conv));
      EXPECT_TRUE(at::equal(state, expect_state));
      EXPECT_TRUE(at::equal(in.residual(), r.residual));  // the residual keeps x's shape
    }
  }
  const NormedInput plain(at::randn({2, 1, 16}));
  EXPECT_FALSE(plain.is_pending());
  EXPECT_THROW_WITH(plain.residual(), OpError, {"no residual"});
  const Boundary b = make_boundary(2, 16, at::kFloat, false, false, false);
  EXPECT_THROW_WITH(NormedInput::pending(b.x, at::randn({2, 1, 8}), nullptr, b.norm, Backend::Auto), OpError,
                    {"add_norm", "y"});
}

// ---- on a GPU ----

// The fused GEMV against add_norm then the same GEMV, bit for bit: the output and the residual.
// Every dtype, RMSNorm and LayerNorm (with Phi's z), an fp32 residual, one and two rows; the
// plain product (Llama's qkv, the head), the activation tail (Phi's input product), the gated
// activation (Llama's gate/up) and the conv update (Mamba's in_proj).
TEST(DenseGemvCuda, NormPrologueGivesTheUnfusedBits) {
  if (!have_gpu()) GTEST_SKIP() << "needs a CUDA build and a GPU";
  const at::Device gpu(at::kCUDA, 0);
  at::manual_seed(28);
  int runs = 0;
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    for (const int64_t dim : {64, 256, 2560, 4096}) {
      for (const bool layer_norm : {false, true}) {
        for (const bool fp32_residual : {false, true}) {
          for (const int64_t rows : {1, 2}) {
            const Boundary b = make_boundary(rows, dim, dtype, fp32_residual, layer_norm, layer_norm, gpu);
            const std::string what = fmt::format("{} dim {} {} fp32 residual {} rows {}", c10::toString(dtype), dim,
                                                 layer_norm ? "LayerNorm (+ z)" : "RMSNorm", fp32_residual, rows);
            const AddNormResult r = add_norm(b.x, b.y, b.zp(), b.norm, Backend::Cuda);
            const auto pending = [&] {
              return NormedInput::pending(b.x, b.y, b.zp(), b.norm, Backend::Cuda);
            };
            // 3 dim + 3 outputs: the last block's spare warps reach the prologue's barriers too.
            const Linear plain = cuda_layer(3 * dim + 3, dim, dtype, layer_norm);
            const Linear gate_up = cuda_layer(2 * dim, dim, dtype, false);
            const Linear in_proj = cuda_layer(4 * dim, dim, dtype, false);
            for (const Linear* layer : {&plain, &gate_up, &in_proj}) {  // each product below runs the prologue
              ASSERT_NE(pending().prologue_for(*layer, Backend::Cuda), nullptr) << what;
            }
            ASSERT_TRUE(linear_activation_fuses(b.y, plain, Activation::GeluNew, Backend::Cuda)) << what;
            ASSERT_TRUE(linear_gated_activation_fuses(b.y, gate_up, Activation::SiLU, Backend::Cuda)) << what;
            {
              const NormedInput in = pending();
              EXPECT_TRUE(at::equal(linear(in, plain, Backend::Cuda), linear(r.normed, plain, Backend::Cuda))) << what;
              EXPECT_TRUE(at::equal(in.residual(), r.residual)) << what;
            }
            {
              const NormedInput in = pending();
              const at::Tensor got = linear_activation_tail(in, plain, Activation::GeluNew, dim, Backend::Cuda);
              EXPECT_TRUE(at::equal(got, linear_activation_tail(r.normed, plain, Activation::GeluNew, dim, Backend::Cuda)))
                  << what;
              EXPECT_TRUE(at::equal(in.residual(), r.residual)) << what;
            }
            {
              const NormedInput in = pending();
              EXPECT_TRUE(at::equal(linear_gated_activation(in, gate_up, Activation::SiLU, Backend::Cuda),
                                    linear_gated_activation(r.normed, gate_up, Activation::SiLU, Backend::Cuda)))
                  << what;
              EXPECT_TRUE(at::equal(in.residual(), r.residual)) << what;
            }
            {
              const at::Tensor weight = cuda_randn({2 * dim, 4}, dtype), state0 = cuda_randn({rows, 2 * dim, 4}, dtype);
              at::Tensor state = state0.clone(), expect_state = state0.clone();
              const NormedInput in = pending().view({rows, dim});
              ASSERT_TRUE(linear_conv_update_fuses(b.y.view({rows, dim}), in_proj, state, Backend::Cuda)) << what;
              const ProjectedConv got = linear_conv_update(in, in_proj, 0, state, weight, std::nullopt, true, Backend::Cuda);
              const ProjectedConv expect = linear_conv_update(r.normed.view({rows, dim}), in_proj, 0, expect_state,
                                                              weight, std::nullopt, true, Backend::Cuda);
              EXPECT_TRUE(at::equal(got.projection, expect.projection)) << what;
              EXPECT_TRUE(at::equal(got.conv, expect.conv)) << what;
              EXPECT_TRUE(at::equal(state, expect_state)) << what;
              EXPECT_TRUE(at::equal(in.residual(), r.residual)) << what;
            }
            ++runs;
          }
        }
      }
    }
  }
  EXPECT_EQ(runs, 96);
}

}  // namespace
}  // namespace effarch::ops
