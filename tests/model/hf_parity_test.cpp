// Parity with Hugging Face transformers: fixtures made by tools/make_hf_fixtures.py (the ctest
// `hf_parity` generates them into a scratch folder and points EFFARCH_HF_FIXTURES at it). For each
// fp32 fixture: effarch loads the saved checkpoint, and its fp32 logits must be within 1e-4 of
// transformers' (max abs diff / max abs logit) and its 16 greedy tokens, decoded through the
// cache both eagerly and by the static (CUDA-graph-ready) step, identical. The reference tokens
// come from full forwards, or from transformers' own decode where the fixture has greedy_decode
// (Mamba-2's time_step_limit, which transformers applies in the prefill scan only).
// The bf16 fixtures (NAME-bf16*) are read by Bf16AgainstFp32 and ResidualInFp32 below.

#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include "effarch/io/safetensors.h"
#include "effarch/model/catalog.h"
#include "effarch/model/model.h"
#include "effarch/ops/backend.h"

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

bool is_bf16(const fs::path& dir) { return resolve_model(dir.string()).config.torch_dtype == at::kBFloat16; }

// Where the bf16 tests run effarch: EFFARCH_HF_DEVICE, "cpu" (the default) or "cuda" (the GPU
// session, tools/gpu/session.sh check, with fixtures made on the development machine), and the
// decode modes there: eager, and on CUDA also CUDA graphs. EFFARCH_HF_BACKEND (default auto) picks
// the ops' implementations, so that `reference` can tell a kernel's error from the rest's.
std::optional<at::Device> bf16_device() {
  const char* env = std::getenv("EFFARCH_HF_DEVICE");
  if (env == nullptr || std::string(env) == "cpu") return at::Device(at::kCPU);
  if (std::string(env) == "cuda" && ops::kBuiltWithCuda && at::hasCUDA()) return at::Device(at::kCUDA, 0);
  return std::nullopt;
}

std::vector<DecodeMode> bf16_modes(const at::Device& device) {
  const char* backend = std::getenv("EFFARCH_HF_BACKEND");
  const bool reference = backend != nullptr && std::string(backend) == "reference";  // its MoE refuses graphs
  if (device.is_cuda() && !reference) return {DecodeMode::Eager, DecodeMode::CudaGraph};
  return {DecodeMode::Eager};
}

// effarch's bf16 logits [B, T, V] for a bf16 fixture's long prompts (input_ids_long), as fp32 on
// the CPU: the first half of each prompt prefilled, the rest fed one token at a time through
// decode (the reference's own next tokens), so both paths and the cache between them are compared.
at::Tensor bf16_logits(const fs::path& dir, const io::SafetensorsFile& expected, const at::Device& device,
                       DecodeMode mode) {
  ModelOptions opt;
  opt.dtype = at::kBFloat16;
  opt.device = device;
  opt.decode = mode;
  if (const char* backend = std::getenv("EFFARCH_HF_BACKEND")) opt.backend = ops::parse_backend(backend, "EFFARCH_HF_BACKEND");
  auto model = Model::load(resolve_model(dir.string()), opt);
  const at::Tensor ids = expected.view("input_ids_long").clone().to(device);
  const int64_t half = ids.size(1) / 2;
  model->allocate_cache(ids.size(0), ids.size(1));
  std::vector<at::Tensor> parts = {model->prefill(ids.slice(1, 0, half))};
  for (int64_t t = half; t < ids.size(1); ++t) parts.push_back(model->decode(ids.select(1, t)).unsqueeze(1));
  return at::cat(parts, 1).to(at::kCPU, at::kFloat);
}

// mean |a - b| / mean |b|: over many logits, what bf16's roundings move on average.
double mean_rel_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().mean().item<double>() / b.abs().mean().item<double>();
}

TEST(HfParity, AllFixtures) {
  const char* env = std::getenv("EFFARCH_HF_FIXTURES");
  if (env == nullptr) GTEST_SKIP() << "EFFARCH_HF_FIXTURES not set (run through ctest -R hf_parity)";
  size_t n = 0;
  for (const auto& entry : fs::directory_iterator(env)) {
    if (!entry.is_directory() || !fs::exists(entry.path().string() + ".expected.safetensors")) continue;
    if (is_bf16(entry.path())) continue;  // the bf16 tests below
    for (auto impl : {ops::AttentionImpl::Sdpa, ops::AttentionImpl::Eager}) {
      SCOPED_TRACE(entry.path().filename().string() + (impl == ops::AttentionImpl::Sdpa ? " sdpa" : " eager"));
      check_fixture(entry.path(), impl);
    }
    ++n;
  }
  EXPECT_GE(n, 70u) << "fixtures found in " << env;  // every fp32 one tools/make_hf_fixtures.py makes
}

// residual_in_fp32 (Mamba, Falcon-Mamba, Mamba-2), which an fp32 model cannot show, in bf16: the
// same weights with the flag on and off (NAME-bf16-residual-fp32 and -bf16: 4 layers, the
// embedding scaled 100x so that rounding the residual stream to bf16 between layers outweighs the
// engines' other roundings). effarch's bf16 CPU path does not round as transformers' slow path
// does (which, for one, casts Mamba's scan state to bf16 before its product with C), so bit-level
// agreement is not to be had. What is checked, as mean |difference| / mean |logit| over 4 x 32
// positions of 512 logits: each setting within 5e-3 of its own reference, and nearer its own
// reference than the other setting's (with transformers 5.23: 3e-4 to 2.4e-3 from its own, 4.2e-3
// to 4.4e-3 from the other). Reading the flag wrongly, or not at all, puts one setting nearer the
// other's reference: forcing it on in the Mamba parser fails here.
void check_residual_in_fp32(const char* env, const std::string& family, const at::Device& device) {
  struct Setting {
    std::string name;
    at::Tensor ours, ref;
  };
  std::vector<Setting> settings;
  for (const std::string name : {family + "-bf16-residual-fp32", family + "-bf16-residual-bf16"}) {
    const fs::path dir = fs::path(env) / name;
    const auto expected = io::SafetensorsFile::open(dir.string() + ".expected.safetensors");
    settings.push_back({name, bf16_logits(dir, expected, device, DecodeMode::Eager), expected.view("logits_long").clone()});
  }
  const double refs_apart = mean_rel_diff(settings[0].ref, settings[1].ref);
  EXPECT_GT(refs_apart, 1e-3) << "the two references must differ for the check to mean anything";
  for (size_t i = 0; i < 2; ++i) {
    const Setting& s = settings[i];
    const double own = mean_rel_diff(s.ours, s.ref), other = mean_rel_diff(s.ours, settings[1 - i].ref);
    ::testing::Test::RecordProperty(std::string("mean_rel_diff_own_") + s.name, fmt::format("{:.2e}", own));
    ::testing::Test::RecordProperty(std::string("mean_rel_diff_other_") + s.name, fmt::format("{:.2e}", other));
    EXPECT_LE(own, 5e-3) << s.name << ": effarch's bf16 logits against transformers' bf16 logits";
    EXPECT_LT(own, other) << s.name << ": nearer the other setting's reference (" << other << ") than its own ("
                          << own << "); the references are " << refs_apart << " apart";
  }
}

// bf16, every family, from checkpoints stored in bf16 (NAME-bf16). The fixtures' weights (already
// rounded to bf16) computed in fp32 by transformers are the truth; effarch in bf16 must be within
// 1.25 times transformers' own bf16 error of it (mean |difference| / mean |logit| over 4 x 32
// positions of 512 logits). The two engines round in different places (effarch fuses gate and up,
// keeps scans and norms in fp32 where mamba_ssm does), so their bf16 results are about as far
// apart as each is from the truth, and comparing them with each other would test sameness, not
// accuracy. With transformers 5.23 the ratio is 0.92 to 1.07 (transformers' error 4.2e-3 to
// 8.0e-3). What this catches: a bf16 checkpoint read wrongly, a path that loses much more than
// bf16's rounding; not errors below bf16's own, which models this small do not show.
TEST(HfParity, Bf16AgainstFp32) {
  const char* env = std::getenv("EFFARCH_HF_FIXTURES");
  if (env == nullptr) GTEST_SKIP() << "EFFARCH_HF_FIXTURES not set (run through ctest -R hf_parity)";
  const auto device = bf16_device();
  if (!device) GTEST_SKIP() << "EFFARCH_HF_DEVICE=" << std::getenv("EFFARCH_HF_DEVICE") << ": no such device here";
  size_t n = 0;
  for (const auto& entry : fs::directory_iterator(env)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_directory() || !is_bf16(entry.path()) || name.find("-residual-") != std::string::npos) continue;
    const auto expected = io::SafetensorsFile::open(entry.path().string() + ".expected.safetensors");
    const at::Tensor truth = expected.view("logits_long_fp32").clone();
    const at::Tensor theirs_logits = expected.view("logits_long").clone();
    const double theirs = mean_rel_diff(theirs_logits, truth);
    for (const DecodeMode mode : bf16_modes(*device)) {
      const std::string key = fmt::format("{}_{}_{}", name, device->is_cuda() ? "cuda" : "cpu", to_string(mode));
      SCOPED_TRACE(key);
      const at::Tensor ours = bf16_logits(entry.path(), expected, *device, mode);
      const double mine = mean_rel_diff(ours, truth), apart = mean_rel_diff(ours, theirs_logits);
      ::testing::Test::RecordProperty("bf16_error_effarch_" + key, fmt::format("{:.2e}", mine));
      ::testing::Test::RecordProperty("bf16_error_transformers_" + key, fmt::format("{:.2e}", theirs));
      ::testing::Test::RecordProperty("bf16_effarch_vs_transformers_" + key, fmt::format("{:.2e}", apart));
      EXPECT_LE(mine, 1.25 * theirs) << "effarch's bf16 error " << mine << " against transformers' " << theirs
                                     << " (the two bf16 results are " << apart << " apart)";
    }
    ++n;
  }
  EXPECT_GE(n, 10u) << "bf16 fixtures found in " << env;
}

TEST(HfParity, ResidualInFp32) {
  const char* env = std::getenv("EFFARCH_HF_FIXTURES");
  if (env == nullptr) GTEST_SKIP() << "EFFARCH_HF_FIXTURES not set (run through ctest -R hf_parity)";
  const auto device = bf16_device();
  if (!device) GTEST_SKIP() << "EFFARCH_HF_DEVICE=" << std::getenv("EFFARCH_HF_DEVICE") << ": no such device here";
  for (const std::string family : {"mamba", "falcon-mamba", "mamba2"}) {
    SCOPED_TRACE(family);
    check_residual_in_fp32(env, family, *device);
  }
}

}  // namespace
}  // namespace effarch::model
