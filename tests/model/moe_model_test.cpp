// MoE models beyond the shared model checks (model_test.cpp: prefill = decode, batch rows,
// one observer call per MoE layer on a prefill, DeepSeekMoE's layer against its own code):
// the routing reported during decode and its normalisation per router kind, the same experts
// chosen by prefill and by token-by-token decode, no observer no calls, and expert weights that
// the layer references instead of copying.

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "../test_util.h"
#include "effarch/model/catalog.h"
#include "effarch/model/model.h"
#include "effarch/ops/moe.h"
#include "../../src/model/blocks/blocks.h"

namespace effarch::model {
namespace {

const char* kMoeModels[] = {"tiny-mixtral", "tiny-deepseek-moe", "tiny-jamba"};

ModelSource tiny(const std::string& name) {
  return resolve_model((effarch::testing::configs_dir() / "models" / (name + ".json")).string());
}

std::unique_ptr<Model> make(const std::string& name) {
  ModelOptions opt;
  opt.seed = 7;
  opt.random_init = RandomInit::Varied;  // biases, norm weights, D and A_log drawn too
  return Model::load(tiny(name), opt);
}

std::vector<int> moe_layers(const ModelConfig& c) {
  std::vector<int> out;
  for (int i = 0; i < c.num_layers; ++i) {
    if (c.layers[static_cast<size_t>(i)].ffn == FfnKind::MoE) out.push_back(i);
  }
  return out;
}

// One event as the model's router kind defines it: ids are the top-k of the reported
// probabilities, and the weights are those probabilities (renormalised for Mixtral).
void expect_consistent(const RoutingEvent& e, const MoeConfig& moe, int64_t rows, const std::string& where) {
  SCOPED_TRACE(where + " layer " + std::to_string(e.layer));
  ASSERT_EQ(e.expert_ids.sizes(), (std::vector<int64_t>{rows, moe.top_k}));
  ASSERT_EQ(e.weights.sizes(), (std::vector<int64_t>{rows, moe.top_k}));
  ASSERT_EQ(e.router_probs.sizes(), (std::vector<int64_t>{rows, moe.num_experts}));
  EXPECT_EQ(e.expert_ids.scalar_type(), at::kLong);
  EXPECT_EQ(e.weights.scalar_type(), at::kFloat);
  EXPECT_EQ(e.router_probs.scalar_type(), at::kFloat);
  EXPECT_TRUE(at::allclose(e.router_probs.sum(-1), at::ones({rows}), 1e-5, 1e-5));
  const at::Tensor top = std::get<1>(at::topk(e.router_probs, moe.top_k, -1));
  EXPECT_TRUE(at::equal(std::get<0>(at::sort(top, -1)), std::get<0>(at::sort(e.expert_ids, -1))));
  const at::Tensor picked = e.router_probs.gather(1, e.expert_ids);
  const at::Tensor expected =
      moe.router == RouterKind::SoftmaxFp32Renormalized ? picked / picked.sum(-1, true) : picked;
  EXPECT_TRUE(at::allclose(e.weights, expected, 1e-6, 1e-6));
  if (moe.router == RouterKind::SoftmaxFp32Renormalized) {
    EXPECT_TRUE(at::allclose(e.weights.sum(-1), at::ones({rows}), 1e-6, 1e-6));
  } else if (moe.top_k < moe.num_experts) {
    EXPECT_TRUE((e.weights.sum(-1) < 1.0).all().item<bool>());  // raw probabilities
  }
}

class MoeModel : public ::testing::TestWithParam<const char*> {};

TEST_P(MoeModel, DecodeReportsEveryMoeLayerOncePerStep) {
  auto model = make(GetParam());
  const ModelConfig& c = model->config();
  std::vector<RoutingEvent> events;
  model->set_routing_observer([&](const RoutingEvent& e) { events.push_back(e); });
  at::manual_seed(21);
  const at::Tensor ids = at::randint(0, c.vocab_size, {2, 8}, at::kLong);
  model->allocate_cache(2, 8);
  model->prefill(ids.narrow(1, 0, 5));
  const std::vector<int> layers = moe_layers(c);
  ASSERT_EQ(events.size(), layers.size());
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i].layer, layers[i]);
    expect_consistent(events[i], *c.moe, 2 * 5, "prefill");
  }
  for (int64_t t = 5; t < 8; ++t) {
    events.clear();
    model->decode(ids.select(1, t).contiguous());
    ASSERT_EQ(events.size(), layers.size()) << "decode step " << t;
    for (size_t i = 0; i < events.size(); ++i) {
      EXPECT_EQ(events[i].layer, layers[i]);
      expect_consistent(events[i], *c.moe, 2, "decode step " + std::to_string(t));
    }
  }
}

// The experts a token gets do not depend on whether it came in a prompt or one step at a time.
// Only tokens whose k-th and (k+1)-th probabilities are apart by more than the fp32 noise of the
// two paths are compared (a near tie may legitimately flip).
TEST_P(MoeModel, PrefillAndDecodeChooseTheSameExperts) {
  const std::string name = GetParam();
  const int64_t batch = 2, len = 9;
  at::manual_seed(22);
  const at::Tensor ids = at::randint(0, tiny(name).config.vocab_size, {batch, len}, at::kLong);

  std::map<int, std::vector<at::Tensor>> prefill_ids, prefill_probs, decode_ids;
  auto full = make(name);
  full->set_routing_observer([&](const RoutingEvent& e) {
    prefill_ids[e.layer].push_back(e.expert_ids.view({batch, len, -1}));
    prefill_probs[e.layer].push_back(e.router_probs.view({batch, len, -1}));
  });
  full->prefill(ids);

  auto stepwise = make(name);
  stepwise->allocate_cache(batch, len);
  stepwise->set_routing_observer([&](const RoutingEvent& e) { decode_ids[e.layer].push_back(e.expert_ids); });
  stepwise->prefill(ids.narrow(1, 0, 1));
  for (int64_t t = 1; t < len; ++t) stepwise->decode(ids.select(1, t).contiguous());

  const MoeConfig& moe = *full->config().moe;
  int64_t compared = 0;
  ASSERT_EQ(prefill_ids.size(), decode_ids.size());
  for (const auto& [layer, steps] : decode_ids) {
    ASSERT_EQ(prefill_ids[layer].size(), 1u);
    ASSERT_EQ(steps.size(), static_cast<size_t>(len));
    const at::Tensor sorted_probs = std::get<0>(at::sort(prefill_probs[layer][0], -1, /*descending=*/true));
    for (int64_t t = 0; t < len; ++t) {
      for (int64_t b = 0; b < batch; ++b) {
        if (moe.top_k < moe.num_experts) {
          const double gap = (sorted_probs[b][t][moe.top_k - 1] - sorted_probs[b][t][moe.top_k]).item<double>();
          if (gap < 1e-4) continue;
        }
        const at::Tensor a = std::get<0>(at::sort(prefill_ids[layer][0][b][t]));
        const at::Tensor d = std::get<0>(at::sort(steps[static_cast<size_t>(t)][b]));
        EXPECT_TRUE(at::equal(a, d)) << name << " layer " << layer << " token " << t << " row " << b;
        ++compared;
      }
    }
  }
  EXPECT_GT(compared, static_cast<int64_t>(decode_ids.size()) * batch * len / 2) << "too many near ties to test";
}

TEST_P(MoeModel, NoObserverNoCallsAndTheSameLogits) {
  auto model = make(GetParam());
  at::manual_seed(23);
  const at::Tensor ids = at::randint(0, model->config().vocab_size, {1, 4}, at::kLong);
  int calls = 0;
  model->set_routing_observer([&](const RoutingEvent&) { ++calls; });
  const at::Tensor observed = model->prefill(ids);
  EXPECT_EQ(calls, static_cast<int>(moe_layers(model->config()).size()));
  model->set_routing_observer({});
  const at::Tensor plain = model->prefill(ids);
  EXPECT_EQ(calls, static_cast<int>(moe_layers(model->config()).size()));
  EXPECT_TRUE(at::equal(observed, plain));  // observing changes nothing
}

// The layer keeps references to the weights' tensors (a 47B Mixtral must not be held twice):
// building it adds exactly one owner to every router and expert tensor (the expert roles are
// re-pointed at the layer's stack, which the next test checks).
TEST_P(MoeModel, ExpertWeightsAreReferencedNotCopied) {
  const auto source = tiny(GetParam());
  const ModelConfig& c = source.config;
  const Weights w = Weights::random(c, 3, at::kFloat, at::kCPU);
  const int layer = moe_layers(c).front();
  std::vector<std::string> roles = {"moe.router.weight"};
  for (int64_t e = 0; e < c.moe->num_experts; ++e) {
    for (const char* p : {"gate", "up", "down"}) roles.push_back("moe.expert." + std::to_string(e) + "." + p + ".weight");
  }
  std::vector<size_t> before;
  for (const auto& r : roles) before.push_back(w.get(layer, r).use_count());
  const auto ffn = make_moe(c, w, layer);
  for (size_t i = 0; i < roles.size(); ++i) EXPECT_EQ(w.get(layer, roles[i]).use_count(), before[i] + 1) << roles[i];
}

// The layer stacks its experts (ops::stack_experts) into one [E, 2I, H] and one [E, H, I]
// allocation and the weights' expert roles become views of them: expert e's gate, then its up,
// then expert e + 1's gate, all in one storage; the downs in another. Nothing else holds the
// experts' earlier tensors, so the bytes are held once; building the layer again copies nothing.
TEST_P(MoeModel, ExpertWeightsAreStackedOnce) {
  const auto source = tiny(GetParam());
  const ModelConfig& c = source.config;
  const Weights w = Weights::random(c, 3, at::kFloat, at::kCPU);
  const int layer = moe_layers(c).front();
  const auto role = [&](int64_t e, const char* p) {
    return w.get(layer, "moe.expert." + std::to_string(e) + "." + p + ".weight");
  };
  const uint64_t bytes = w.bytes();
  const auto ffn = make_moe(c, w, layer);
  EXPECT_EQ(w.bytes(), bytes);
  const int64_t experts = c.moe->num_experts;
  const at::Tensor gate0 = role(0, "gate"), down0 = role(0, "down");
  const int64_t elem = static_cast<int64_t>(gate0.element_size());
  for (int64_t e = 0; e < experts; ++e) {
    const at::Tensor gate = role(e, "gate"), up = role(e, "up"), down = role(e, "down");
    EXPECT_TRUE(gate.is_alias_of(gate0) && up.is_alias_of(gate0)) << e;
    EXPECT_TRUE(down.is_alias_of(down0) && !down.is_alias_of(gate0)) << e;
    const auto at = [](const at::Tensor& t) { return static_cast<const char*>(t.const_data_ptr()); };
    EXPECT_EQ(at(up), at(gate) + gate.nbytes()) << e;
    EXPECT_EQ(at(gate), at(gate0) + e * 2 * gate.nbytes()) << e;
    EXPECT_EQ(at(down), at(down0) + e * down.nbytes()) << e;
    EXPECT_EQ(elem, static_cast<int64_t>(down.element_size()));
  }
  // A second layer over the same weights views the same stack (fused_linear and stack_experts see
  // the experts already side by side) instead of copying it.
  const auto again = make_moe(c, w, layer);
  for (int64_t e = 0; e < experts; ++e) EXPECT_TRUE(role(e, "gate").is_alias_of(gate0)) << e;
}

// On a GPU in bf16: implementations() records the prefill path the CUDA dispatch takes
// ("grouped" on compute capability 9.x/10.x: the tiny models' sizes are multiples of 8), and a
// prefill of 2 x 40 tokens (past the decode kernels' 16) gives the reference dispatch's logits
// within bf16 rounding carried through the layers, and so do one sequence's decode steps.
TEST_P(MoeModel, Bf16PrefillPathIsRecordedAndMatchesTheReferenceOnAGpu) {
  if (!ops::kBuiltWithCuda || !at::hasCUDA()) GTEST_SKIP() << "needs a CUDA build and a GPU";
  ModelOptions opt;
  opt.seed = 7;
  opt.random_init = RandomInit::Varied;  // biases, norm weights, D and A_log drawn too
  opt.device = at::Device(at::kCUDA, 0);
  opt.dtype = at::kBFloat16;
  auto kernels = Model::load(tiny(GetParam()), opt);
  opt.backend = ops::Backend::Reference;
  auto reference = Model::load(tiny(GetParam()), opt);
  const ModelConfig& c = kernels->config();
  const std::string path = ops::moe_prefill_path(at::kBFloat16, ops::WeightFormat::Dense, opt.device, c.hidden_size,
                                                 c.moe->expert_intermediate);
  EXPECT_EQ(kernels->implementations().at("moe_prefill"), path);
  EXPECT_EQ(reference->implementations().count("moe_prefill"), 0u);
  if (c.mlp->activation == ops::Activation::SiLU) {  // bf16 (dense) experts: shared experts, if any, inside
    EXPECT_EQ(kernels->implementations().at(kMoeOneTokenRecord), "two_kernels");
  } else {
    EXPECT_EQ(kernels->implementations().count(kMoeOneTokenRecord), 0u);
  }
  EXPECT_EQ(reference->implementations().count(kMoeOneTokenRecord), 0u);
  std::cout << GetParam() << ": moe_prefill " << path << "\n";
  const at::Tensor ids = at::randint(0, c.vocab_size, {2, 40}, at::kLong).to(opt.device);
  kernels->allocate_cache(2, 48);
  reference->allocate_cache(2, 48);
  const at::Tensor a = kernels->prefill_last(ids).to(at::kDouble), r = reference->prefill_last(ids).to(at::kDouble);
  EXPECT_LE(((a - r).norm() / r.norm()).item<double>(), 5e-2) << GetParam();
  // One sequence's decode steps: the one-token dispatch (two launches, DeepSeekMoE's shared
  // experts inside them) against the reference's, teacher-forced on the same tokens.
  kernels->allocate_cache(1, 48);
  reference->allocate_cache(1, 48);
  const at::Tensor one = ids.narrow(0, 0, 1);
  (void)kernels->prefill_last(one.narrow(1, 0, 32));
  (void)reference->prefill_last(one.narrow(1, 0, 32));
  for (int64_t t = 32; t < 40; ++t) {
    const at::Tensor token = one.narrow(1, t, 1).reshape({1}).contiguous();
    const at::Tensor da = kernels->decode(token).to(at::kDouble), dr = reference->decode(token).to(at::kDouble);
    EXPECT_LE(((da - dr).norm() / dr.norm()).item<double>(), 5e-2) << GetParam() << " decode step " << t;
  }
}

INSTANTIATE_TEST_SUITE_P(Tiny, MoeModel, ::testing::ValuesIn(kMoeModels),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& ch : n) {
                             if (ch == '-') ch = '_';
                           }
                           return n;
                         });

}  // namespace
}  // namespace effarch::model
