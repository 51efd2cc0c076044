// The split rules of tensor / expert parallelism (model/sharding), from the config alone: what
// is refused and with which message, that the ranks' shards tile every tensor exactly, that the
// local config matches the shards, and the launch environment's parsing.

#include <cstdlib>
#include <map>
#include <set>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "../test_util.h"
#include "effarch/common/error.h"
#include "effarch/model/catalog.h"
#include "effarch/model/config.h"
#include "effarch/model/sharding.h"
#include "effarch/model/tensor_spec.h"
#include "effarch/parallel/parallel.h"

namespace effarch::model {
namespace {

ModelConfig tiny(const std::string& name) { return load_config(effarch::testing::configs_dir() / "models" / (name + ".json")); }

std::string usage_message(const ModelConfig& c, int tp, int ep) {
  try {
    check_shardable(c, tp, ep);
  } catch (const UsageError& e) {
    return e.what();
  }
  return "";
}

TEST(Sharding, RefusesWhatDoesNotSplitNamingTheField) {
  EXPECT_NE(usage_message(tiny("tiny-llama"), 3, 1).find("num_attention_heads 4 attention heads do not split into 3"),
            std::string::npos);
  EXPECT_NE(usage_message(tiny("tiny-llama"), 4, 1).find("num_key_value_heads 2 is fewer than --tp"), std::string::npos);
  EXPECT_NE(usage_message(tiny("tiny-mamba2"), 4, 1).find("n_groups 2 Mamba-2 groups do not split into 4"),
            std::string::npos);
  EXPECT_NE(usage_message(tiny("tiny-mamba"), 3, 1).find("intermediate_size 128 Mamba channels"), std::string::npos);
  EXPECT_NE(usage_message(tiny("tiny-jamba"), 1, 3).find("num_experts 4 experts do not split into 3"), std::string::npos);
  EXPECT_NE(usage_message(tiny("tiny-mixtral"), 1, 3).find("num_local_experts 8"), std::string::npos);
  EXPECT_NE(usage_message(tiny("tiny-llama"), 1, 2).find("has no MoE layers"), std::string::npos);
  EXPECT_EQ(usage_message(tiny("tiny-mixtral"), 2, 4), "");
  EXPECT_EQ(usage_message(tiny("tiny-mamba2"), 2, 1), "");
}

// For every tiny model and layout: each tensor's shards over the tp ranks of an ep group have the
// local shape, and their elements add up to the whole tensor's (times the ranks that replicate
// it); experts are held by exactly one ep rank; row-parallel biases by tp rank 0 only. Taken from
// a tensor of its own element indices, the split tensors' shards in each ep group hold every index
// exactly once (a rank that ignored its rank, or a segment's offset wrong, repeats some), and a
// replicated or first-rank tensor is whole on each rank holding it.
TEST(Sharding, ShardsTileEveryTensor) {
  for (const char* name : {"tiny-llama", "tiny-phi", "tiny-mamba", "tiny-falcon-mamba", "tiny-mamba2", "tiny-mixtral",
                           "tiny-deepseek-moe", "tiny-jamba"}) {
    const ModelConfig c = tiny(name);
    const bool moe = c.count_layers(FfnKind::MoE) > 0;
    for (const auto& [tp, ep] : std::vector<std::pair<int, int>>{{2, 1}, {1, 2}, {2, 2}}) {
      if (ep > 1 && !moe) continue;
      SCOPED_TRACE(::testing::Message() << name << " tp " << tp << " ep " << ep);
      for (const TensorSpec& spec : expected_tensors(c)) {
        if (spec.optional) continue;
        int64_t held = 0;
        int holders = 0;
        TensorSplit split0;  // as the first rank that holds it has it
        const at::Tensor full = at::arange(spec.numel(), at::kLong).view(spec.shape);
        std::map<int, std::vector<at::Tensor>> parts;  // ep group -> its ranks' shards, flattened
        for (int r = 0; r < tp * ep; ++r) {
          const Shard s{tp, r % tp, ep, r / tp};
          const TensorSplit split = tensor_split(c, spec, s);
          if (!holds(split, s)) continue;
          if (holders++ == 0) split0 = split;
          int64_t n = 1;
          for (int64_t d : local_shape(spec, split, s)) n *= d;
          held += n;
          // The slice taken from a full tensor has the local shape.
          const at::Tensor part = take_shard(full, split, s);
          EXPECT_EQ(part.sizes().vec(), local_shape(spec, split, s)) << spec.role;
          parts[s.ep_rank].push_back(part.flatten());
        }
        ASSERT_GT(holders, 0) << spec.role;
        for (const auto& [group, pieces] : parts) {
          if (split0.kind == TensorSplit::Kind::Split) {
            EXPECT_TRUE(at::equal(std::get<0>(at::cat(pieces).sort()), full.flatten()))
                << spec.role << ": ep group " << group << "'s shards do not hold each element once";
          } else {
            for (const at::Tensor& p : pieces) EXPECT_TRUE(at::equal(p, full.flatten())) << spec.role;
          }
        }
        if (spec.expert >= 0 || spec.role.rfind("moe.shared.", 0) == 0) {
          // One ep group holds it: tp shards of it, or a bias on tp rank 0 only.
          EXPECT_EQ(held, split0.kind == TensorSplit::Kind::Split ? spec.numel() : spec.numel() * holders) << spec.role;
          EXPECT_LE(holders, tp) << spec.role;
        } else if (split0.kind == TensorSplit::Kind::Split) {
          EXPECT_EQ(held, spec.numel() * ep) << spec.role;  // tp shards, in every ep group
        } else if (split0.kind == TensorSplit::Kind::FirstRank) {
          EXPECT_EQ(holders, ep) << spec.role;
        } else {
          EXPECT_EQ(holders, tp * ep) << spec.role;  // replicated
        }
      }
    }
  }
}

TEST(Sharding, LocalConfigDividesWhatTpSplits) {
  const ModelConfig c = tiny("tiny-mamba2");
  const ModelConfig l = local_config(c, Shard{2, 1, 1, 0});
  EXPECT_EQ(l.mamba->num_heads, c.mamba->num_heads / 2);
  EXPECT_EQ(l.mamba->n_groups, c.mamba->n_groups / 2);
  EXPECT_EQ(l.mamba->d_inner, c.mamba->d_inner / 2);
  EXPECT_EQ(l.hidden_size, c.hidden_size);
  const ModelConfig j = local_config(tiny("tiny-jamba"), Shard{2, 0, 2, 1});
  EXPECT_EQ(j.attention->num_heads, 2);
  EXPECT_EQ(j.moe->num_experts, 4);  // ep does not change the router
}

TEST(Sharding, MambaInProjTakesEachSegmentsShare) {
  // Mamba-1 in_proj is [x | z]: rank 1 of 2 holds the second half of x and of z.
  const ModelConfig c = tiny("tiny-mamba");
  const int64_t di = c.mamba->d_inner;
  TensorSpec spec;
  for (const TensorSpec& s : expected_tensors(c)) {
    if (s.layer == 0 && s.role == "mamba.in_proj.weight") spec = s;
  }
  ASSERT_EQ(spec.shape[0], 2 * di);
  const Shard s{2, 1, 1, 0};
  const at::Tensor rows = at::arange(2 * di).unsqueeze(1).expand({2 * di, spec.shape[1]});
  const at::Tensor got = take_shard(rows, tensor_split(c, spec, s), s).select(1, 0);
  const at::Tensor want = at::cat({at::arange(di / 2, di), at::arange(di + di / 2, 2 * di)});
  EXPECT_TRUE(at::equal(got, want));
}

TEST(Sharding, BytesPerRankAddUp) {
  const ModelConfig c = tiny("tiny-mixtral");
  uint64_t whole = 0;
  for (const TensorSpec& s : expected_tensors(c)) {
    if (!s.optional) whole += static_cast<uint64_t>(s.numel()) * 2;
  }
  EXPECT_EQ(shard_bytes(c, Shard{}, 2), whole);
  const uint64_t r0 = shard_bytes(c, Shard{1, 0, 2, 0}, 2), r1 = shard_bytes(c, Shard{1, 0, 2, 1}, 2);
  EXPECT_LT(r0, whole);
  EXPECT_EQ(r0, r1);
  // The two ep ranks hold the experts between them once and everything else each: their sum is the
  // whole plus one more copy of what is not an expert (two ranks handed the same experts also
  // sum to that, which the tiling test above rules out).
  uint64_t experts = 0;
  for (const TensorSpec& s : expected_tensors(c)) {
    if (!s.optional && s.expert >= 0) experts += static_cast<uint64_t>(s.numel()) * 2;
  }
  EXPECT_EQ(r0 + r1, whole + (whole - experts));
}

}  // namespace
}  // namespace effarch::model

namespace effarch::parallel {
namespace {

struct EnvGuard {
  std::vector<std::string> names;
  explicit EnvGuard(std::vector<std::pair<std::string, std::string>> vars) {
    for (const char* n : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_PROCID",
                          "SLURM_NTASKS", "SLURM_LOCALID", "TORCHELASTIC_USE_AGENT_STORE"}) {
      names.emplace_back(n);
      unsetenv(n);
    }
    for (const auto& [k, v] : vars) setenv(k.c_str(), v.c_str(), 1);
  }
  ~EnvGuard() {
    for (const auto& n : names) unsetenv(n.c_str());
  }
};

TEST(LaunchEnv, TorchrunSlurmAndNone) {
  {
    EnvGuard g({});
    const LaunchEnv e = read_launch_env();
    EXPECT_EQ(e.world_size, 1);
    EXPECT_EQ(e.launcher, "none");
  }
  {
    EnvGuard g({{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "1"}, {"MASTER_ADDR", "10.0.0.1"},
                {"MASTER_PORT", "29500"}, {"TORCHELASTIC_USE_AGENT_STORE", "True"}});
    const LaunchEnv e = read_launch_env();
    EXPECT_EQ(e.rank, 1);
    EXPECT_EQ(e.world_size, 2);
    EXPECT_EQ(e.local_rank, 1);
    EXPECT_EQ(e.master_addr, "10.0.0.1");
    EXPECT_EQ(e.master_port, 29500);
    EXPECT_TRUE(e.agent_store);
    EXPECT_EQ(e.launcher, "torchrun");
    // Local rank 1 takes GPU 1; where one GPU is visible (a launcher that gives each task its own)
    // it takes that one.
    EXPECT_EQ(rank_device("cuda", e), at::detail::getCUDAHooks().getNumGPUs() == 1 ? "cuda:0" : "cuda:1");
    EXPECT_EQ(rank_device("cpu", e), "cpu");
  }
  {
    EnvGuard g({{"SLURM_PROCID", "3"}, {"SLURM_NTASKS", "4"}, {"SLURM_LOCALID", "0"}, {"MASTER_ADDR", "node1"},
                {"MASTER_PORT", "29501"}});
    const LaunchEnv e = read_launch_env();
    EXPECT_EQ(e.rank, 3);
    EXPECT_EQ(e.world_size, 4);
    EXPECT_EQ(e.launcher, "slurm");
    EXPECT_FALSE(e.agent_store);
  }
  {
    EnvGuard g({{"RANK", "0"}, {"WORLD_SIZE", "2"}});
    EXPECT_THROW_WITH(read_launch_env(), UsageError, {"WORLD_SIZE=2 but MASTER_ADDR is not set"});
  }
  {
    EnvGuard g({{"RANK", "2"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "a"}, {"MASTER_PORT", "1"}});
    EXPECT_THROW_WITH(read_launch_env(), UsageError, {"RANK=2 is not below WORLD_SIZE=2"});
  }
  {
    // The address and port set, so only the rank's value can be at fault.
    EnvGuard g({{"RANK", "x"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "a"}, {"MASTER_PORT", "1"}});
    EXPECT_THROW_WITH(read_launch_env(), UsageError, {"RANK='x'", "expected an integer"});
  }
}

TEST(LaunchEnv, SlurmWithoutTpOrEpIsOneProcess) {
  EnvGuard g({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}});  // a batch script's variables
  const auto ctx = init(Layout{1, 1}, "cpu", std::chrono::seconds(1));
  EXPECT_FALSE(ctx->grouped());
  EXPECT_EQ(ctx->world_size(), 1);
  EXPECT_THROW(init(Layout{2, 1}, "cpu", std::chrono::seconds(1)), UsageError);  // now a launch: no MASTER_ADDR
}

TEST(LaunchEnv, WorldSizeMustBeTpTimesEp) {
  EnvGuard g({});
  EXPECT_THROW(init(Layout{2, 1}, "cpu", std::chrono::seconds(1)), UsageError);
  const auto ctx = init(Layout{1, 1}, "cpu", std::chrono::seconds(1));
  EXPECT_FALSE(ctx->distributed());
  EXPECT_EQ(ctx->gather(5), std::vector<int64_t>{5});
}

}  // namespace
}  // namespace effarch::parallel
