// effarch generate MODEL --prompt-ids IDS -n N: runs the model (checkpoint weights, or random
// weights for a bare config), streams the ids as they are produced, ends with a summary line.

#include <sstream>

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "effarch/common/device.h"
#include "effarch/common/dtype.h"
#include "effarch/common/error.h"
#include "effarch/generate/generate.h"
#include "effarch/model/catalog.h"
#include "effarch/model/model.h"

namespace effarch::cli {
namespace {

struct GenerateCmd {
  std::string model;
  std::string prompt_ids;  // "1,2,3" or "1,2,3;4,5,6" for a batch
  int64_t max_new_tokens = 32;
  double temperature = 0.0;
  int64_t top_k = 0;
  double top_p = 1.0;
  uint64_t seed = 0;
  std::string dtype = "auto";
  std::string device = "auto";
  std::string attention = "sdpa";
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
  for (char ch : text) {
    if (ch == ',' || ch == ' ') {
      flush();
    } else if (ch == ';') {
      flush();
      rows.emplace_back();
    } else {
      token += ch;
    }
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

int run_generate(const GenerateCmd& cmd) {
  if (cmd.prompt_ids.empty()) throw UsageError("--prompt-ids is required (text prompts need a tokenizer)");
  const at::Device device = parse_device(cmd.device, "--device");
  model::ModelOptions opt;
  opt.device = device;
  opt.dtype = parse_run_dtype(cmd.dtype, device, "--dtype");
  opt.attention = ops::parse_attention_impl(cmd.attention, "--attention");
  opt.seed = cmd.seed;
  const auto source = model::resolve_model(cmd.model);
  const at::Tensor prompts = parse_prompt_ids(cmd.prompt_ids, source.config.vocab_size);
  auto model = model::Model::load(source, opt);

  generate::GenerateOptions gen;
  gen.max_new_tokens = cmd.max_new_tokens;
  gen.sampling = {cmd.temperature, cmd.top_k, cmd.top_p, cmd.seed};
  gen.eos_ids = source.config.eos_token_ids;
  if (!cmd.json) {
    gen.on_token = [&](const std::vector<int64_t>& ids) {
      fmt::print("{}{}", ids.size() == 1 ? "" : "[", fmt::join(ids, ","));
      fmt::print("{} ", ids.size() == 1 ? "" : "]");
      std::fflush(stdout);
    };
  }
  const auto result = generate::generate(*model, prompts, gen);
  const int64_t batch = prompts.size(0);
  const double decode_tps = result.decode_s > 0 ? static_cast<double>(batch * result.steps) / result.decode_s : 0.0;
  if (cmd.json) {
    nlohmann::json out = {{"model", source.name},           {"device", device.str()},
                          {"dtype", float_dtype_name(opt.dtype)}, {"batch", batch},
                          {"prompt_tokens", result.prompt_tokens}, {"tokens", result.tokens},
                          {"ttft_s", result.ttft_s},         {"decode_s", result.decode_s},
                          {"decode_steps", result.steps},     {"decode_tokens_per_s", decode_tps}};
    fmt::print("{}\n", out.dump(2));
  } else {
    fmt::print("\n{} prompt tokens, {} generated, time to first token {:.1f} ms, decode {:.1f} tok/s ({}, {}, batch {})\n",
               result.prompt_tokens, result.tokens.empty() ? 0 : result.tokens[0].size(), result.ttft_s * 1e3,
               decode_tps, device.str(), float_dtype_name(opt.dtype), batch);
  }
  return 0;
}

}  // namespace

void register_generate(CLI::App& app, int* exit_code) {
  auto cmd = std::make_shared<GenerateCmd>();
  auto* sub = app.add_subcommand("generate", "Generate tokens with a model (checkpoint, or random weights for a config)");
  sub->add_option("MODEL", cmd->model, "Checkpoint folder, config file or built-in config name")->required();
  sub->add_option("--prompt-ids", cmd->prompt_ids, "Prompt token ids: 1,2,3 (a batch: 1,2,3;4,5,6)");
  sub->add_option("-n,--max-new-tokens", cmd->max_new_tokens, "Tokens to generate")->capture_default_str();
  sub->add_option("--temperature", cmd->temperature, "0 = greedy")->capture_default_str();
  sub->add_option("--top-k", cmd->top_k, "Sample from the k most likely tokens (0 = off)")->capture_default_str();
  sub->add_option("--top-p", cmd->top_p, "Nucleus sampling threshold (1 = off)")->capture_default_str();
  sub->add_option("--seed", cmd->seed, "Seed for sampling and for random weights")->capture_default_str();
  sub->add_option("--dtype", cmd->dtype, "auto (fp32 on CPU, bf16 on GPU), float32, bfloat16, float16")
      ->capture_default_str();
  sub->add_option("--device", cmd->device, "auto, cpu, cuda, cuda:N")->capture_default_str();
  sub->add_option("--attention", cmd->attention, "sdpa (fused) or eager (explicit masked softmax)")->capture_default_str();
  sub->add_flag("--json", cmd->json, "Print a JSON result instead of streaming");
  sub->callback([cmd, exit_code] { *exit_code = run_generate(*cmd); });
}

}  // namespace effarch::cli
