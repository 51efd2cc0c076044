// effarch generate MODEL (-p TEXT | --prompt-ids IDS) -n N: runs the model (checkpoint weights,
// or random weights for a bare config), streams text (or ids) as it is produced, ends with a
// summary line.

#include <algorithm>
#include <filesystem>
#include <optional>
#include <sstream>

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "parallel_options.h"
#include "effarch/common/device.h"
#include "effarch/common/dtype.h"
#include "effarch/common/error.h"
#include "effarch/generate/generate.h"
#include "effarch/model/catalog.h"
#include "effarch/model/model.h"
#include "effarch/tokenizer/tokenizer.h"

namespace effarch::cli {
namespace {

struct GenerateCmd {
  std::string model;
  std::vector<std::string> prompts;  // text; several give a batch
  std::string tokenizer;             // default: the checkpoint folder's
  std::string prompt_ids;  // "1,2,3" or "1,2,3;4,5,6" for a batch
  int64_t max_new_tokens = 32;
  ParallelCmd parallel;  // --tp, --ep
  double temperature = 0.0;
  int64_t top_k = 0;
  double top_p = 1.0;
  uint64_t seed = 0;
  std::string dtype = "auto";
  std::string device = "auto";
  std::string attention = "sdpa";
  std::string cuda_graphs = "auto";
  std::string backend = "auto";
  std::string weights = "dense";
  std::string parallel_block = "auto";
  std::string norm_prologue = "auto";
  std::string selective_scan = "auto";
  std::string pdl = "auto";
  bool json = false;
};

at::Tensor parse_prompt_ids(const std::string& text, int64_t vocab) {
  std::vector<std::vector<int64_t>> rows(1);
  std::string token;
  auto flush = [&] {
    if (token.empty()) return;
    size_t used = 0;
    int64_t id = -1;
    try {
      id = std::stoll(token, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != token.size()) throw UsageError(fmt::format("--prompt-ids: '{}' is not a token id", token));
    if (id < 0 || id >= vocab) {
      throw UsageError(fmt::format("--prompt-ids: id {} is outside the model's vocabulary of {}", id, vocab));
    }
    rows.back().push_back(id);
    token.clear();
  };
  bool comma = false;  // the last separator was a comma: an id must follow it ("1,,2" or "1," is refused)
  const auto empty_entry = [&] {
    throw UsageError(fmt::format("--prompt-ids: an empty entry in '{}' (ids separated by commas, prompts by ;)", text));
  };
  for (char ch : text) {
    if (ch == ',') {
      if (token.empty() && (comma || rows.back().empty())) {
        empty_entry();
      }
      flush();
      comma = true;
    } else if (ch == ' ') {
      flush();
    } else if (ch == ';') {
      if (comma && token.empty()) {
        empty_entry();
      }
      comma = false;
      flush();
      rows.emplace_back();
    } else {
      token += ch;
      comma = false;
    }
  }
  if (comma && token.empty()) {
    empty_entry();
  }
  flush();
  for (const auto& r : rows) {
    if (r.empty()) throw UsageError("--prompt-ids: an empty prompt");
    if (r.size() != rows[0].size()) throw UsageError("--prompt-ids: the prompts of a batch must have equal lengths");
  }
  at::Tensor ids = at::empty({static_cast<int64_t>(rows.size()), static_cast<int64_t>(rows[0].size())}, at::kLong);
  for (size_t b = 0; b < rows.size(); ++b) {
    for (size_t t = 0; t < rows[b].size(); ++t) ids[b][t] = rows[b][t];
  }
  return ids;
}

// Encodes text prompts (with the tokenizer's BOS) into an equal-length batch.
at::Tensor encode_prompts(const tokenizer::Tokenizer& tok, const std::vector<std::string>& prompts) {
  std::vector<std::vector<int32_t>> rows;
  for (const auto& p : prompts) rows.push_back(tok.encode(p, /*add_special_tokens=*/true));
  for (size_t b = 0; b < rows.size(); ++b) {
    if (rows[b].empty()) throw UsageError(fmt::format("-p: prompt {} encodes to no tokens", b + 1));
    if (rows[b].size() != rows[0].size()) {
      throw UsageError(fmt::format("-p: the prompts of a batch must encode to equal lengths ({} tokens vs {}); "
                                   "padding is not supported", rows[b].size(), rows[0].size()));
    }
  }
  at::Tensor ids = at::empty({static_cast<int64_t>(rows.size()), static_cast<int64_t>(rows[0].size())}, at::kLong);
  for (size_t b = 0; b < rows.size(); ++b) {
    for (size_t t = 0; t < rows[b].size(); ++t) ids[b][t] = static_cast<int64_t>(rows[b][t]);
  }
  return ids;
}

int run_generate(const GenerateCmd& cmd) {
  if (cmd.prompt_ids.empty() == cmd.prompts.empty()) {
    throw UsageError("give the prompt as text (-p) or as token ids (--prompt-ids), one of the two");
  }
  note_shadowed_model(cmd.model);
  const auto source = model::resolve_model(cmd.model);
  // --tp/--ep: checked against the config and the launch, the process group started (one process:
  // nothing starts). Every rank generates the same tokens; rank 0 prints.
  std::string device_name = cmd.device;
  const auto par = start_parallel(cmd.parallel, {source.config}, &device_name);
  const bool lead = par->rank() == 0;
  const at::Device device = parse_device(device_name, "--device");
  model::ModelOptions opt;
  if (par->grouped()) opt.parallel = par;
  opt.device = device;
  opt.dtype = parse_run_dtype(cmd.dtype, device, "--dtype");
  opt.attention = ops::parse_attention_impl(cmd.attention, "--attention");
  const std::optional<model::DecodeMode> decode_request =
      model::parse_cuda_graphs_request(cmd.cuda_graphs, "--cuda-graphs");
  opt.backend = ops::parse_backend(cmd.backend, "--backend");
  opt.weights = ops::parse_weight_format(cmd.weights, "--weights");
  opt.fuse_parallel_block = model::parse_parallel_block(cmd.parallel_block, "--parallel-block");
  opt.fuse_norm_prologue = model::parse_norm_prologue(cmd.norm_prologue, "--norm-prologue");
  opt.selective_scan = model::parse_selective_scan(cmd.selective_scan, "--selective-scan");
  apply_pdl_option(cmd.pdl, device.str());
  opt.seed = cmd.seed;
  opt.decode = model::resolve_decode_mode(source.config, device, decode_request, ops::kBuiltWithCuda, opt.backend,
                                          opt.weights);
  std::unique_ptr<tokenizer::Tokenizer> tok;
  if (!cmd.prompts.empty()) {
    std::filesystem::path tok_path;
    if (!cmd.tokenizer.empty()) {
      tok_path = cmd.tokenizer;
    } else if (source.checkpoint_dir) {
      tok_path = *source.checkpoint_dir;
    } else {
      throw UsageError(fmt::format("-p: {} is a bare config with no tokenizer: pass --tokenizer or use --prompt-ids",
                                   source.name));
    }
    tok = tokenizer::load_tokenizer(tok_path);
    if (tok->vocab_size() > source.config.vocab_size) {
      throw UsageError(fmt::format("tokenizer {} has {} tokens but the model's vocabulary has {}: not this model's "
                                   "tokenizer", tok_path.string(), tok->vocab_size(), source.config.vocab_size));
    }
  }
  const at::Tensor prompts = tok ? encode_prompts(*tok, cmd.prompts)
                                 : parse_prompt_ids(cmd.prompt_ids, source.config.vocab_size);
  auto model = model::Model::load(source, opt);

  generate::GenerateOptions gen;
  gen.max_new_tokens = cmd.max_new_tokens;
  gen.sampling = {cmd.temperature, cmd.top_k, cmd.top_p, cmd.seed};
  // The model's eos ids: generation_config.json's where the checkpoint has one, else config.json's
  // (transformers' generate reads the model's alone); the tokenizer's only for a model that says
  // nothing of them. A generation_config.json that is not JSON is ignored, as transformers does.
  gen.eos_ids = source.config.eos_token_ids;
  bool eos_given = source.config.eos_given;
  if (source.checkpoint_dir && std::filesystem::is_regular_file(*source.checkpoint_dir / "generation_config.json")) {
    try {
      gen.eos_ids = model::generation_config_eos(*source.checkpoint_dir / "generation_config.json");
      eos_given = true;
    } catch (const FormatError& e) {
      fmt::print(stderr, "warning: {} (ignored, as transformers ignores it: generation stops at config.json's "
                         "eos_token_id)\n", e.what());
    }
  }
  if (!eos_given && tok && tok->eos_id()) gen.eos_ids.push_back(*tok->eos_id());
  std::optional<tokenizer::StreamDecoder> stream;
  if (!lead) {
    // Other ranks compute the same steps silently.
  } else if (tok && prompts.size(0) == 1 && !cmd.json) {
    stream.emplace(*tok, /*skip_special_tokens=*/true);
    fmt::print("{}", cmd.prompts[0]);
    gen.on_token = [&](const std::vector<int64_t>& ids) {
      fmt::print("{}", stream->push(static_cast<int32_t>(ids[0])));
      std::fflush(stdout);
    };
  } else if (!cmd.json && !tok) {
    gen.on_token = [&](const std::vector<int64_t>& ids) {
      fmt::print("{}{}", ids.size() == 1 ? "" : "[", fmt::join(ids, ","));
      fmt::print("{} ", ids.size() == 1 ? "" : "]");
      std::fflush(stdout);
    };
  }
  const auto result = generate::generate(*model, prompts, gen);
  // Every rank's cache bytes (a collective, so before rank 0 returns alone).
  const std::vector<int64_t> rank_cache = par->gather(static_cast<int64_t>(model->cache().bytes()));
  const std::vector<int64_t> rank_weights = par->gather(static_cast<int64_t>(model->weights().bytes()));
  par->barrier();
  if (!lead) return 0;
  if (stream) fmt::print("{}", stream->flush());
  std::vector<std::string> texts;
  if (tok) {
    for (const auto& seq : result.tokens) texts.push_back(tok->decode(std::vector<int32_t>(seq.begin(), seq.end()), true));
    if (!stream && !cmd.json) {
      for (size_t b = 0; b < texts.size(); ++b) fmt::print("[{}] {}{}\n", b, cmd.prompts[b], texts[b]);
    }
  }
  const int64_t batch = prompts.size(0);
  const double decode_tps = result.decode_s > 0 ? static_cast<double>(batch * result.steps) / result.decode_s : 0.0;
  if (cmd.json) {
    nlohmann::json out = {{"model", source.name},           {"device", device.str()},
                          {"dtype", float_dtype_name(opt.dtype)}, {"batch", batch},
                          {"prompt_tokens", result.prompt_tokens}, {"tokens", result.tokens},
                          {"ttft_s", result.ttft_s},         {"decode_s", result.decode_s},
                          {"decode_steps", result.steps},     {"decode_tokens_per_s", decode_tps},
                          {"cache_bytes", model->cache().bytes()}, {"cache_tokens", model->cache().max_len},
                          {"backend", ops::backend_name(opt.backend)}, {"implementations", model->implementations()},
                          {"weights", model->weight_format()}, {"cuda_graphs", model::to_string(opt.decode)},
                          {"programmatic_launch", ops::programmatic_launch_record(device)}};
    if (tok) out["text"] = texts;
    if (par->grouped()) {
      out["parallel"] = parallel_json(*par);
      out["parallel"]["cache_bytes"] = rank_cache;
      out["parallel"]["weights_bytes"] = rank_weights;
      int64_t total = 0;
      for (int64_t b : rank_cache) total += b;
      out["parallel"]["cache_bytes_total"] = total;
    }
    fmt::print("{}\n", out.dump(2));
  } else {
    fmt::print("\n{} prompt tokens, {} generated, time to first token {:.1f} ms, decode {:.1f} tok/s ({}, {}, batch {}); "
               "cache {} for {} tokens\n",
               result.prompt_tokens, result.tokens.empty() ? 0 : result.tokens[0].size(), result.ttft_s * 1e3,
               decode_tps, device.str(), float_dtype_name(opt.dtype), batch, human_bytes(model->cache().bytes()),
               model->cache().max_len);
  }
  return 0;
}

}  // namespace

void register_generate(CLI::App& app, int* exit_code) {
  auto cmd = std::make_shared<GenerateCmd>();
  auto* sub = app.add_subcommand("generate", "Generate tokens with a model (checkpoint, or random weights for a config)");
  sub->add_option("MODEL", cmd->model, "Checkpoint folder, config file or built-in config name")->required();
  add_model_footer(sub);
  sub->add_option("-p,--prompt", cmd->prompts, "Prompt text (repeat for a batch of equal-length prompts)");
  sub->add_option("--tokenizer", cmd->tokenizer, "tokenizer.json, tokenizer.model or a folder (default: MODEL's)");
  sub->add_option("--prompt-ids", cmd->prompt_ids, "Prompt token ids: 1,2,3 (a batch: 1,2,3;4,5,6)");
  sub->add_option("-n,--max-new-tokens", cmd->max_new_tokens, "Tokens to generate")->capture_default_str();
  sub->add_option("--temperature", cmd->temperature, "0 = greedy")->capture_default_str();
  sub->add_option("--top-k", cmd->top_k, "Sample from the k most likely tokens (0 = off)")->capture_default_str();
  sub->add_option("--top-p", cmd->top_p, "Nucleus sampling threshold (1 = off)")->capture_default_str();
  add_seed_option(sub, &cmd->seed, "Seed for sampling and for random weights");
  sub->add_option("--dtype", cmd->dtype, "auto (fp32 on CPU, bf16 on GPU), float32, bfloat16, float16")
      ->capture_default_str();
  sub->add_option("--device", cmd->device, "auto, cpu, cuda, cuda:N")->capture_default_str();
  sub->add_option("--attention", cmd->attention, "sdpa (fused) or eager (explicit masked softmax)")->capture_default_str();
  sub->add_option("--cuda-graphs", cmd->cuda_graphs,
                  "auto: a CUDA graph wherever the model supports it (CUDA device; MoE only on the CUDA dispatch "
                  "kernels: not with --backend reference), else off; on: "
                  "replay decode steps as a CUDA graph; static: the same fixed-shape step without the graph; off")
      ->capture_default_str();
  add_backend_option(sub, &cmd->backend);
  add_pdl_option(sub, &cmd->pdl);
  add_weights_option(sub, &cmd->weights);
  add_parallel_block_option(sub, &cmd->parallel_block);
  add_norm_prologue_option(sub, &cmd->norm_prologue);
  add_selective_scan_option(sub, &cmd->selective_scan);
  add_parallel_options(sub, &cmd->parallel);
  sub->add_flag("--json", cmd->json, "Print a JSON result instead of streaming");
  sub->callback([cmd, exit_code] { *exit_code = run_generate(*cmd); });
}

}  // namespace effarch::cli
