// causal_conv1d: plain loops vs the ATen reference on awkward sizes, decode fed token by token vs
// prefill, strided inputs, argument errors; with a GPU, the CUDA kernels vs the reference.

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "../test_util.h"
#include "tolerance.h"
#include "effarch/common/error.h"
#include "causal_conv1d/causal_conv1d.h"
#include "effarch/ops/causal_conv1d.h"

namespace effarch::ops {
namespace {

const std::vector<at::ScalarType> kDTypes = {at::kFloat, at::kBFloat16, at::kHalf};

using test::expect_close;
// Both sides sum in fp32 (or better) and round once to the dtype.
test::Tolerance tolerance(at::ScalarType dtype) { return test::rounding_tolerance(dtype); }

struct Inputs {
  at::Tensor x;                    // [B, D, L]
  at::Tensor weight;               // [D, W] or [D, 1, W]
  std::optional<at::Tensor> bias;  // [D]
};

Inputs random_inputs(int64_t batch, int64_t dim, int64_t seqlen, int64_t width, at::ScalarType dtype, bool with_bias,
                     bool weight_3d = false, std::optional<at::ScalarType> weight_dtype = std::nullopt) {
  Inputs in;
  in.x = at::randn({batch, dim, seqlen}).to(dtype);
  in.weight = (at::randn({dim, width}) * 0.5).to(weight_dtype.value_or(dtype));
  if (weight_3d) in.weight = in.weight.unsqueeze(1);
  if (with_bias) in.bias = at::randn({dim}).to(in.weight.scalar_type());
  return in;
}

struct NaiveResult {
  at::Tensor out;    // [B, D, L] double
  at::Tensor state;  // [B, D, W] double
};

// The definition, written out: nested loops in double precision.
NaiveResult naive_causal_conv1d(const Inputs& in, bool silu) {
  const int64_t batch = in.x.size(0), dim = in.x.size(1), seqlen = in.x.size(2);
  const at::Tensor w2 = in.weight.reshape({dim, -1}).to(at::kDouble);
  const int64_t width = w2.size(1);
  const at::Tensor xd = in.x.to(at::kDouble).contiguous();
  const at::Tensor bd = in.bias ? in.bias->to(at::kDouble) : at::zeros({dim}, at::kDouble);
  const auto x = xd.accessor<double, 3>();
  const auto w = w2.accessor<double, 2>();
  const auto b = bd.accessor<double, 1>();

  NaiveResult r{at::zeros({batch, dim, seqlen}, at::kDouble), at::zeros({batch, dim, width}, at::kDouble)};
  auto out = r.out.accessor<double, 3>();
  auto state = r.state.accessor<double, 3>();
  for (int64_t bi = 0; bi < batch; ++bi) {
    for (int64_t d = 0; d < dim; ++d) {
      for (int64_t t = 0; t < seqlen; ++t) {
        double acc = b[d];
        for (int64_t k = 0; k < width; ++k) {
          const int64_t s = t - (width - 1) + k;
          if (s >= 0) acc += w[d][k] * x[bi][d][s];
        }
        out[bi][d][t] = silu ? acc / (1.0 + std::exp(-acc)) : acc;
      }
      for (int64_t k = 0; k < width; ++k) {
        const int64_t s = seqlen - width + k;
        state[bi][d][k] = s >= 0 ? x[bi][d][s] : 0.0;
      }
    }
  }
  return r;
}

std::string case_name(at::ScalarType dtype, int64_t batch, int64_t dim, int64_t seqlen, int64_t width, bool bias,
                      bool silu) {
  return fmt::format("dtype {} B {} D {} L {} W {} bias {} silu {}", c10::toString(dtype), batch, dim, seqlen, width,
                     bias, silu);
}

TEST(CausalConv1d, ReferenceMatchesNaiveLoops) {
  at::manual_seed(1);
  const int64_t batch = 2;
  for (at::ScalarType dtype : kDTypes) {
    for (int64_t seqlen : {1, 2, 3, 5, 17, 129}) {
      for (int64_t dim : {1, 3, 70}) {
        for (int64_t width : {2, 3, 4}) {
          for (bool with_bias : {false, true}) {
            for (bool silu : {false, true}) {
              const std::string name = case_name(dtype, batch, dim, seqlen, width, with_bias, silu);
              SCOPED_TRACE(name);
              const Inputs in = random_inputs(batch, dim, seqlen, width, dtype, with_bias, /*weight_3d=*/silu);
              at::Tensor state = at::full({batch, dim, width}, 7.0, at::TensorOptions().dtype(dtype));
              const at::Tensor out = causal_conv1d(in.x, in.weight, in.bias, silu, &state, Backend::Reference);
              EXPECT_EQ(out.scalar_type(), dtype);
              const NaiveResult expected = naive_causal_conv1d(in, silu);
              expect_close(out, expected.out, tolerance(dtype), "out");
              // The state holds copies of inputs (or zeros): exact.
              EXPECT_TRUE(at::equal(state.to(at::kDouble), expected.state)) << "final_conv_state";
            }
          }
        }
      }
    }
  }
}

TEST(CausalConv1d, FinalStateShortAndLongSequences) {
  const at::Tensor weight = at::ones({1, 4});
  for (at::ScalarType dtype : kDTypes) {
    const auto opts = at::TensorOptions().dtype(dtype);
    at::Tensor state = at::empty({1, 1, 4}, opts);
    // L = 2 < W: zero-padded on the left, newest input last.
    causal_conv1d(at::tensor({1.0f, 2.0f}).view({1, 1, 2}).to(dtype), weight, std::nullopt, false, &state);
    EXPECT_TRUE(at::equal(state, at::tensor({0.0f, 0.0f, 1.0f, 2.0f}).view({1, 1, 4}).to(dtype)));
    // L = 6 >= W: the last W inputs.
    causal_conv1d(at::arange(1, 7).to(dtype).view({1, 1, 6}), weight, std::nullopt, false, &state);
    EXPECT_TRUE(at::equal(state, at::tensor({3.0f, 4.0f, 5.0f, 6.0f}).view({1, 1, 4}).to(dtype)));
  }
}

TEST(CausalConv1d, WeightAndBiasDtypesMayDifferFromX) {
  at::manual_seed(2);
  Inputs in = random_inputs(2, 70, 17, 4, at::kBFloat16, true, true, at::kFloat);
  in.bias = in.bias->to(at::kHalf);
  const NaiveResult expected = naive_causal_conv1d(in, true);
  const at::Tensor out = causal_conv1d(in.x, in.weight, in.bias, true);
  EXPECT_EQ(out.scalar_type(), at::kBFloat16);
  expect_close(out, expected.out, tolerance(at::kBFloat16), "bf16 x, fp32 weight, fp16 bias");
}

TEST(CausalConv1d, DecodeTokenByTokenEqualsPrefill) {
  at::manual_seed(3);
  const int64_t batch = 2, dim = 70, seqlen = 17;
  for (at::ScalarType dtype : kDTypes) {
    for (int64_t width : {2, 3, 4}) {
      for (bool silu : {false, true}) {
        SCOPED_TRACE(case_name(dtype, batch, dim, seqlen, width, true, silu));
        const Inputs in = random_inputs(batch, dim, seqlen, width, dtype, true);
        const auto opts = at::TensorOptions().dtype(dtype);
        at::Tensor prefill_state = at::empty({batch, dim, width}, opts);
        const at::Tensor prefill_out = causal_conv1d(in.x, in.weight, in.bias, silu, &prefill_state);

        // From an empty cache, one token at a time ([B, D] inputs).
        at::Tensor state = at::zeros({batch, dim, width}, opts);
        std::vector<at::Tensor> outs;
        for (int64_t t = 0; t < seqlen; ++t) {
          const at::Tensor y = causal_conv1d_update(in.x.select(2, t), state, in.weight, in.bias, silu);
          EXPECT_EQ(y.sizes(), at::IntArrayRef({batch, dim}));
          outs.push_back(y);
        }
        expect_close(at::stack(outs, 2), prefill_out, tolerance(dtype), "token by token");
        EXPECT_TRUE(at::equal(state, prefill_state)) << "state after token by token";

        // Prefill 5 tokens, then decode the rest 3 tokens at a time ([B, D, T] inputs).
        at::Tensor state2 = at::empty({batch, dim, width}, opts);
        std::vector<at::Tensor> pieces{causal_conv1d(in.x.narrow(2, 0, 5), in.weight, in.bias, silu, &state2)};
        for (int64_t t = 5; t < seqlen; t += 3) {
          pieces.push_back(
              causal_conv1d_update(in.x.narrow(2, t, std::min<int64_t>(3, seqlen - t)), state2, in.weight, in.bias, silu));
        }
        expect_close(at::cat(pieces, 2), prefill_out, tolerance(dtype), "prefill then 3-token updates");
        EXPECT_TRUE(at::equal(state2, prefill_state)) << "state after prefill then updates";
      }
    }
  }
}

TEST(CausalConv1d, TransposedInputGivesTheSameResult) {
  at::manual_seed(4);
  const int64_t batch = 2, dim = 70, seqlen = 33, width = 4;
  for (at::ScalarType dtype : kDTypes) {
    SCOPED_TRACE(c10::toString(dtype));
    const Inputs in = random_inputs(batch, dim, seqlen, width, dtype, true);
    const at::Tensor x_t = in.x.transpose(1, 2).contiguous().transpose(1, 2);  // [B, D, L] view of [B, L, D]
    ASSERT_FALSE(x_t.is_contiguous());
    at::Tensor state = at::empty({batch, dim, width}, at::TensorOptions().dtype(dtype));
    at::Tensor state_t = at::empty({batch, width, dim}, at::TensorOptions().dtype(dtype)).transpose(1, 2);
    const at::Tensor out = causal_conv1d(in.x, in.weight, in.bias, true, &state);
    const at::Tensor out_t = causal_conv1d(x_t, in.weight, in.bias, true, &state_t);
    EXPECT_EQ(out_t.stride(1), 1) << "a channel-last x gives a channel-last out";
    expect_close(out_t, out, tolerance(dtype), "transposed x");
    EXPECT_TRUE(at::equal(state_t, state));

    // Update with strided x ([B, D, T] view of [B, T, D]) and the strided state.
    const at::Tensor new_x = in.x.narrow(2, 0, 3);
    const at::Tensor new_x_t = new_x.transpose(1, 2).contiguous().transpose(1, 2);
    const at::Tensor y = causal_conv1d_update(new_x, state, in.weight, in.bias, true);
    const at::Tensor y_t = causal_conv1d_update(new_x_t, state_t, in.weight, in.bias, true);
    expect_close(y_t, y, tolerance(dtype), "update, transposed x and state");
    EXPECT_TRUE(at::equal(state_t, state));
  }
}

TEST(CausalConv1d, EmptyBatchAndEmptySequence) {
  const at::Tensor weight = at::randn({3, 4});
  EXPECT_EQ(causal_conv1d(at::randn({0, 3, 5}), weight, std::nullopt, true).sizes(), at::IntArrayRef({0, 3, 5}));
  at::Tensor state = at::full({2, 3, 4}, 5.0);
  EXPECT_EQ(causal_conv1d(at::randn({2, 3, 0}), weight, std::nullopt, true, &state).sizes(),
            at::IntArrayRef({2, 3, 0}));
  EXPECT_TRUE(at::equal(state, at::zeros({2, 3, 4})));
  at::Tensor state2 = at::randn({2, 3, 4});
  const at::Tensor before = state2.clone();
  EXPECT_EQ(causal_conv1d_update(at::randn({2, 3, 0}), state2, weight, std::nullopt, true).sizes(),
            at::IntArrayRef({2, 3, 0}));
  EXPECT_TRUE(at::equal(state2, before));
}

TEST(CausalConv1d, BadArgumentsThrowOpError) {
  const at::Tensor x = at::randn({2, 70, 5});
  const at::Tensor w = at::randn({70, 4});
  EXPECT_THROW_WITH(causal_conv1d(x, at::randn({70, 5}), std::nullopt, true), OpError,
                    {"causal_conv1d", "weight", "width 5", "2, 3 and 4"});
  EXPECT_THROW_WITH(causal_conv1d(x, at::randn({70, 1}), std::nullopt, true), OpError, {"weight", "width 1"});
  EXPECT_THROW_WITH(causal_conv1d(x, at::randn({69, 4}), std::nullopt, true), OpError,
                    {"weight [69, 4]", "69 channels", "D = 70"});
  EXPECT_THROW_WITH(causal_conv1d(x, at::randn({70, 2, 4}), std::nullopt, true), OpError,
                    {"weight has 3 dims [70, 2, 4]", "[D, W] or [D, 1, W]"});
  EXPECT_THROW_WITH(causal_conv1d(x.to(at::kInt), w, std::nullopt, true), OpError, {"causal_conv1d: x", "Int"});
  EXPECT_THROW_WITH(causal_conv1d(x, w.to(at::kInt), std::nullopt, true), OpError, {"weight", "Int"});
  EXPECT_THROW_WITH(causal_conv1d(x, w, at::randn({69}), true), OpError, {"bias", "[69]", "[70]"});
  EXPECT_THROW_WITH(causal_conv1d(at::randn({70, 5}), w, std::nullopt, true), OpError, {"x has 2 dims"});
  at::Tensor bad_state = at::zeros({2, 70, 3});
  EXPECT_THROW_WITH(causal_conv1d(x, w, std::nullopt, true, &bad_state), OpError,
                    {"final_conv_state", "[2, 70, 3]", "[2, 70, 4]"});
  at::Tensor half_state = at::zeros({2, 70, 4}, at::kHalf);
  EXPECT_THROW_WITH(causal_conv1d(x, w, std::nullopt, true, &half_state), OpError,
                    {"final_conv_state", "dtype Half"});

  at::Tensor state = at::zeros({2, 70, 4});
  EXPECT_THROW_WITH(causal_conv1d_update(at::randn({2, 70}), bad_state, w, std::nullopt, true), OpError,
                    {"causal_conv1d_update", "conv_state", "[2, 70, 4]"});
  EXPECT_THROW_WITH(causal_conv1d_update(at::randn({2, 71}), state, w, std::nullopt, true), OpError,
                    {"causal_conv1d_update", "weight", "D = 71"});
  EXPECT_THROW_WITH(causal_conv1d_update(at::randn({2, 70}).to(at::kInt), state, w, std::nullopt, true), OpError,
                    {"causal_conv1d_update: x", "Int"});
  EXPECT_THROW_WITH(causal_conv1d_update(at::randn({2, 70}), state, at::randn({70, 5}), std::nullopt, true),
                    OpError, {"causal_conv1d_update", "weight", "width 5"});
  at::Tensor broadcast_state = at::zeros({1, 70, 4}).expand({2, 70, 4});
  EXPECT_THROW_WITH(causal_conv1d_update(at::randn({2, 70}), broadcast_state, w, std::nullopt, true), OpError,
                    {"conv_state", "broadcast"});

  // The CUDA backend on CPU tensors (or in a build without CUDA) is an error naming the op family
  // (causal_conv1d covers the update too), not a fallback.
  EXPECT_THROW_WITH(causal_conv1d(x, w, std::nullopt, true, nullptr, Backend::Cuda), OpError,
                    {"causal_conv1d", "backend cuda"});
  EXPECT_THROW_WITH(causal_conv1d_update(at::randn({2, 70}), state, w, std::nullopt, true, Backend::Cuda), OpError,
                    {"causal_conv1d", "backend cuda"});
}

// Where the prefill's vector variant (8 channels a thread, 16-byte accesses) may run: x and out
// channel-last, whole 8-channel groups, every batch and time stride a multiple of 8, aligned
// bases; elsewhere its launcher runs the usual kernels.
TEST(CausalConv1d, VectorVariantNeedsChannelLastAlignedGroupsOfEight) {
  alignas(16) static float buffer[64];
  kernels::CausalConv1dParams p;
  p.dim = 5120;
  p.x = buffer;
  p.out = buffer;
  p.x_dim_stride = p.out_dim_stride = 1;
  p.x_time_stride = 10240;  // in_proj's [B, L, 2D] output, the x half
  p.out_time_stride = 5120;
  p.x_batch_stride = 10240 * 7;
  p.out_batch_stride = 5120 * 7;
  EXPECT_TRUE(kernels::causal_conv1d_vector_applies(p));
  kernels::CausalConv1dParams q = p;
  q.dim = 70;  // not whole groups
  EXPECT_FALSE(kernels::causal_conv1d_vector_applies(q));
  q = p;
  q.x_dim_stride = 7;  // channel-first
  q.x_time_stride = 1;
  EXPECT_FALSE(kernels::causal_conv1d_vector_applies(q));
  q = p;
  q.x_time_stride = 10241;
  EXPECT_FALSE(kernels::causal_conv1d_vector_applies(q));
  q = p;
  q.out = buffer + 1;  // 4 bytes off 16
  EXPECT_FALSE(kernels::causal_conv1d_vector_applies(q));
}

#ifdef EFFARCH_WITH_CUDA

#define EFFARCH_SKIP_WITHOUT_GPU() \
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device"

Inputs to_cuda(const Inputs& in) {
  return {in.x.cuda(), in.weight.cuda(), in.bias ? std::optional<at::Tensor>(in.bias->cuda()) : std::nullopt};
}

// x as channel-first [B, D, L] or as the channel-last view of a [B, L, D] tensor.
at::Tensor with_layout(const at::Tensor& x, bool channel_last) {
  return channel_last ? x.transpose(1, 2).contiguous().transpose(1, 2) : x.contiguous();
}

TEST(CausalConv1dCuda, PrefillKernelMatchesReference) {
  EFFARCH_SKIP_WITHOUT_GPU();
  at::manual_seed(5);
  const int64_t batch = 2;
  for (at::ScalarType dtype : kDTypes) {
    for (int64_t seqlen : {1, 2, 3, 5, 17, 31, 32, 33, 129, 300}) {
      for (int64_t dim : {1, 3, 70, 130}) {
        for (int64_t width : {2, 3, 4}) {
          for (bool with_bias : {false, true}) {
            for (bool silu : {false, true}) {
              for (bool channel_last : {false, true}) {
                SCOPED_TRACE(case_name(dtype, batch, dim, seqlen, width, with_bias, silu) +
                             (channel_last ? " channel-last" : " channel-first"));
                Inputs in = random_inputs(batch, dim, seqlen, width, dtype, with_bias, /*weight_3d=*/with_bias);
                in.x = with_layout(in.x, channel_last);
                at::Tensor ref_state = at::empty({batch, dim, width}, in.x.options());
                const at::Tensor ref = causal_conv1d(in.x, in.weight, in.bias, silu, &ref_state, Backend::Reference);

                const Inputs g = to_cuda(in);
                // NaN-filled: every entry must be written.
                at::Tensor state = at::full({batch, dim, width}, std::numeric_limits<float>::quiet_NaN(),
                                            g.x.options());
                const at::Tensor out = causal_conv1d(g.x, g.weight, g.bias, silu, &state, Backend::Cuda);
                EXPECT_EQ(out.scalar_type(), dtype);
                expect_close(out, ref, tolerance(dtype), "out");
                EXPECT_TRUE(at::equal(state.cpu(), ref_state)) << "final_conv_state";
              }
            }
          }
        }
      }
    }
  }
}

TEST(CausalConv1dCuda, LongSequencesAndMixedWeightDtypes) {
  EFFARCH_SKIP_WITHOUT_GPU();
  at::manual_seed(6);
  // Many channel-first chunks and many channel-last time blocks; fp32 and fp16 weights for bf16 x.
  for (at::ScalarType weight_dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    for (bool channel_last : {false, true}) {
      SCOPED_TRACE(fmt::format("weight {} channel_last {}", c10::toString(weight_dtype), channel_last));
      Inputs in = random_inputs(3, 70, 5000, 4, at::kBFloat16, true, true, weight_dtype);
      in.x = with_layout(in.x, channel_last);
      at::Tensor ref_state = at::empty({3, 70, 4}, in.x.options());
      const at::Tensor ref = causal_conv1d(in.x, in.weight, in.bias, true, &ref_state, Backend::Reference);
      const Inputs g = to_cuda(in);
      at::Tensor state = at::empty({3, 70, 4}, g.x.options());
      const at::Tensor out = causal_conv1d(g.x, g.weight, g.bias, true, &state);  // Auto: the kernel
      expect_close(out, ref, tolerance(at::kBFloat16), "out");
      EXPECT_TRUE(at::equal(state.cpu(), ref_state));
    }
  }
}

// The prefill's vector variant (detail::causal_conv1d_cuda's `vector`, effarch kernels'
// causal_conv1d_vec) gives the thread-per-channel kernel's output and final state bit for bit:
// channel-last x (its own [B, L, D] and the mixer's x half of [B, L, 2D]), lengths around its
// 16-step chunks and 4-step loads, every width, with and without bias and SiLU, every dtype.
TEST(CausalConv1dCuda, VectorVariantGivesTheSameBits) {
  EFFARCH_SKIP_WITHOUT_GPU();
  at::manual_seed(9);
  const int64_t batch = 2;
  for (at::ScalarType dtype : kDTypes) {
    for (int64_t dim : {8, 64, 136, 1032}) {
      for (int64_t seqlen : {1, 3, 4, 15, 16, 17, 33, 300}) {
        for (int64_t width : {2, 3, 4}) {
          for (bool with_bias : {false, true}) {
            const bool silu = with_bias;
            for (bool half_of_wider : {false, true}) {
              SCOPED_TRACE(case_name(dtype, batch, dim, seqlen, width, with_bias, silu) +
                           (half_of_wider ? " x half of [B, L, 2D]" : " [B, L, D]"));
              const Inputs in = to_cuda(random_inputs(batch, dim, seqlen, width, dtype, with_bias, false));
              const at::Tensor x = half_of_wider
                                       ? at::cat({in.x, in.x}, 1).transpose(1, 2).contiguous().transpose(1, 2).narrow(1, 0, dim)
                                       : with_layout(in.x, true);
              at::Tensor outs[2], states[2];
              for (int v = 0; v < 2; ++v) {
                outs[v] = at::full({batch, seqlen, dim}, std::numeric_limits<float>::quiet_NaN(), x.options())
                              .transpose(1, 2);
                states[v] = at::full({batch, dim, width}, std::numeric_limits<float>::quiet_NaN(), x.options());
                detail::causal_conv1d_cuda(x, in.weight, in.bias, silu, outs[v], states[v], /*vector=*/v == 1);
              }
              EXPECT_TRUE(at::equal(outs[0], outs[1])) << "out";
              EXPECT_TRUE(at::equal(states[0], states[1])) << "final_conv_state";
              EXPECT_FALSE(at::isnan(outs[1]).any().item<bool>()) << "every output written";
            }
          }
        }
      }
    }
  }
}

TEST(CausalConv1dCuda, UpdateKernelMatchesReferenceInPlace) {
  EFFARCH_SKIP_WITHOUT_GPU();
  at::manual_seed(7);
  const int64_t batch = 3;
  for (at::ScalarType dtype : kDTypes) {
    for (int64_t dim : {1, 3, 70, 130}) {
      for (int64_t width : {2, 3, 4}) {
        for (int64_t tokens : {0, 1, 2, 5}) {  // 0: x is [B, D], one token
          for (bool with_bias : {false, true}) {
            for (bool silu : {false, true}) {
              SCOPED_TRACE(case_name(dtype, batch, dim, tokens, width, with_bias, silu));
              Inputs in = random_inputs(batch, dim, std::max<int64_t>(tokens, 1), width, dtype, with_bias);
              if (tokens == 0) in.x = in.x.select(2, 0);
              const at::Tensor state0 = at::randn({batch, dim, width}).to(dtype);
              at::Tensor ref_state = state0.clone();
              const at::Tensor ref = causal_conv1d_update(in.x, ref_state, in.weight, in.bias, silu, Backend::Reference);

              const Inputs g = to_cuda(in);
              // The state as a slice of a larger [2, B, D, W] cache: written in place through the view.
              at::Tensor cache = at::zeros({2, batch, dim, width}, g.x.options());
              at::Tensor state = cache.select(0, 1);
              state.copy_(state0);
              const void* ptr = state.data_ptr();
              const at::Tensor out = causal_conv1d_update(g.x, state, g.weight, g.bias, silu, Backend::Cuda);
              EXPECT_EQ(state.data_ptr(), ptr);
              expect_close(out, ref, tolerance(dtype), "out");
              EXPECT_TRUE(at::equal(cache.select(0, 1).cpu(), ref_state)) << "conv_state in place";
              EXPECT_TRUE(at::equal(cache.select(0, 0).cpu(), at::zeros_like(ref_state))) << "neighbour untouched";
            }
          }
        }
      }
    }
  }
}

TEST(CausalConv1dCuda, KernelDecodeEqualsKernelPrefill) {
  EFFARCH_SKIP_WITHOUT_GPU();
  at::manual_seed(8);
  for (at::ScalarType dtype : kDTypes) {
    SCOPED_TRACE(c10::toString(dtype));
    const Inputs g = to_cuda(random_inputs(2, 130, 40, 4, dtype, true));
    at::Tensor prefill_state = at::empty({2, 130, 4}, g.x.options());
    const at::Tensor prefill = causal_conv1d(g.x, g.weight, g.bias, true, &prefill_state, Backend::Cuda);
    at::Tensor state = at::zeros({2, 130, 4}, g.x.options());
    std::vector<at::Tensor> outs;
    for (int64_t t = 0; t < 40; ++t) {
      outs.push_back(causal_conv1d_update(g.x.select(2, t), state, g.weight, g.bias, true, Backend::Cuda));
    }
    expect_close(at::stack(outs, 2), prefill, tolerance(dtype), "decode vs prefill");
    EXPECT_TRUE(at::equal(state, prefill_state));
  }
}

TEST(CausalConv1dCuda, DeviceMismatchIsAOpError) {
  EFFARCH_SKIP_WITHOUT_GPU();
  const at::Tensor x = at::randn({2, 8, 5}).cuda();
  EXPECT_THROW_WITH(causal_conv1d(x, at::randn({8, 4}), std::nullopt, true), OpError, {"weight", "cpu", "cuda"});
}

#endif  // EFFARCH_WITH_CUDA

}  // namespace
}  // namespace effarch::ops
