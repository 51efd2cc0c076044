// What a model records about how it runs: the implementation of every op family it uses (from
// --backend and the device, decided before weights load), the weights' format, and which tensors
// are linear layers. --backend reference and auto must give the same tokens on the CPU.

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "../test_util.h"
#include "effarch/common/error.h"
#include "effarch/model/catalog.h"
#include "effarch/model/model.h"
#include "effarch/model/tensor_spec.h"
#include "effarch/ops/selective_scan.h"

namespace effarch::model {
namespace {

ModelSource tiny(const std::string& name) {
  return resolve_model((effarch::testing::configs_dir() / "models" / (name + ".json")).string());
}

std::unique_ptr<Model> make(const std::string& name, ops::Backend backend) {
  ModelOptions opt;
  opt.seed = 3;
  opt.random_init = RandomInit::Varied;  // biases, norm weights, D and A_log drawn too
  opt.backend = backend;
  return Model::load(tiny(name), opt);
}

using Impl = std::map<std::string, std::string>;

TEST(Implementations, EachModelListsTheOpFamiliesItUses) {
  // On the CPU auto runs the fused CPU kernels where an op has one.
  // Every block's residual adds: add_norm; a dense MLP's silu / gelu_new: activation (their CUDA
  // kernels on a GPU, the unfused ops here). Every model also records where its block boundaries'
  // add + norm ran (add_norm_in_gemv): separate here, the norm in the GEMV needing CUDA kernels.
  const Impl mamba1{{"add_norm", "reference"}, {"add_norm_in_gemv", "separate"}, {"causal_conv1d", "reference"}, {"dense_gemv", "reference"}, {"selective_scan", "cpu"}, {"selective_state_update", "cpu"}};
  const Impl mamba1_ref{{"add_norm", "reference"}, {"add_norm_in_gemv", "separate"}, {"causal_conv1d", "reference"}, {"dense_gemv", "reference"}, {"selective_scan", "reference"},
                        {"selective_state_update", "reference"}};
  const Impl mamba2{{"add_norm", "reference"}, {"add_norm_in_gemv", "separate"}, {"causal_conv1d", "reference"}, {"dense_gemv", "reference"}, {"gated_rms_norm", "reference"}, {"ssd_scan", "cpu"},
                    {"ssd_state_update", "cpu"}};
  const Impl mamba2_ref{{"add_norm", "reference"}, {"add_norm_in_gemv", "separate"}, {"causal_conv1d", "reference"}, {"dense_gemv", "reference"}, {"gated_rms_norm", "reference"}, {"ssd_scan", "reference"},
                        {"ssd_state_update", "reference"}};
  // Attention layers: the decode attention (its CUDA kernel on a GPU, the reference here). Every
  // model: dense_gemv, its decode projections (the CUDA GEMV on a GPU; on the CPU ops::linear's
  // own CPU GEMV runs whatever the backend, recorded as the reference it is tested against).
  EXPECT_EQ(make("tiny-llama", ops::Backend::Auto)->implementations(), (Impl{{"activation", "reference"}, {"add_norm", "reference"}, {"add_norm_in_gemv", "separate"}, {"decode_attention", "reference"}, {"dense_gemv", "reference"},
                  {"rope_cache_write", "reference"}}));
  EXPECT_EQ(make("tiny-mamba", ops::Backend::Auto)->implementations(), mamba1);
  EXPECT_EQ(make("tiny-falcon-mamba", ops::Backend::Auto)->implementations(), mamba1);
  EXPECT_EQ(make("tiny-mamba2", ops::Backend::Auto)->implementations(), mamba2);
  EXPECT_EQ(make("tiny-mixtral", ops::Backend::Auto)->implementations(),
            (Impl{{"add_norm", "reference"}, {"add_norm_in_gemv", "separate"}, {"decode_attention", "reference"}, {"dense_gemv", "reference"}, {"moe_dispatch", "cpu"},
                  {"rope_cache_write", "reference"}}));
  EXPECT_EQ(make("tiny-mamba", ops::Backend::Reference)->implementations(), mamba1_ref);
  EXPECT_EQ(make("tiny-mamba2", ops::Backend::Reference)->implementations(), mamba2_ref);
  Impl jamba = mamba1_ref;
  jamba["moe_dispatch"] = "reference";
  jamba["decode_attention"] = "reference";
  jamba["rope_cache_write"] = "reference";
  jamba["activation"] = "reference";  // its dense layers' SiLU * up (the MoE layers' is in moe_dispatch)
  EXPECT_EQ(make("tiny-jamba", ops::Backend::Reference)->implementations(), jamba);
}

TEST(Implementations, CudaBackendOnTheCpuIsRefusedBeforeWeightsLoad) {
  for (const char* name : {"tiny-llama", "tiny-mamba", "tiny-jamba"}) {
    ModelOptions opt;
    opt.backend = ops::Backend::Cuda;
    ModelSource source = tiny(name);
    source.checkpoint_dir = "/nonexistent/checkpoint";  // would fail to open if loading started
    EXPECT_THROW_WITH(Model::load(source, opt), UsageError, {"--backend cuda"});
  }
}

// auto (the kernels: CPU kernels on the CPU, CUDA kernels on a GPU) against reference on one
// device: where auto runs a kernel the logits agree within fp32 rounding (kernels sum in another
// order); elsewhere they are bitwise equal. The greedy tokens are identical.
void expect_auto_matches_reference(const at::Device& device) {
  const auto same = [](const at::Tensor& a, const at::Tensor& r, bool exact) {
    return exact ? at::equal(a, r) : at::allclose(a, r, 1e-4, 1e-4);
  };
  for (const char* name : {"tiny-llama", "tiny-phi", "tiny-mamba", "tiny-falcon-mamba", "tiny-mamba2",
                           "tiny-mixtral", "tiny-deepseek-moe", "tiny-jamba"}) {
    ModelOptions opt;
    opt.seed = 3;
    opt.random_init = RandomInit::Varied;  // biases, norm weights, D and A_log drawn too
    opt.device = device;
    opt.backend = ops::Backend::Auto;
    auto a = Model::load(tiny(name), opt);
    opt.backend = ops::Backend::Reference;
    auto r = Model::load(tiny(name), opt);
    bool exact = true;
    // (The add + norm left to its add_norm op, "separate", changes nothing of the sums.)
    for (const auto& [op, impl] : a->implementations()) {
      exact = exact && (impl == "reference" || (op == kNormPrologueRecord && impl == "separate"));
    }
    const at::Tensor ids = at::randint(0, a->config().vocab_size, {2, 9}, at::kLong).to(device);
    a->allocate_cache(2, 14);
    r->allocate_cache(2, 14);
    at::Tensor la = a->prefill_last(ids), lr = r->prefill_last(ids);
    EXPECT_TRUE(same(la, lr, exact)) << name << " prefill on " << device;
    for (int step = 0; step < 5; ++step) {
      const at::Tensor next = la.argmax(-1);
      ASSERT_TRUE(at::equal(next, lr.argmax(-1))) << name << " step " << step << " on " << device;
      la = a->decode(next);
      lr = r->decode(next);
      EXPECT_TRUE(same(la, lr, exact)) << name << " decode step " << step << " on " << device;
    }
  }
}

TEST(Implementations, ReferenceAndAutoGiveIdenticalTokensOnTheCpu) { expect_auto_matches_reference(at::kCPU); }

// The CUDA kernels in whole models: every tiny architecture, fp32, kernels against references.
TEST(Implementations, ReferenceAndAutoGiveIdenticalTokensOnTheGpu) {
  if (!ops::kBuiltWithCuda || !at::hasCUDA()) GTEST_SKIP() << "needs a CUDA build and a GPU";
  expect_auto_matches_reference(at::Device(at::kCUDA, 0));
}

// --selective-scan: a variant's name (auto: none), else a UsageError naming the option and the
// names; refused at load where no CUDA selective scan can run it (no Mamba-1 layer, the CPU).
TEST(Implementations, SelectiveScanOptionNamesAVariantOrIsRefused) {
  EXPECT_EQ(parse_selective_scan("auto", "--selective-scan"), std::nullopt);
  for (const std::string& name : ops::selective_scan_variant_names()) {
    EXPECT_EQ(parse_selective_scan(name, "--selective-scan"), std::optional<std::string>(name));
    ops::SelectiveScanArgs args;
    ops::selective_scan_variant_named(name)->apply(args);
    EXPECT_EQ(ops::selective_scan_variant_name(args), name) << "a name selects the variant that records it";
  }
  EXPECT_EQ(ops::selective_scan_variant_names().size(), 6u);
  EXPECT_THROW_WITH(parse_selective_scan("lanes4", "--selective-scan"), UsageError,
                    {"--selective-scan: unknown value 'lanes4' (use auto, lanes16, lanes8, pieces, seg4, seg8, split)"});
  EXPECT_THROW_WITH(parse_selective_scan("", "s.json: 'selective_scan'"), UsageError, {"s.json: 'selective_scan'"});
  ModelOptions opt;
  opt.selective_scan = "pieces";
  EXPECT_THROW_WITH(Model::load(tiny("tiny-mamba"), opt), UsageError,
                    {"--selective-scan pieces", "needs a CUDA device and a CUDA build, not cpu"});
  EXPECT_THROW_WITH(Model::load(tiny("tiny-mamba2"), opt), UsageError, {"--selective-scan pieces", "no Mamba-1 layer"});
  EXPECT_THROW_WITH(Model::load(tiny("tiny-llama"), opt), UsageError, {"no Mamba-1 layer"});
  ops::SelectiveScanArgs pieces;
  pieces.cuda_segment = 0;
  EXPECT_EQ(ops::selective_scan_max_dstate(pieces), 16);
  EXPECT_EQ(ops::selective_scan_max_dstate(ops::SelectiveScanArgs{}), 256);
}

// Beside "selective_scan": "cuda", which variant of the prefill kernel the mixers run: the
// default's ("lanes16"), or the one --selective-scan names; none with the reference.
TEST(Implementations, RecordTheSelectiveScanVariantOnTheGpu) {
  EXPECT_STREQ(ops::selective_scan_variant_name(ops::SelectiveScanArgs{}), "lanes16");
  ops::SelectiveScanArgs four;
  four.cuda_segment = 4;
  EXPECT_STREQ(ops::selective_scan_variant_name(four), "seg4");
  ops::SelectiveScanArgs eight;
  eight.cuda_segment = 8;
  EXPECT_STREQ(ops::selective_scan_variant_name(eight), "seg8");
  eight.cuda_split = -1;
  EXPECT_STREQ(ops::selective_scan_variant_name(eight), "split");
  if (!ops::kBuiltWithCuda || !at::hasCUDA()) GTEST_SKIP() << "the record itself needs a CUDA build and a GPU";
  ModelOptions opt;
  opt.device = at::Device(at::kCUDA, 0);
  EXPECT_EQ(Model::load(tiny("tiny-mamba"), opt)->implementations().at("selective_scan_variant"), "lanes16");
  opt.selective_scan = "pieces";
  EXPECT_EQ(Model::load(tiny("tiny-jamba"), opt)->implementations().at("selective_scan_variant"), "pieces");
  opt.selective_scan.reset();
  // The decode step's dt_proj: inside the CUDA update with dense weights, its own projection with int8.
  EXPECT_EQ(Model::load(tiny("tiny-mamba"), opt)->implementations().at("selective_state_update_dt_proj"), "fused");
  opt.weights = ops::WeightFormat::Int8;
  EXPECT_EQ(Model::load(tiny("tiny-mamba"), opt)->implementations().at("selective_state_update_dt_proj"), "separate");
  // The decode step's conv update: inside in_proj's dense GEMV (Mamba-1 and Mamba-2), after the
  // int8 GEMV with int8 weights.
  EXPECT_EQ(Model::load(tiny("tiny-mamba"), opt)->implementations().at("causal_conv1d_update_in_proj"), "separate");
  opt.weights = ops::WeightFormat::Dense;
  for (const char* name : {"tiny-mamba", "tiny-mamba2", "tiny-jamba"}) {
    EXPECT_EQ(Model::load(tiny(name), opt)->implementations().at("causal_conv1d_update_in_proj"), "fused") << name;
  }
  EXPECT_EQ(Model::load(tiny("tiny-llama"), opt)->implementations().count("causal_conv1d_update_in_proj"), 0u);
  // A non-gated MLP's fc1 and its gelu_new: one GEMV (Phi); a gated MLP's gate/up product and its
  // SiLU: one GEMV (the dense gated MLPs, DeepSeekMoE's shared experts); Mixtral has neither.
  EXPECT_EQ(Model::load(tiny("tiny-phi"), opt)->implementations().at("activation_in_fc1"), "fused");
  EXPECT_EQ(Model::load(tiny("tiny-phi"), opt)->implementations().count("activation_in_gate_up"), 0u);
  EXPECT_EQ(Model::load(tiny("tiny-llama"), opt)->implementations().count("activation_in_fc1"), 0u);
  for (const char* name : {"tiny-llama", "tiny-mistral", "tiny-jamba", "tiny-deepseek-moe"}) {
    EXPECT_EQ(Model::load(tiny(name), opt)->implementations().at("activation_in_gate_up"), "fused") << name;
  }
  EXPECT_EQ(Model::load(tiny("tiny-mixtral"), opt)->implementations().count("activation_in_gate_up"), 0u);
  EXPECT_EQ(Model::load(tiny("tiny-mamba"), opt)->implementations().count("activation_in_gate_up"), 0u);
  opt.weights = ops::WeightFormat::Int8;
  EXPECT_EQ(Model::load(tiny("tiny-phi"), opt)->implementations().at("activation_in_fc1"), "separate");
  EXPECT_EQ(Model::load(tiny("tiny-llama"), opt)->implementations().at("activation_in_gate_up"), "separate");
  opt.weights = ops::WeightFormat::Dense;
  opt.backend = ops::Backend::Reference;
  EXPECT_EQ(Model::load(tiny("tiny-mamba"), opt)->implementations().count("selective_scan_variant"), 0u);
  EXPECT_EQ(Model::load(tiny("tiny-mamba"), opt)->implementations().count("selective_state_update_dt_proj"), 0u);
  EXPECT_EQ(Model::load(tiny("tiny-mamba"), opt)->implementations().count("causal_conv1d_update_in_proj"), 0u);
}

// Beside "ssd_scan": "cuda", which chunk products the scan runs: tensor cores for bf16 / fp16
// (tiny-mamba2's d_state is within their 128). fp32 activations run the reference under --backend
// auto (ops::ssd_scan_backend) and the FMA products under --backend cuda.
TEST(Implementations, RecordTheSsdScanProductsOnTheGpu) {
  if (!ops::kBuiltWithCuda || !at::hasCUDA()) GTEST_SKIP() << "needs a CUDA build and a GPU";
  ModelOptions opt;
  opt.device = at::Device(at::kCUDA, 0);
  opt.dtype = at::kBFloat16;
  auto impl = Model::load(tiny("tiny-mamba2"), opt)->implementations();
  EXPECT_EQ(impl.at("ssd_scan"), "cuda");
  EXPECT_EQ(impl.at("ssd_scan_products"), "tensor_cores");
  opt.dtype = at::kFloat;
  impl = Model::load(tiny("tiny-mamba2"), opt)->implementations();
  EXPECT_EQ(impl.at("ssd_scan"), "reference");
  EXPECT_EQ(impl.at("ssd_state_update"), "cuda");  // the decode step keeps its kernel
  EXPECT_EQ(impl.count("ssd_scan_products"), 0u);
  opt.backend = ops::Backend::Cuda;
  impl = Model::load(tiny("tiny-mamba2"), opt)->implementations();
  EXPECT_EQ(impl.at("ssd_scan"), "cuda");
  EXPECT_EQ(impl.at("ssd_scan_products"), "fma");
  opt.backend = ops::Backend::Reference;
  EXPECT_EQ(Model::load(tiny("tiny-mamba2"), opt)->implementations().count("ssd_scan_products"), 0u);
}

// add_norm's vector shape, which the launcher takes for 128 rows or more (kVectorMinRows): a
// prefill of 2 x 80 tokens runs it at every block boundary (the tiny models' hidden sizes are
// multiples of 8). Auto against reference in fp32: the same last-token argmax, logits within fp32
// rounding; the decode after it (element shape) continues from the prefill's state.
TEST(Implementations, VectorAddNormInAPrefillOnTheGpu) {
  if (!ops::kBuiltWithCuda || !at::hasCUDA()) GTEST_SKIP() << "needs a CUDA build and a GPU";
  const at::Device gpu(at::kCUDA, 0);
  for (const char* name : {"tiny-llama", "tiny-phi", "tiny-mamba", "tiny-jamba"}) {
    ModelOptions opt;
    opt.seed = 3;
    opt.random_init = RandomInit::Varied;  // biases, norm weights, D and A_log drawn too
    opt.device = gpu;
    opt.dtype = at::kFloat;
    opt.backend = ops::Backend::Auto;
    auto a = Model::load(tiny(name), opt);
    opt.backend = ops::Backend::Reference;
    auto r = Model::load(tiny(name), opt);
    at::manual_seed(12);
    const at::Tensor ids = at::randint(0, a->config().vocab_size, {2, 80}, at::kLong).to(gpu);
    a->allocate_cache(2, 96);
    r->allocate_cache(2, 96);
    const at::Tensor la = a->prefill_last(ids), lr = r->prefill_last(ids);
    EXPECT_TRUE(at::equal(la.argmax(-1), lr.argmax(-1))) << name;
    EXPECT_TRUE(at::allclose(la, lr, 1e-4, 1e-4)) << name << ": max |diff| " << (la - lr).abs().max().item<double>();
    const at::Tensor next = lr.argmax(-1);
    EXPECT_TRUE(at::allclose(a->decode(next), r->decode(next), 1e-4, 1e-4)) << name << " decode";
  }
}

// The fused residual add + norm kernel (add_norm) and the dense GEMV (dense_gemv: every decode
// projection of batch 2) in whole models on a GPU, eager, static and with CUDA graphs: auto (every
// CUDA kernel, add_norm's and dense_gemv's included) against reference (the unfused ATen
// add and norms, and every other op's reference), fp32: identical greedy tokens, logits within
// fp32 rounding. bf16: the greedy tokens of 8 steps agree on at least 7 of 8 per model and mode
// (printed; the kernels' sums in another order may flip a near tie of random tiny weights).
TEST(Implementations, FusedAddNormKeepsGreedyTokensOnTheGpu) {
  if (!ops::kBuiltWithCuda || !at::hasCUDA()) GTEST_SKIP() << "needs a CUDA build and a GPU";
  const at::Device gpu(at::kCUDA, 0);
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    for (const char* name : {"tiny-llama", "tiny-phi", "tiny-mixtral", "tiny-mamba", "tiny-jamba"}) {
      for (DecodeMode mode : {DecodeMode::Eager, DecodeMode::Static, DecodeMode::CudaGraph}) {
        ModelOptions opt;
        opt.seed = 3;
        opt.random_init = RandomInit::Varied;  // biases, norm weights, D and A_log drawn too
        opt.device = gpu;
        opt.dtype = dtype;
        opt.decode = mode;
        opt.backend = ops::Backend::Auto;
        auto a = Model::load(tiny(name), opt);
        ASSERT_EQ(a->implementations().at("add_norm"), "cuda") << name;
        ASSERT_EQ(a->implementations().at("dense_gemv"), "cuda") << name;  // the decode projections too
        opt.backend = ops::Backend::Reference;
        opt.decode = mode == DecodeMode::CudaGraph ? DecodeMode::Static : mode;  // reference MoE cannot be captured
        auto r = Model::load(tiny(name), opt);
        at::manual_seed(11);
        const at::Tensor ids = at::randint(0, a->config().vocab_size, {2, 7}, at::kLong).to(gpu);
        a->allocate_cache(2, 16);
        r->allocate_cache(2, 16);
        at::Tensor la = a->prefill_last(ids), lr = r->prefill_last(ids);
        int agree = 0;
        const int steps = 8;
        for (int step = 0; step < steps; ++step) {
          const at::Tensor next = lr.argmax(-1);  // both follow the reference's tokens
          const bool same = at::equal(la.argmax(-1), next);
          agree += same ? 1 : 0;
          if (dtype == at::kFloat) {
            EXPECT_TRUE(same) << name << " step " << step << " decode " << to_string(mode);
            EXPECT_TRUE(at::allclose(la, lr, 1e-4, 1e-4)) << name << " step " << step << " decode " << to_string(mode);
          }
          la = a->decode(next);
          lr = r->decode(next);
        }
        std::printf("add_norm in %s %s decode %s: %d of %d greedy tokens agree\n", name, c10::toString(dtype),
                    to_string(mode), agree, steps);
        if (dtype != at::kFloat) EXPECT_GE(agree, steps - 1) << name << " decode " << to_string(mode);
      }
    }
  }
}

// Programmatic dependent launch (--pdl on) changes when the decode kernels start, never what they
// compute: every tiny model, fp32 and bf16, eager and with CUDA graphs (the graph captured with
// the switch on records programmatic edges), batch 2 over 12 decode steps, gives the same logits
// bit for bit as with the switch off. A kernel that read its input or wrote its output before its
// grid dependency wait would race with the kernel before it and show here as a difference.
TEST(Implementations, ProgrammaticLaunchGivesIdenticalLogitsOnTheGpu) {
  if (!ops::kBuiltWithCuda || !at::hasCUDA()) GTEST_SKIP() << "needs a CUDA build and a GPU";
  struct SwitchOff {
    ~SwitchOff() { ops::set_programmatic_launch(false); }
  } restore;
  const at::Device gpu(at::kCUDA, 0);
  const auto run = [&](const char* name, at::ScalarType dtype, DecodeMode mode, bool pdl) {
    ops::set_programmatic_launch(pdl);
    ModelOptions opt;
    opt.seed = 3;
    opt.random_init = RandomInit::Varied;  // biases, norm weights, D and A_log drawn too
    opt.device = gpu;
    opt.dtype = dtype;
    opt.decode = mode;
    auto m = Model::load(tiny(name), opt);
    at::manual_seed(5);
    const at::Tensor ids = at::randint(0, m->config().vocab_size, {2, 11}, at::kLong).to(gpu);
    m->allocate_cache(2, 24);
    std::vector<at::Tensor> logits{m->prefill_last(ids)};
    for (int step = 0; step < 12; ++step) logits.push_back(m->decode(logits.back().argmax(-1)));
    return at::stack(logits).cpu();
  };
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    for (const char* name : {"tiny-llama", "tiny-phi", "tiny-mamba", "tiny-falcon-mamba", "tiny-mamba2", "tiny-mixtral",
                             "tiny-deepseek-moe", "tiny-jamba"}) {
      for (DecodeMode mode : {DecodeMode::Eager, DecodeMode::CudaGraph}) {
        const at::Tensor off = run(name, dtype, mode, false);
        const at::Tensor on = run(name, dtype, mode, true);
        EXPECT_TRUE(at::equal(off, on)) << name << " " << c10::toString(dtype) << " decode " << to_string(mode)
                                        << ": largest difference " << (off.to(at::kFloat) - on.to(at::kFloat)).abs().max().item<float>();
      }
    }
  }
}

TEST(Implementations, WeightFormatIsTheDtypeOfTheLinearWeights) {
  EXPECT_EQ(make("tiny-llama", ops::Backend::Auto)->weight_format(), "float32");
  ModelOptions opt;
  opt.dtype = at::kBFloat16;
  EXPECT_EQ(Model::load(tiny("tiny-mamba"), opt)->weight_format(), "bfloat16");
}

TEST(TensorTables, EveryProjectionIsMarkedLinearAndNothingElse) {
  for (const char* name : {"tiny-llama", "tiny-phi", "tiny-mamba", "tiny-falcon-mamba", "tiny-mamba2", "tiny-mixtral",
                           "tiny-deepseek-moe", "tiny-jamba"}) {
    const ModelSource source = tiny(name);
    int linear = 0;
    for (const TensorSpec& t : expected_tensors(source.config)) {
      const bool projection = t.shape.size() == 2 && t.role.find("embed") == std::string::npos &&
                              t.role.find("router") == std::string::npos &&
                              t.role.find("A_log") == std::string::npos;
      EXPECT_EQ(t.linear, projection) << name << ": " << t.name << " (" << t.role << ")";
      linear += t.linear ? 1 : 0;
    }
    EXPECT_GT(linear, 0) << name;
  }
  // Mamba-1's x_proj and dt_proj included.
  for (const TensorSpec& t : expected_tensors(tiny("tiny-mamba").config)) {
    if (t.role == "mamba.x_proj.weight" || t.role == "mamba.dt_proj.weight") EXPECT_TRUE(t.linear) << t.name;
    if (t.role == "mamba.dt_proj.bias") EXPECT_FALSE(t.linear);
  }
}

}  // namespace
}  // namespace effarch::model
