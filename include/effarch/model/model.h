#pragma once
// A causal LM built from its config: embeddings, a stack of blocks whose mixer and feed-forward
// come from the config, a final norm and the head. Prefill and single-token decode are separate
// entry points over a cache allocated once.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <memory>
#include <vector>

#include <ATen/core/Tensor.h>

#include "effarch/model/cache.h"
#include "effarch/model/catalog.h"
#include "effarch/model/config.h"
#include "effarch/model/routing.h"
#include "effarch/model/weights.h"
#include "effarch/ops/attention.h"
#include "effarch/ops/backend.h"
#include "effarch/ops/linear.h"
#include "effarch/ops/normed_input.h"
#include "effarch/ops/rope.h"
#include "effarch/ops/selective_scan.h"
#include "effarch/parallel/parallel.h"

namespace effarch::model {

// How decode steps run. Eager: one step's ops as they come (attention over the cache prefix).
// Static: every step has the same shapes (the position is a device tensor, attention reads the
// whole cache under a position mask, K/V written at that position), so one CUDA graph can replay
// any step. CudaGraph: Static, captured into a CUDA graph after the first step and replayed
// (CUDA builds, CUDA device; MoE layers only on the CUDA dispatch kernels, which decode without a
// host sync: see moe_decode_not_capturable).
enum class DecodeMode { Eager, Static, CudaGraph };
// The value of a --cuda-graphs option: "on" (CudaGraph), "off" (Eager) or "static" (Static, the
// capturable step without the capture, on any device). Throws UsageError naming `option`.
DecodeMode parse_cuda_graphs(const std::string& value, const std::string& option);
const char* to_string(DecodeMode mode);  // "off", "static", "on"
// The value of a --cuda-graphs option that may also be "auto": nullopt for auto, else as
// parse_cuda_graphs.
std::optional<DecodeMode> parse_cuda_graphs_request(const std::string& value, const std::string& option);
// The value of a --parallel-block option: "auto" (nullopt), "fused" (true) or "separate" (false),
// ModelOptions::fuse_parallel_block. Throws UsageError naming `option`.
std::optional<bool> parse_parallel_block(const std::string& value, const std::string& option);
// Whether a model on `device` runs its parallel blocks' one-token steps in two products for a
// request: as asked, or for auto on a CUDA device only. On the CPU there are no launches to save
// and the fused output product (fc2's and o's columns side by side, K = I + Hq*D) is slower than
// the two it replaces: one thread of the development machine's EPYC, bf16, Phi-2's shapes
// (2026-11-27), 5.3 ms against 0.6 + 4.2 ms, the whole decode step 326 ms against 303-324.
bool resolve_parallel_block(const std::optional<bool>& request, const at::Device& device);
// The value of a --norm-prologue option: "auto" (nullopt), "fused" (true) or "separate" (false),
// ModelOptions::fuse_norm_prologue. Throws UsageError naming `option`.
std::optional<bool> parse_norm_prologue(const std::string& value, const std::string& option);
// Whether a decode step leaves a block boundary's add + norm to the dense GEMV that reads its
// output (its prologue: kernels/gemv/gemv_norm.h), for a request: auto where it can run, which
// is where the add_norm and dense GEMV families both run their CUDA kernels, the weights are
// dense (so never on the CPU) and the model's rows fit the prologue (ops::norm_prologue_fits:
// hidden sizes up to 4096); "fused" where it cannot is a UsageError naming --norm-prologue.
// `impl`: the op families' resolved backends (resolve_implementations). Like the GEMV itself,
// it runs in steps of 1-2 sequences; a larger batch computes each add + norm first.
bool resolve_norm_prologue(const std::optional<bool>& request, const std::map<std::string, std::string>& impl,
                           ops::WeightFormat weights, int64_t hidden, at::ScalarType dtype);
// The value of a --selective-scan option: "auto" (nullopt: the CUDA prefill's default variant) or
// a variant's name (ops::selective_scan_variant_names: lanes16, lanes8, pieces, seg4, seg8,
// split), ModelOptions::selective_scan. Throws UsageError naming `option` and the names.
std::optional<std::string> parse_selective_scan(const std::string& value, const std::string& option);
// The decode mode a model runs for a request (nullopt: auto). Auto replays decode as a CUDA graph
// wherever the model supports it (a CUDA build, a CUDA device, MoE layers only where
// moe_decode_not_capturable says nothing for `backend` and `weights`: the conditions
// Model::load checks for "on"), else eager; an explicit mode is returned as it is (load refuses an
// unsupported "on"). Reads only the config and the device's type: no GPU is touched, so a test
// can pass a CUDA device and `built_with_cuda` on any machine.
DecodeMode resolve_decode_mode(const ModelConfig& config, const at::Device& device, std::optional<DecodeMode> requested,
                               bool built_with_cuda = ops::kBuiltWithCuda, ops::Backend backend = ops::Backend::Auto,
                               ops::WeightFormat weights = ops::WeightFormat::Dense);
// Why a decode step of a model with MoE layers cannot be captured in a CUDA graph (nullopt: it
// can, or the model has none): only the CUDA dispatch kernels (kernels/moe) decode MoE without a
// host sync (dense or int8 experts), so the reference backend, non-SiLU experts, more than 256
// experts or top-k above 16 cannot. `weights` is kept for the formats to come.
// Records Model::implementations() holds beside the op families (whose values are backend names):
// which variant of a CUDA path a model runs, with the values each may take. "moe_prefill":
// "grouped" or "per_expert" (ops::moe_prefill_path); "ssd_scan_products": "tensor_cores" or "fma"
// (ops::ssd_scan_products_name); "selective_scan_variant": "lanes16", "lanes8", "pieces", "seg4", "seg8" or "split"
// (ops::selective_scan_variant_name); "selective_state_update_dt_proj": "fused" (Mamba-1's decode
// step computes dt_proj inside the CUDA update: ops::selective_state_update_dt_proj) or
// "separate"; "causal_conv1d_update_in_proj": "fused" (a Mamba decode step's conv update runs in
// its in_proj's dense GEMV, wherever that GEMV runs: ops::linear_conv_update) or "separate" (int8
// weights, or the GEMV's op family not on its kernel); "activation_in_fc1": "fused" (a non-gated
// MLP's decode-step fc1 applies its activation in the dense GEMV: ops::linear_activation) or
// "separate"; "activation_in_gate_up": the same for a gated MLP's gate/up product (its dense
// layers and DeepSeekMoE's shared experts: ops::linear_gated_activation); "parallel_block_products":
// "fused" (a parallel block's one-token steps run two products, ModelOptions::fuse_parallel_block,
// on every backend) or "separate" (asked for, int8 weights, or parts whose biases differ);
// "add_norm_in_gemv": "fused" (a decode step's block-boundary add + norm runs in the prologue of
// the dense GEMV that reads it, ModelOptions::fuse_norm_prologue) or "separate"; "moe_one_token":
// "two_kernels" (a one-token step's CUDA MoE dispatch runs two launches, no permute, DeepSeekMoE's
// shared experts inside them: ExpertTable::fused_token) or "two_kernels_shared_apart" (int8
// weights: the shared experts run after it). Bench keys are checked against it.
inline constexpr const char* kMoePrefillRecord = "moe_prefill";
inline constexpr const char* kMoeOneTokenRecord = "moe_one_token";
inline constexpr const char* kSsdScanProductsRecord = "ssd_scan_products";
inline constexpr const char* kSelectiveScanVariantRecord = "selective_scan_variant";
inline constexpr const char* kDtProjRecord = "selective_state_update_dt_proj";
inline constexpr const char* kConvInProjRecord = "causal_conv1d_update_in_proj";
inline constexpr const char* kFc1ActivationRecord = "activation_in_fc1";
inline constexpr const char* kGateUpActivationRecord = "activation_in_gate_up";
inline constexpr const char* kParallelBlockRecord = "parallel_block_products";
inline constexpr const char* kNormPrologueRecord = "add_norm_in_gemv";
const std::map<std::string, std::vector<std::string>>& implementation_variants();

std::optional<std::string> moe_decode_not_capturable(const ModelConfig& config, ops::Backend backend,
                                                     ops::WeightFormat weights,
                                                     bool built_with_cuda = ops::kBuiltWithCuda);

struct ModelOptions {
  at::ScalarType dtype = at::kFloat;
  at::Device device = at::kCPU;
  ops::AttentionImpl attention = ops::AttentionImpl::Sdpa;
  // Which implementation the ops with a kernel/reference switch run (--backend). Cuda fails, when
  // the model is built, for an op the model uses that has no CUDA kernel.
  ops::Backend backend = ops::Backend::Auto;
  // The linear layers' weights: the dtype's (Dense) or int8 quantised at load (--weights int8).
  ops::WeightFormat weights = ops::WeightFormat::Dense;
  // A parallel block's one-token steps in two products (Phi; docs/engine.md, "The parallel block's
  // two products"), its weights laid out for them at load: --parallel-block fused (true),
  // separate (false: four products, as prefill runs them) or auto (nullopt: fused on a CUDA
  // device, resolve_parallel_block). Recorded as "parallel_block_products".
  std::optional<bool> fuse_parallel_block;
  // A decode step's block-boundary residual add + norm computed in the prologue of the dense GEMV
  // that reads the normed row (docs/engine.md, "The norm in the GEMV's prologue"): --norm-prologue
  // fused (true), separate (false: the add_norm kernel, then the GEMV) or auto (nullopt: fused
  // where it can run, resolve_norm_prologue). Recorded as "add_norm_in_gemv".
  std::optional<bool> fuse_norm_prologue;
  // The CUDA selective scan's prefill variant the Mamba-1 mixers run (docs/mamba.md): --selective-
  // scan auto (nullopt: the default, lanes16) or a name (parse_selective_scan), so variants are
  // compared in whole models, side by side. A name is a UsageError, naming --selective-scan, for a
  // model without Mamba-1 layers, off a CUDA device, or for pieces past d_state 16. Recorded as
  // "selective_scan_variant" where the scan runs its CUDA kernel (a --backend reference point
  // records "selective_scan": "reference" and runs the reference).
  std::optional<std::string> selective_scan;
  uint64_t seed = 0;  // for random weights
  RandomInit random_init = RandomInit::Transformers;  // random weights' constant tensors (tensor_spec.h)
  DecodeMode decode = DecodeMode::Eager;
  // Let attention models run past max_position_embeddings (benchmarks measure speed and memory
  // there; RoPE tables are simply computed further). Off: such a cache is a UsageError.
  bool allow_beyond_context = false;
  // Tensor / expert parallelism (docs/parallel.md): this process's rank and groups. Null or a
  // Context of world size 1: the whole model in this process.
  std::shared_ptr<const parallel::Context> parallel;
};

struct DecodeGraph;  // the captured step (CUDA builds)

class Block;
class Norm;
struct ForwardContext;

class Model {
 public:
  // A checkpoint folder's weights, or random weights for a bare config.
  static std::unique_ptr<Model> load(const ModelSource& source, const ModelOptions& options);
  Model(ModelConfig config, Weights weights, ModelOptions options);
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const ModelConfig& config() const { return config_; }
  // The config this rank's layers run: config() with heads, intermediate sizes and Mamba channels
  // divided by --tp (config() itself at tp 1).
  const ModelConfig& local_config() const { return local_config_; }
  const ModelOptions& options() const { return options_; }
  const Weights& weights() const { return weights_; }
  const Cache& cache() const { return cache_; }
  // The implementation each op family the model uses runs: op name -> "cuda", "cpu" or "reference"
  // (e.g. {"causal_conv1d": "cuda", "selective_scan": "reference"}); empty for a model whose ops
  // all have one implementation (a Transformer's), plus the variant records of
  // implementation_variants() where a CUDA path has variants. Results record it.
  const std::map<std::string, std::string>& implementations() const { return implementations_; }
  // The format of the linear layers' weights, as results record it: the dtype's name today
  // ("bfloat16", "float32"); "int8" once weight-only int8 exists.
  std::string weight_format() const;  // "int8" or the dtype's name ("bfloat16")

  // Allocates the cache for `batch` sequences of up to `max_len` tokens (prompt + generated).
  void allocate_cache(int64_t batch, int64_t max_len);
  // ids [B, T] int64 -> logits [B, T, vocab] fp32. Starts a new sequence (cache length 0).
  // Without an allocated cache it allocates one of exactly T tokens: call allocate_cache(B,
  // T + new tokens) first when decode is to follow.
  at::Tensor prefill(const at::Tensor& ids);
  // Like prefill, but the final norm and head run on the last position only: [B, vocab] fp32.
  // What generation needs; it saves the [B, T, vocab] logits of long prompts.
  at::Tensor prefill_last(const at::Tensor& ids);
  // From the next cache on, the ops are asked for `backend` and decode steps run in `decode`
  // (bench runs one loaded model under several launch settings): checked as at load, the
  // implementations resolved again; a UsageError leaves everything as it was. The cache and any
  // captured graph are released. Neither changes the weights.
  void set_execution(ops::Backend backend, DecodeMode decode);
  // Frees the cache (and a captured graph); the next prefill allocates one again.
  void release_cache();
  // ids [B] int64 -> logits [B, vocab] fp32, appending one token per sequence. A full cache is a
  // UsageError saying to allocate_cache(batch, prompt + new tokens) before prefill.
  at::Tensor decode(const at::Tensor& ids);

  // Every MoE layer calls `observer` with its routing decisions on each forward; an empty
  // function removes it. Costs nothing when unset.
  void set_routing_observer(RoutingObserver observer) { routing_observer_ = std::move(observer); }

 private:
  at::Tensor forward(const at::Tensor& ids, int64_t start_pos, bool last_only = false);
  at::Tensor forward_static(const at::Tensor& ids);  // ids [B, 1] on the device, position in position_
  // The blocks and the final norm over embedded tokens x [B, T, H] (only the last token's output
  // when last_only), each residual add fused with the norm after it; in a one-token step with
  // ctx.norm_prologue the final add + norm comes back pending, for the head's GEMV.
  ops::NormedInput run_blocks(at::Tensor x, const ForwardContext& ctx, bool last_only);
  // The LM head over run_blocks' output (its add + norm in the GEMV's prologue where pending).
  at::Tensor head(const ops::NormedInput& h, const ForwardContext& ctx) const;
  at::Tensor decode_graphed(const at::Tensor& ids);
  void set_groups(ForwardContext& ctx) const;  // the norm prologue switch and the parallel groups, when there are several ranks
  // The records of how the blocks' weights were laid out at load (kParallelBlockRecord).
  void record_layout(std::map<std::string, std::string>& impl) const;
  ModelConfig config_;
  ModelConfig local_config_;
  Weights weights_;
  ModelOptions options_;
  std::vector<std::unique_ptr<Block>> blocks_;
  std::unique_ptr<Norm> final_norm_;
  at::Tensor embed_;
  ops::Linear head_;  // the embedding when tied
  std::map<std::string, std::string> implementations_;
  // options_.selective_scan's variant, looked up once (every forward call hands it to the mixers).
  std::optional<ops::SelectiveScanVariant> selective_scan_;
  Cache cache_;
  ops::RopeTables rope_tables_;  // built for the cache's length
  RoutingObserver routing_observer_;
  at::Tensor position_;                 // [1] int64 on the device: the static decode's position
  std::unique_ptr<DecodeGraph> graph_;  // captured for the cache it was built on
};

}  // namespace effarch::model
