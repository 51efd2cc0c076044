#pragma once
// MODEL arguments: a checkpoint folder (config.json + safetensors), a config.json path, or the
// name of a built-in config under configs/models/ (run with random weights).

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "effarch/model/config.h"

namespace effarch::model {

struct ModelSource {
  std::string name;                      // what the user typed, or the folder's name
  std::filesystem::path config_path;     // the config.json that was read
  std::optional<std::filesystem::path> checkpoint_dir;  // set for a checkpoint folder
  ModelConfig config;
};

// The folder of built-in configs: $EFFARCH_CONFIGS_DIR, else configs/ next to the binary's
// source tree (compiled in), else ../share/effarch/configs relative to the binary.
std::filesystem::path configs_dir();
std::vector<std::string> builtin_model_names();  // stems of configs/models/*.json, sorted

// Throws UsageError when MODEL is neither a folder, a file nor a known name (listing the names).
ModelSource resolve_model(const std::string& model);

}  // namespace effarch::model
