#pragma once
// The split rules of tensor and expert parallelism (docs/parallel.md), in one place: which
// dimension of which tensor role a tp rank holds a share of, which experts an ep rank holds, the
// config a rank's blocks see, and the check that a config can be split at all.

#include <cstdint>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

#include "effarch/model/config.h"
#include "effarch/model/tensor_spec.h"

namespace effarch::model {

// The part of the model one rank holds: tp share tp_rank of every split tensor, the experts of
// ep share ep_rank. Whole (1, 0, 1, 0): everything.
struct Shard {
  int tp = 1;
  int tp_rank = 0;
  int ep = 1;
  int ep_rank = 0;
  bool whole() const { return tp == 1 && ep == 1; }
};

// A UsageError naming the config field and the numbers when `config` cannot be split tp x ep
// ways: heads, kv heads (fewer kv heads than tp are refused, not replicated), intermediate sizes,
// Mamba channels, Mamba-2 heads and groups not divisible by tp; experts not divisible by ep, or
// --ep on a model without MoE layers. Reads only the config: called before any weight loads.
void check_shardable(const ModelConfig& config, int tp, int ep);

// The config as a rank's blocks see it: heads, kv heads, intermediate sizes, d_inner and Mamba-2
// heads and groups divided by tp. Everything else (hidden size, vocab, experts, layers) as is.
ModelConfig local_config(const ModelConfig& config, const Shard& shard);

// How a tensor is held.
struct TensorSplit {
  enum class Kind {
    Replicated,  // every rank holds all of it (embedding, norms, routers, head, Jamba's dt/B/C norms)
    Split,       // `dim` is cut into `segments`, each split in tp equal parts: the rank holds its part of each
    FirstRank,   // only tp rank 0 holds it: the bias of a row-parallel layer, added once before the sum
    NotHeld,     // another ep rank's expert (or shared expert), not on this rank
  } kind = Kind::Replicated;
  int dim = 0;
  std::vector<int64_t> segments;  // lengths along dim, summing to the full size
};

TensorSplit tensor_split(const ModelConfig& config, const TensorSpec& spec, const Shard& shard);
// Whether this rank keeps the tensor at all.
bool holds(const TensorSplit& split, const Shard& shard);
// The rank's shape of a held tensor.
std::vector<int64_t> local_shape(const TensorSpec& spec, const TensorSplit& split, const Shard& shard);
// The rank's part of `full` (narrow for one segment, the parts side by side for several): views
// of `full`, so that reading them (.to, .contiguous) touches only those bytes of a mapped file.
at::Tensor take_shard(const at::Tensor& full, const TensorSplit& split, const Shard& shard);

// The experts [first, first + count) that ep rank `shard.ep_rank` holds of `num_experts`.
std::pair<int64_t, int64_t> expert_range(int64_t num_experts, const Shard& shard);

// Bytes of the tensors a rank holds at `bytes_per_element` (effarch info --tp --ep).
uint64_t shard_bytes(const ModelConfig& config, const Shard& shard, uint64_t bytes_per_element);

}  // namespace effarch::model
