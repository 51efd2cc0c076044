// config.json -> ModelConfig: the common keys here, the architecture's own keys in arch/*.cpp.

#include "effarch/model/config.h"

#include <algorithm>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "architectures.h"
#include "effarch/common/dtype.h"
#include "effarch/common/error.h"
#include "effarch/io/strict_json.h"

namespace effarch::model {

const std::vector<Architecture>& architectures() {
  static const std::vector<Architecture> table = {
      arch::llama(), arch::mistral(), arch::phi(),      arch::mamba(), arch::falcon_mamba(),
      arch::mamba2(), arch::mixtral(), arch::deepseek(), arch::jamba(),
  };
  return table;
}

const Architecture* find_architecture(const std::string& name) {
  for (const auto& a : architectures()) {
    if (a.name == name) return &a;
  }
  return nullptr;
}

int64_t ModelConfig::count_layers(MixerKind kind) const {
  return std::count_if(layers.begin(), layers.end(), [&](const LayerSpec& l) { return l.mixer == kind; });
}

int64_t ModelConfig::count_layers(FfnKind kind) const {
  return std::count_if(layers.begin(), layers.end(), [&](const LayerSpec& l) { return l.ffn == kind; });
}

std::string to_string(Family family) {
  switch (family) {
    case Family::Transformer: return "transformer";
    case Family::Mamba: return "mamba";
    case Family::MoE: return "moe";
    case Family::Hybrid: return "hybrid";
  }
  return "?";
}

std::string to_string(MixerKind kind) {
  switch (kind) {
    case MixerKind::Attention: return "attention";
    case MixerKind::Mamba1: return "mamba";
    case MixerKind::Mamba2: return "mamba2";
  }
  return "?";
}

std::string to_string(FfnKind kind) {
  switch (kind) {
    case FfnKind::None: return "none";
    case FfnKind::Dense: return "dense";
    case FfnKind::MoE: return "moe";
  }
  return "?";
}

namespace {

// eos_token_id: an integer or a list of them.
std::vector<int64_t> eos_ids(const ConfigReader& r) {
  std::vector<int64_t> ids;
  if (!r.has("eos_token_id")) return ids;
  const auto& eos = r.doc().at("eos_token_id");
  if (eos.is_array()) {
    for (const auto& e : eos) {
      if (!e.is_number_integer()) r.fail("eos_token_id", "list entries must be integers");
      ids.push_back(e.get<int64_t>());
    }
  } else {
    ids.push_back(r.integer("eos_token_id"));
  }
  return ids;
}

}  // namespace

ModelConfig parse_config(const nlohmann::json& doc, const std::string& source) {
  if (!doc.is_object()) throw ConfigError(fmt::format("{}: config must be a JSON object", source));
  ConfigReader r(doc, source);
  ModelConfig c;
  c.source = source;
  c.raw = doc;

  if (!r.has("architectures")) r.fail("architectures", "missing (e.g. [\"LlamaForCausalLM\"])");
  const auto& archs = doc.at("architectures");
  if (!archs.is_array() || archs.empty()) r.fail("architectures", "must be a non-empty list of strings");
  const Architecture* arch = nullptr;
  std::vector<std::string> names;
  for (const auto& a : archs) {
    if (!a.is_string()) r.fail("architectures", fmt::format("entries must be strings, got {}", a.dump()));
    names.push_back(a.get<std::string>());
    if (arch == nullptr) arch = find_architecture(names.back());
  }
  if (arch == nullptr) {
    std::vector<std::string> known;
    for (const auto& a : architectures()) known.push_back(a.name);
    r.fail("architectures", fmt::format("unknown architecture {} (supported: {})", fmt::join(names, ", "),
                                        fmt::join(known, ", ")));
  }
  c.architecture = arch->name;
  c.model_type = r.string_or("model_type", "");

  c.vocab_size = r.positive("vocab_size");
  c.hidden_size = r.positive("hidden_size");
  c.num_layers = r.positive("num_hidden_layers");
  if (c.num_layers > 65536) r.fail("num_hidden_layers", fmt::format("{} layers is past any model's (at most 65536)", c.num_layers));
  // transformers 5 writes "dtype", 4.x "torch_dtype"; with both, 5.23 takes "dtype".
  const std::string dtype_key = r.has("dtype") ? "dtype" : "torch_dtype";
  if (r.has(dtype_key)) {
    const std::string name = r.string(dtype_key);
    try {
      c.torch_dtype = parse_float_dtype(name, dtype_key);
    } catch (const UsageError&) {
      r.fail(dtype_key, fmt::format("'{}' is not a float dtype effarch supports (float32, bfloat16, float16)", name));
    }
  }
  if (r.has("quantization_config")) {
    const auto& q = doc.at("quantization_config");
    const std::string method = q.is_object() && q.contains("quant_method") && q.at("quant_method").is_string()
                                   ? q.at("quant_method").get<std::string>()
                                   : "unnamed";
    r.fail("quantization_config",
           fmt::format("a checkpoint quantised with {} is not supported: effarch reads float weights (F32, F16, BF16, "
                       "F8) and quantises them itself with --weights int8",
                       method));
  }
  c.initializer_range = r.positive_number_or("initializer_range", 0.02);
  if (r.has("bos_token_id")) c.bos_token_id = r.integer("bos_token_id");
  c.eos_token_ids = eos_ids(r);
  c.eos_given = doc.contains("eos_token_id");

  arch->parse(r, c);
  if (static_cast<int64_t>(c.layers.size()) != c.num_layers) {
    throw ConfigError(fmt::format("{}: internal: {} built {} layers of {}", source, arch->name, c.layers.size(), c.num_layers));
  }
  return c;
}

std::vector<int64_t> generation_config_eos(const std::filesystem::path& generation_config_json) {
  const nlohmann::json doc = io::read_json_file(generation_config_json, /*python_literals=*/true);
  if (!doc.is_object()) throw FormatError(fmt::format("{}: must be a JSON object", generation_config_json.string()));
  return eos_ids(ConfigReader(doc, generation_config_json.string()));
}

ModelConfig load_config(const std::filesystem::path& config_json) {
  return parse_config(io::read_json_file(config_json, /*python_literals=*/true), config_json.string());
}

}  // namespace effarch::model
