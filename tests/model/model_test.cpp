// Checks of the forward pass that need no outside reference: prefill equals feeding the same
// tokens one at a time through decode; batch rows are independent; SDPA equals eager attention;
// the cache is sized once and errors are clear. Parity with transformers: hf_parity_test.cpp.

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>

#include "../test_util.h"
#include "effarch/common/error.h"
#include "effarch/model/catalog.h"
#include "effarch/model/model.h"
#include "effarch/ops/backend.h"
#include "../../src/model/blocks/blocks.h"

namespace effarch::model {
namespace {

const char* kTransformers[] = {"tiny-llama", "tiny-llama3", "tiny-mistral", "tiny-phi"};
const char* kStateSpace[] = {"tiny-mamba", "tiny-falcon-mamba", "tiny-mamba2"};
const char* kMoeAndHybrid[] = {"tiny-mixtral", "tiny-deepseek-moe", "tiny-jamba"};
// Built-in configs with one key changed ("base@variant"): sliding windows shorter than the
// prompts, and hidden_act other than SiLU in the Mamba conv, the MLPs and the experts.
const char* kVariants[] = {"tiny-mistral@window4", "tiny-mixtral@window3", "tiny-mamba@gelu",
                           "tiny-mamba2@relu", "tiny-jamba@gelu_new", "tiny-deepseek-moe@gelu"};

nlohmann::json variant_overrides(const std::string& variant) {
  if (variant == "window4") return {{"sliding_window", 4}};
  if (variant == "window3") return {{"sliding_window", 3}};
  return {{"hidden_act", variant}};
}

std::unique_ptr<Model> make(const std::string& name, ops::AttentionImpl impl = ops::AttentionImpl::Sdpa,
                            DecodeMode decode = DecodeMode::Eager, at::Device device = at::kCPU,
                            ops::Backend backend = ops::Backend::Auto,
                            ops::WeightFormat weights = ops::WeightFormat::Dense) {
  ModelOptions opt;
  opt.backend = backend;
  opt.weights = weights;
  opt.attention = impl;
  opt.seed = 5;
  opt.random_init = RandomInit::Varied;  // biases, norm weights, D and A_log drawn too
  opt.decode = decode;
  opt.device = device;
  const size_t at_sign = name.find('@');
  auto source = resolve_model((effarch::testing::configs_dir() / "models" / (name.substr(0, at_sign) + ".json")).string());
  if (at_sign != std::string::npos) {
    nlohmann::json doc = source.config.raw;
    doc.update(variant_overrides(name.substr(at_sign + 1)));
    source.config = parse_config(doc, name);
  }
  return Model::load(source, opt);
}

double rel_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<double>() / b.abs().max().item<double>();
}

class ModelChecks : public ::testing::TestWithParam<const char*> {};

TEST_P(ModelChecks, PrefillEqualsTokenByTokenDecode) {
  auto model = make(GetParam());
  // 23 tokens: long enough for the chunked selective scan (more than 16 tokens).
  const int64_t len = 23;
  const at::Tensor ids = at::randint(0, model->config().vocab_size, {2, len}, at::kLong);
  model->allocate_cache(2, len);
  const at::Tensor full = model->prefill(ids);  // [2, len, V]
  ASSERT_EQ(full.sizes(), (std::vector<int64_t>{2, len, model->config().vocab_size}));
  at::Tensor step = model->prefill(ids.narrow(1, 0, 1));
  EXPECT_LE(rel_diff(step.select(1, 0), full.select(1, 0)), 1e-4);
  for (int64_t t = 1; t < len; ++t) {
    step = model->decode(ids.select(1, t).contiguous());
    EXPECT_LE(rel_diff(step, full.select(1, t)), 1e-4) << "position " << t;
  }
  EXPECT_EQ(model->cache().length, len);
}

TEST_P(ModelChecks, BatchRowsAreIndependent) {
  auto model = make(GetParam());
  const at::Tensor ids = at::randint(0, model->config().vocab_size, {3, 6}, at::kLong);
  const at::Tensor batched = model->prefill(ids);
  for (int64_t r = 0; r < 3; ++r) {
    auto single = make(GetParam());
    const at::Tensor one = single->prefill(ids.narrow(0, r, 1));
    EXPECT_LE(rel_diff(batched.narrow(0, r, 1), one), 1e-5) << "row " << r;
  }
}

TEST_P(ModelChecks, SdpaEqualsEager) {
  auto sdpa = make(GetParam(), ops::AttentionImpl::Sdpa);
  auto eager = make(GetParam(), ops::AttentionImpl::Eager);
  const at::Tensor ids = at::randint(0, sdpa->config().vocab_size, {2, 11}, at::kLong);
  sdpa->allocate_cache(2, 12);
  eager->allocate_cache(2, 12);
  EXPECT_LE(rel_diff(sdpa->prefill(ids), eager->prefill(ids)), 1e-5);
  const at::Tensor next = at::randint(0, sdpa->config().vocab_size, {2}, at::kLong);
  EXPECT_LE(rel_diff(sdpa->decode(next), eager->decode(next)), 1e-5);
}

// The graph-friendly decode (position as a device tensor, attention over the whole cache under a
// mask, K/V written by index) gives the eager decode's logits, step after step.
void expect_same_decode(const char* name, DecodeMode mode, at::Device device, double tol) {
  for (const auto impl : {ops::AttentionImpl::Sdpa, ops::AttentionImpl::Eager}) {
    auto eager = make(name, impl, DecodeMode::Eager, device);
    auto other = make(name, impl, mode, device);
    const at::Tensor ids = at::randint(0, eager->config().vocab_size, {2, 24}, at::kLong);
    eager->allocate_cache(2, 24);
    other->allocate_cache(2, 24);
    EXPECT_LE(rel_diff(other->prefill(ids.narrow(1, 0, 5)), eager->prefill(ids.narrow(1, 0, 5))), tol);
    for (int64_t t = 5; t < 24; ++t) {
      const at::Tensor next = ids.select(1, t).contiguous();
      EXPECT_LE(rel_diff(other->decode(next), eager->decode(next)), tol) << name << " position " << t;
    }
    EXPECT_EQ(other->cache().length, 24);
    EXPECT_THROW_WITH(other->decode(ids.select(1, 0).contiguous()), UsageError,
                      {"cache of 24 tokens is full", "allocate_cache(batch, prompt + new tokens) before prefill"});
  }
}

TEST_P(ModelChecks, StaticDecodeEqualsEagerDecode) { expect_same_decode(GetParam(), DecodeMode::Static, at::kCPU, 1e-5); }

TEST_P(ModelChecks, CudaGraphDecodeEqualsEagerDecode) {
  if (!ops::kBuiltWithCuda || !at::hasCUDA()) GTEST_SKIP() << "needs a CUDA build and a GPU";
  // MoE models included: the CUDA dispatch kernels decode them without a host sync. Experts other
  // than SwiGLU ones (the @gelu variants) are refused instead.
  if (moe_decode_not_capturable(make(GetParam())->config(), ops::Backend::Auto, ops::WeightFormat::Dense)) {
    EXPECT_THROW_WITH(make(GetParam(), ops::AttentionImpl::Sdpa, DecodeMode::CudaGraph, at::Device(at::kCUDA, 0)),
                      UsageError, {"MoE", "SiLU"});
    return;
  }
  expect_same_decode(GetParam(), DecodeMode::CudaGraph, at::Device(at::kCUDA, 0), 1e-4);
}

TEST(Model, PrefillLastIsTheLastPositionAndReleaseFreesTheCache) {
  for (const char* name : {"tiny-llama", "tiny-mamba2", "tiny-jamba"}) {
    auto model = make(name);
    const at::Tensor ids = at::randint(0, model->config().vocab_size, {2, 9}, at::kLong);
    const at::Tensor full = model->prefill(ids);
    const at::Tensor last = model->prefill_last(ids);
    EXPECT_EQ(last.sizes(), (std::vector<int64_t>{2, model->config().vocab_size}));
    EXPECT_LE(rel_diff(last, full.select(1, 8)), 1e-6) << name;
    model->release_cache();
    EXPECT_FALSE(model->cache().allocated());
    EXPECT_EQ(model->cache().bytes(), 0u);
    EXPECT_LE(rel_diff(model->prefill_last(ids), last), 1e-6) << name;  // allocates again
  }
}

TEST(Model, CudaGraphsNeedACudaDevice) {
  EXPECT_THROW_WITH(make("tiny-llama", ops::AttentionImpl::Sdpa, DecodeMode::CudaGraph), UsageError, {"CUDA"});
}

INSTANTIATE_TEST_SUITE_P(Transformers, ModelChecks, ::testing::ValuesIn(kTransformers));
INSTANTIATE_TEST_SUITE_P(StateSpace, ModelChecks, ::testing::ValuesIn(kStateSpace));
INSTANTIATE_TEST_SUITE_P(MoeAndHybrid, ModelChecks, ::testing::ValuesIn(kMoeAndHybrid));
INSTANTIATE_TEST_SUITE_P(Variants, ModelChecks, ::testing::ValuesIn(kVariants));

// The variants really change the model: a window shorter than the prompt changes the logits of
// the positions past it (and only those), a non-SiLU hidden_act changes everything.
TEST(Model, VariantsChangeTheLogits) {
  for (const char* name : kVariants) {
    const std::string base(name, std::string(name).find('@'));
    auto variant = make(name);
    auto plain = make(base);
    const at::Tensor ids = at::randint(0, plain->config().vocab_size, {1, 9}, at::kLong);
    const at::Tensor a = variant->prefill(ids), b = plain->prefill(ids);
    EXPECT_GT(rel_diff(a, b), 1e-3) << name;
    if (variant->config().attention && variant->config().attention->sliding_window) {
      const int64_t w = *variant->config().attention->sliding_window;
      EXPECT_LE(rel_diff(a.narrow(1, 0, w), b.narrow(1, 0, w)), 1e-6) << name << ": positions inside the window";
    }
  }
}

// prefill without allocate_cache sizes the cache to the prompt; the decode after it says what to do.
TEST(Model, DecodeAfterPrefillWithoutRoomSaysToAllocate) {
  for (const auto mode : {DecodeMode::Eager, DecodeMode::Static}) {
    auto model = make("tiny-llama", ops::AttentionImpl::Sdpa, mode);
    model->prefill(at::zeros({1, 3}, at::kLong));
    EXPECT_THROW_WITH(model->decode(at::zeros({1}, at::kLong)), UsageError,
                      {"cache of 3 tokens is full", "call allocate_cache(batch, prompt + new tokens) before prefill"});
  }
}

TEST(Model, RoutingObserverSeesEveryMoeLayerOnce) {
  for (const char* name : kMoeAndHybrid) {
    auto model = make(name);
    const auto& c = model->config();
    std::vector<int> layers;
    model->set_routing_observer([&](const RoutingEvent& e) {
      layers.push_back(e.layer);
      EXPECT_EQ(e.expert_ids.sizes(), (std::vector<int64_t>{2 * 5, c.moe->top_k}));
      EXPECT_EQ(e.weights.scalar_type(), at::kFloat);
      EXPECT_EQ(e.router_probs.sizes(), (std::vector<int64_t>{2 * 5, c.moe->num_experts}));
      EXPECT_TRUE(at::allclose(e.router_probs.sum(-1), at::ones({10}), 1e-5, 1e-5));
    });
    model->prefill(at::randint(0, c.vocab_size, {2, 5}, at::kLong));
    std::vector<int> expected;
    for (int i = 0; i < c.num_layers; ++i) {
      if (c.layers[static_cast<size_t>(i)].ffn == FfnKind::MoE) expected.push_back(i);
    }
    EXPECT_EQ(layers, expected) << name;
    EXPECT_FALSE(expected.empty()) << name;
  }
}

// DeepSeekMoE is remote code that transformers does not ship: its MoE layer is checked against
// this plain rendering of the model's own code (softmax in the model dtype, top-k without
// renormalisation, every expert on every token, shared experts added after).
TEST(Model, DeepseekMoeLayerMatchesPlainReference) {
  for (const auto dtype : {at::kFloat, at::kBFloat16}) {
    const auto source = resolve_model((effarch::testing::configs_dir() / "models" / "tiny-deepseek-moe.json").string());
    const ModelConfig& c = source.config;
    const Weights w = Weights::random(c, 11, dtype, at::kCPU);
    const int layer = 1;
    ASSERT_EQ(c.layers[layer].ffn, FfnKind::MoE);
    const auto ffn = make_moe(c, w, layer);
    const at::Tensor x = at::randn({2, 3, c.hidden_size}).to(dtype);
    const at::Tensor actual = ffn->forward(x, ForwardContext{});

    const auto d = [](const at::Tensor& t) { return t.to(at::kDouble); };
    const auto mlp = [&](const at::Tensor& in, const std::string& p) {
      return at::linear(at::silu(at::linear(in, d(w.get(layer, p + "gate.weight")))) *
                            at::linear(in, d(w.get(layer, p + "up.weight"))),
                        d(w.get(layer, p + "down.weight")));
    };
    const at::Tensor flat = x.reshape({6, c.hidden_size});
    const at::Tensor scores = at::softmax(at::linear(flat, w.get(layer, "moe.router.weight")), -1);  // model dtype
    const auto [top_w, top_i] = at::topk(scores, c.moe->top_k, -1);
    at::Tensor expected = mlp(d(flat), "moe.shared.");
    for (int64_t t = 0; t < 6; ++t) {
      for (int64_t e = 0; e < c.moe->num_experts; ++e) {
        const at::Tensor y = mlp(d(flat[t]).unsqueeze(0), "moe.expert." + std::to_string(e) + ".")[0];
        for (int64_t j = 0; j < c.moe->top_k; ++j) {
          if (top_i[t][j].item<int64_t>() == e) expected[t] += y * d(top_w[t][j]);
        }
      }
    }
    const double tol = dtype == at::kFloat ? 1e-5 : 3e-2;
    EXPECT_LE(rel_diff(actual.reshape({6, -1}).to(at::kDouble), expected), tol) << c10::toString(dtype);
  }
}

// On a GPU the tiny MoE models run the dispatch kernels (router, permute, expert GEMV, combine)
// under --backend auto: their logits match the reference dispatch's, prefill (more than 16 tokens:
// the per-expert GEMM path) and decode (the GEMV path) alike.
TEST(Model, MoeDispatchKernelsMatchTheReferenceOnAGpu) {
  if (!ops::kBuiltWithCuda || !at::hasCUDA()) GTEST_SKIP() << "needs a CUDA build and a GPU";
  const at::Device cuda(at::kCUDA, 0);
  for (const char* name : kMoeAndHybrid) {
    auto kernels = make(name, ops::AttentionImpl::Sdpa, DecodeMode::Eager, cuda);
    auto reference = make(name, ops::AttentionImpl::Sdpa, DecodeMode::Eager, cuda, ops::Backend::Reference);
    EXPECT_EQ(kernels->implementations().at("moe_dispatch"), "cuda") << name;
    EXPECT_EQ(reference->implementations().at("moe_dispatch"), "reference") << name;
    const at::Tensor ids = at::randint(0, kernels->config().vocab_size, {2, 13}, at::kLong);
    kernels->allocate_cache(2, 16);
    reference->allocate_cache(2, 16);
    EXPECT_LE(rel_diff(kernels->prefill(ids), reference->prefill(ids)), 1e-4) << name;
    for (int step = 0; step < 3; ++step) {
      const at::Tensor next = ids.select(1, step).contiguous();
      EXPECT_LE(rel_diff(kernels->decode(next), reference->decode(next)), 1e-4) << name << " step " << step;
    }
  }
}

// Only the CUDA dispatch kernels decode MoE without a host sync: the reference dispatch (which
// reads the per-expert counts on the host) is refused before any weight loads. Int8 experts go
// through the dispatch kernels' expert table too, so they capture.
TEST(Model, CudaGraphsRefuseMoeOffTheDispatchKernels) {
  if (!ops::kBuiltWithCuda || !at::hasCUDA()) GTEST_SKIP() << "needs a CUDA build and a GPU";
  const at::Device cuda(at::kCUDA, 0);
  for (const char* name : {"tiny-mixtral", "tiny-deepseek-moe", "tiny-jamba"}) {
    EXPECT_THROW_WITH(make(name, ops::AttentionImpl::Sdpa, DecodeMode::CudaGraph, cuda, ops::Backend::Reference),
                      UsageError, {"MoE", "reference"});
    EXPECT_NO_THROW(make(name, ops::AttentionImpl::Sdpa, DecodeMode::CudaGraph, cuda, ops::Backend::Auto,
                         ops::WeightFormat::Int8))
        << name << " int8";
    EXPECT_NO_THROW(make(name, ops::AttentionImpl::Sdpa, DecodeMode::CudaGraph, cuda)) << name;
  }
}

TEST(Model, MambaStateDoesNotGrowWithContext) {
  auto model = make("tiny-mamba");
  const auto& m = *model->config().mamba;
  model->allocate_cache(2, 16);
  const uint64_t short_bytes = model->cache().bytes();
  const auto& layer = model->cache().layers[0];
  EXPECT_EQ(layer.conv_state.sizes(), (std::vector<int64_t>{2, m.d_inner, m.d_conv}));
  EXPECT_EQ(layer.ssm_state.sizes(), (std::vector<int64_t>{2, m.d_inner, m.d_state}));
  EXPECT_EQ(layer.ssm_state.scalar_type(), at::kFloat);
  EXPECT_FALSE(layer.k.defined());
  EXPECT_EQ(short_bytes, static_cast<uint64_t>(model->config().num_layers * 2 * m.d_inner * (m.d_conv + m.d_state) * 4));
  model->allocate_cache(2, 100000);  // no positional limit, and the same bytes
  EXPECT_EQ(model->cache().bytes(), short_bytes);
  const void* state = model->cache().layers[1].ssm_state.data_ptr();
  model->prefill(at::ones({2, 30}, at::kLong));
  model->decode(at::ones({2}, at::kLong));
  EXPECT_EQ(model->cache().layers[1].ssm_state.data_ptr(), state);  // written in place
  EXPECT_GT(model->cache().layers[1].ssm_state.abs().sum().item<double>(), 0.0);
}

TEST(Model, MambaPrefillOf4096TokensTakesSeconds) {
  // The bar for the chunked references: a 4096-token prompt on the tiny models in seconds,
  // not minutes, on 2 cores. Printed, not asserted (timings do not gate tests).
  for (const char* name : {"tiny-mamba", "tiny-mamba2"}) {
    auto model = make(name);
    const at::Tensor ids = at::randint(0, model->config().vocab_size, {1, 4096}, at::kLong);
    model->allocate_cache(1, 4097);
    const auto t0 = std::chrono::steady_clock::now();
    const at::Tensor logits = model->prefill(ids);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%s: 4096-token prefill in %.2f s\n", name, s);
    EXPECT_TRUE(at::isfinite(logits).all().item<bool>());
    // The last position equals continuing a 4095-token prefill with one decode step.
    auto other = make(name);
    other->allocate_cache(1, 4096);
    other->prefill(ids.narrow(1, 0, 4095));
    EXPECT_LE(rel_diff(other->decode(ids.select(1, 4095).contiguous()), logits.select(1, 4095)), 1e-4) << name;
  }
}

TEST(Model, CacheIsAllocatedOnceWithFixedShapes) {
  auto model = make("tiny-llama");
  model->allocate_cache(2, 32);
  const auto& c = model->config();
  const void* k_ptr = model->cache().layers[0].k.data_ptr();
  EXPECT_EQ(model->cache().layers[0].k.sizes(),
            (std::vector<int64_t>{2, c.attention->num_kv_heads, 32, c.attention->head_dim}));
  EXPECT_EQ(model->cache().bytes(),
            static_cast<uint64_t>(c.num_layers * 2 * 2 * c.attention->num_kv_heads * 32 * c.attention->head_dim * 4));
  model->prefill(at::zeros({2, 5}, at::kLong));
  model->decode(at::zeros({2}, at::kLong));
  EXPECT_EQ(model->cache().layers[0].k.data_ptr(), k_ptr);  // written in place
}

// Attention's q/k/v run as one product over weights concatenated at load: the parts become views
// of the fused tensor (no second copy), and its column ranges are the three products.
TEST(Model, AttentionFusesQkvIntoOneProductWithoutCopies) {
  for (const char* name : {"tiny-llama", "tiny-phi", "tiny-jamba"}) {  // GQA; biases and partial rotary; no RoPE
    for (const ops::WeightFormat format : {ops::WeightFormat::Dense, ops::WeightFormat::Int8}) {
      auto model = make(name, ops::AttentionImpl::Sdpa, DecodeMode::Eager, at::kCPU, ops::Backend::Auto, format);
      const Weights& w = model->weights();
      const ModelConfig& c = model->config();
      int layer = 0;
      while (c.layers.at(static_cast<size_t>(layer)).mixer != MixerKind::Attention) ++layer;
      const std::vector<std::string> parts{"attn.q.", "attn.k.", "attn.v."};
      ASSERT_TRUE(w.can_fuse(layer, parts)) << name;
      const at::Tensor& q = w.get(layer, "attn.q.weight");
      const at::Tensor& k = w.get(layer, "attn.k.weight");
      const at::Tensor& v = w.get(layer, "attn.v.weight");
      // Loading the model fused them: consecutive row ranges of one allocation.
      EXPECT_TRUE(q.is_alias_of(k) && k.is_alias_of(v)) << name;
      EXPECT_EQ(static_cast<const char*>(k.const_data_ptr()) - static_cast<const char*>(q.const_data_ptr()),
                static_cast<std::ptrdiff_t>(q.nbytes()))
          << name;
      // The fused product's column ranges are the parts' own products.
      const at::Tensor x = at::randn({2, 3, c.hidden_size});
      const at::Tensor y = ops::linear(x, w.fused_linear(layer, parts));
      int64_t col = 0;
      for (const std::string& part : parts) {
        const at::Tensor own = ops::linear(x, w.linear(layer, part));
        EXPECT_TRUE(at::allclose(y.narrow(-1, col, own.size(-1)), own, 1e-5, 1e-6)) << name << " " << part;
        col += own.size(-1);
      }
      EXPECT_EQ(col, y.size(-1));
      EXPECT_FALSE(w.can_fuse(layer, {"attn.q.", "attn.missing."}));
    }
  }
}

TEST(Model, Errors) {
  auto model = make("tiny-llama");  // max_position_embeddings 2048
  EXPECT_THROW_WITH(model->allocate_cache(1, 4096), UsageError, {"4096 tokens", "context of 2048"});
  model->allocate_cache(1, 4);
  EXPECT_THROW_WITH(model->prefill(at::zeros({1, 5}, at::kLong)), UsageError, {"5 tokens exceed the cache of 4"});
  EXPECT_THROW_WITH(model->prefill(at::zeros({2, 2}, at::kLong)), UsageError, {"batch of 2"});
  EXPECT_THROW_WITH(model->prefill(at::zeros({1, 2}, at::kInt)), UsageError, {"int64"});
  auto fresh = make("tiny-llama");
  EXPECT_THROW_WITH(fresh->decode(at::zeros({1}, at::kLong)), UsageError, {"decode before prefill"});
}

}  // namespace
}  // namespace effarch::model
