// A parallel block's one-token step in two products (Phi: Block::forward_step, docs/engine.md
// "The parallel block's two products"): the weights laid out once for them (no second copy), the
// fused input and output products against their parts, and the whole model's decode with the
// fused step against the same model loaded with --parallel-block separate: the same greedy tokens
// and logits within fp32 summation order, eager, static and (with a GPU) CUDA graphs; the record
// results carry.

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <set>

#include "../test_util.h"
#include "effarch/common/error.h"
#include "effarch/model/catalog.h"
#include "effarch/model/model.h"
#include "effarch/ops/activation.h"
#include "effarch/ops/linear.h"
#include "../../src/model/blocks/blocks.h"

namespace effarch::model {
namespace {

std::unique_ptr<Model> make(bool fused, DecodeMode decode = DecodeMode::Eager, at::Device device = at::kCPU,
                            ops::WeightFormat weights = ops::WeightFormat::Dense,
                            at::ScalarType dtype = at::kFloat) {
  ModelOptions opt;
  opt.seed = 3;
  opt.random_init = RandomInit::Varied;  // biases, norm weights, D and A_log drawn too
  opt.decode = decode;
  opt.device = device;
  opt.dtype = dtype;
  opt.weights = weights;
  opt.fuse_parallel_block = fused;
  return Model::load(resolve_model((effarch::testing::configs_dir() / "models" / "tiny-phi.json").string()), opt);
}

double rel_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<double>() / b.abs().max().item<double>();
}

// The bytes of the distinct allocations behind every weight: what the device actually holds.
uint64_t storage_bytes(const Weights& w, int layers) {
  std::set<const void*> seen;
  uint64_t n = 0;
  for (int layer = 0; layer < layers; ++layer) {
    for (const char* role : {"attn.q.weight", "attn.k.weight", "attn.v.weight", "attn.o.weight", "mlp.fc1.weight",
                             "mlp.fc2.weight", "attn.q.bias", "attn.k.bias", "attn.v.bias", "attn.o.bias",
                             "mlp.fc1.bias", "mlp.fc2.bias"}) {
      const at::Tensor& t = w.get(layer, role);
      if (seen.insert(t.storage().data()).second) n += t.storage().nbytes();
    }
  }
  return n;
}

TEST(ParallelBlock, WeightsAreLaidOutOnceForTheTwoProducts) {
  auto fused = make(true);
  auto separate = make(false);
  const ModelConfig& c = fused->config();
  ASSERT_TRUE(c.parallel_block);
  EXPECT_EQ(fused->implementations().at(kParallelBlockRecord), "fused");
  EXPECT_EQ(separate->implementations().at(kParallelBlockRecord), "separate");
  // The same bytes held, counted by role and by allocation: nothing is copied twice.
  EXPECT_EQ(fused->weights().bytes(), separate->weights().bytes());
  EXPECT_EQ(storage_bytes(fused->weights(), c.num_layers), storage_bytes(separate->weights(), c.num_layers));
  const Weights& w = fused->weights();
  for (int layer = 0; layer < c.num_layers; ++layer) {
    const at::Tensor& q = w.get(layer, "attn.q.weight");
    const at::Tensor& fc1 = w.get(layer, "mlp.fc1.weight");
    const at::Tensor& o = w.get(layer, "attn.o.weight");
    const at::Tensor& fc2 = w.get(layer, "mlp.fc2.weight");
    // q, k, v and fc1: consecutive rows of one allocation; fc2 then o: columns of another.
    EXPECT_TRUE(q.is_alias_of(fc1) && q.is_alias_of(w.get(layer, "attn.v.weight"))) << layer;
    EXPECT_TRUE(o.is_alias_of(fc2)) << layer;
    EXPECT_FALSE(o.is_contiguous());
    EXPECT_EQ(o.stride(0), fc2.size(1) + o.size(1));
    EXPECT_EQ(static_cast<const char*>(o.const_data_ptr()) - static_cast<const char*>(fc2.const_data_ptr()),
              static_cast<std::ptrdiff_t>(fc2.size(1) * fc2.element_size()));
    // The same values as the separately loaded model's (the same seed).
    const Weights& s = separate->weights();
    for (const char* role : {"attn.q.weight", "attn.v.bias", "attn.o.weight", "mlp.fc1.weight", "mlp.fc2.weight",
                             "mlp.fc2.bias"}) {
      EXPECT_TRUE(at::equal(w.get(layer, role), s.get(layer, role))) << layer << " " << role;
    }
    EXPECT_TRUE(separate->weights().get(layer, "attn.o.weight").is_contiguous());
  }
  // int8 weights keep a scale per output of each part: the products stay separate, and say so.
  EXPECT_EQ(make(true, DecodeMode::Eager, at::kCPU, ops::WeightFormat::Int8)->implementations().at(kParallelBlockRecord),
            "separate");
}

// Weights::fused_linear_inputs: the parts' columns side by side, the biases summed; one product
// over [x1 | x2] is the sum of the parts' products; refusals name the part.
TEST(ParallelBlock, ProductsAlongTheInputsSumTheParts) {
  auto model = make(false);
  const Weights& w = model->weights();
  const ModelConfig& c = model->config();
  const ops::Linear fc2 = w.linear(0, "mlp.fc2."), o = w.linear(0, "attn.o.");
  ASSERT_TRUE(w.can_fuse_inputs(0, {"mlp.fc2.", "attn.o."}));
  const ops::Linear both = w.fused_linear_inputs(0, {"mlp.fc2.", "attn.o."});
  EXPECT_EQ(both.out_features(), c.hidden_size);
  EXPECT_EQ(both.in_features(), fc2.in_features() + o.in_features());
  const at::Tensor h = at::randn({3, fc2.in_features()}), a = at::randn({3, o.in_features()});
  const at::Tensor got = ops::linear(at::cat({h, a}, 1), both);
  EXPECT_LE(rel_diff(got, ops::linear(h, fc2) + ops::linear(a, o)), 1e-6);
  // The roles now view the fused columns: the same products as before.
  EXPECT_TRUE(w.get(0, "attn.o.weight").is_alias_of(both.weight));
  EXPECT_LE(rel_diff(ops::linear(a, w.linear(0, "attn.o.")), ops::linear(a, o)), 1e-6);  // another BLAS path
  ASSERT_NE(c.mlp->intermediate, c.hidden_size);
  EXPECT_FALSE(w.can_fuse_inputs(0, {"mlp.fc2.", "mlp.fc1."}));  // [H, I] beside [I, H]: other outputs
  EXPECT_THROW_WITH(w.fused_linear_inputs(0, {"mlp.fc2.", "mlp.fc1."}), CheckpointError,
                    {"layer 0", "mlp.fc1.weight", "output features"});
  EXPECT_THROW_WITH(w.fused_linear_inputs(0, {"mlp.fc2.", "attn.missing."}), CheckpointError,
                    {"layer 0", "attn.missing.weight"});
  auto int8 = make(false, DecodeMode::Eager, at::kCPU, ops::WeightFormat::Int8);
  EXPECT_THROW_WITH(int8->weights().fused_linear_inputs(0, {"mlp.fc2.", "attn.o."}), CheckpointError,
                    {"layer 0", "int8"});
}

// The whole model: greedy decode with the fused step against the separately loaded model, batch
// 2, eager and static decode; fp32 logits within summation order (the output product adds o's and
// fc2's terms in one sum), the same tokens.
void expect_same_decode(DecodeMode mode, at::Device device, double tol) {
  auto fused = make(true, mode, device);
  auto separate = make(false, mode, device);
  const int64_t vocab = fused->config().vocab_size;
  at::manual_seed(4);
  const at::Tensor prompt = at::randint(0, vocab, {2, 7}, at::kLong).to(device);
  fused->allocate_cache(2, 40);
  separate->allocate_cache(2, 40);
  const at::Tensor pf = fused->prefill_last(prompt), ps = separate->prefill_last(prompt);
  // Prefill runs the same four products in both, o and fc2 on column views of the fused weights
  // in one: the same bits on the CPU; cuBLAS may pick another algorithm for the wider row stride.
  if (device.is_cpu()) {
    EXPECT_TRUE(at::equal(pf, ps));
  } else {
    EXPECT_LE(rel_diff(pf, ps), tol);
  }
  at::Tensor next = ps.argmax(-1);
  for (int step = 0; step < 24; ++step) {
    const at::Tensor lf = fused->decode(next), ls = separate->decode(next);
    EXPECT_LE(rel_diff(lf, ls), tol) << to_string(mode) << " step " << step;
    const at::Tensor tf = lf.argmax(-1), ts = ls.argmax(-1);
    ASSERT_TRUE(at::equal(tf, ts)) << to_string(mode) << " step " << step;
    next = ts;
  }
}

TEST(ParallelBlock, FusedStepsGiveTheSeparateProductsTokens) {
  expect_same_decode(DecodeMode::Eager, at::kCPU, 1e-5);
  expect_same_decode(DecodeMode::Static, at::kCPU, 1e-5);
}

TEST(ParallelBlock, FusedStepsOnTheGpu) {
  if (!ops::kBuiltWithCuda || !at::hasCUDA()) GTEST_SKIP() << "needs a CUDA build and a GPU";
  const at::Device gpu(at::kCUDA, 0);
  for (const DecodeMode mode : {DecodeMode::Eager, DecodeMode::Static, DecodeMode::CudaGraph}) {
    expect_same_decode(mode, gpu, 1e-4);
  }
  // bf16 on the kernels: the fused step ran (its record) and its logits stay within bf16's rounding
  // of the separate products' (both against each other; hf_parity bounds both against transformers).
  auto fused = make(true, DecodeMode::CudaGraph, gpu, ops::WeightFormat::Dense, at::kBFloat16);
  auto separate = make(false, DecodeMode::CudaGraph, gpu, ops::WeightFormat::Dense, at::kBFloat16);
  EXPECT_EQ(fused->implementations().at(kParallelBlockRecord), "fused");
  const at::Tensor prompt = at::randint(0, fused->config().vocab_size, {1, 9}, at::kLong).to(gpu);
  fused->allocate_cache(1, 24);
  separate->allocate_cache(1, 24);
  at::Tensor next = separate->prefill_last(prompt).argmax(-1);
  fused->prefill_last(prompt);
  for (int step = 0; step < 8; ++step) {
    const at::Tensor lf = fused->decode(next), ls = separate->decode(next);
    EXPECT_LE(rel_diff(lf, ls), 0.05) << "bf16 step " << step;
    next = ls.argmax(-1);
  }
}

// auto: fused on a GPU, separate on the CPU (where the fused output product measured slower).
TEST(ParallelBlock, OptionValuesAndAuto) {
  EXPECT_EQ(parse_parallel_block("fused", "--parallel-block"), std::optional<bool>(true));
  EXPECT_EQ(parse_parallel_block("separate", "--parallel-block"), std::optional<bool>(false));
  EXPECT_EQ(parse_parallel_block("auto", "--parallel-block"), std::nullopt);
  EXPECT_THROW_WITH(parse_parallel_block("on", "--parallel-block"), UsageError,
                    {"--parallel-block", "'on'", "auto, fused or separate"});
  EXPECT_FALSE(resolve_parallel_block(std::nullopt, at::kCPU));
  EXPECT_TRUE(resolve_parallel_block(std::nullopt, at::Device(at::kCUDA, 0)));
  EXPECT_TRUE(resolve_parallel_block(true, at::kCPU));
  EXPECT_FALSE(resolve_parallel_block(false, at::Device(at::kCUDA, 0)));
  ModelOptions opt;
  opt.seed = 3;
  auto cpu = Model::load(resolve_model((effarch::testing::configs_dir() / "models" / "tiny-phi.json").string()), opt);
  EXPECT_EQ(cpu->implementations().at(kParallelBlockRecord), "separate");
}

}  // namespace
}  // namespace effarch::model
