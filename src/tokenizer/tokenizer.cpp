// load_tokenizer: a checkpoint folder, a tokenizer.json or a tokenizer.model.

#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "effarch/common/error.h"
#include "effarch/io/strict_json.h"
#include "effarch/tokenizer/tokenizer.h"
#include "sentencepiece_tokenizer.h"

namespace effarch::tokenizer {
namespace fs = std::filesystem;

namespace {

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw FormatError(fmt::format("{}: cannot open", path.string()));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer(const fs::path& path) {
  fs::path file = path;
  if (fs::is_directory(path)) {
    if (fs::is_regular_file(path / "tokenizer.json")) {
      file = path / "tokenizer.json";
    } else if (fs::is_regular_file(path / "tokenizer.model")) {
      file = path / "tokenizer.model";
    } else {
      throw FormatError(fmt::format("{}: no tokenizer.json or tokenizer.model in the folder", path.string()));
    }
  } else if (!fs::exists(path)) {
    throw UsageError(fmt::format("{}: no such file or folder", path.string()));
  }
  const fs::path config_path = file.parent_path() / "tokenizer_config.json";
  const bool has_config = fs::is_regular_file(config_path);
  if (file.extension() == ".json") {
    return load_hf_tokenizer(read_text(file), file.string(), has_config ? read_text(config_path) : std::string(),
                             config_path.string());
  }
  nlohmann::json config;
  if (has_config) {
    config = io::read_json_file(config_path);
    if (!config.is_object()) throw FormatError(fmt::format("{}: expected a JSON object", config_path.string()));
  }
  return load_sentencepiece(file, has_config ? &config : nullptr, config_path.string());
}

}  // namespace effarch::tokenizer
