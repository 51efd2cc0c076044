#include "effarch/io/strict_json.h"

#include <fstream>
#include <set>
#include <sstream>
#include <vector>

#include <fmt/format.h>

#include "effarch/common/error.h"
#include "effarch/common/files.h"

namespace effarch::io {

nlohmann::json parse_strict_json(std::string_view text, const std::string& origin) {
  using json = nlohmann::json;
  constexpr int kMaxDepth = 64;
  // One set of seen keys per open object; arrays push an empty placeholder to keep depths aligned.
  std::vector<std::set<std::string>> seen;
  json::parser_callback_t check = [&](int depth, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        if (depth >= kMaxDepth) throw FormatError(fmt::format("{}: JSON nested deeper than {} levels", origin, kMaxDepth));
        seen.emplace_back();
        break;
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        if (!seen.empty()) seen.pop_back();
        break;
      case json::parse_event_t::key: {
        const auto& key = parsed.get_ref<const std::string&>();
        if (!seen.empty() && !seen.back().insert(key).second) {
          throw FormatError(fmt::format("{}: duplicate key '{}'", origin, key));
        }
        break;
      }
      default:
        break;
    }
    return true;
  };
  // nlohmann's lexer takes a raw NUL byte for the end of input and ignores whatever follows it
  // ("{}\0garbage" parses). A raw NUL is never valid JSON (inside strings it must be escaped).
  if (const size_t nul = text.find('\0'); nul != std::string_view::npos) {
    throw FormatError(fmt::format("{}: invalid JSON: NUL byte at offset {}", origin, nul));
  }
  try {
    return json::parse(text.begin(), text.end(), check);
  } catch (const json::exception& e) {
    throw FormatError(fmt::format("{}: invalid JSON: {}", origin, e.what()));
  }
}

std::string quote_python_literals(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 16);
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char ch = text[i];
    if (in_string) {
      out += ch;
      if (ch == '\\' && i + 1 < text.size()) {
        out += text[++i];
      } else if (ch == '"') {
        in_string = false;
      }
      continue;
    }
    if (ch == '"') {
      in_string = true;
      out += ch;
      continue;
    }
    bool replaced = false;
    for (std::string_view lit : {std::string_view("-Infinity"), std::string_view("Infinity"), std::string_view("NaN")}) {
      if (text.substr(i, lit.size()) == lit) {
        out += '"';
        out += lit;
        out += '"';
        i += lit.size() - 1;
        replaced = true;
        break;
      }
    }
    if (!replaced) out += ch;
  }
  return out;
}

nlohmann::json read_json_file(const std::filesystem::path& path, bool python_literals) {
  if (const std::string why = unreadable_reason(path); !why.empty()) {
    throw FormatError(fmt::format("{}: {}", path.string(), why));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw FormatError(fmt::format("{}: cannot open file", path.string()));
  std::ostringstream text;
  text << in.rdbuf();
  if (python_literals) return parse_strict_json(quote_python_literals(text.str()), path.string());
  return parse_strict_json(text.str(), path.string());
}

}  // namespace effarch::io
