// JSON access shared by the component parsers: every error names the file, the JSON path and key.

#include <fmt/format.h>

#include "components.h"
#include "effarch/common/error.h"
#include "unicode.h"

namespace effarch::tokenizer {

const json& require_key(const json& j, const char* key, const std::string& where) {
  if (!j.is_object()) throw FormatError(fmt::format("{}: expected a JSON object, got {}", where, j.type_name()));
  const auto it = j.find(key);
  if (it == j.end()) throw FormatError(fmt::format("{}: missing key '{}'", where, key));
  return *it;
}

std::string get_string(const json& j, const char* key, const std::string& where) {
  const json& v = require_key(j, key, where);
  if (!v.is_string()) throw FormatError(fmt::format("{}.{}: expected a string, got {}", where, key, v.type_name()));
  return v.get<std::string>();
}

bool get_bool(const json& j, const char* key, bool fallback, const std::string& where) {
  if (!j.is_object()) throw FormatError(fmt::format("{}: expected a JSON object, got {}", where, j.type_name()));
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) throw FormatError(fmt::format("{}.{}: expected true or false, got {}", where, key, it->dump()));
  return it->get<bool>();
}

std::optional<std::string> get_optional_string(const json& j, const char* key, const std::string& where) {
  if (!j.is_object()) throw FormatError(fmt::format("{}: expected a JSON object, got {}", where, j.type_name()));
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  if (!it->is_string()) throw FormatError(fmt::format("{}.{}: expected a string, got {}", where, key, it->type_name()));
  return it->get<std::string>();
}

std::string component_type(const json& j, const std::string& where) { return get_string(j, "type", where); }

char32_t get_char(const json& j, const char* key, const std::string& where) {
  const std::string s = get_string(j, key, where);
  if (s.empty() || unicode::find_invalid_utf8(s) != std::string::npos ||
      unicode::char_len(static_cast<unsigned char>(s[0])) != s.size()) {
    throw FormatError(fmt::format("{}.{}: expected a single character, got \"{}\"", where, key, s));
  }
  return unicode::decode_at(s, 0);
}

Regex parse_pattern(const json& j, const std::string& where) {
  if (j.is_object() && j.size() == 1 && j.begin().value().is_string()) {
    const std::string& kind = j.begin().key();
    const auto& text = j.begin().value().get_ref<const std::string&>();
    if (kind == "String") return Regex(text, /*literal=*/true, where);
    if (kind == "Regex") return Regex(text, /*literal=*/false, where);
  }
  throw FormatError(fmt::format("{}: expected {{\"String\": ...}} or {{\"Regex\": ...}}, got {}", where, j.dump()));
}

}  // namespace effarch::tokenizer
