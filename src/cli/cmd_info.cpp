// effarch info MODEL...: the architecture table, computed from configs.

#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "effarch/model/sharding.h"
#include "effarch/common/dtype.h"
#include "effarch/ops/linear.h"
#include "effarch/model/catalog.h"
#include "effarch/model/stats.h"
#include "effarch/model/tensor_spec.h"

namespace effarch::cli {
namespace {

struct InfoOptions {
  std::vector<std::string> models;
  bool json = false;
  bool tensors = false;
  std::string cache_dtype = "bfloat16";
  std::string weights = "dense";
  int tp = 1, ep = 1;
};

nlohmann::json to_json(const model::ModelSource& src, const model::ModelStats& s, at::ScalarType cache_dtype) {
  const auto& c = src.config;
  nlohmann::json layers = nlohmann::json::array();
  for (const auto& l : c.layers) layers.push_back({{"mixer", model::to_string(l.mixer)}, {"ffn", model::to_string(l.ffn)}});
  return {
      {"model", src.name},
      {"config", src.config_path.string()},
      {"architecture", c.architecture},
      {"family", model::to_string(c.family)},
      {"num_layers", c.num_layers},
      {"hidden_size", c.hidden_size},
      {"vocab_size", c.vocab_size},
      {"layout", s.layout},
      {"layer_codes", model::layer_codes(c)},
      {"layers", layers},
      {"attention_layers", s.attention_layers},
      {"mamba_layers", s.mamba_layers},
      {"moe_layers", s.moe_layers},
      {"dense_layers", s.dense_layers},
      {"total_params", s.total_params},
      {"active_params", s.active_params},
      {"checkpoint_dtype", float_dtype_name(c.torch_dtype)},
      {"weight_bytes_bf16", s.weight_bytes_bf16},
      {"weight_bytes_checkpoint", s.weight_bytes_checkpoint},
      {"weight_bytes_int8", s.weight_bytes_int8},
      {"cache_dtype", float_dtype_name(cache_dtype)},
      {"kv_cache_bytes_per_token", s.kv_bytes_per_token},
      {"state_bytes_per_sequence", s.state_bytes_per_sequence},
      {"max_context", s.max_context ? nlohmann::json(*s.max_context) : nlohmann::json(nullptr)},
  };
}

void print_table(const std::vector<nlohmann::json>& rows, bool int8) {
  const std::vector<std::string> head = {"model", "family", "layers", "params", "active",
                                         int8 ? "int8 weights" : "bf16 weights", "ckpt weights", "KV / token",
                                         "state / seq", "max ctx"};
  std::vector<std::vector<std::string>> cells;
  for (const auto& r : rows) {
    cells.push_back({
        r["model"].get<std::string>(),
        r["family"].get<std::string>(),
        fmt::format("{}: {}", r["num_layers"].get<int64_t>(), r["layout"].get<std::string>()),
        group_digits(r["total_params"].get<int64_t>()),
        group_digits(r["active_params"].get<int64_t>()),
        human_bytes(r[int8 ? "weight_bytes_int8" : "weight_bytes_bf16"].get<uint64_t>()),
        fmt::format("{} ({})", human_bytes(r["weight_bytes_checkpoint"].get<uint64_t>()),
                    r["checkpoint_dtype"].get<std::string>()),
        r["kv_cache_bytes_per_token"].get<uint64_t>() == 0 ? "-" : human_bytes(r["kv_cache_bytes_per_token"].get<uint64_t>()),
        r["state_bytes_per_sequence"].get<uint64_t>() == 0 ? "-" : human_bytes(r["state_bytes_per_sequence"].get<uint64_t>()),
        r["max_context"].is_null() ? "unbounded" : group_digits(r["max_context"].get<int64_t>()),
    });
  }
  std::vector<size_t> width(head.size());
  for (size_t i = 0; i < head.size(); ++i) {
    width[i] = head[i].size();
    for (const auto& row : cells) width[i] = std::max(width[i], row[i].size());
  }
  auto line = [&](const std::vector<std::string>& row) {
    std::string s = "|";
    for (size_t i = 0; i < row.size(); ++i) {
      // Numbers right-aligned, text left-aligned.
      const bool right = i >= 3;
      s += right ? fmt::format(" {:>{}} |", row[i], width[i]) : fmt::format(" {:<{}} |", row[i], width[i]);
    }
    fmt::print("{}\n", s);
  };
  line(head);
  std::string sep = "|";
  for (size_t i = 0; i < head.size(); ++i) sep += std::string(width[i] + 2, '-') + "|";
  fmt::print("{}\n", sep);
  for (const auto& row : cells) line(row);
  fmt::print("\nKV / token: K and V of every attention layer for one token of one sequence at {}; state / seq: "
             "Mamba conv state ({}) + SSM state (fp32) per sequence.\n",
             rows.empty() ? "bfloat16" : rows[0]["cache_dtype"].get<std::string>(),
             rows.empty() ? "bfloat16" : rows[0]["cache_dtype"].get<std::string>());
  if (int8) {
    fmt::print("int8 weights: every linear weight in int8 with an fp32 scale per output channel (--weights int8), "
               "embeddings, norms, routers and biases in bf16.\n");
  }
}

// Bytes each rank of a --tp x --ep run holds (docs/parallel.md): weights at bf16 and at the
// checkpoint's dtype from the split rules, the KV cache per token and Mamba state per sequence
// (split by tp: kv heads and Mamba channels are).
nlohmann::json per_rank(const model::ModelConfig& c, int tp, int ep, at::ScalarType cache_dtype) {
  model::check_shardable(c, tp, ep);
  const model::ModelStats whole = model::compute_stats(c, cache_dtype);
  nlohmann::json ranks = nlohmann::json::array();
  for (int r = 0; r < tp * ep; ++r) {
    const model::Shard s{tp, r % tp, ep, r / tp};
    ranks.push_back({{"rank", r},
                     {"tp_rank", s.tp_rank},
                     {"ep_rank", s.ep_rank},
                     {"weight_bytes_bf16", model::shard_bytes(c, s, 2)},
                     {"weight_bytes_checkpoint",
                      model::shard_bytes(c, s, static_cast<uint64_t>(c10::elementSize(c.torch_dtype)))},
                     {"kv_cache_bytes_per_token", whole.kv_bytes_per_token / static_cast<uint64_t>(tp)},
                     {"state_bytes_per_sequence", whole.state_bytes_per_sequence / static_cast<uint64_t>(tp)}});
  }
  return {{"tp", tp}, {"ep", ep}, {"ranks", ranks}};
}

int run_info(const InfoOptions& opt) {
  const at::ScalarType cache_dtype = parse_float_dtype(opt.cache_dtype, "--cache-dtype");
  const ops::WeightFormat weights = ops::parse_weight_format(opt.weights, "--weights");
  std::vector<std::string> models = opt.models;
  for (const auto& m : models) note_shadowed_model(m);
  // No MODEL: every built-in config by its file, so that a folder named like one cannot stand in.
  if (models.empty()) {
    for (const auto& name : model::builtin_model_names()) {
      models.push_back((model::configs_dir() / "models" / (name + ".json")).string());
    }
  }
  std::vector<nlohmann::json> rows;
  for (const auto& m : models) {
    const auto src = model::resolve_model(m);
    rows.push_back(to_json(src, model::compute_stats(src.config, cache_dtype), cache_dtype));
    if (opt.tp != 1 || opt.ep != 1) rows.back()["per_rank"] = per_rank(src.config, opt.tp, opt.ep, cache_dtype);
    if (opt.tensors) {
      nlohmann::json list = nlohmann::json::array();
      for (const auto& t : model::expected_tensors(src.config)) {
        list.push_back({{"name", t.name}, {"shape", t.shape}, {"optional", t.optional}});
      }
      rows.back()["tensors"] = std::move(list);
    }
  }
  if (opt.json) {
    fmt::print("{}\n", nlohmann::json(rows).dump(2));
  } else {
    print_table(rows, weights == ops::WeightFormat::Int8);
    for (const auto& r : rows) {
      if (!r.contains("per_rank")) continue;
      const auto& pr = r["per_rank"];
      fmt::print("\n{}: per rank with --tp {} --ep {} ({} processes):\n", r["model"].get<std::string>(),
                 pr["tp"].get<int>(), pr["ep"].get<int>(), pr["ranks"].size());
      for (const auto& k : pr["ranks"]) {
        fmt::print("  rank {} (tp {}, ep {}): bf16 weights {}, ckpt weights {}, KV / token {}, state / seq {}\n",
                   k["rank"].get<int>(), k["tp_rank"].get<int>(), k["ep_rank"].get<int>(),
                   human_bytes(k["weight_bytes_bf16"].get<uint64_t>()),
                   human_bytes(k["weight_bytes_checkpoint"].get<uint64_t>()),
                   human_bytes(k["kv_cache_bytes_per_token"].get<uint64_t>()),
                   human_bytes(k["state_bytes_per_sequence"].get<uint64_t>()));
      }
    }
    for (const auto& r : rows) {
      if (!r.contains("tensors")) continue;
      fmt::print("\n{}: {} expected tensors\n", r["model"].get<std::string>(), r["tensors"].size());
      for (const auto& t : r["tensors"]) {
        fmt::print("  {} [{}]{}\n", t["name"].get<std::string>(), fmt::join(t["shape"].get<std::vector<int64_t>>(), ", "),
                   t["optional"].get<bool>() ? " (optional: tied to the embedding)" : "");
      }
    }
  }
  return 0;
}

}  // namespace

void register_info(CLI::App& app, int* exit_code) {
  auto opt = std::make_shared<InfoOptions>();
  auto* cmd = app.add_subcommand("info", "Architecture table: layer layout, exact parameter counts, weight, KV-cache "
                                         "and state bytes (no weights are loaded)");
  cmd->add_option("MODEL", opt->models, "Checkpoint folders, config files or built-in config names (default: all built-in)");
  add_model_footer(cmd);
  cmd->add_flag("--json", opt->json, "Print JSON instead of a table");
  cmd->add_option("--tp", opt->tp, "Also the bytes per rank of a run with this tensor parallelism (docs/parallel.md)")
      ->capture_default_str();
  cmd->add_option("--ep", opt->ep, "... and this expert parallelism")->capture_default_str();
  cmd->add_flag("--tensors", opt->tensors, "Also list the expected checkpoint tensors (HF names and shapes)");
  cmd->add_option("--weights", opt->weights,
                  "dense or int8: which weight bytes the table shows (the JSON has both)")
      ->capture_default_str();
  cmd->add_option("--cache-dtype", opt->cache_dtype, "dtype of the KV cache and conv state in the byte figures")
      ->capture_default_str();
  cmd->callback([opt, exit_code] { *exit_code = run_info(*opt); });
}

}  // namespace effarch::cli
