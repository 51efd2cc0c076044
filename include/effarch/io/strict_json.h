#pragma once
// JSON parsing for files we validate (safetensors headers, index files, config.json): rejects
// duplicate keys (nlohmann would keep the last silently) and absurd nesting, and reports errors
// prefixed with the file they came from.

#include <filesystem>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace effarch::io {

// Throws FormatError("<origin>: ...") on a syntax error, a duplicate key or nesting deeper than 64.
nlohmann::json parse_strict_json(std::string_view text, const std::string& origin);
// Reads and parses a file; errors name the path. With `python_literals`, the bare Infinity,
// -Infinity and NaN that Python's json module writes (HF configs carry them, e.g. Mamba-2's
// time_step_limit) are accepted and become the strings "Infinity", "-Infinity" and "NaN".
nlohmann::json read_json_file(const std::filesystem::path& path, bool python_literals = false);
// The rewrite itself: bare Infinity/-Infinity/NaN outside strings become quoted strings.
std::string quote_python_literals(std::string_view text);

}  // namespace effarch::io
