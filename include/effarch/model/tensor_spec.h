#pragma once
// The tensors an architecture expects in a checkpoint, with HF names and shapes computed from
// the config, and the check of a checkpoint against them.

#include <cstdint>
#include <string>
#include <vector>

#include "effarch/model/config.h"

namespace effarch::io {
class TensorStore;
}

namespace effarch::model {

// How random weights are drawn for a tensor (see random_weights.h).
enum class Init {
  Normal,        // N(0, initializer_range)
  NormalOut,     // N(0, initializer_range / sqrt(2 * layers)): projections back into the residual
  Ones,          // norm weights, Mamba D
  Zeros,         // biases
  ConvWeight,    // U(-1/sqrt(k), 1/sqrt(k))
  DtProjWeight,  // U(-dt_rank^-0.5, dt_rank^-0.5)
  DtBias,        // softplus^-1 of dt ~ logU(1e-3, 1e-1)
  MambaALog,     // log(1..d_state) per channel
  Mamba2ALog,    // log U(1, 16) per head
};

// How random weights draw the constant inits (random_weights.h). Transformers: as transformers
// initialises a fresh model (biases 0, norm weights and Mamba's D 1, Mamba-1's A_log the same row
// in every channel): what `init` writes and benchmarks load. Varied: those drawn too (biases
// N(0, 0.1), norm weights and D 1 + N(0, 0.1), A_log's rows apart by N(0, 0.1)), as the
// transformers fixtures perturb theirs: for tests comparing two paths of one model, where a
// constant bias, norm weight or skip applied to the wrong slice, rank or row changes nothing.
enum class RandomInit { Transformers, Varied };

struct TensorSpec {
  std::string name;   // the HF checkpoint name
  // What the tensor is, independent of the checkpoint's naming: "attn.q.weight", "mlp.down.weight",
  // "moe.expert.3.gate.weight", "mamba.A_log", "mixer_norm.weight", "embed.weight", ... The model
  // looks weights up by (layer, role); HF names stay data in the architecture tables.
  std::string role;
  std::vector<int64_t> shape;
  Init init = Init::Normal;
  int layer = -1;   // -1: not in a layer
  int expert = -1;  // routed expert id, -1 otherwise (shared experts are always active)
  bool optional = false;  // may be absent (lm_head.weight of a tied model)
  // The weight of a linear layer (x W^T): what a weight format (int8, a tensor-parallel shard)
  // applies to. Not the embedding, norms, conv, SSM parameters or MoE routers, which stay as they are.
  bool linear = false;
  std::vector<std::string> aliases;  // older checkpoint names accepted instead of `name`
  int64_t numel() const;
};

// Expected tensors of a model, in a stable order (embeddings, layers in order, final norm, head).
// Optional tensors are included but flagged; counting parameters skips them.
std::vector<TensorSpec> expected_tensors(const ModelConfig& config);

struct CheckpointProblem {
  // WrongDtype: a tensor stored as integers or booleans, which a float weight never is (a
  // quantised format's packed weights: GPTQ, AWQ, ...).
  enum class Kind { Missing, Unexpected, WrongShape, WrongDtype } kind;
  std::string tensor;
  std::string detail;  // e.g. "expected [4096, 4096], found [4096, 1024] in model-00001-of-00004.safetensors"
};

struct CheckpointCheck {
  std::vector<CheckpointProblem> problems;
  std::vector<std::string> ignored;  // known harmless extras (rotary inv_freq buffers)
  // For each expected tensor present: the name it was found under (an alias or itself).
  std::vector<std::pair<std::string, std::string>> resolved;
  bool ok() const { return problems.empty(); }
};

CheckpointCheck check_checkpoint(const ModelConfig& config, const io::TensorStore& store);
// Throws CheckpointError listing every problem (or does nothing when the check passed).
void require_valid(const CheckpointCheck& check, const std::string& where);
// "missing", "unexpected", "wrong_shape", "wrong_dtype" (inspect's JSON).
const char* kind_name(CheckpointProblem::Kind kind);

}  // namespace effarch::model
