// effarch experts MODEL (--text-file F | --prompt-lengths L,...): router analysis. A routing
// observer records the experts every token selects in every MoE layer during prefill; printed per
// layer: selection counts, max/mean load, coefficient of variation, entropy of the load in bits
// against log2(E), and the share of tokens whose top-1 expert is the previous MoE layer's.

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "effarch/bench/bench.h"
#include "effarch/common/device.h"
#include "effarch/common/dtype.h"
#include "effarch/common/error.h"
#include "effarch/common/files.h"
#include "effarch/io/safetensors.h"
#include "effarch/model/catalog.h"
#include "effarch/model/model.h"
#include "effarch/tokenizer/tokenizer.h"

namespace effarch::cli {
namespace {

struct ExpertsCmd {
  std::string model;
  std::string text_file;
  std::string tokenizer;  // default: the checkpoint folder's
  std::vector<int64_t> prompt_lengths;
  int64_t max_tokens = 2048;
  uint64_t seed = 0;
  std::string dtype = "auto";
  std::string device = "auto";
  std::string backend = "auto";
  std::string weights = "dense";
  std::string json;
  std::optional<int> router_layer;
  std::string router_out;
};

struct LayerRecord {
  std::vector<int64_t> counts;         // selections per expert, over every token and slot
  std::vector<at::Tensor> top1;        // [N] int64 per forward, in order
  double top1_weight_sum = 0;          // sum over tokens of the top-1 combine weight
  int64_t tokens = 0;
};

struct LayerStats {
  int layer = 0;
  std::vector<int64_t> counts;
  int64_t tokens = 0;
  double max_over_mean = 0, cv = 0, entropy_bits = 0, max_entropy_bits = 0, mean_top1_weight = 0;
  std::optional<double> top1_same_as_previous;
};

LayerStats summarize(int layer, const LayerRecord& r, const LayerRecord* previous) {
  LayerStats s;
  s.layer = layer;
  s.counts = r.counts;
  s.tokens = r.tokens;
  const double e = static_cast<double>(r.counts.size());
  double total = 0;
  for (int64_t c : r.counts) total += static_cast<double>(c);
  const double mean = total / e;
  double var = 0, max = 0, entropy = 0;
  for (int64_t c : r.counts) {
    const double x = static_cast<double>(c);
    var += (x - mean) * (x - mean) / e;
    max = std::max(max, x);
    if (c > 0) entropy -= (x / total) * std::log2(x / total);
  }
  s.max_over_mean = mean > 0 ? max / mean : 0;
  s.cv = mean > 0 ? std::sqrt(var) / mean : 0;
  s.entropy_bits = entropy;
  s.max_entropy_bits = std::log2(e);
  s.mean_top1_weight = r.tokens > 0 ? r.top1_weight_sum / static_cast<double>(r.tokens) : 0;
  if (previous != nullptr) {
    const at::Tensor a = at::cat(r.top1), b = at::cat(previous->top1);
    s.top1_same_as_previous = a.eq(b).to(at::kDouble).mean().item<double>();
  }
  return s;
}

std::vector<std::vector<int64_t>> prompts_from_text(const ExpertsCmd& cmd, const model::ModelSource& source) {
  if (const std::string why = unreadable_reason(cmd.text_file); !why.empty()) {
    throw UsageError(fmt::format("--text-file: {} {}", cmd.text_file, why));
  }
  std::ifstream in(cmd.text_file, std::ios::binary);
  if (!in) throw UsageError(fmt::format("--text-file: cannot read {}", cmd.text_file));
  std::stringstream ss;
  ss << in.rdbuf();
  std::filesystem::path tok_path;
  if (!cmd.tokenizer.empty()) {
    tok_path = cmd.tokenizer;
    if (!std::filesystem::exists(tok_path)) {
      throw UsageError(fmt::format("--tokenizer: {}: no such file or folder", cmd.tokenizer));
    }
  } else if (!source.checkpoint_dir) {
    throw UsageError(fmt::format("--text-file: {} is a bare config with no tokenizer; pass --tokenizer, use a "
                                 "checkpoint folder with tokenizer.json or tokenizer.model, or --prompt-lengths",
                                 source.name));
  } else {
    tok_path = *source.checkpoint_dir;
    if (!std::filesystem::is_regular_file(tok_path / "tokenizer.json") &&
        !std::filesystem::is_regular_file(tok_path / "tokenizer.model")) {
      throw UsageError(fmt::format("--text-file: {} has no tokenizer (no tokenizer.json or tokenizer.model); pass "
                                   "--tokenizer or use --prompt-lengths",
                                   tok_path.string()));
    }
  }
  const auto tok = tokenizer::load_tokenizer(tok_path);
  if (tok->vocab_size() > source.config.vocab_size) {
    throw UsageError(fmt::format("--tokenizer: {} has {} tokens but {}'s vocabulary has {}: not this model's tokenizer",
                                 tok_path.string(), tok->vocab_size(), source.name, source.config.vocab_size));
  }
  const std::vector<int32_t> ids = tok->encode(ss.str(), /*add_special_tokens=*/true);
  if (ids.empty()) throw UsageError(fmt::format("--text-file: {} encodes to no tokens", cmd.text_file));
  // Consecutive windows of at most --max-tokens tokens, each its own sequence.
  std::vector<std::vector<int64_t>> prompts;
  for (size_t start = 0; start < ids.size(); start += static_cast<size_t>(cmd.max_tokens)) {
    const size_t end = std::min(ids.size(), start + static_cast<size_t>(cmd.max_tokens));
    prompts.emplace_back(ids.begin() + static_cast<std::ptrdiff_t>(start), ids.begin() + static_cast<std::ptrdiff_t>(end));
  }
  return prompts;
}

int run_experts(const ExpertsCmd& cmd) {
  if (cmd.text_file.empty() == cmd.prompt_lengths.empty()) {
    throw UsageError("give the tokens to route as --text-file or as --prompt-lengths, one of the two");
  }
  if (!cmd.tokenizer.empty() && cmd.text_file.empty()) {
    throw UsageError("--tokenizer applies to --text-file only (--prompt-lengths routes random token ids)");
  }
  if (!cmd.router_out.empty() && !cmd.router_layer) {
    throw UsageError("--router-weights-out says where --router-weights writes: give the layer with --router-weights");
  }
  if (cmd.max_tokens < 1) throw UsageError("--max-tokens must be at least 1");
  // The outputs' paths before the model loads and routes (a bad one once failed only at the end).
  const std::string router_out = !cmd.router_layer        ? std::string()
                                 : cmd.router_out.empty() ? fmt::format("router-layer{}.safetensors", *cmd.router_layer)
                                                          : cmd.router_out;
  if (!router_out.empty()) bench::check_output_path(router_out, "--router-weights-out", bench::OutputFolder::MustExist);
  if (!cmd.json.empty()) bench::check_output_path(cmd.json, "--json", bench::OutputFolder::MustExist);
  for (int64_t len : cmd.prompt_lengths) {
    if (len < 1) throw UsageError(fmt::format("--prompt-lengths: {} is not a positive length", len));
  }
  note_shadowed_model(cmd.model);
  const auto source = model::resolve_model(cmd.model);
  const model::ModelConfig& config = source.config;
  if (!config.moe || config.count_layers(model::FfnKind::MoE) == 0) {
    throw UsageError(fmt::format("{} ({}) has no MoE layers: nothing to route", source.name, config.architecture));
  }
  if (cmd.router_layer) {
    const int l = *cmd.router_layer;
    if (l < 0 || l >= config.num_layers || config.layers[static_cast<size_t>(l)].ffn != model::FfnKind::MoE) {
      std::vector<int> moe_layers;
      for (int i = 0; i < config.num_layers; ++i) {
        if (config.layers[static_cast<size_t>(i)].ffn == model::FfnKind::MoE) moe_layers.push_back(i);
      }
      throw UsageError(fmt::format("--router-weights: layer {} is not an MoE layer of {} (MoE layers: {})", l,
                                   source.name, fmt::join(moe_layers, ", ")));
    }
  }
  const at::Device device = parse_device(cmd.device, "--device");
  model::ModelOptions opt;
  opt.device = device;
  opt.dtype = parse_run_dtype(cmd.dtype, device, "--dtype");
  opt.backend = ops::parse_backend(cmd.backend, "--backend");
  opt.weights = ops::parse_weight_format(cmd.weights, "--weights");
  opt.seed = cmd.seed;

  std::vector<std::vector<int64_t>> prompts;
  if (!cmd.text_file.empty()) {
    prompts = prompts_from_text(cmd, source);
  } else {
    at::Generator gen = at::detail::createCPUGenerator(cmd.seed);
    for (int64_t len : cmd.prompt_lengths) {
      const at::Tensor ids = at::randint(0, config.vocab_size, {len}, gen, at::kLong);
      prompts.emplace_back(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + len);
    }
  }

  auto model = model::Model::load(source, opt);
  const int64_t num_experts = config.moe->num_experts;
  std::map<int, LayerRecord> records;
  model->set_routing_observer([&](const model::RoutingEvent& e) {
    LayerRecord& r = records[e.layer];
    if (r.counts.empty()) r.counts.assign(static_cast<size_t>(num_experts), 0);
    const at::Tensor counts = at::bincount(e.expert_ids.reshape({-1}), {}, num_experts).cpu();
    for (int64_t i = 0; i < num_experts; ++i) r.counts[static_cast<size_t>(i)] += counts[i].item<int64_t>();
    r.top1.push_back(e.expert_ids.select(1, 0).cpu());
    r.top1_weight_sum += e.weights.select(1, 0).sum().item<double>();
    r.tokens += e.expert_ids.size(0);
  });
  for (const auto& p : prompts) {
    const at::Tensor ids = at::tensor(p, at::kLong).view({1, -1});
    model->allocate_cache(1, ids.size(1));
    model->prefill(ids);
  }

  std::vector<LayerStats> stats;
  const LayerRecord* previous = nullptr;
  for (const auto& [layer, r] : records) {
    stats.push_back(summarize(layer, r, previous));
    previous = &r;
  }
  int64_t total_tokens = 0;
  for (const auto& p : prompts) total_tokens += static_cast<int64_t>(p.size());

  fmt::print("{}: {} MoE layers, {} experts, top-{}; {} tokens in {} sequence(s) ({}, {})\n", source.name,
             stats.size(), num_experts, config.moe->top_k, total_tokens, prompts.size(), device.str(),
             float_dtype_name(opt.dtype));
  fmt::print("| layer | max/mean load | CV of load | entropy (bits) | of log2(E) | top-1 = previous layer's | mean top-1 weight |\n");
  fmt::print("|------:|--------------:|-----------:|---------------:|-----------:|-------------------------:|------------------:|\n");
  for (const auto& s : stats) {
    fmt::print("| {:>5} | {:>13.3f} | {:>10.3f} | {:>14.3f} | {:>10.3f} | {:>24} | {:>17.3f} |\n", s.layer,
               s.max_over_mean, s.cv, s.entropy_bits, s.max_entropy_bits,
               s.top1_same_as_previous ? fmt::format("{:.1f}%", 100.0 * *s.top1_same_as_previous) : "-",
               s.mean_top1_weight);
  }
  fmt::print("selections per expert (expert 0 first):\n");
  for (const auto& s : stats) fmt::print("  layer {:>3}: {}\n", s.layer, fmt::join(s.counts, " "));

  nlohmann::json router_json;
  if (cmd.router_layer) {
    const int l = *cmd.router_layer;
    const at::Tensor w = model->weights().get(l, "moe.router.weight").to(at::kCPU).contiguous();
    io::save_safetensors(router_out, {{"router.weight", w}},
                         {{"model", source.name}, {"layer", std::to_string(l)}, {"layout", "[num_experts, hidden]"}});
    fmt::print("router matrix of layer {} [{}] written to {}\n", l, fmt::join(w.sizes(), ", "), router_out);
    router_json = {{"layer", l}, {"file", router_out}, {"shape", w.sizes().vec()}};
  }

  if (!cmd.json.empty()) {
    nlohmann::json doc;
    doc["model"] = source.name;
    doc["architecture"] = config.architecture;
    doc["device"] = device.str();
    doc["dtype"] = float_dtype_name(opt.dtype);
    doc["backend"] = ops::backend_name(opt.backend);
    doc["implementations"] = model->implementations();
    doc["weights"] = model->weight_format();
    doc["num_experts"] = num_experts;
    doc["top_k"] = config.moe->top_k;
    doc["router"] = config.moe->router == model::RouterKind::SoftmaxFp32Renormalized ? "softmax_fp32_renormalized"
                    : config.moe->router == model::RouterKind::SoftmaxFp32        ? "softmax_fp32"
                                                                                   : "softmax_model_dtype";
    doc["input"] = cmd.text_file.empty() ? nlohmann::json{{"prompt_lengths", cmd.prompt_lengths}, {"seed", cmd.seed}}
                                         : nlohmann::json{{"text_file", cmd.text_file},
                                                        {"max_tokens", cmd.max_tokens},
                                                        {"tokenizer", cmd.tokenizer.empty()
                                                                          ? source.checkpoint_dir->string()
                                                                          : cmd.tokenizer}};
    doc["prompts"] = prompts;
    doc["tokens"] = total_tokens;
    nlohmann::json layers = nlohmann::json::array();
    for (const auto& s : stats) {
      layers.push_back({{"layer", s.layer},
                        {"tokens", s.tokens},
                        {"counts", s.counts},
                        {"max_over_mean", s.max_over_mean},
                        {"cv", s.cv},
                        {"entropy_bits", s.entropy_bits},
                        {"max_entropy_bits", s.max_entropy_bits},
                        {"mean_top1_weight", s.mean_top1_weight},
                        {"top1_same_as_previous",
                         s.top1_same_as_previous ? nlohmann::json(*s.top1_same_as_previous) : nlohmann::json(nullptr)}});
    }
    doc["layers"] = layers;
    if (!router_json.is_null()) doc["router_weights"] = router_json;
    bench::write_atomically(cmd.json, doc.dump(2) + "\n");
  }
  return 0;
}

}  // namespace

void register_experts(CLI::App& app, int* exit_code) {
  auto cmd = std::make_shared<ExpertsCmd>();
  auto* sub = app.add_subcommand("experts", "Router analysis of an MoE model: expert load per layer and its balance");
  sub->add_option("MODEL", cmd->model, "Checkpoint folder, config file or built-in config name")->required();
  add_model_footer(sub);
  sub->add_option("--text-file", cmd->text_file, "Route this text (tokenized with the checkpoint's tokenizer)");
  sub->add_option("--tokenizer", cmd->tokenizer,
                  "--text-file: tokenizer.json, tokenizer.model or a folder (default: MODEL's)");
  sub->add_option("--prompt-lengths", cmd->prompt_lengths, "Route random token ids: one sequence per length")
      ->delimiter(',');
  sub->add_option("--max-tokens", cmd->max_tokens, "--text-file: tokens per sequence (longer text is split)")
      ->capture_default_str();
  add_seed_option(sub, &cmd->seed, "Seed for random prompts and random weights");
  sub->add_option("--dtype", cmd->dtype, "auto (fp32 on CPU, bf16 on GPU), float32, bfloat16, float16")
      ->capture_default_str();
  sub->add_option("--device", cmd->device, "auto, cpu, cuda, cuda:N")->capture_default_str();
  add_backend_option(sub, &cmd->backend);
  add_weights_option(sub, &cmd->weights);
  sub->add_option("--json", cmd->json, "Write every figure (and the token ids routed) to this JSON file");
  sub->add_option("--router-weights", cmd->router_layer, "Dump this MoE layer's router matrix [E, hidden]");
  sub->add_option("--router-weights-out", cmd->router_out,
                  "Where --router-weights writes (safetensors; default router-layerN.safetensors)");
  sub->callback([cmd, exit_code] { *exit_code = run_experts(*cmd); });
}

}  // namespace effarch::cli
