#include "effarch/model/model.h"

#include <algorithm>

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "blocks/blocks.h"
#include "decode_graph.h"
#include "effarch/common/error.h"
#include "effarch/io/checkpoint.h"
#include "effarch/ops/activation.h"
#include "effarch/ops/backend.h"
#include "effarch/ops/moe.h"
#include "effarch/ops/selective_scan.h"
#include "effarch/ops/ssd.h"

namespace effarch::model {

DecodeMode parse_cuda_graphs(const std::string& value, const std::string& option) {
  if (value == "on") return DecodeMode::CudaGraph;
  if (value == "off") return DecodeMode::Eager;
  if (value == "static") return DecodeMode::Static;
  throw UsageError(fmt::format("{}: unknown value '{}' (use on, off or static)", option, value));
}

const char* to_string(DecodeMode mode) {
  switch (mode) {
    case DecodeMode::Eager: return "off";
    case DecodeMode::Static: return "static";
    case DecodeMode::CudaGraph: return "on";
  }
  return "?";
}

std::optional<DecodeMode> parse_cuda_graphs_request(const std::string& value, const std::string& option) {
  if (value == "auto") return std::nullopt;
  if (value == "on" || value == "off" || value == "static") return parse_cuda_graphs(value, option);
  throw UsageError(fmt::format("{}: unknown value '{}' (use auto, on, off or static)", option, value));
}

std::optional<bool> parse_parallel_block(const std::string& value, const std::string& option) {
  if (value == "auto") return std::nullopt;
  if (value == "fused") return true;
  if (value == "separate") return false;
  throw UsageError(fmt::format("{}: unknown value '{}' (use auto, fused or separate)", option, value));
}

bool resolve_parallel_block(const std::optional<bool>& request, const at::Device& device) {
  return request.value_or(ops::runs_cuda_kernels(device));
}

std::optional<bool> parse_norm_prologue(const std::string& value, const std::string& option) {
  return parse_parallel_block(value, option);  // the same words: auto, fused, separate
}

std::optional<std::string> parse_selective_scan(const std::string& value, const std::string& option) {
  if (value == "auto") return std::nullopt;
  if (ops::selective_scan_variant_named(value)) return value;
  throw UsageError(fmt::format("{}: unknown value '{}' (use auto, {})", option, value,
                               fmt::join(ops::selective_scan_variant_names(), ", ")));
}

bool resolve_norm_prologue(const std::optional<bool>& request, const std::map<std::string, std::string>& impl,
                           ops::WeightFormat weights, int64_t hidden, at::ScalarType dtype) {
  const auto on_cuda = [&impl](ops::OpFamily op) {
    const auto it = impl.find(std::string(ops::op_name(op)));
    return it != impl.end() && it->second == ops::backend_name(ops::Backend::Cuda);
  };
  const bool kernels = on_cuda(ops::OpFamily::AddNorm) && on_cuda(ops::OpFamily::DenseGemv) &&
                       weights == ops::WeightFormat::Dense;
  const bool fits = ops::norm_prologue_fits(hidden, dtype);
  const bool can = kernels && fits;
  if (request == std::optional<bool>(true) && !kernels) {
    throw UsageError("--norm-prologue fused: the norm runs in the dense GEMV's prologue, which needs the add_norm and "
                     "dense GEMV CUDA kernels (a CUDA device, a CUDA build, --backend auto or cuda) and dense "
                     "weights (not --weights int8)");
  }
  if (request == std::optional<bool>(true) && !fits) {
    throw UsageError(fmt::format("--norm-prologue fused: the dense GEMV's prologue takes rows of up to 4096 elements "
                                 "in whole 16-byte vectors; this model's hidden size is {} ({})",
                                 hidden, c10::toString(dtype)));
  }
  return request.value_or(true) && can;
}

const std::map<std::string, std::vector<std::string>>& implementation_variants() {
  static const std::map<std::string, std::vector<std::string>> variants = {
      {kMoePrefillRecord, {"grouped", "per_expert"}},
      {kMoeOneTokenRecord, {"two_kernels", "two_kernels_shared_apart"}},
      {kSsdScanProductsRecord, {"tensor_cores", "fma"}},
      {kSelectiveScanVariantRecord, {"lanes16", "lanes8", "pieces", "seg4", "seg8", "split"}},
      {kDtProjRecord, {"fused", "separate"}},
      {kConvInProjRecord, {"fused", "separate"}},
      {kFc1ActivationRecord, {"fused", "separate"}},
      {kGateUpActivationRecord, {"fused", "separate"}},
      {kParallelBlockRecord, {"fused", "separate"}},
      {kNormPrologueRecord, {"fused", "separate"}}};
  return variants;
}

std::optional<std::string> moe_decode_not_capturable(const ModelConfig& config, ops::Backend backend,
                                                     ops::WeightFormat weights, bool built_with_cuda) {
  if (config.count_layers(FfnKind::MoE) == 0) return std::nullopt;
  if (!built_with_cuda) return "this effarch was built without the CUDA dispatch kernels";
  if (backend == ops::Backend::Reference) {
    return "--backend reference runs the reference dispatch, which reads the per-expert token counts on the host";
  }
  static_cast<void>(weights);  // int8 experts decode through the same table (scales beside the rows)
  const MoeConfig& moe = *config.moe;
  if (moe.num_experts > ops::kMoeKernelMaxExperts || moe.top_k > ops::kMoeKernelMaxTopK) {
    return fmt::format("the CUDA dispatch kernels take at most {} experts and top-k {} ({} and {} here)",
                       ops::kMoeKernelMaxExperts, ops::kMoeKernelMaxTopK, moe.num_experts, moe.top_k);
  }
  if (!config.mlp || config.mlp->activation != ops::Activation::SiLU) {
    return "the experts' activation is not SiLU (the decode kernel is SwiGLU)";
  }
  return std::nullopt;
}

DecodeMode resolve_decode_mode(const ModelConfig& config, const at::Device& device, std::optional<DecodeMode> requested,
                               bool built_with_cuda, ops::Backend backend, ops::WeightFormat weights) {
  if (requested) return *requested;
  const bool graphs = built_with_cuda && device.is_cuda() &&
                      !moe_decode_not_capturable(config, backend, weights, built_with_cuda);
  return graphs ? DecodeMode::CudaGraph : DecodeMode::Eager;
}

uint64_t LayerCache::bytes() const {
  uint64_t n = 0;
  for (const at::Tensor* t : {&k, &v, &conv_state, &ssm_state}) {
    if (t->defined()) n += static_cast<uint64_t>(t->numel()) * t->element_size();
  }
  return n;
}

uint64_t Cache::bytes() const {
  uint64_t n = 0;
  for (const auto& l : layers) n += l.bytes();
  return n;
}

namespace {

// CUDA graphs need a CUDA build, a CUDA device, and MoE layers only on the CUDA dispatch kernels.
// Checked before any weight loads.
void check_decode_mode(const ModelConfig& config, const ModelOptions& options) {
  if (options.decode != DecodeMode::CudaGraph) return;
  if (!ops::kBuiltWithCuda) throw UsageError("CUDA graphs: this effarch was built without CUDA");
  if (!options.device.is_cuda()) {
    throw UsageError(fmt::format("CUDA graphs need a CUDA device, not {}", options.device.str()));
  }
  if (const auto why = moe_decode_not_capturable(config, options.backend, options.weights, ops::kBuiltWithCuda)) {
    throw UsageError(fmt::format("CUDA graphs: {} has MoE layers, and {}: a decode step cannot be captured once and "
                                 "replayed (the CUDA dispatch kernels with --backend auto or cuda "
                                 "can)",
                                 config.source, *why));
  }
}

// The implementation of every op family the model's layers call, resolved once for the device and
// --backend. Checked before any weight loads: --backend cuda needs a CUDA build, a CUDA device
// and a kernel for every such op, and says which ops lack one.
std::map<std::string, std::string> resolve_implementations(const ModelConfig& config, const ModelOptions& options) {
  if (options.backend == ops::Backend::Cuda) {
    if (!ops::kBuiltWithCuda) throw UsageError("--backend cuda: this effarch was built without CUDA");
    if (!ops::runs_cuda_kernels(options.device)) {
      throw UsageError(fmt::format("--backend cuda needs a CUDA device, not {}", options.device.str()));
    }
  }
  std::map<std::string, std::string> impl;
  std::vector<std::string> missing;  // ops without a CUDA kernel, when --backend cuda asked for them
  for (const LayerSpec& layer : config.layers) {
    for (ops::OpFamily op : op_families(config, layer)) {
      const std::string name(ops::op_name(op));
      if (impl.count(name) != 0 || std::find(missing.begin(), missing.end(), name) != missing.end()) continue;
      if (options.backend == ops::Backend::Cuda && !ops::has_cuda_kernel(op)) {
        missing.push_back(name);
        continue;
      }
      const ops::Backend resolved =
          op == ops::OpFamily::SsdScan
              ? ops::ssd_scan_backend(options.backend, options.dtype, ops::SsdScanProducts::Auto, options.device)
              : ops::resolve_backend(options.backend, op, options.device);
      impl[name] = std::string(ops::backend_name(resolved));
    }
  }
  // Which prefill path the CUDA MoE dispatch takes (grouped GEMMs without a host sync, or a GEMM
  // chain per expert after reading the counts): what the experts are loaded as decides it.
  const auto moe = impl.find(std::string(ops::op_name(ops::OpFamily::MoeDispatch)));
  if (moe != impl.end() && moe->second == ops::backend_name(ops::Backend::Cuda) && config.moe &&
      config.moe->num_experts <= ops::kMoeKernelMaxExperts && config.moe->top_k <= ops::kMoeKernelMaxTopK) {
    const int64_t tp = options.parallel ? options.parallel->layout.tp : 1;
    impl[kMoePrefillRecord] = ops::moe_prefill_path(options.dtype, options.weights, options.device, config.hidden_size,
                                                config.moe->expert_intermediate / tp);
    // A one-token step through the experts' device table (SiLU experts: the kernels' SwiGLU).
    if (config.mlp && config.mlp->activation == ops::Activation::SiLU) {
      // Decided from the load options, as moe_prefill is: the table folds shared experts of a
      // whole number (1..16) of experts' width with dense weights (ops::make_expert_table); a
      // bias or a misaligned shared weight, which no configuration effarch knows has, would also
      // run them apart (ExpertTable::shared_why).
      const int64_t shared = config.moe->num_shared_experts;
      impl[kMoeOneTokenRecord] =
          shared > 0 && (options.weights == ops::WeightFormat::Int8 || shared > ops::kMoeKernelMaxSharedSlots)
              ? "two_kernels_shared_apart"
              : "two_kernels";
    }
  }
  // Which chunk products the CUDA SSD scan runs (tensor cores for bf16 / fp16 activations with
  // d_state up to 128, fp32 FMA loops otherwise: ops::ssd_scan_uses_tensor_cores; fp32
  // activations run the reference under --backend auto: ops::ssd_scan_backend).
  const auto ssd = impl.find(std::string(ops::op_name(ops::OpFamily::SsdScan)));
  if (ssd != impl.end() && ssd->second == ops::backend_name(ops::Backend::Cuda) && config.mamba) {
    impl[kSsdScanProductsRecord] =
        ops::ssd_scan_products_name(options.dtype, config.mamba->d_state, ops::SsdScanProducts::Auto);
  }
  // Which variant of the CUDA selective scan the Mamba-1 mixers run (--selective-scan, else the
  // defaults of their SelectiveScanArgs): the default has changed twice (8-step to 4-step warp
  // segments, then the warp-per-channel lanes16), so results say which ran.
  const auto scan = impl.find(std::string(ops::op_name(ops::OpFamily::SelectiveScan)));
  if (options.selective_scan) {
    const std::string& name = *options.selective_scan;
    if (scan == impl.end() || !config.mamba) {
      throw UsageError(fmt::format("--selective-scan {}: picks the CUDA selective scan's prefill kernel, and {} has "
                                   "no Mamba-1 layer",
                                   name, config.source));
    }
    if (!ops::runs_cuda_kernels(options.device)) {
      throw UsageError(fmt::format("--selective-scan {}: picks the CUDA selective scan's prefill kernel, which needs a "
                                   "CUDA device and a CUDA build, not {}",
                                   name, options.device.str()));
    }
    ops::SelectiveScanArgs args;
    ops::selective_scan_variant_named(name)->apply(args);
    if (config.mamba->d_state > ops::selective_scan_max_dstate(args)) {
      throw UsageError(fmt::format("--selective-scan {}: its kernel takes d_state up to {}, and {} has {}", name,
                                   ops::selective_scan_max_dstate(args), config.source, config.mamba->d_state));
    }
  }
  if (scan != impl.end() && scan->second == ops::backend_name(ops::Backend::Cuda) && config.mamba) {
    impl[kSelectiveScanVariantRecord] =
        options.selective_scan.value_or(ops::selective_scan_variant_name(ops::SelectiveScanArgs{}));
  }
  // Whether the Mamba-1 decode step computes dt_proj inside the CUDA state update
  // (ops::selective_state_update_dt_proj_fuses: dense weights) or as its own projection (int8).
  const auto update = impl.find(std::string(ops::op_name(ops::OpFamily::SelectiveStateUpdate)));
  if (update != impl.end() && update->second == ops::backend_name(ops::Backend::Cuda)) {
    impl[kDtProjRecord] = options.weights == ops::WeightFormat::Dense ? "fused" : "separate";
  }
  // Whether a Mamba decode step's conv update runs inside its in_proj's dense GEMV
  // (ops::linear_conv_update_fuses: both on their CUDA kernels, dense weights; the GEMV itself
  // runs for the rows it takes, 1-2 under --backend auto) or after it.
  const auto conv = impl.find(std::string(ops::op_name(ops::OpFamily::CausalConv1d)));
  if (conv != impl.end() && conv->second == ops::backend_name(ops::Backend::Cuda)) {
    const auto gemv = impl.find(std::string(ops::op_name(ops::OpFamily::DenseGemv)));
    const bool fused = options.weights == ops::WeightFormat::Dense && gemv != impl.end() &&
                       gemv->second == ops::backend_name(ops::Backend::Cuda);
    impl[kConvInProjRecord] = fused ? "fused" : "separate";
  }
  // Whether a decode step's MLP applies its activation inside the dense GEMV of its first
  // projection (both on their CUDA kernels, dense weights, an activation with a kernel) or after
  // it: a non-gated MLP's fc1 (ops::linear_activation_fuses), a gated MLP's gate/up product
  // (ops::linear_gated_activation_fuses: the dense gated MLPs and DeepSeekMoE's shared experts;
  // routed experts decode through the MoE kernels).
  const auto act = impl.find(std::string(ops::op_name(ops::OpFamily::Activation)));
  if (act != impl.end() && act->second == ops::backend_name(ops::Backend::Cuda) && config.mlp &&
      ops::has_activation_kernel(config.mlp->activation)) {
    const auto gemv = impl.find(std::string(ops::op_name(ops::OpFamily::DenseGemv)));
    const bool fused = options.weights == ops::WeightFormat::Dense && gemv != impl.end() &&
                       gemv->second == ops::backend_name(ops::Backend::Cuda);
    const bool dense_ffn = config.count_layers(FfnKind::Dense) > 0;
    if (!config.mlp->gated && dense_ffn) impl[kFc1ActivationRecord] = fused ? "fused" : "separate";
    if (config.mlp->gated && (dense_ffn || (config.moe && config.moe->num_shared_experts > 0))) {
      impl[kGateUpActivationRecord] = fused ? "fused" : "separate";
    }
  }
  if (!missing.empty()) {
    throw UsageError(fmt::format("--backend cuda: {} uses {}, which {} no CUDA kernel yet (--backend auto runs the "
                                 "reference there)",
                                 config.source, fmt::join(missing, ", "), missing.size() == 1 ? "has" : "have"));
  }
  // Whether a decode step's block boundaries leave their add + norm to the dense GEMV after them.
  impl[kNormPrologueRecord] =
      resolve_norm_prologue(options.fuse_norm_prologue, impl, options.weights, config.hidden_size, options.dtype)
          ? "fused"
          : "separate";
  return impl;
}

}  // namespace

namespace {

// The part of the model this process holds.
Shard shard_of(const ModelOptions& options) {
  Shard s;
  if (options.parallel) {
    s.tp = options.parallel->layout.tp;
    s.tp_rank = options.parallel->tp_rank;
    s.ep = options.parallel->layout.ep;
    s.ep_rank = options.parallel->ep_rank;
  }
  return s;
}

}  // namespace

void check_sequence_tokens(int64_t tokens, const std::string& option) {
  if (tokens > kMaxSequenceTokens) {
    throw UsageError(fmt::format("{}: {} tokens is past the longest sequence effarch runs ({})", option, tokens,
                                 kMaxSequenceTokens));
  }
}

std::unique_ptr<Model> Model::load(const ModelSource& source, const ModelOptions& options) {
  check_decode_mode(source.config, options);
  resolve_implementations(source.config, options);
  const Shard shard = shard_of(options);
  check_shardable(source.config, shard.tp, shard.ep);  // before any weight loads
  if (source.checkpoint_dir) {
    const auto store = io::TensorStore::open_folder(*source.checkpoint_dir);
    return std::make_unique<Model>(source.config, Weights::from_checkpoint(source.config, store, options.dtype,
                                                                            options.device, shard, options.weights),
                                   options);
  }
  return std::make_unique<Model>(source.config, Weights::random(source.config, options.seed, options.dtype,
                                                                 options.device, shard, options.weights,
                                                                 options.random_init),
                                 options);
}

Model::Model(ModelConfig config, Weights weights, ModelOptions options)
    : config_(std::move(config)),
      local_config_(model::local_config(config_, weights.shard())),
      weights_(std::move(weights)),
      options_(options),
      selective_scan_(options_.selective_scan ? ops::selective_scan_variant_named(*options_.selective_scan)
                                              : std::nullopt) {
  const bool fuse_parallel = resolve_parallel_block(options_.fuse_parallel_block, options_.device);
  for (int i = 0; i < config_.num_layers; ++i) {
    blocks_.push_back(std::make_unique<Block>(local_config_, weights_, i, fuse_parallel));
  }
  final_norm_ = std::make_unique<Norm>(config_, weights_, -1, "final_norm.");
  embed_ = weights_.get(-1, "embed.weight");
  head_ = weights_.find(-1, "lm_head.weight") != nullptr ? weights_.linear(-1, "lm_head.")
                                                         : ops::Linear(embed_, optional_weight(weights_, -1, "lm_head.bias"));
  check_decode_mode(config_, options_);
  implementations_ = resolve_implementations(config_, options_);
  record_layout(implementations_);
}

void Model::record_layout(std::map<std::string, std::string>& impl) const {
  if (!config_.parallel_block) return;
  const bool fused = std::any_of(blocks_.begin(), blocks_.end(), [](const auto& b) { return b->fused_parallel(); });
  impl[kParallelBlockRecord] = fused ? "fused" : "separate";
}

std::string Model::weight_format() const {
  // A tied head reads the embedding, which stays in the dtype whatever the linear layers' format.
  return options_.weights == ops::WeightFormat::Int8 ? "int8" : ops::format_name(head_);
}

Model::~Model() = default;

void Model::allocate_cache(int64_t batch, int64_t max_len) {
  if (batch <= 0 || max_len <= 0) throw UsageError(fmt::format("cache of batch {} and length {}", batch, max_len));
  if (config_.attention && config_.max_position_embeddings && max_len > *config_.max_position_embeddings &&
      !options_.allow_beyond_context) {
    throw UsageError(fmt::format("{} tokens exceed the model's context of {} tokens (max_position_embeddings)", max_len,
                                 *config_.max_position_embeddings));
  }
  cache_ = Cache{};
  cache_.batch = batch;
  cache_.max_len = max_len;
  cache_.layers.resize(blocks_.size());
  for (size_t i = 0; i < blocks_.size(); ++i) {
    blocks_[i]->allocate(cache_.layers[i], batch, max_len, options_.dtype, options_.device);
  }
  if (config_.attention && config_.attention->rope) {
    rope_tables_ = ops::make_rope_tables(*config_.attention->rope, max_len, options_.device);
  }
  graph_.reset();  // it recorded the old cache's buffers
  if (options_.decode != DecodeMode::Eager) {
    const auto longs = at::TensorOptions().dtype(at::kLong).device(options_.device);
    position_ = at::zeros({1}, longs);
  }
}

at::Tensor Model::forward(const at::Tensor& ids, int64_t start_pos, bool last_only) {
  if (ids.dim() != 2 || ids.scalar_type() != at::kLong) {
    throw UsageError(fmt::format("token ids must be an int64 [batch, tokens] tensor, got {} of {} dims",
                                 c10::toString(ids.scalar_type()), ids.dim()));
  }
  const int64_t b = ids.size(0), t = ids.size(1);
  if (!cache_.allocated()) allocate_cache(b, t);
  if (b != cache_.batch) throw UsageError(fmt::format("batch of {} sequences, but the cache holds {}", b, cache_.batch));
  if (start_pos + t > cache_.max_len) {
    throw UsageError(fmt::format("{} tokens exceed the cache of {} tokens allocated for this run", start_pos + t,
                                 cache_.max_len));
  }
  if (t == 0) throw UsageError("empty prompt: at least one token is needed");
  ForwardContext ctx{start_pos, rope_tables_.rotary_dim > 0 ? &rope_tables_ : nullptr, options_.attention,
                     options_.backend, routing_observer_ ? &routing_observer_ : nullptr};
  set_groups(ctx);
  const at::Tensor x = at::embedding(embed_, ids.to(options_.device));  // [B, T, H]
  const at::Tensor logits = head(run_blocks(x, ctx, last_only), ctx);
  cache_.length = start_pos + t;
  return logits.to(at::kFloat);
}

void Model::set_groups(ForwardContext& ctx) const {
  const auto prologue = implementations_.find(kNormPrologueRecord);
  ctx.norm_prologue = prologue != implementations_.end() && prologue->second == "fused";
  ctx.selective_scan = selective_scan_;
  const parallel::Context* p = options_.parallel.get();
  if (p == nullptr || !p->grouped()) return;
  ctx.tp = p->tp.get();
  ctx.moe = p->world.get();
}

ops::NormedInput Model::run_blocks(at::Tensor x, const ForwardContext& ctx, bool last_only) {
  const int64_t t = x.size(1);
  // The final norm joins the last add where it reads the residual in the model dtype: not Mamba's
  // fp32 stream (HF's final norm reads that as it is), nor a prefill that keeps only the last token.
  const bool fuse_final = !blocks_.empty() && !config_.residual_in_fp32 && !(last_only && t > 1);
  ResidualStream s{x, blocks_.empty() ? ops::NormedInput() : ops::NormedInput(blocks_[0]->mixer_input(x))};
  for (size_t i = 0; i < blocks_.size(); ++i) {
    const Norm* next = i + 1 < blocks_.size() ? &blocks_[i + 1]->mixer_norm() : (fuse_final ? final_norm_.get() : nullptr);
    s = blocks_[i]->forward_fused(s, next, cache_.layers[i], ctx);
  }
  if (fuse_final) return s.normed;  // [B, T, H]; with last_only T is 1; pending: the head's GEMV computes it
  x = s.residual;  // the last block had no norm after it: computed
  if (last_only) x = x.narrow(1, t - 1, 1);
  return (*final_norm_)(x);
}

at::Tensor Model::head(const ops::NormedInput& h, const ForwardContext& ctx) const {
  // A Mamba residual stream arrives in fp32: the head reads it in the weights' dtype, as HF does.
  if (h.is_pending()) return ops::linear(h, head_, ctx.backend);  // the model dtype already
  return ops::linear(h.tensor().to(embed_.scalar_type()), head_, ctx.backend);
}

at::Tensor Model::prefill(const at::Tensor& ids) { return forward(ids, 0); }

at::Tensor Model::prefill_last(const at::Tensor& ids) { return forward(ids, 0, /*last_only=*/true).squeeze(1); }

void Model::release_cache() {
  graph_.reset();
  cache_ = Cache{};
  rope_tables_ = ops::RopeTables{};
  position_ = at::Tensor();
}

void Model::set_execution(ops::Backend backend, DecodeMode decode) {
  ModelOptions next = options_;
  next.backend = backend;
  next.decode = decode;
  check_decode_mode(config_, next);
  std::map<std::string, std::string> implementations = resolve_implementations(config_, next);
  record_layout(implementations);
  release_cache();
  options_ = next;
  implementations_ = std::move(implementations);
}

at::Tensor Model::decode(const at::Tensor& ids) {
  if (ids.dim() != 1) throw UsageError(fmt::format("decode takes one token per sequence: [batch] ids, got {} dims", ids.dim()));
  if (!cache_.allocated() || cache_.length == 0) throw UsageError("decode before prefill");
  if (cache_.length + 1 > cache_.max_len) {
    // Typically a prefill that sized the cache to the prompt itself.
    throw UsageError(fmt::format("decode: the cache of {} tokens is full ({} written); call allocate_cache(batch, "
                                 "prompt + new tokens) before prefill to leave room for the tokens decode appends",
                                 cache_.max_len, cache_.length));
  }
  if (options_.decode == DecodeMode::Eager) return forward(ids.unsqueeze(1), cache_.length).squeeze(1);
  if (ids.scalar_type() != at::kLong || ids.size(0) != cache_.batch) {
    throw UsageError(fmt::format("decode: [batch] int64 ids for a batch of {}, got {} of {}", cache_.batch,
                                 c10::toString(ids.scalar_type()), ids.size(0)));
  }
  position_.fill_(cache_.length);  // on the device's stream: no host round trip
  at::Tensor logits;
  // A routing observer sees every step's routing on the host: such steps run without the graph.
  const bool record = options_.decode == DecodeMode::CudaGraph && !routing_observer_;
  if (record && graph_) {
    graph_->ids.copy_(ids.view({-1, 1}));
    graph_->replay();
    logits = graph_->logits.clone();
  } else {
    const at::Tensor dev_ids = ids.to(options_.device).view({-1, 1});
    logits = forward_static(dev_ids);
    if (record) {  // the eager step warmed everything up: record it
      graph_ = capture_decode_graph(dev_ids, [this](const at::Tensor& in) { return forward_static(in); });
    }
  }
  cache_.length += 1;
  return logits;
}

at::Tensor Model::forward_static(const at::Tensor& ids) {
  ForwardContext ctx{cache_.length, rope_tables_.rotary_dim > 0 ? &rope_tables_ : nullptr, options_.attention,
                     options_.backend, routing_observer_ ? &routing_observer_ : nullptr, &position_};
  set_groups(ctx);
  const at::Tensor x = at::embedding(embed_, ids);  // [B, 1, H]
  const at::Tensor logits = head(run_blocks(x, ctx, false), ctx);
  return logits.squeeze(1).to(at::kFloat);
}

}  // namespace effarch::model
