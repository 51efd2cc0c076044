#include "effarch/common/format.h"

#include <algorithm>

#include <fmt/format.h>

namespace effarch {

std::string human_bytes(uint64_t bytes) {
  static const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024.0 && u < 4) {
    v /= 1024.0;
    ++u;
  }
  return u == 0 ? fmt::format("{} B", bytes) : fmt::format("{:.1f} {}", v, units[u]);
}

std::vector<std::string> split_commas(const std::string& text) {
  std::vector<std::string> items;
  size_t start = 0;
  while (true) {
    const size_t comma = text.find(',', start);
    items.push_back(text.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) return items;
    start = comma + 1;
  }
}

std::optional<std::string> first_repeat(const std::vector<std::string>& items) {
  for (auto it = items.begin(); it != items.end(); ++it) {
    if (std::find(items.begin(), it, *it) != it) return *it;
  }
  return std::nullopt;
}

}  // namespace effarch
