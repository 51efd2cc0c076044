// Mamba's causal conv1d kernels (kernels/causal_conv1d) run by the CPU executor through their
// launchers: the prefill on the mixer's channel-last views and on contiguous channel-first input,
// its final state, and its 8-channels-a-thread variant (bit for bit the default where it applies);
// the decode update token by token, its state rolled in place. Against the convolution in fp64.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <string>
#include <tuple>
#include <vector>

#include "cuda_sim.h"
// the kernels' per-dtype translation units, host-compiled
#include "causal_conv1d/causal_conv1d_bf16.cu"
#include "causal_conv1d/causal_conv1d_fp16.cu"
#include "causal_conv1d/causal_conv1d_fp32.cu"
#include "sim_test.h"

namespace effarch::sim {
namespace {

namespace k = ::effarch::kernels;

// out[b, d, t] = act(bias[d] + sum_k w[d, k] x[b, d, t - W + 1 + k]) in fp64, zeros before t = 0.
at::Tensor reference_conv(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias, bool silu) {
  const int64_t width = w.size(1);
  const at::Tensor xd = at::constant_pad_nd(x.to(at::kDouble), {width - 1, 0});
  at::Tensor out = at::conv1d(xd, w.to(at::kDouble).unsqueeze(1), bias.to(at::kDouble), at::IntArrayRef{1},
                              at::IntArrayRef{0}, at::IntArrayRef{1}, x.size(1));
  return silu ? at::silu(out) : out;
}

struct ConvRun {
  at::Tensor out, state;
};

k::CausalConv1dParams params_for(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias, at::Tensor& out,
                                 at::Tensor& state, bool silu) {
  k::CausalConv1dParams p;
  p.batch = static_cast<int>(x.size(0));
  p.dim = static_cast<int>(x.size(1));
  p.seqlen = static_cast<int>(x.size(2));
  p.width = static_cast<int>(w.size(1));
  p.silu = silu;
  p.x_type = element_of(x.scalar_type());
  p.weight_type = element_of(w.scalar_type());
  p.x = x.const_data_ptr();
  p.x_batch_stride = x.stride(0);
  p.x_dim_stride = x.stride(1);
  p.x_time_stride = x.stride(2);
  p.weight = w.const_data_ptr();
  p.weight_dim_stride = w.stride(0);
  p.weight_width_stride = w.stride(1);
  p.bias = bias.const_data_ptr();
  p.bias_stride = bias.stride(0);
  p.out = out.mutable_data_ptr();
  p.out_batch_stride = out.stride(0);
  p.out_dim_stride = out.stride(1);
  p.out_time_stride = out.stride(2);
  p.conv_state = state.mutable_data_ptr();
  p.state_batch_stride = state.stride(0);
  p.state_dim_stride = state.stride(1);
  p.state_width_stride = state.stride(2);
  return p;
}

// The prefill; channel_last: x and out as the mixer has them ([B, L, D] storage viewed [B, D, L]).
ConvRun prefill(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias, bool silu, bool channel_last,
                bool vector) {
  const int64_t b = x.size(0), d = x.size(1), l = x.size(2);
  ConvRun r{channel_last ? at::zeros({b, l, d}, x.options()).transpose(1, 2) : at::zeros({b, d, l}, x.options()),
            at::full({b, d, w.size(1)}, 7, x.options())};
  k::CausalConv1dParams p = params_for(x, w, bias, r.out, r.state, silu);
  p.vector = vector;
  EXPECT_TRUE(k::causal_conv1d_fwd(p, nullptr).ok());
  return r;
}

void expect_close(const at::Tensor& actual, const at::Tensor& ref, at::ScalarType dtype, const std::string& what) {
  const double err = max_rel_error(actual, ref);
  EXPECT_LE(err, dtype == at::kFloat ? 1e-6 : dtype == at::kBFloat16 ? 8e-3 : 1e-3) << what << ": " << err;
}

TEST(CausalConv1dSim, PrefillMatchesTheReferenceAndTheVectorVariantItsBits) {
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    for (const auto& [b, d, l, width] : std::vector<std::tuple<int64_t, int64_t, int64_t, int64_t>>{
             {1, 64, 37, 4}, {2, 40, 3, 4}, {1, 24, 130, 3}, {3, 16, 1, 2}, {1, 13, 20, 4}}) {
      for (const bool channel_last : {true, false}) {
        at::manual_seed(d * 100 + l);
        const at::Tensor storage = channel_last ? at::randn({b, l, d}).to(dtype) : at::randn({b, d, l}).to(dtype);
        const at::Tensor x = channel_last ? storage.transpose(1, 2) : storage;
        const at::Tensor w = (at::randn({d, width}) / 2).to(dtype), bias = (at::randn({d}) / 4).to(dtype);
        const std::string what =
            fmt::format("{} b {} d {} l {} w {} channel_last {}", name_of(dtype), b, d, l, width, channel_last);
        const ConvRun r = run_both_orders([&] { return prefill(x, w, bias, true, channel_last, false); },
                                          [](const ConvRun& p, const ConvRun& q) {
                                            return same_bytes(p.out, q.out) && same_bytes(p.state, q.state);
                                          });
        expect_close(r.out, reference_conv(x, w, bias, true), dtype, what);
        // the state: the last W inputs, zeros on the left of a short prompt
        const at::Tensor padded = at::constant_pad_nd(x, {std::max<int64_t>(0, width - l), 0});
        EXPECT_TRUE(same_bytes(r.state, padded.narrow(2, padded.size(2) - width, width).contiguous()))
            << what << ": state";
        const ConvRun v = prefill(x, w, bias, true, channel_last, true);
        EXPECT_TRUE(same_bytes(v.out, r.out)) << what << ": the 8-channel variant";
        EXPECT_TRUE(same_bytes(v.state, r.state)) << what << ": the 8-channel variant's state";
      }
    }
  }
}

TEST(CausalConv1dSim, UpdateTokenByTokenMatchesThePrefill) {
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    for (const bool fp32_weight : {false, true}) {
      const int64_t b = 2, d = 24, l = 9, width = 4;
      at::manual_seed(11);
      const at::Tensor x = at::randn({b, d, l}).to(dtype);
      const at::ScalarType wt = fp32_weight ? at::kFloat : dtype;
      const at::Tensor w = (at::randn({d, width}) / 2).to(wt), bias = (at::randn({d}) / 4).to(wt);
      const ConvRun full = prefill(x, w, bias, false, false, false);
      at::Tensor state = at::zeros({b, d, width}, dtype);
      std::vector<at::Tensor> outs;
      for (int64_t t = 0; t < l; ++t) {
        const at::Tensor xt = x.narrow(2, t, 1).contiguous();
        at::Tensor out = at::zeros({b, d, 1}, dtype);
        k::CausalConv1dParams p = params_for(xt, w, bias, out, state, false);
        EXPECT_TRUE(k::causal_conv1d_update(p, nullptr).ok());
        outs.push_back(out);
      }
      const std::string what = fmt::format("{} fp32 weight {}", name_of(dtype), fp32_weight);
      EXPECT_TRUE(same_bytes(at::cat(outs, 2), full.out)) << what << ": the update's outputs";
      EXPECT_TRUE(same_bytes(state, full.state)) << what << ": the rolled state";
    }
  }
}

}  // namespace
}  // namespace effarch::sim
