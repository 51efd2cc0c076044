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

ModelSource resolve_model(const std::string& model) {
  ModelSource src;
  const fs::path p(model);
  if (fs::is_directory(p)) {
    if (!fs::exists(p / "config.json")) throw UsageError(fmt::format("{}: checkpoint folder has no config.json", model));
    src.name = fs::weakly_canonical(p).filename().string();
    src.config_path = p / "config.json";
    src.checkpoint_dir = p;
  } else if (fs::is_regular_file(p)) {
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
