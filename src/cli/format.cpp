#include <cctype>
#include <cmath>

#include <fmt/format.h>

#include "commands.h"
#include "effarch/common/error.h"

namespace effarch::cli {

std::string group_digits(int64_t n) {
  std::string digits = std::to_string(n < 0 ? -n : n);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}

std::string human_count(int64_t n) {
  const double v = static_cast<double>(n);
  if (v >= 1e9) return fmt::format("{:.2f}B", v / 1e9);
  if (v >= 1e6) return fmt::format("{:.2f}M", v / 1e6);
  if (v >= 1e3) return fmt::format("{:.1f}K", v / 1e3);
  return std::to_string(n);
}

uint64_t parse_size(const std::string& text, const std::string& option) {
  size_t pos = 0;
  while (pos < text.size() && (std::isdigit(static_cast<unsigned char>(text[pos])) || text[pos] == '.')) ++pos;
  std::string unit = text.substr(pos);
  for (auto& ch : unit) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  double value = -1;
  const std::string number = text.substr(0, pos);
  try {
    size_t used = 0;
    if (pos > 0) value = std::stod(number, &used);
    if (used != number.size()) value = -1;  // "1.5.5": one number, every character of it
  } catch (const std::exception&) {
    value = -1;
  }
  double scale = -1;
  if (unit.empty() || unit == "B") scale = 1;
  else if (unit == "KB") scale = 1e3;
  else if (unit == "MB") scale = 1e6;
  else if (unit == "GB") scale = 1e9;
  else if (unit == "KIB") scale = 1024.0;
  else if (unit == "MIB") scale = 1024.0 * 1024;
  else if (unit == "GIB") scale = 1024.0 * 1024 * 1024;
  if (value <= 0 || scale < 0 || !std::isfinite(value * scale)) {
    throw UsageError(fmt::format("{}: '{}' is not a size (e.g. 5GB, 500MB, 2GiB)", option, text));
  }
  // At least a byte, and within what a size holds (a size of 0 would read as "no limit").
  if (value * scale < 1 || value * scale >= 9.2e18) {
    throw UsageError(fmt::format("{}: '{}' is {} bytes: give a size from 1 byte to 9 EB", option, text, value * scale));
  }
  return static_cast<uint64_t>(value * scale);
}

}  // namespace effarch::cli
