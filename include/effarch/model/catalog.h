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
// A path that exists wins over a built-in name: `tiny-llama` with a folder of that name in the
// working directory is that folder (shadowed_builtin says so).
ModelSource resolve_model(const std::string& model);

// The built-in config that MODEL would name but resolve_model does not take, because a file or
// folder of that name exists: its path (give it as MODEL to use the built-in), else nullopt.
std::optional<std::filesystem::path> shadowed_builtin(const std::string& model);
// The one line that says so ("'tiny-llama' is the folder tiny-llama here, not the built-in config
// of that name: ..."), else nullopt; the commands print it as a note.
std::optional<std::string> shadowed_builtin_note(const std::string& model);

}  // namespace effarch::model
