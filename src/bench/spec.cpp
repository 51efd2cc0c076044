// Sweep specifications: list and range parsing for --prompt-lengths / --batch, suite files.

#include <algorithm>
#include <filesystem>
#include <limits>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "effarch/bench/bench.h"
#include "effarch/common/dtype.h"
#include "effarch/common/error.h"
#include "effarch/common/format.h"
#include "effarch/io/strict_json.h"
#include "effarch/model/catalog.h"
#include "effarch/model/model.h"
#include "effarch/ops/attention.h"
#include "effarch/ops/backend.h"

namespace effarch::bench {
namespace {

int64_t parse_positive(const std::string& token, const std::string& option, const std::string& whole) {
  size_t used = 0;
  int64_t v = 0;
  try {
    v = std::stoll(token, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (token.empty() || used != token.size()) {
    throw UsageError(fmt::format("{}: '{}' in '{}' is not a number (lists are a,b,c; ranges a-b*factor or a-b+step)",
                                 option, token, whole));
  }
  if (v < 1) {
    throw UsageError(fmt::format("{}: {} in '{}' is refused: each value must be at least 1 (zero and negative values "
                                 "are refused)",
                                 option, v, whole));
  }
  return v;
}

// The comma-separated words of a launch option's list, each checked by `one`; auto (nullopt)
// only alone, no value twice.
template <typename T, typename Parse>
std::vector<T> parse_launch_list(const std::string& text, const std::string& option, Parse one,
                                 std::string (*name)(const T&)) {
  std::vector<T> out;
  for (const std::string& w : split_commas(text)) {
    if (w.empty()) throw UsageError(fmt::format("{}: an empty value in '{}' (a list is a,b)", option, text));
    const T v = one(w, option);
    if (std::find(out.begin(), out.end(), v) != out.end()) {
      throw UsageError(fmt::format("{}: '{}' is given twice in '{}'", option, name(v), text));
    }
    out.push_back(v);
  }
  return out;
}

}  // namespace

namespace {

// Each launch option's values in its own words, for messages and settings.
std::string graphs_word(const std::optional<model::DecodeMode>& mode) { return mode ? model::to_string(*mode) : "auto"; }
std::string pdl_word(const std::optional<bool>& on) { return on ? (*on ? "on" : "off") : "auto"; }
std::string backend_word(const ops::Backend& backend) { return std::string(ops::backend_name(backend)); }

template <typename T>
std::string join_words(const std::vector<T>& values, std::string (*word)(const T&)) {
  std::vector<std::string> words;
  for (const T& v : values) words.push_back(word(v));
  return fmt::format("{}", fmt::join(words, ","));
}

}  // namespace

std::vector<std::optional<model::DecodeMode>> parse_cuda_graphs_list(const std::string& text, const std::string& option) {
  const auto out = parse_launch_list<std::optional<model::DecodeMode>>(text, option, model::parse_cuda_graphs_request,
                                                                       graphs_word);
  if (out.size() > 1 && std::find(out.begin(), out.end(), std::nullopt) != out.end()) {
    throw UsageError(fmt::format("{}: auto is a value on its own, not one of a list ('{}'): name the modes to run "
                                 "side by side (off, static, on)",
                                 option, text));
  }
  return out;
}

std::vector<std::optional<bool>> parse_pdl_list(const std::string& text, const std::string& option) {
  const auto out =
      parse_launch_list<std::optional<bool>>(text, option, ops::parse_programmatic_launch_request, pdl_word);
  if (out.size() > 1 && std::find(out.begin(), out.end(), std::nullopt) != out.end()) {
    throw UsageError(fmt::format("{}: auto is a value on its own, not one of a list ('{}'): name the values to run "
                                 "side by side (off, on)",
                                 option, text));
  }
  return out;
}

std::vector<ops::Backend> parse_backend_list(const std::string& text, const std::string& option) {
  return parse_launch_list<ops::Backend>(text, option, ops::parse_backend, backend_word);
}

std::string backend_list_name(const std::vector<ops::Backend>& values) { return join_words(values, backend_word); }

std::string cuda_graphs_list_name(const std::vector<std::optional<model::DecodeMode>>& values) {
  return join_words(values, graphs_word);
}

std::string pdl_list_name(const std::vector<std::optional<bool>>& values) { return join_words(values, pdl_word); }

std::vector<LaunchSetting> launch_settings(const SweepSpec& spec) {
  std::vector<LaunchSetting> out;
  for (const ops::Backend backend : spec.backends) {
    for (const auto& graphs : spec.cuda_graphs) {
      for (const auto& pdl : spec.pdl) out.push_back(LaunchSetting{backend, graphs, pdl});
    }
  }
  return out;
}

std::vector<int64_t> parse_int_list(const std::string& text, const std::string& option) {
  std::vector<int64_t> out;
  std::set<int64_t> seen;
  auto add = [&](int64_t v) {
    if (seen.insert(v).second) out.push_back(v);
  };
  if (text.empty()) throw UsageError(fmt::format("{}: an empty list", option));
  for (const std::string& item : split_commas(text)) {
    // "-8" would read as a range with no start: say what it is.
    if (!item.empty() && item[0] == '-') {
      throw UsageError(fmt::format("{}: '{}' in '{}' is negative: each value must be at least 1 (zero and negative "
                                   "values are refused)",
                                   option, item, text));
    }
    const size_t dash = item.find('-');
    if (dash == std::string::npos) {
      add(parse_positive(item, option, text));
    } else {
      const size_t op = item.find_first_of("*+", dash);
      const int64_t lo = parse_positive(item.substr(0, dash), option, text);
      const int64_t hi = parse_positive(item.substr(dash + 1, op == std::string::npos ? std::string::npos : op - dash - 1),
                                        option, text);
      if (hi < lo) throw UsageError(fmt::format("{}: range '{}' ends below its start", option, item));
      const char kind = op == std::string::npos ? '+' : item[op];
      const int64_t step = op == std::string::npos ? 1 : parse_positive(item.substr(op + 1), option, text);
      if (kind == '*' && step < 2) throw UsageError(fmt::format("{}: range '{}' needs a factor of at least 2", option, item));
      for (int64_t v = lo;;) {
        add(v);
        if (out.size() > 100000) throw UsageError(fmt::format("{}: '{}' expands to too many values", option, item));
        // The next value, unless it passes hi (checked before it is computed: it could overflow).
        if (kind == '*' ? v > hi / step : v > hi - step) break;
        v = kind == '*' ? v * step : v + step;
      }
    }
  }
  return out;
}

SweepSpec load_suite(const std::string& name_or_path, const SweepSpec& defaults) {
  std::filesystem::path path = name_or_path;
  if (!std::filesystem::exists(path) && path.extension().empty() && path.parent_path().empty()) {
    path = model::configs_dir() / "suites" / (name_or_path + ".json");
  }
  if (!std::filesystem::exists(path)) {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(model::configs_dir() / "suites")) {
      if (e.path().extension() == ".json") names.push_back(e.path().stem().string());
    }
    std::sort(names.begin(), names.end());
    throw UsageError(fmt::format("--suite: no suite '{}' (a file, or one of: {})", name_or_path, fmt::join(names, ", ")));
  }
  const nlohmann::json doc = io::read_json_file(path);
  const std::string src = path.string();
  if (!doc.is_object()) throw UsageError(fmt::format("{}: a suite is a JSON object", src));
  SweepSpec s = defaults;
  s.suite_name = path.stem().string();  // or the file's "name" (below)
  auto ints = [&](const nlohmann::json& v, const std::string& key) {
    if (v.is_string()) return parse_int_list(v.get<std::string>(), src + ": '" + key + "'");
    if (!v.is_array()) throw UsageError(fmt::format("{}: '{}' must be a list or a range string", src, key));
    if (v.empty()) {
      throw UsageError(fmt::format("{}: '{}' is an empty list: give at least one value, or leave the key out for the "
                                   "default",
                                   src, key));
    }
    std::vector<int64_t> out;
    for (const auto& x : v) {
      if (!x.is_number_integer() || x.get<int64_t>() < 1) {
        throw UsageError(fmt::format("{}: '{}' holds {}, not a positive integer", src, key, x.dump()));
      }
      out.push_back(x.get<int64_t>());
    }
    return out;
  };
  auto str = [&](const nlohmann::json& v, const std::string& key) {
    if (!v.is_string()) throw UsageError(fmt::format("{}: '{}' must be a string", src, key));
    return v.get<std::string>();
  };
  // max: what the key's field holds (reps, warmup and threads are ints: a larger value once wrapped).
  auto integer = [&](const nlohmann::json& v, const std::string& key, int64_t min,
                     int64_t max = std::numeric_limits<int64_t>::max()) {
    if (!v.is_number_integer() || v.get<int64_t>() < min || v.get<int64_t>() > max) {
      throw UsageError(fmt::format("{}: '{}' must be an integer from {} to {}, got {}", src, key, min, max, v.dump()));
    }
    return v.get<int64_t>();
  };
  constexpr int64_t kIntMax = std::numeric_limits<int>::max();
  for (const auto& [key, v] : doc.items()) {
    if (key == "name") {
      s.suite_name = str(v, key);
      continue;
    }
    if (key == "description") {
      (void)str(v, key);
      continue;
    }
    if (key == "models") {
      if (!v.is_array() || v.empty()) throw UsageError(fmt::format("{}: 'models' must be a non-empty list", src));
      s.models.clear();
      for (const auto& m : v) s.models.push_back(str(m, "models"));
    } else if (key == "prompt_lengths") {
      s.prompt_lengths = ints(v, key);
    } else if (key == "batch") {
      s.batches = ints(v, key);
    } else if (key == "gen_tokens") {
      s.gen_tokens = integer(v, key, 1);
    } else if (key == "reps") {
      s.reps = static_cast<int>(integer(v, key, 1, kIntMax));
    } else if (key == "warmup") {
      s.warmup = static_cast<int>(integer(v, key, 0, kIntMax));
    } else if (key == "dtype") {
      s.dtype = str(v, key);
      // Checked here, naming the file and key: found later, the error would name --dtype.
      if (s.dtype != "auto") (void)parse_float_dtype(s.dtype, src + ": 'dtype'");
    } else if (key == "cuda_graphs") {
      s.cuda_graphs = parse_cuda_graphs_list(str(v, key), src + ": 'cuda_graphs'");
    } else if (key == "pdl") {
      s.pdl = parse_pdl_list(str(v, key), src + ": 'pdl'");
    } else if (key == "backend") {
      s.backends = parse_backend_list(str(v, key), src + ": 'backend'");
    } else if (key == "weights") {
      s.weights = ops::parse_weight_format(str(v, key), src + ": 'weights'");
    } else if (key == "parallel_block") {
      s.fuse_parallel_block = model::parse_parallel_block(str(v, key), src + ": 'parallel_block'");
    } else if (key == "norm_prologue") {
      s.fuse_norm_prologue = model::parse_norm_prologue(str(v, key), src + ": 'norm_prologue'");
    } else if (key == "selective_scan") {
      s.selective_scan = model::parse_selective_scan(str(v, key), src + ": 'selective_scan'");
    } else if (key == "threads") {
      s.threads = static_cast<int>(integer(v, key, 1, kIntMax));
    } else if (key == "attention") {
      s.attention = str(v, key);
      (void)ops::parse_attention_impl(s.attention, src + ": 'attention'");  // checked here, used by the runner
    } else if (key == "mode") {
      if (!v.is_array()) throw UsageError(fmt::format("{}: 'mode' must be a list of \"speed\" and \"memory\"", src));
      std::vector<std::string> modes;
      for (const auto& m : v) modes.push_back(str(m, key));
      s.modes = parse_modes(modes, src + ": 'mode'");
    } else {
      throw UsageError(fmt::format("{}: unknown key '{}' (models, prompt_lengths, batch, gen_tokens, reps, warmup, "
                                   "dtype, cuda_graphs, pdl, attention, backend, weights, parallel_block, norm_prologue, "
                                   "selective_scan, threads, mode, name, description)",
                                   src, key));
    }
  }
  if (s.models.empty()) throw UsageError(fmt::format("{}: 'models' is missing", src));
  return s;
}

}  // namespace effarch::bench
