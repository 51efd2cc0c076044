// The Mamba-2 mixer on its own: against a plain token-by-token rendering of transformers 5.23's
// Mamba2Mixer in float64 (groups 1 to 8, one chunk or many, biases, a time_step_limit clamp);
// prefill continued by multi-token chunks and decode steps from the cache equals one prefill;
// start_pos 0 resets whatever the cache held; bf16 weights with a bf16 conv state and an fp32
// SSM state. Whole-model checks (prefill = decode, batch rows, the 4096-token prefill) run for
// tiny-mamba2 in model_test.cpp; parity with transformers in hf_parity_test.cpp.

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <limits>
#include <ostream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "../test_util.h"
#include "effarch/io/strict_json.h"
#include "effarch/model/config.h"
#include "effarch/model/weights.h"
#include "../../src/model/blocks/blocks.h"

namespace effarch::model {
namespace {

using json = nlohmann::json;

ModelConfig tiny_mamba2(const json& overrides) {
  json j = io::read_json_file(effarch::testing::configs_dir() / "models" / "tiny-mamba2.json");
  j.update(overrides);
  return parse_config(j, "tiny-mamba2.json (test overrides)");
}

// Random weights, with the ones the initialiser leaves at 1 or 0 (D, the gated norm's weight,
// biases) and dt_bias moved so that each of them matters.
Weights perturbed_weights(const ModelConfig& c, at::ScalarType dtype) {
  const Weights w = Weights::random(c, 21, dtype, at::kCPU);
  at::manual_seed(22);
  const auto nudge = [&](const char* role, double scale) {
    for (int layer = 0; layer < c.num_layers; ++layer) {
      if (const at::Tensor* t = w.find(layer, role)) t->add_((at::randn(t->sizes()) * scale).to(dtype));
    }
  };
  nudge("mamba.D", 0.3);
  nudge("mamba.norm.weight", 0.1);
  nudge("mamba.conv.bias", 0.1);
  nudge("mamba.in_proj.bias", 0.1);
  nudge("mamba.out_proj.bias", 0.1);
  nudge("mamba.dt_bias", 0.7);
  return w;
}

// transformers' Mamba2Mixer written out one token at a time in float64, with no chunks and no
// cache object: in_proj, a rolling conv window, the recurrence step, the gated RMSNorm per
// group of d_inner / n_groups channels, out_proj. x [B, T, hidden] -> [B, T, hidden].
// Tokens from `unclamped_from` on are decode steps: transformers clamps dt to time_step_limit in
// the chunked scan only, never in the one-token step.
at::Tensor plain_mixer(const ModelConfig& c, const Weights& w, int layer, const at::Tensor& x,
                       int64_t unclamped_from = std::numeric_limits<int64_t>::max()) {
  const auto& m = *c.mamba;
  const auto d = [](const at::Tensor& t) { return t.to(at::kDouble); };
  const auto optional = [&](const char* role) {
    const at::Tensor* t = w.find(layer, role);
    return t == nullptr ? at::Tensor() : d(*t);
  };
  const at::Tensor in_w = d(w.get(layer, "mamba.in_proj.weight")), in_b = optional("mamba.in_proj.bias");
  const at::Tensor conv_w = d(w.get(layer, "mamba.conv.weight")).squeeze(1);  // [conv_dim, K]
  const at::Tensor conv_b = optional("mamba.conv.bias");
  const at::Tensor dt_bias = d(w.get(layer, "mamba.dt_bias")), A = -at::exp(d(w.get(layer, "mamba.A_log")));
  const at::Tensor Dskip = d(w.get(layer, "mamba.D")), norm_w = d(w.get(layer, "mamba.norm.weight"));
  const at::Tensor out_w = d(w.get(layer, "mamba.out_proj.weight")), out_b = optional("mamba.out_proj.bias");

  const int64_t b = x.size(0), len = x.size(1), di = m.d_inner, h = m.num_heads, p = m.head_dim;
  const int64_t g = m.n_groups, n = m.d_state, k = m.d_conv, conv_dim = m.conv_dim();
  at::Tensor window = at::zeros({b, conv_dim, k}, at::kDouble);
  at::Tensor state = at::zeros({b, h, p, n}, at::kDouble);
  std::vector<at::Tensor> outs;
  for (int64_t t = 0; t < len; ++t) {
    const at::Tensor proj = at::linear(d(x.select(1, t)), in_w, in_b);  // [B, Di + conv_dim + H]
    const at::Tensor z = proj.narrow(1, 0, di);
    window = at::cat({window.narrow(2, 1, k - 1), proj.narrow(1, di, conv_dim).unsqueeze(2)}, 2);
    at::Tensor u = (window * conv_w).sum(2);
    if (conv_b.defined()) u = u + conv_b;
    u = u * at::sigmoid(u);
    const at::Tensor xs = u.narrow(1, 0, di).reshape({b, h, p});
    const at::Tensor Bm = u.narrow(1, di, g * n).reshape({b, g, n});
    const at::Tensor Cm = u.narrow(1, di + g * n, g * n).reshape({b, g, n});
    at::Tensor dt = at::log1p(at::exp(proj.narrow(1, di + conv_dim, h) + dt_bias));  // [B, H]
    if (m.time_step_clamped && t < unclamped_from) dt = at::clamp(dt, m.time_step_min, m.time_step_max);
    // Head hh reads group hh / (H / G).
    const at::Tensor Bh = Bm.repeat_interleave(h / g, 1), Ch = Cm.repeat_interleave(h / g, 1);  // [B, H, N]
    const at::Tensor dt4 = dt.view({b, h, 1, 1});
    state = at::exp(dt4 * A.view({h, 1, 1})) * state + dt4 * xs.unsqueeze(3) * Bh.unsqueeze(2);  // [B, H, P, N]
    const at::Tensor y = (state * Ch.unsqueeze(2)).sum(3) + Dskip.view({h, 1}) * xs;             // [B, H, P]
    const at::Tensor gated = (y.reshape({b, di}) * (z * at::sigmoid(z))).reshape({b, g, di / g});
    const at::Tensor normed = (gated / at::sqrt(gated.pow(2).mean(-1, true) + m.gated_norm_eps)).reshape({b, di});
    outs.push_back(at::linear(normed * norm_w, out_w, out_b));
  }
  return at::stack(outs, 1);
}

double rel_diff(const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor ad = a.to(at::kDouble), bd = b.to(at::kDouble);
  return (ad - bd).abs().max().item<double>() / bd.abs().max().item<double>();
}

struct MixerCase {
  const char* name;
  json overrides;
};

void PrintTo(const MixerCase& c, std::ostream* os) { *os << c.name; }

class Mamba2Mixer : public ::testing::TestWithParam<MixerCase> {};

TEST_P(Mamba2Mixer, MatchesPlainTokenByTokenMixer) {
  const ModelConfig c = tiny_mamba2(GetParam().overrides);
  const Weights w = perturbed_weights(c, at::kFloat);
  for (const int layer : {0, 1}) {
    const auto mixer = make_mamba2(c, w, layer);
    at::manual_seed(23 + layer);
    const at::Tensor x = at::randn({2, 23, c.hidden_size});
    LayerCache cache;
    mixer->allocate(cache, 2, 23, at::kFloat, at::kCPU);
    const at::Tensor out = mixer->forward(x, cache, ForwardContext{});
    ASSERT_EQ(out.sizes(), x.sizes());
    EXPECT_LE(rel_diff(out, plain_mixer(c, w, layer, x)), 1e-5) << GetParam().name << " layer " << layer;
  }
}

// A prompt fed as a prefill, a multi-token continuation, a decode step and another continuation
// gives the outputs and the cache of one prefill over all of it. With a time_step_limit the decode
// step is left out: it does not clamp dt (checked below), so it differs from a prefill by design.
TEST_P(Mamba2Mixer, ContinuingFromTheCacheEqualsOnePrefill) {
  const ModelConfig c = tiny_mamba2(GetParam().overrides);
  const Weights w = perturbed_weights(c, at::kFloat);
  const auto mixer = make_mamba2(c, w, 0);
  at::manual_seed(24);
  const at::Tensor x = at::randn({2, 23, c.hidden_size});
  LayerCache whole, pieces;
  mixer->allocate(whole, 2, 23, at::kFloat, at::kCPU);
  mixer->allocate(pieces, 2, 23, at::kFloat, at::kCPU);
  const void* conv_ptr = pieces.conv_state.data_ptr();
  const void* ssm_ptr = pieces.ssm_state.data_ptr();
  const at::Tensor expected = mixer->forward(x, whole, ForwardContext{});
  std::vector<at::Tensor> outs;
  int64_t pos = 0;
  const std::vector<int64_t> lens =
      c.mamba->time_step_clamped ? std::vector<int64_t>{9, 8, 6} : std::vector<int64_t>{9, 8, 1, 5};
  for (const int64_t len : lens) {
    ForwardContext ctx;
    ctx.start_pos = pos;
    outs.push_back(mixer->forward(x.narrow(1, pos, len), pieces, ctx));
    pos += len;
  }
  EXPECT_LE(rel_diff(at::cat(outs, 1), expected), 1e-5) << GetParam().name;
  EXPECT_LE(rel_diff(pieces.conv_state, whole.conv_state), 1e-6);
  EXPECT_LE(rel_diff(pieces.ssm_state, whole.ssm_state), 1e-5);
  EXPECT_EQ(pieces.conv_state.data_ptr(), conv_ptr);  // written in place
  EXPECT_EQ(pieces.ssm_state.data_ptr(), ssm_ptr);
}

// Decode steps after a prefill: dt unclamped, as in transformers 5.23's decode path.
TEST_P(Mamba2Mixer, DecodeStepsClampDtOnlyInThePrefill) {
  const ModelConfig c = tiny_mamba2(GetParam().overrides);
  const Weights w = perturbed_weights(c, at::kFloat);
  const auto mixer = make_mamba2(c, w, 0);
  at::manual_seed(25);
  const at::Tensor x = at::randn({2, 12, c.hidden_size});
  LayerCache cache;
  mixer->allocate(cache, 2, 12, at::kFloat, at::kCPU);
  std::vector<at::Tensor> outs = {mixer->forward(x.narrow(1, 0, 9), cache, ForwardContext{})};
  for (int64_t pos = 9; pos < 12; ++pos) {
    ForwardContext ctx;
    ctx.start_pos = pos;
    outs.push_back(mixer->forward(x.narrow(1, pos, 1), cache, ctx));
  }
  EXPECT_LE(rel_diff(at::cat(outs, 1), plain_mixer(c, w, 0, x, /*unclamped_from=*/9)), 1e-5) << GetParam().name;
  if (c.mamba->time_step_clamped) {  // and the clamp would have mattered
    EXPECT_GT(rel_diff(at::cat(outs, 1).narrow(1, 9, 3), plain_mixer(c, w, 0, x).narrow(1, 9, 3)), 1e-4);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Configs, Mamba2Mixer,
    ::testing::Values(MixerCase{"G1_one_chunk", {{"n_groups", 1}, {"chunk_size", 256}}},
                      MixerCase{"G2_chunk16", json::object()},  // the tiny config as shipped
                      MixerCase{"G4_chunk3", {{"n_groups", 4}, {"chunk_size", 3}}},
                      MixerCase{"G8_chunk5_bias_clamp",
                                {{"n_groups", 8}, {"chunk_size", 5}, {"use_bias", true},
                                 {"time_step_limit", {0.02, 0.3}}}}),
    [](const auto& info) { return std::string(info.param.name); });

// A prompt longer than the mixer's prefill piece (32 chunks) runs in pieces continuing from the
// cache: against the plain mixer over the whole prompt, with the clamp on, and a last piece of
// one token (still a prefill: clamped, not the decode step); then a decode step after it.
TEST(Mamba2MixerPieces, LongPromptInPiecesMatchesPlainMixer) {
  const ModelConfig c =
      tiny_mamba2({{"n_groups", 4}, {"chunk_size", 5}, {"use_bias", true}, {"time_step_limit", {0.02, 0.3}}});
  const Weights w = perturbed_weights(c, at::kFloat);
  const auto mixer = make_mamba2(c, w, 0);
  const int64_t piece = 32 * 5, len = 2 * piece + 1;
  at::manual_seed(27);
  const at::Tensor x = at::randn({2, len + 1, c.hidden_size});
  LayerCache cache;
  mixer->allocate(cache, 2, len + 1, at::kFloat, at::kCPU);
  const at::Tensor out = mixer->forward(x.narrow(1, 0, len), cache, ForwardContext{});
  ForwardContext step;
  step.start_pos = len;
  const at::Tensor last = mixer->forward(x.narrow(1, len, 1), cache, step);
  const at::Tensor plain = plain_mixer(c, w, 0, x, /*unclamped_from=*/len);
  EXPECT_LE(rel_diff(out, plain.narrow(1, 0, len)), 1e-5);
  EXPECT_LE(rel_diff(out.narrow(1, piece - 2, 4), plain.narrow(1, piece - 2, 4)), 1e-5) << "across a piece boundary";
  EXPECT_LE(rel_diff(out.narrow(1, len - 1, 1), plain.narrow(1, len - 1, 1)), 1e-5) << "the one-token last piece";
  EXPECT_LE(rel_diff(last, plain.narrow(1, len, 1)), 1e-5) << "the decode step after the pieces";
}

TEST(Mamba2MixerCache, PrefillFromPositionZeroResetsTheCache) {
  const ModelConfig c = tiny_mamba2({{"chunk_size", 4}});
  const Weights w = perturbed_weights(c, at::kFloat);
  const auto mixer = make_mamba2(c, w, 1);
  at::manual_seed(25);
  const at::Tensor x = at::randn({2, 10, c.hidden_size});
  LayerCache fresh, used;
  mixer->allocate(fresh, 2, 10, at::kFloat, at::kCPU);
  mixer->allocate(used, 2, 10, at::kFloat, at::kCPU);
  used.conv_state.fill_(3.0);
  used.ssm_state.normal_();
  const at::Tensor a = mixer->forward(x, fresh, ForwardContext{});
  const at::Tensor b = mixer->forward(x, used, ForwardContext{});
  EXPECT_TRUE(at::equal(a, b));
  EXPECT_TRUE(at::equal(fresh.conv_state, used.conv_state));
  EXPECT_TRUE(at::equal(fresh.ssm_state, used.ssm_state));
}

TEST(Mamba2MixerCache, Bf16WeightsKeepAnFp32State) {
  const ModelConfig c = tiny_mamba2(json::object());
  const auto& m = *c.mamba;
  const Weights w = perturbed_weights(c, at::kBFloat16);
  const auto mixer = make_mamba2(c, w, 0);
  LayerCache cache;
  mixer->allocate(cache, 3, 40, at::kBFloat16, at::kCPU);
  EXPECT_EQ(cache.conv_state.sizes(), (std::vector<int64_t>{3, m.d_inner + 2 * m.n_groups * m.d_state, m.d_conv}));
  EXPECT_EQ(cache.conv_state.scalar_type(), at::kBFloat16);
  EXPECT_EQ(cache.ssm_state.sizes(), (std::vector<int64_t>{3, m.num_heads, m.head_dim, m.d_state}));
  EXPECT_EQ(cache.ssm_state.scalar_type(), at::kFloat);
  EXPECT_EQ(cache.conv_state.count_nonzero().item<int64_t>(), 0);  // allocated as zeros
  EXPECT_EQ(cache.ssm_state.count_nonzero().item<int64_t>(), 0);

  at::manual_seed(26);
  const at::Tensor x = at::randn({3, 21, c.hidden_size}).to(at::kBFloat16);
  const at::Tensor out = mixer->forward(x, cache, ForwardContext{});
  EXPECT_EQ(out.scalar_type(), at::kBFloat16);
  // The plain mixer in float64 on the same (bf16-rounded) weights and inputs: bf16 roundings of
  // the projections, the conv and the norm's output are what is left.
  EXPECT_LE(rel_diff(out, plain_mixer(c, w, 0, x)), 3e-2);
  // A decode step continues from the bf16 conv state and the fp32 SSM state.
  const at::Tensor next = at::randn({3, 1, c.hidden_size}).to(at::kBFloat16);
  ForwardContext ctx;
  ctx.start_pos = 21;
  const at::Tensor step = mixer->forward(next, cache, ctx);
  const at::Tensor both = plain_mixer(c, w, 0, at::cat({x, next}, 1)).narrow(1, 21, 1);
  EXPECT_LE(rel_diff(step, both), 3e-2);
}

}  // namespace
}  // namespace effarch::model
