// Parity with Hugging Face transformers: fixtures made by tools/make_hf_fixtures.py (the ctest
// `hf_parity` generates them into a scratch folder and points EFFARCH_HF_FIXTURES at it). For each
// fixture: effarch loads the saved checkpoint, and its fp32 logits must be within 1e-4 of
// transformers' (max abs diff / max abs logit) and its 16 greedy tokens, decoded through the
// cache both eagerly and by the static (CUDA-graph-ready) step, identical. The reference tokens
// come from full forwards, or from transformers' own decode where the fixture has greedy_decode
// (Mamba-2's time_step_limit, which transformers applies in the prefill scan only).

#include <cstdlib>
#include <filesystem>

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include "effarch/io/safetensors.h"
#include "effarch/model/catalog.h"
#include "effarch/model/model.h"

namespace effarch::model {
namespace {

namespace fs = std::filesystem;

double rel_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<double>() / b.abs().max().item<double>();
}

void check_fixture(const fs::path& dir, ops::AttentionImpl impl) {
  const auto expected = io::SafetensorsFile::open(dir.string() + ".expected.safetensors");
  const at::Tensor ids = expected.view("input_ids").clone();
  const at::Tensor greedy = expected.view(expected.find("greedy_decode") != nullptr ? "greedy_decode" : "greedy");
  const int64_t steps = greedy.size(1);
  for (const auto mode : {DecodeMode::Eager, DecodeMode::Static}) {
    SCOPED_TRACE(std::string("decode ") + to_string(mode));
    ModelOptions opt;
    opt.attention = impl;
    opt.decode = mode;
    auto model = Model::load(resolve_model(dir.string()), opt);
    model->allocate_cache(ids.size(0), ids.size(1) + steps);
    const at::Tensor logits = model->prefill(ids);
    const double diff = rel_diff(logits, expected.view("logits"));
    EXPECT_LE(diff, 1e-4) << "prompt logits";
    ::testing::Test::RecordProperty("rel_diff_" + dir.filename().string(), fmt::format("{:.2e}", diff));

    // Greedy decoding through the cache.
    at::Tensor next = logits.select(1, ids.size(1) - 1).argmax(-1);
    std::vector<at::Tensor> tokens = {next};
    for (int64_t s = 1; s < steps; ++s) {
      next = model->decode(next).argmax(-1);
      tokens.push_back(next);
    }
    const at::Tensor ours = at::stack(tokens, 1);
    EXPECT_TRUE(at::equal(ours, greedy)) << "greedy tokens\nours:\n" << ours << "\ntransformers:\n" << greedy;
  }
  ModelOptions opt;
  opt.attention = impl;

  // A one-token prompt.
  auto single = Model::load(resolve_model(dir.string()), opt);
  EXPECT_LE(rel_diff(single->prefill(expected.view("input_ids_1").clone()), expected.view("logits_1")), 1e-4)
      << "length-1 prompt";
}

TEST(HfParity, AllFixtures) {
  const char* env = std::getenv("EFFARCH_HF_FIXTURES");
  if (env == nullptr) GTEST_SKIP() << "EFFARCH_HF_FIXTURES not set (run through ctest -R hf_parity)";
  size_t n = 0;
  for (const auto& entry : fs::directory_iterator(env)) {
    if (!entry.is_directory() || !fs::exists(entry.path().string() + ".expected.safetensors")) continue;
    for (auto impl : {ops::AttentionImpl::Sdpa, ops::AttentionImpl::Eager}) {
      SCOPED_TRACE(entry.path().filename().string() + (impl == ops::AttentionImpl::Sdpa ? " sdpa" : " eager"));
      check_fixture(entry.path(), impl);
    }
    ++n;
  }
  EXPECT_GE(n, 46u) << "fixtures found in " << env;  // every one tools/make_hf_fixtures.py makes
}

}  // namespace
}  // namespace effarch::model
