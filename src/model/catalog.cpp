#include "effarch/model/catalog.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "effarch/common/error.h"
#include "effarch/version.h"

namespace effarch::model {
namespace fs = std::filesystem;

fs::path configs_dir() {
  if (const char* env = std::getenv("EFFARCH_CONFIGS_DIR"); env != nullptr && *env != '\0') return env;
#ifdef EFFARCH_SOURCE_CONFIGS_DIR
  if (fs::is_directory(EFFARCH_SOURCE_CONFIGS_DIR)) return EFFARCH_SOURCE_CONFIGS_DIR;
#endif
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const fs::path installed = exe.parent_path().parent_path() / "share" / "effarch" / "configs";
    if (fs::is_directory(installed)) return installed;
  }
  return "configs";
}

std::vector<std::string> builtin_model_names() {
  std::vector<std::string> names;
  const fs::path dir = configs_dir() / "models";
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.path().extension() == ".json") names.push_back(entry.path().stem().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::optional<fs::path> shadowed_builtin(const std::string& model) {
  const fs::path p(model);
  // Only a bare name can mean a built-in (a path with a folder in it never does).
  if (model.empty() || p.has_parent_path() || model == "." || model == "..") return std::nullopt;
  std::error_code ec;
  if (!fs::exists(p, ec)) return std::nullopt;
  const fs::path builtin = configs_dir() / "models" / (model + ".json");
  if (!fs::is_regular_file(builtin, ec)) return std::nullopt;
  return builtin;
}

std::optional<std::string> shadowed_builtin_note(const std::string& model) {
  const auto builtin = shadowed_builtin(model);
  if (!builtin) return std::nullopt;
  std::error_code ec;
  // A folder without config.json is refused by resolve_model, whose error says the same.
  if (fs::is_directory(model, ec) && !fs::exists(fs::path(model) / "config.json", ec)) return std::nullopt;
  return fmt::format("'{}' is the {} {} here, not the built-in config of that name: a path that exists wins (give {} "
                     "for the built-in)",
                     model, fs::is_directory(model, ec) ? "folder" : "file", (fs::path(".") / model).string(),
                     builtin->string());
}

ModelSource resolve_model(const std::string& model) {
  ModelSource src;
  const fs::path p(model);
  if (fs::is_directory(p)) {
    if (!fs::exists(p / "config.json")) {
      const auto builtin = shadowed_builtin(model);
      throw UsageError(fmt::format("{}: checkpoint folder has no config.json{}", model,
                                   builtin ? fmt::format(" (a folder here named like a built-in config is taken for a "
                                                         "checkpoint: give {} for the built-in)",
                                                         builtin->string())
                                           : ""));
    }
    src.name = fs::weakly_canonical(p).filename().string();
    src.config_path = p / "config.json";
    src.checkpoint_dir = p;
  } else if (fs::is_regular_file(p)) {
    if (p.extension() == ".safetensors") {
      throw UsageError(fmt::format("MODEL '{}' is a safetensors file: give the checkpoint folder that holds it and its "
                                   "config.json",
                                   model));
    }
    src.name = p.stem().string();
    src.config_path = p;
  } else {
    const fs::path builtin = configs_dir() / "models" / (model + ".json");
    if (!fs::is_regular_file(builtin)) {
      throw UsageError(fmt::format("MODEL '{}' is not a checkpoint folder, a config file or a built-in config ({})",
                                   model, fmt::join(builtin_model_names(), ", ")));
    }
    src.name = model;
    src.config_path = builtin;
  }
  src.config = load_config(src.config_path);
  return src;
}

}  // namespace effarch::model
