// Whole models through the CUDA kernels on the CPU executor: with the host standing in for a CUDA
// device (ops::runs_cuda_kernels, detail::set_host_runs_cuda_kernels), the ops choose their CUDA
// paths as on a GPU (the model's implementations record "cuda", the norm runs in the GEMV's
// prologue, Phi's parallel block in two products, a one-token MoE step in two launches) and
// their bindings (compiled here for the executor) run the kernels' own source. The GPU tests of
// tests/model (implementations_test.cpp's FusedAddNormKeepsGreedyTokensOnTheGpu,
// norm_prologue_test.cpp's ModelsGiveTheSeparateLogitsOnTheGpu, model_test.cpp's
// MoeDispatchKernelsMatchTheReferenceOnAGpu) ask the same of every tiny model, eager and static;
// what only a GPU has (CUDA graphs, the grouped prefill, the device's arithmetic) stays theirs.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cuda_sim.h"
#include "effarch/model/catalog.h"
#include "effarch/model/model.h"
#include "effarch/ops/backend.h"
#include "selective_scan/selective_scan_lanes.h"
#include "sim_test.h"

namespace effarch::sim {
namespace {

using namespace ::effarch::model;
namespace ops = ::effarch::ops;

// The host runs the CUDA kernels (through the executor) while one of these lives.
class HostAsDevice {
 public:
  HostAsDevice() { ops::detail::set_host_runs_cuda_kernels(true); }
  ~HostAsDevice() { ops::detail::set_host_runs_cuda_kernels(false); }
  HostAsDevice(const HostAsDevice&) = delete;
  HostAsDevice& operator=(const HostAsDevice&) = delete;
};

ModelSource tiny(const std::string& name) {
  return resolve_model((std::string(EFFARCH_CONFIGS_DIR) + "/models/" + name + ".json"));
}

struct Decoded {
  std::vector<at::Tensor> logits;  // the prefill's last position, then each decode step's
};

// How a run loads and drives its model.
struct RunSpec {
  at::ScalarType dtype = at::kFloat;
  DecodeMode mode = DecodeMode::Eager;
  bool kernels = false;  // the host standing in for a CUDA device
  ops::Backend backend = ops::Backend::Auto;
  std::optional<bool> prologue;  // --norm-prologue
  std::optional<std::string> selective_scan;  // --selective-scan
  int64_t batch = 2;
  ops::WeightFormat weights = ops::WeightFormat::Dense;
};

// Loads `name` (random weights, seed 3) as `s` says and runs a prefill of a [batch, 7] prompt and
// `steps` decode steps fed `feed` (each step's input tokens; empty: the run's own greedy tokens).
Decoded run_model(const std::string& name, const RunSpec& s, const std::vector<at::Tensor>& feed, int steps,
                  std::map<std::string, std::string>* impl = nullptr) {
  std::optional<HostAsDevice> host;
  if (s.kernels) host.emplace();
  ModelOptions opt;
  opt.seed = 3;
  opt.random_init = RandomInit::Varied;  // biases, norm weights, D and A_log drawn too
  opt.dtype = s.dtype;
  opt.decode = s.mode;
  opt.backend = s.backend;
  opt.fuse_norm_prologue = s.prologue;
  opt.selective_scan = s.selective_scan;
  opt.weights = s.weights;
  auto m = Model::load(tiny(name), opt);
  if (impl != nullptr) *impl = m->implementations();
  at::manual_seed(11);
  const at::Tensor ids = at::randint(0, m->config().vocab_size, {s.batch, 7}, at::kLong);
  m->allocate_cache(s.batch, 7 + steps + 1);
  Decoded r;
  r.logits.push_back(m->prefill_last(ids));
  for (int step = 0; step < steps; ++step) {
    const at::Tensor next = feed.empty() ? r.logits.back().argmax(-1) : feed[static_cast<size_t>(step)];
    r.logits.push_back(m->decode(next));
  }
  return r;
}

std::vector<at::Tensor> greedy(const Decoded& r) {
  std::vector<at::Tensor> tokens;
  for (const at::Tensor& l : r.logits) tokens.push_back(l.argmax(-1));
  return tokens;
}

// The library's ops choose CUDA paths only where effarch_core was built with CUDA (this target
// declares the bindings in every build, so kBuiltWithCuda here says nothing of the library).
bool library_has_cuda_paths() { return ops::has_cuda_kernel(ops::OpFamily::DenseGemv); }
constexpr const char* kNoCudaPaths = "effarch_core built without CUDA: its ops have no CUDA path to choose";

const char* const kModels[] = {"tiny-llama",        "tiny-llama3", "tiny-mistral", "tiny-phi",          "tiny-mamba",
                               "tiny-falcon-mamba", "tiny-mamba2", "tiny-mixtral", "tiny-deepseek-moe", "tiny-jamba"};

// `name` with the kernels (backend auto, the host a CUDA device) against the reference (every op's
// ATen reference), both loaded as `s` says and fed the reference's greedy tokens: fp32 the same
// tokens and logits within 1e-4 (the kernels sum in other orders); bf16 at least all but one
// step's tokens the same (printed; a near tie of random tiny weights may flip), as the GPU tests
// ask. The model records the kernels it ran, and the executor ran them.
void expect_reference_tokens(const std::string& name, RunSpec s, int steps) {
  const std::string what = fmt::format("{} {} decode {} batch {}{}", name, name_of(s.dtype), to_string(s.mode), s.batch,
                                       s.weights == ops::WeightFormat::Int8 ? " int8" : "");
  RunSpec reference = s;
  reference.kernels = false;
  reference.backend = ops::Backend::Reference;
  reference.selective_scan.reset();  // a CUDA kernel's variant: the host is not a CUDA device here
  const Decoded ref = run_model(name, reference, {}, steps);
  const std::vector<at::Tensor> tokens = greedy(ref);
  s.kernels = true;
  s.backend = ops::Backend::Auto;
  std::map<std::string, std::string> impl;
  reset_launches();
  const Decoded ker = run_model(name, s, std::vector<at::Tensor>(tokens.begin(), tokens.end() - 1), steps, &impl);
  int cuda_ops = 0;
  for (const auto& [op, backend] : impl) cuda_ops += backend == "cuda" ? 1 : 0;
  EXPECT_GE(cuda_ops, 3) << what << ": the host did not run as a CUDA device";
  EXPECT_EQ(impl.at("add_norm"), "cuda") << what;
  if (s.selective_scan) EXPECT_EQ(impl.at("selective_scan_variant"), *s.selective_scan) << what;
  EXPECT_GE(launches(), 2 * (steps + 1)) << what << ": kernels launched on the executor";
  int agree = 0;
  for (size_t i = 0; i < tokens.size(); ++i) {
    const bool same = at::equal(ker.logits[i].argmax(-1), tokens[i]);
    agree += same ? 1 : 0;
    if (s.dtype == at::kFloat) {
      EXPECT_TRUE(same) << what << " step " << i;
      EXPECT_TRUE(at::allclose(ker.logits[i], ref.logits[i], 1e-4, 1e-4))
          << what << " step " << i << ": max diff " << (ker.logits[i] - ref.logits[i]).abs().max().item<double>();
    }
  }
  std::printf("%s: %d of %d greedy tokens agree\n", what.c_str(), agree, static_cast<int>(tokens.size()));
  if (s.dtype != at::kFloat) EXPECT_GE(agree, static_cast<int>(tokens.size()) - 1) << what;
}

// Every tiny model, fp32 and bf16, batch 2, eager and static decode (static only where there is
// attention to read a static cache).
TEST(ModelSimKernels, KeepTheReferenceTokens) {
  if (!library_has_cuda_paths()) GTEST_SKIP() << kNoCudaPaths;
  for (const char* name : kModels) {
    const bool attention = std::string(name).find("mamba") == std::string::npos;
    for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
      for (const DecodeMode mode : {DecodeMode::Eager, DecodeMode::Static}) {
        if (mode == DecodeMode::Static && !attention) continue;
        RunSpec s;
        s.dtype = dtype;
        s.mode = mode;
        expect_reference_tokens(name, s, 4);
      }
    }
  }
}

// Batch 1, where a MoE step of one token runs the dispatch in two launches (entry 51) and the
// GEMVs take one row; and int8 weights (--weights int8: the int8 GEMV, the MoE table's int8
// experts with their shared experts apart) against the int8 reference (dequantise, then the
// dense product).
TEST(ModelSimKernels, KeepTheReferenceTokensAtBatchOneAndInInt8) {
  if (!library_has_cuda_paths()) GTEST_SKIP() << kNoCudaPaths;
  for (const char* name :
       {"tiny-llama", "tiny-phi", "tiny-mamba2", "tiny-mixtral", "tiny-deepseek-moe", "tiny-jamba"}) {
    for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
      RunSpec s;
      s.dtype = dtype;
      s.mode = DecodeMode::Static;
      s.batch = 1;
      expect_reference_tokens(name, s, 4);
    }
  }
  for (const char* name : {"tiny-llama", "tiny-mamba", "tiny-mixtral", "tiny-deepseek-moe"}) {
    for (const int64_t batch : {1, 2}) {
      RunSpec s;
      s.weights = ops::WeightFormat::Int8;
      s.batch = batch;
      expect_reference_tokens(name, s, 4);
    }
  }
}

// --selective-scan: the Mamba-1 models' prefill through each other CUDA scan variant (pieces over
// one piece at 7 tokens, lanes8, the 32-channel kernel split) keeps the reference's tokens, and
// the record names the variant that ran.
TEST(ModelSimKernels, SelectiveScanVariantsKeepTheReferenceTokens) {
  if (!library_has_cuda_paths()) GTEST_SKIP() << kNoCudaPaths;
  // The prefill kernel each ran (its launcher's name; lanes8 is lanes16's kernel with half the
  // shared memory; 7 tokens are one chunk, so split runs the 32-channel kernel unsplit).
  const std::pair<const char*, const char*> variants[] = {{"pieces", "selective_scan_pieces_kernel (pass 2)"},
                                                          {"lanes8", "selective_scan_lanes_kernel"},
                                                          {"split", "selective_scan_fwd_kernel"}};
  const size_t lanes8_bytes = kernels::scan::lanes::shared_floats<8>(16) * sizeof(float);
  for (const char* name : {"tiny-mamba", "tiny-falcon-mamba", "tiny-jamba"}) {
    for (const auto& [variant, kernel] : variants) {
      RunSpec s;
      s.selective_scan = variant;
      expect_reference_tokens(name, s, 2);
      int ran = 0;
      for (const LaunchRecord& l : launch_log()) {
        const bool lanes8 = std::string(variant) != "lanes8" || l.shared_bytes == lanes8_bytes;
        ran += std::string(l.name) == kernel && lanes8 ? 1 : 0;
      }
      EXPECT_GE(ran, 1) << name << " --selective-scan " << variant << ": no " << kernel << " launch";
    }
  }
}

// The norm in the GEMV's prologue against --norm-prologue separate, with the host a CUDA device:
// the same logits bit for bit (the prologue computes add_norm's element shape in its order),
// greedy decode, fp32 with static decode and bf16 eager; the record says "fused" and "separate".
TEST(ModelSimNormPrologue, GivesTheSeparateLogits) {
  if (!library_has_cuda_paths()) GTEST_SKIP() << kNoCudaPaths;
  for (const char* name :
       {"tiny-llama", "tiny-llama3", "tiny-phi", "tiny-mamba", "tiny-mamba2", "tiny-jamba", "tiny-deepseek-moe"}) {
    for (const auto& [dtype, mode] :
         {std::pair{at::kFloat, DecodeMode::Static}, std::pair{at::kBFloat16, DecodeMode::Eager}}) {
      {
        const std::string what = fmt::format("{} {} decode {}", name, name_of(dtype), to_string(mode));
        std::map<std::string, std::string> fused_impl, separate_impl;
        RunSpec setup;
        setup.dtype = dtype;
        setup.mode = mode;
        setup.kernels = true;
        setup.prologue = false;
        const Decoded separate = run_model(name, setup, {}, 4, &separate_impl);
        setup.prologue = true;
        const Decoded fused = run_model(name, setup, {}, 4, &fused_impl);
        EXPECT_EQ(fused_impl.at(kNormPrologueRecord), "fused") << what;
        EXPECT_EQ(separate_impl.at(kNormPrologueRecord), "separate") << what;
        ASSERT_EQ(fused.logits.size(), separate.logits.size());
        for (size_t i = 0; i < fused.logits.size(); ++i) {
          EXPECT_TRUE(at::equal(fused.logits[i], separate.logits[i]))
              << what << " step " << i << ": max diff "
              << (fused.logits[i] - separate.logits[i]).abs().max().item<double>();
        }
      }
    }
  }
}

}  // namespace
}  // namespace effarch::sim
