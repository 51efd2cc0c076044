// effarch init CONFIG OUT_DIR: a checkpoint folder with seeded random weights (config.json plus
// safetensors, sharded above --max-shard-size), so loaders and benchmarks run without downloads.

#include <filesystem>
#include <fstream>

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "commands.h"
#include "effarch/common/dtype.h"
#include "effarch/common/error.h"
#include "effarch/io/checkpoint.h"
#include "effarch/io/safetensors.h"
#include "effarch/model/catalog.h"
#include "effarch/model/random_weights.h"
#include "effarch/model/tensor_spec.h"

namespace effarch::cli {
namespace fs = std::filesystem;
namespace {

struct InitOptions {
  std::string config;
  std::string out_dir;
  std::string dtype;  // default: the config's torch_dtype
  uint64_t seed = 0;
  std::string max_shard_size = "5GB";
  bool force = false;
};

int run_init(const InitOptions& opt) {
  note_shadowed_model(opt.config);
  const auto src = model::resolve_model(opt.config);
  const at::ScalarType dtype = opt.dtype.empty() ? src.config.torch_dtype : parse_float_dtype(opt.dtype, "--dtype");
  const uint64_t max_shard = parse_size(opt.max_shard_size, "--max-shard-size");
  if (opt.out_dir.empty()) throw UsageError("OUT_DIR: the path is empty");
  const fs::path out(opt.out_dir);
  if (fs::exists(out) && !fs::is_directory(out)) throw UsageError(fmt::format("OUT_DIR {}: exists and is not a folder", opt.out_dir));
  if (fs::exists(out) && !fs::is_empty(out) && !opt.force) {
    throw UsageError(fmt::format("OUT_DIR {}: folder is not empty (use --force to write into it)", opt.out_dir));
  }
  fs::create_directories(out);
  // --force replaces the checkpoint there: the loader reads the index, or else every *.safetensors
  // file, so the weights of an earlier checkpoint (other shards, a stale index) must go first.
  for (const fs::path& p : io::weight_files(out)) {
    fs::remove(p);
    fmt::print(stderr, "removed {} (--force)\n", p.string());
  }

  // Plan the shards: tensors in table order, a new shard when the next tensor would overflow.
  std::vector<model::TensorSpec> specs;
  for (auto& s : model::expected_tensors(src.config)) {
    if (!s.optional) specs.push_back(std::move(s));
  }
  const DType file_dtype = *dtype_from_scalar_type(dtype);
  std::vector<std::vector<size_t>> shards(1);
  uint64_t shard_bytes = 0, total_bytes = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    const uint64_t bytes = static_cast<uint64_t>(specs[i].numel()) * dtype_size(file_dtype);
    if (!shards.back().empty() && shard_bytes + bytes > max_shard) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().push_back(i);
    shard_bytes += bytes;
    total_bytes += bytes;
  }

  std::map<std::string, std::string> weight_map;
  for (size_t k = 0; k < shards.size(); ++k) {
    const std::string file = shards.size() == 1 ? "model.safetensors"
                                                : fmt::format("model-{:05d}-of-{:05d}.safetensors", k + 1, shards.size());
    std::vector<io::SafetensorsWriter::Entry> entries;
    for (size_t i : shards[k]) {
      entries.push_back({specs[i].name, file_dtype, specs[i].shape});
      weight_map[specs[i].name] = file;
    }
    io::SafetensorsWriter writer(out / file, entries, {{"format", "pt"}});
    // The writer orders tensors by element size; all share one dtype here, so order is kept.
    for (size_t i : shards[k]) {
      writer.write(specs[i].name, model::random_tensor(src.config, specs[i], opt.seed, dtype, at::kCPU));
    }
    writer.finish();
    fmt::print(stderr, "wrote {} ({} tensors)\n", (out / file).string(), shards[k].size());
  }
  if (shards.size() > 1) io::write_index(out, weight_map, total_bytes);

  nlohmann::json config = src.config.raw;
  config.erase("dtype");
  config["torch_dtype"] = float_dtype_name(dtype);
  std::ofstream cfg(out / "config.json");
  cfg << config.dump(2) << "\n";
  if (!cfg) throw Error(fmt::format("{}: write failed", (out / "config.json").string()));
  fmt::print("{}: {} ({} tensors, {} bytes of {} weights, seed {})\n", opt.out_dir, src.config.architecture,
             specs.size(), group_digits(static_cast<int64_t>(total_bytes)), float_dtype_name(dtype), opt.seed);
  return 0;
}

}  // namespace

void register_init(CLI::App& app, int* exit_code) {
  auto opt = std::make_shared<InitOptions>();
  auto* cmd = app.add_subcommand("init", "Write a checkpoint folder with seeded random weights for a config");
  cmd->add_option("CONFIG", opt->config, "A built-in config name, a config.json or a checkpoint folder")->required();
  cmd->add_option("OUT_DIR", opt->out_dir, "Folder to write config.json and safetensors into")->required();
  cmd->add_option("--dtype", opt->dtype, "Weight dtype: float32, bfloat16, float16 (default: the config's torch_dtype)");
  add_seed_option(cmd, &opt->seed, "Random seed");
  cmd->add_option("--max-shard-size", opt->max_shard_size, "Shard the weights above this size (e.g. 5GB, 100MB)")
      ->capture_default_str();
  cmd->add_flag("--force", opt->force,
                "Write into a non-empty OUT_DIR, replacing the checkpoint there (its *.safetensors files and index)");
  cmd->callback([opt, exit_code] { *exit_code = run_init(*opt); });
}

}  // namespace effarch::cli
