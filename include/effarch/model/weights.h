#pragma once
// A model's weights on its device and dtype, looked up by (layer, role) — see TensorSpec::role —
// loaded from a checkpoint (checked against the config first) or drawn at random.

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

#include "effarch/model/config.h"
#include "effarch/ops/gated_mlp.h"
#include "effarch/model/sharding.h"
#include "effarch/model/tensor_spec.h"
#include "effarch/ops/linear.h"

namespace effarch::io {
class TensorStore;
}

namespace effarch::model {

struct TensorSpec;

class Weights {
 public:
  // Throws CheckpointError listing missing/unexpected/mis-shaped tensors before loading any.
  // With a shard (tensor/expert parallelism), only this rank's part of each tensor is read: the
  // slices of the memory-mapped file are copied out, nothing else is touched (docs/parallel.md).
  // `format` Int8: every linear weight (TensorSpec::linear) is quantised as it loads, one tensor
  // (or shard) at a time (ops::quantize_int8), and stored as int8 with its scales under role +
  // "_scale"; embeddings, norms, routers, biases and the SSM parameters stay in `dtype`.
  static Weights from_checkpoint(const ModelConfig& config, const io::TensorStore& store, at::ScalarType dtype,
                                 at::Device device, const Shard& shard = {},
                                 ops::WeightFormat format = ops::WeightFormat::Dense);
  // With a shard, each held tensor is drawn whole with its own seed and then sliced, so the ranks
  // together hold exactly the single-process model (one tensor at a time at full size; meant for
  // test and benchmark models). Tensors of other ranks' experts are not drawn.
  static Weights random(const ModelConfig& config, uint64_t seed, at::ScalarType dtype, at::Device device,
                        const Shard& shard = {}, ops::WeightFormat format = ops::WeightFormat::Dense,
                        RandomInit init = RandomInit::Transformers);
  const Shard& shard() const { return shard_; }

  // layer -1: model-level tensors (embed, final_norm, lm_head). Throws naming layer and role.
  const at::Tensor& get(int layer, const std::string& role) const;
  const at::Tensor* find(int layer, const std::string& role) const;
  // The linear layer whose roles are prefix + "weight" and, when present, prefix + "bias"
  // (e.g. "attn.q.") and prefix + "weight_scale" (an int8 weight's scales). Throws like get()
  // when the weight is missing. with_bias false: the bias is left out (Mamba's dt_proj, whose bias
  // the scan adds).
  ops::Linear linear(int layer, const std::string& prefix, bool with_bias = true) const;
  // One linear layer whose output is the parts' outputs side by side, [..., sum of out], for
  // products of the same input (a gated MLP's gate and up: one [2I, H] product, then split). The
  // parts' weights (and biases, all or none) are concatenated on the call and the parts re-pointed
  // at row ranges of the fused tensor, so memory is not doubled and linear(part) still works.
  // Parts that already are consecutive rows of one allocation (no biases or scales) are viewed
  // as one tensor instead of copied.
  // Throws CheckpointError when the parts' input features, dtypes or devices differ.
  ops::Linear fused_linear(int layer, const std::vector<std::string>& prefixes) const;
  // Whether fused_linear(layer, prefixes) would succeed: the parts share input features, dtype and
  // device, and are all or none int8, all or none biased. For fusions that are an optimisation
  // (attention's q/k/v), where a checkpoint that does not allow one keeps the parts separate.
  bool can_fuse(int layer, const std::vector<std::string>& prefixes) const;
  // Dense layers with the same outputs fused along their inputs: the weight [O, K1 + K2 + ...]
  // (the parts' columns side by side, in order), so that one product of [x1 | x2 | ...] gives
  // x1 W1^T + x2 W2^T + ...; the bias is the sum of the parts' biases (in fp32, rounded once to
  // the weights' dtype; none when no part has one). Each part's weight role is re-pointed at its
  // column range (a view with the fused row stride), so memory is not doubled and linear(part)
  // still works (through the dense product: the GEMV kernels take contiguous weights only).
  // A parallel block's output product, attention's o and the MLP's fc2 (docs/engine.md).
  // Throws CheckpointError when a part is missing or int8, or the parts' outputs, dtypes or
  // devices differ.
  ops::Linear fused_linear_inputs(int layer, const std::vector<std::string>& prefixes) const;
  // Whether fused_linear_inputs(layer, prefixes) would succeed.
  bool can_fuse_inputs(int layer, const std::vector<std::string>& prefixes) const;
  // A gated MLP's weights, roles prefix + "gate.", "up.", "down.": gate and up fused into
  // gate_up (fused_linear) and re-pointed at its rows. A dense MLP, an MoE expert or a shared expert.
  ops::GatedMlpWeights gated_mlp(int layer, const std::string& prefix) const;
  // Re-points a held role at `view`, a tensor of the same shape, dtype and device holding the same
  // values (a view of a stacked allocation: ops::stack_experts), so the old tensor goes with its
  // last owner and the bytes are held once. Throws CheckpointError for an absent role or a mismatch.
  void repoint(int layer, const std::string& role, const at::Tensor& view) const;
  // Bytes held on the device: every tensor, or those `keep` selects by (layer, role).
  uint64_t bytes() const;
  uint64_t bytes_where(const std::function<bool(int layer, const std::string& role)>& keep) const;

 private:
  // Why the parts cannot be fused (fused_linear's CheckpointError message), or nullopt.
  std::optional<std::string> fuse_refusal(int layer, const std::vector<std::string>& prefixes) const;
  std::optional<std::string> fuse_inputs_refusal(int layer, const std::vector<std::string>& prefixes) const;
  // What both refusals check: each part present and 2-D, dimension `shared` (1: the input features,
  // fused along the outputs; 0: the output features, fused along the inputs), dtype and device the same.
  std::optional<std::string> parts_refusal(int layer, const std::vector<std::string>& prefixes, int shared) const;
  void put(const ModelConfig& config, int layer, const std::string& role, at::Tensor t);
  // put(), quantised first when `format` is Int8 and spec is a linear weight.
  void put_in_format(const ModelConfig& config, const TensorSpec& spec, at::Tensor t, ops::WeightFormat format);
  // mutable: fused_linear() and repoint() re-point roles at views of a fused tensor (same values).
  mutable std::map<std::pair<int, std::string>, at::Tensor> by_role_;
  Shard shard_;
};

}  // namespace effarch::model
