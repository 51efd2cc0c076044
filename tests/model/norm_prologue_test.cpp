// The norm in the GEMV's prologue at the model's level (docs/engine.md, "The norm in the GEMV's
// prologue"):
// - --norm-prologue auto|fused|separate (ModelOptions::fuse_norm_prologue): the option's words,
//   and where each request resolves. The fused path needs the CUDA add_norm and dense GEMV kernels
//   and dense weights, so auto falls back to the add_norm kernel wherever one of them is missing,
//   while an explicit "fused" there is a usage error (a benchmark must not record a path that
//   never ran); on the CPU the record every model carries is "separate".
// - The blocks' plumbing of a pending add + norm (ForwardContext::norm_prologue): on the CPU,
//   where every pending input is computed by add_norm before its reader, the blocks of every
//   architecture give the same bits with and without it through prefill and decode steps.
// - With a GPU, the whole models with the prologue fused against --norm-prologue separate: the
//   same logits bit for bit, eager, static and CUDA graphs.

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "../test_util.h"
#include "effarch/common/error.h"
#include "effarch/model/catalog.h"
#include "effarch/model/model.h"
#include "effarch/ops/backend.h"
#include "effarch/ops/rope.h"
#include "../../src/model/blocks/blocks.h"

namespace effarch::model {
namespace {

using Impl = std::map<std::string, std::string>;

// The op families' resolved backends as resolve_implementations names them.
Impl impl_of(ops::Backend add_norm, ops::Backend dense_gemv) {
  return {{std::string(ops::op_name(ops::OpFamily::AddNorm)), std::string(ops::backend_name(add_norm))},
          {std::string(ops::op_name(ops::OpFamily::DenseGemv)), std::string(ops::backend_name(dense_gemv))}};
}

TEST(NormPrologue, OptionValues) {
  EXPECT_EQ(parse_norm_prologue("fused", "--norm-prologue"), std::optional<bool>(true));
  EXPECT_EQ(parse_norm_prologue("separate", "--norm-prologue"), std::optional<bool>(false));
  EXPECT_EQ(parse_norm_prologue("auto", "--norm-prologue"), std::nullopt);
  EXPECT_THROW_WITH(parse_norm_prologue("on", "--norm-prologue"), UsageError,
                    {"--norm-prologue", "'on'", "auto, fused or separate"});
  // A suite names its key, not the command-line option.
  EXPECT_THROW_WITH(parse_norm_prologue("yes", "s.json: 'norm_prologue'"), UsageError,
                    {"s.json: 'norm_prologue'", "'yes'"});
}

TEST(NormPrologue, ResolvesWhereTheKernelsRun) {
  // The family names the record is looked up by (ops::op_name), spelt as results carry them.
  EXPECT_EQ(ops::op_name(ops::OpFamily::AddNorm), "add_norm");
  EXPECT_EQ(ops::op_name(ops::OpFamily::DenseGemv), "dense_gemv");
  const Impl cuda = impl_of(ops::Backend::Cuda, ops::Backend::Cuda);
  const auto dense = ops::WeightFormat::Dense;
  EXPECT_TRUE(resolve_norm_prologue(std::nullopt, cuda, dense, 4096, at::kBFloat16));
  EXPECT_TRUE(resolve_norm_prologue(true, cuda, dense, 4096, at::kBFloat16));
  EXPECT_FALSE(resolve_norm_prologue(false, cuda, dense, 4096, at::kBFloat16));

  // The add_norm reference (or the GEMV's): auto keeps the separate add_norm, "fused" is refused.
  for (const Impl& without : {impl_of(ops::Backend::Reference, ops::Backend::Cuda),
                              impl_of(ops::Backend::Cuda, ops::Backend::Reference),
                              impl_of(ops::Backend::Reference, ops::Backend::Reference)}) {
    EXPECT_FALSE(resolve_norm_prologue(std::nullopt, without, dense, 4096, at::kBFloat16));
    EXPECT_FALSE(resolve_norm_prologue(false, without, dense, 4096, at::kBFloat16));
    EXPECT_THROW_WITH(resolve_norm_prologue(true, without, dense, 4096, at::kBFloat16), UsageError, {"--norm-prologue"});
  }
  // A model without the families at all (nothing resolved): never fused.
  EXPECT_FALSE(resolve_norm_prologue(std::nullopt, Impl{}, dense, 4096, at::kBFloat16));

  // int8 weights: the prologue lives in the dense GEMV only.
  EXPECT_FALSE(resolve_norm_prologue(std::nullopt, cuda, ops::WeightFormat::Int8, 4096, at::kBFloat16));
  EXPECT_FALSE(resolve_norm_prologue(false, cuda, ops::WeightFormat::Int8, 4096, at::kBFloat16));
  EXPECT_THROW_WITH(resolve_norm_prologue(true, cuda, ops::WeightFormat::Int8, 4096, at::kBFloat16), UsageError, {"--norm-prologue"});

  // Rows the prologue cannot take: wider than 4096 (Llama-2-13B's 5120), or not whole 16-byte
  // vectors; 2560 (Phi-2, Mamba-2.8B) and fp32 rows of a multiple of 4 can.
  EXPECT_TRUE(resolve_norm_prologue(std::nullopt, cuda, dense, 2560, at::kBFloat16));
  EXPECT_TRUE(resolve_norm_prologue(std::nullopt, cuda, dense, 68, at::kFloat));
  EXPECT_FALSE(resolve_norm_prologue(std::nullopt, cuda, dense, 68, at::kBFloat16));
  EXPECT_FALSE(resolve_norm_prologue(std::nullopt, cuda, dense, 5120, at::kBFloat16));
  EXPECT_THROW_WITH(resolve_norm_prologue(true, cuda, dense, 5120, at::kBFloat16), UsageError,
                    {"--norm-prologue fused", "4096", "5120"});
}

// On the CPU: auto loads and records "separate"; "fused" is refused at load, before any weight
// is read (the checkpoint folder below does not exist).
TEST(NormPrologue, TheCpuRecordsSeparateAndRefusesFused) {
  const ModelSource tiny =
      resolve_model((effarch::testing::configs_dir() / "models" / "tiny-llama.json").string());
  ModelOptions opt;
  opt.seed = 3;
  EXPECT_EQ(Model::load(tiny, opt)->implementations().at(kNormPrologueRecord), "separate");
  opt.fuse_norm_prologue = false;
  EXPECT_EQ(Model::load(tiny, opt)->implementations().at(kNormPrologueRecord), "separate");
  opt.fuse_norm_prologue = true;
  ModelSource missing = tiny;
  missing.checkpoint_dir = "/nonexistent/checkpoint";  // would fail to open if loading started
  EXPECT_THROW_WITH(Model::load(missing, opt), UsageError, {"--norm-prologue"});
}

// The blocks of a model run as Model::run_blocks runs them, each block's last add fused with the
// next block's mixer norm: the final residual stream after a prefill of 5 tokens and two decode
// steps, with the boundaries of the one-token steps pending or not.
struct StackOutput {
  std::vector<at::Tensor> residuals;  // after each forward (prefill, step, step)
};

StackOutput run_stack(const Model& model, const std::vector<std::unique_ptr<Block>>& blocks, bool norm_prologue) {
  const ModelConfig& c = model.local_config();
  const int64_t batch = 2, max_len = 12;
  std::vector<LayerCache> caches(blocks.size());
  for (size_t i = 0; i < blocks.size(); ++i) blocks[i]->allocate(caches[i], batch, max_len, at::kFloat, at::kCPU);
  ops::RopeTables rope;
  if (c.attention && c.attention->rope) rope = ops::make_rope_tables(*c.attention->rope, max_len, at::kCPU);
  at::manual_seed(11);
  const at::Tensor embed = model.weights().get(-1, "embed.weight");
  StackOutput out;
  int64_t pos = 0;
  for (const int64_t t : {5, 1, 1}) {
    ForwardContext ctx;
    ctx.start_pos = pos;
    ctx.rope = rope.rotary_dim > 0 ? &rope : nullptr;
    ctx.norm_prologue = norm_prologue;
    const at::Tensor x = at::embedding(embed, at::randint(0, c.vocab_size, {batch, t}, at::kLong));
    ResidualStream s{x, ops::NormedInput(blocks[0]->mixer_input(x))};
    for (size_t i = 0; i < blocks.size(); ++i) {
      const Norm* next = i + 1 < blocks.size() ? &blocks[i + 1]->mixer_norm() : nullptr;
      s = blocks[i]->forward_fused(s, next, caches[i], ctx);
      EXPECT_EQ(s.normed.is_pending(), norm_prologue && t == 1 && next != nullptr) << c.source << " block " << i;
    }
    out.residuals.push_back(s.resolved_residual());
    pos += t;
  }
  return out;
}

TEST(NormPrologue, BlocksGiveTheSameBitsWithAPendingAddNorm) {
  for (const char* name : {"tiny-llama", "tiny-phi", "tiny-mamba", "tiny-mamba2", "tiny-jamba", "tiny-deepseek-moe"}) {
    for (const bool fuse_parallel : {true, false}) {
      ModelOptions opt;
      opt.seed = 7;
      opt.random_init = RandomInit::Varied;  // biases, norm weights, D and A_log drawn too
      auto model = Model::load(resolve_model((effarch::testing::configs_dir() / "models" / (std::string(name) + ".json")).string()), opt);
      if (!fuse_parallel && !model->config().parallel_block) continue;
      std::vector<std::unique_ptr<Block>> blocks;
      for (int i = 0; i < model->config().num_layers; ++i) {
        blocks.push_back(std::make_unique<Block>(model->local_config(), model->weights(), i, fuse_parallel));
      }
      const StackOutput off = run_stack(*model, blocks, false), on = run_stack(*model, blocks, true);
      ASSERT_EQ(off.residuals.size(), on.residuals.size());
      for (size_t k = 0; k < off.residuals.size(); ++k) {
        EXPECT_TRUE(at::equal(off.residuals[k], on.residuals[k])) << name << " forward " << k << " parallel products "
                                                                  << fuse_parallel;
      }
    }
  }
}

// With a GPU: the whole models, the prologue fused against the separate add_norm, the same logits
// bit for bit (the prologue computes add_norm's element shape in its order), greedy decode of
// batch 1 and 2, eager, static and CUDA graphs, fp32 and bf16; the record says "fused".
TEST(NormPrologue, ModelsGiveTheSeparateLogitsOnTheGpu) {
  if (!ops::kBuiltWithCuda || !at::hasCUDA()) GTEST_SKIP() << "needs a CUDA build and a GPU";
  const at::Device gpu(at::kCUDA, 0);
  int runs = 0;
  for (const char* name : {"tiny-llama", "tiny-llama3", "tiny-phi", "tiny-mamba", "tiny-mamba2", "tiny-jamba", "tiny-deepseek-moe"}) {
    const ModelSource src = resolve_model((effarch::testing::configs_dir() / "models" / (std::string(name) + ".json")).string());
    for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
      for (const DecodeMode mode : {DecodeMode::Eager, DecodeMode::Static, DecodeMode::CudaGraph}) {
        for (const int64_t batch : {1, 2}) {
          ModelOptions opt;
          opt.seed = 3;
          opt.random_init = RandomInit::Varied;  // biases, norm weights, D and A_log drawn too
          opt.device = gpu;
          opt.dtype = dtype;
          opt.decode = mode;
          opt.fuse_norm_prologue = true;
          auto fused = Model::load(src, opt);
          opt.fuse_norm_prologue = false;
          auto separate = Model::load(src, opt);
          EXPECT_EQ(fused->implementations().at(kNormPrologueRecord), "fused") << name;
          EXPECT_EQ(separate->implementations().at(kNormPrologueRecord), "separate") << name;
          at::manual_seed(4);
          const at::Tensor prompt = at::randint(0, fused->config().vocab_size, {batch, 7}, at::kLong).to(gpu);
          fused->allocate_cache(batch, 32);
          separate->allocate_cache(batch, 32);
          const at::Tensor pf = fused->prefill_last(prompt), ps = separate->prefill_last(prompt);
          ASSERT_TRUE(at::equal(pf, ps)) << name;  // prefill never leaves a norm pending
          at::Tensor next = ps.argmax(-1);
          for (int step = 0; step < 12; ++step) {
            const at::Tensor lf = fused->decode(next), ls = separate->decode(next);
            ASSERT_TRUE(at::equal(lf, ls)) << name << " " << c10::toString(dtype) << " " << to_string(mode) << " batch "
                                           << batch << " step " << step;
            next = ls.argmax(-1);
          }
          ++runs;
        }
      }
    }
  }
  EXPECT_EQ(runs, 7 * 2 * 3 * 2);
}

}  // namespace
}  // namespace effarch::model
