#pragma once
// The pieces a model is stacked from: a mixer (attention here; Mamba in its own file) and a
// feed-forward (dense MLP; MoE in its own file), wrapped by a Block that applies the norms and
// residuals the config asks for. Internal to the library.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "effarch/model/cache.h"
#include "effarch/model/config.h"
#include "effarch/model/routing.h"
#include "effarch/model/weights.h"
#include "effarch/ops/activation.h"
#include "effarch/ops/add_norm.h"
#include "effarch/ops/attention.h"
#include "effarch/ops/backend.h"
#include "effarch/ops/linear.h"
#include "effarch/ops/normed_input.h"
#include "effarch/ops/rope.h"
#include "effarch/ops/selective_scan.h"
#include "effarch/parallel/parallel.h"

namespace effarch::model {

// What every layer needs to know about the current forward call.
struct ForwardContext {
  int64_t start_pos = 0;               // position of the first new token
  const ops::RopeTables* rope = nullptr;
  ops::AttentionImpl attention = ops::AttentionImpl::Sdpa;
  ops::Backend backend = ops::Backend::Auto;  // passed to every op that has a kernel/reference switch
  const RoutingObserver* routing = nullptr;  // MoE layers report their expert choices here when set
  // Static decode (DecodeMode::Static / CudaGraph): one token per sequence whose position is this
  // [1] int64 device tensor; attention writes K/V there and ops::decode_attention reads the cache
  // up to it. Null: positions from start_pos.
  const at::Tensor* position = nullptr;
  // Tensor/expert parallelism (docs/parallel.md): the groups the row-parallel layers sum their
  // partial outputs over. Null: one process, nothing to sum.
  parallel::Communicator* tp = nullptr;   // attention out, dense MLP down, Mamba x_proj / out_proj
  parallel::Communicator* moe = nullptr;  // an MoE layer's combined output (every rank)
  // A one-token step's block boundaries leave their add + norm pending (ops::NormedInput) for the
  // dense GEMV after them (ModelOptions::fuse_norm_prologue, resolved: "add_norm_in_gemv").
  bool norm_prologue = false;
  // The CUDA selective scan's prefill variant the Mamba-1 mixers run (ModelOptions::selective_scan);
  // nullopt: their SelectiveScanArgs' defaults.
  std::optional<ops::SelectiveScanVariant> selective_scan = std::nullopt;
};

// The sum over `group` of each rank's partial output of a row-parallel layer; `t` itself without one.
inline at::Tensor all_reduce(at::Tensor t, parallel::Communicator* group) {
  if (group == nullptr) return t;
  if (!t.is_contiguous()) t = t.contiguous();
  group->all_reduce(t);
  return t;
}

// A weight the layer may or may not have (biases): nullopt when the table has no such tensor.
inline std::optional<at::Tensor> optional_weight(const Weights& w, int layer, const std::string& role) {
  const at::Tensor* t = w.find(layer, role);
  return t == nullptr ? std::nullopt : std::optional<at::Tensor>(*t);
}

class Mixer {
 public:
  virtual ~Mixer() = default;
  // x: [B, T, hidden] normed input -> [B, T, hidden]; reads and writes this layer's cache. A
  // pending x (a decode step's block boundary: ops::NormedInput) goes to the mixer's first
  // product where it takes one (its GEMV's norm prologue), else x.tensor().
  virtual at::Tensor forward(const ops::NormedInput& x, LayerCache& cache, const ForwardContext& ctx) const = 0;
  // Attention only (a parallel block's one-token step, Block::forward_fused): the attention of q, k
  // and v already projected, `qkv` [B, 1, Hq*D + 2 Hkv*D] (a column range of the block's fused
  // product), written into `out` [B, 1, Hq*D] (another column range of it) before the output
  // projection; the cache written as forward() writes it. Other mixers throw.
  virtual void attend_step(const at::Tensor& qkv, LayerCache& cache, const ForwardContext& ctx,
                           const at::Tensor& out) const;
  virtual void allocate(LayerCache& cache, int64_t batch, int64_t max_len, at::ScalarType dtype,
                        at::Device device) const = 0;
};

class FeedForward {
 public:
  virtual ~FeedForward() = default;
  // x: [B, T, hidden] normed input -> [B, T, hidden] (a pending x as for Mixer::forward).
  virtual at::Tensor forward(const ops::NormedInput& x, const ForwardContext& ctx) const = 0;
};

std::unique_ptr<Mixer> make_attention(const ModelConfig& config, const Weights& weights, int layer);
std::unique_ptr<Mixer> make_mamba1(const ModelConfig& config, const Weights& weights, int layer);  // mamba.cpp
std::unique_ptr<Mixer> make_mamba2(const ModelConfig& config, const Weights& weights, int layer);  // mamba2.cpp
std::unique_ptr<FeedForward> make_dense_mlp(const ModelConfig& config, const Weights& weights, int layer);
std::unique_ptr<FeedForward> make_moe(const ModelConfig& config, const Weights& weights, int layer);  // moe.cpp

// A norm layer of the model's kind (RMSNorm or LayerNorm), its weights resolved once.
class Norm {
 public:
  Norm() = default;
  Norm(const ModelConfig& config, const Weights& weights, int layer, const std::string& role_prefix);
  at::Tensor operator()(const at::Tensor& x) const;
  // The residual add before this norm fused with it (ops::add_norm): residual = x + y, or
  // (y + *z) + x; normed = this norm of the residual in the weights' dtype.
  ops::AddNormResult add(const at::Tensor& x, const at::Tensor& y, const at::Tensor* z, ops::Backend backend) const;
  // The same add + norm left pending for the product that reads it (ops::NormedInput::pending).
  ops::NormedInput pending(const at::Tensor& x, const at::Tensor& y, const at::Tensor* z, ops::Backend backend) const;

 private:
  ops::NormParams params_;  // the weights, eps and kind, as ops::add_norm takes them
};

// The op families with a Backend switch that a layer of this kind calls (block.cpp, beside the
// switch that builds the layer): known from the config, so a backend is checked before weights load.
std::vector<ops::OpFamily> op_families(const ModelConfig& config, const LayerSpec& layer);

// The residual stream between blocks: the residual and, where the block before fused it into its
// last add, the norm the next consumer reads (the next block's mixer norm, or the final norm).
// A pending `normed` (a one-token step with ForwardContext::norm_prologue) holds the add + norm
// still to compute, and the residual is normed.residual() (undefined here).
struct ResidualStream {
  at::Tensor residual;
  ops::NormedInput normed;  // undefined where no norm was fused
  at::Tensor resolved_residual() const { return residual.defined() ? residual : normed.residual(); }
};

// A parallel block's one-token step in two products (Phi: docs/engine.md, "The parallel block's
// two products"): `in`, the q, k, v and fc1 rows in one weight, gives [q | k | v | act(fc1)]; the
// attention writes its output after them; `out`, fc2's and o's columns side by side, takes
// [act(fc1) | attention] to the block's whole output, both biases in one.
struct ParallelProducts {
  ops::Linear in, out;
  int64_t inter = 0;  // fc1's outputs: `in` has qkv() more, `out` takes attn() more inputs
  ops::Activation act = ops::Activation::GeluNew;
  int64_t qkv() const { return in.out_features() - inter; }    // q, k and v outputs of `in`
  int64_t attn() const { return out.in_features() - inter; }  // the attention's output features (Hq * D)
};

class Block {
 public:
  // fuse_parallel: a parallel block whose layers allow it runs its one-token steps in two products
  // (ParallelProducts; ModelOptions::parallel_block), its weights laid out for them at load.
  Block(const ModelConfig& config, const Weights& weights, int layer, bool fuse_parallel = true);
  // Whether this block runs its one-token steps in two products.
  bool fused_parallel() const { return products_.has_value(); }
  // The normed input of this block's mixer for a residual that arrives without one (the first block).
  at::Tensor mixer_input(const at::Tensor& x) const;
  // The block with every residual add fused with the norm after it (ops::add_norm, OpFamily::AddNorm):
  // the FFN norm inside the block, and `next` (the next block's mixer norm or the final norm; null:
  // none) after the block's last add. `in`: the residual and mixer_input(residual), or the
  // previous block's output stream.
  ResidualStream forward_fused(const ResidualStream& in, const Norm* next, LayerCache& cache,
                               const ForwardContext& ctx) const;
  const Norm& mixer_norm() const { return mixer_norm_; }
  void allocate(LayerCache& cache, int64_t batch, int64_t max_len, at::ScalarType dtype, at::Device device) const;

 private:
  bool parallel_;
  bool residual_in_fp32_;
  at::ScalarType dtype_;  // the model's dtype (its norm weights')
  Norm mixer_norm_, ffn_norm_;
  std::unique_ptr<Mixer> mixer_;
  std::unique_ptr<FeedForward> ffn_;  // null for Mamba-only blocks
  std::optional<ParallelProducts> products_;
  // A parallel block's one-token step in its two products (products_ set, T = 1).
  ResidualStream forward_step(const ResidualStream& in, const Norm* next, LayerCache& cache,
                              const ForwardContext& ctx) const;
};

}  // namespace effarch::model
