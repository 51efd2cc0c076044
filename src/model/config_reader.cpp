#include "config_reader.h"

#include <cmath>
#include <cstdint>
#include <limits>

#include <fmt/format.h>

#include "effarch/common/error.h"

namespace effarch::model {

bool ConfigReader::has(const std::string& key) const {
  auto it = doc_.find(key);
  return it != doc_.end() && !it->is_null();
}

void ConfigReader::fail(const std::string& key, const std::string& what) const {
  throw ConfigError(fmt::format("{}: key '{}': {}", source_, key, what));
}

const nlohmann::json& ConfigReader::value(const std::string& key) const {
  auto it = doc_.find(key);
  if (it == doc_.end() || it->is_null()) fail(key, "missing (required for this architecture)");
  return *it;
}

int64_t ConfigReader::integer(const std::string& key) const {
  const auto& v = value(key);
  if (!v.is_number_integer()) fail(key, fmt::format("must be an integer, got {} {}", v.type_name(), v.dump()));
  if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) fail(key, "integer too large");
  return v.get<int64_t>();
}

int64_t ConfigReader::integer_or(const std::string& key, int64_t fallback) const {
  return has(key) ? integer(key) : fallback;
}

int64_t ConfigReader::positive(const std::string& key) const {
  const int64_t v = integer(key);
  if (v <= 0) fail(key, fmt::format("must be positive, got {}", v));
  // A size past an int (the kernels' sizes; a vocabulary of 2^57 wrapped the parameter count).
  if (v > std::numeric_limits<int32_t>::max()) fail(key, fmt::format("{} is past any model's size (at most 2^31 - 1)", v));
  return v;
}

int64_t ConfigReader::positive_or(const std::string& key, int64_t fallback) const {
  return has(key) ? positive(key) : fallback;
}

int64_t ConfigReader::positive_aliased_or(const std::string& key, const std::string& alias, int64_t fallback) const {
  if (has(key) && has(alias) && positive(key) != positive(alias)) {
    fail(key, fmt::format("{} differs from '{}' = {}, which transformers reads as the same field", positive(key), alias,
                          positive(alias)));
  }
  return has(key) ? positive(key) : positive_or(alias, fallback);
}

int64_t ConfigReader::non_negative_or(const std::string& key, int64_t fallback) const {
  if (!has(key)) return fallback;
  const int64_t v = integer(key);
  if (v < 0) fail(key, fmt::format("must not be negative, got {}", v));
  return v;
}

double ConfigReader::number(const std::string& key) const {
  const auto& v = value(key);
  if (!v.is_number()) fail(key, fmt::format("must be a number, got {} {}", v.type_name(), v.dump()));
  const double d = v.get<double>();
  if (!std::isfinite(d)) fail(key, "must be finite");
  return d;
}

double ConfigReader::number_or(const std::string& key, double fallback) const {
  return has(key) ? number(key) : fallback;
}

double ConfigReader::positive_number_or(const std::string& key, double fallback) const {
  const double v = number_or(key, fallback);
  if (!(v > 0)) fail(key, fmt::format("must be positive, got {}", v));
  return v;
}

bool ConfigReader::boolean_or(const std::string& key, bool fallback) const {
  if (!has(key)) return fallback;
  const auto& v = value(key);
  if (!v.is_boolean()) fail(key, fmt::format("must be true or false, got {} {}", v.type_name(), v.dump()));
  return v.get<bool>();
}

std::string ConfigReader::string(const std::string& key) const {
  const auto& v = value(key);
  if (!v.is_string()) fail(key, fmt::format("must be a string, got {} {}", v.type_name(), v.dump()));
  return v.get<std::string>();
}

std::string ConfigReader::string_or(const std::string& key, const std::string& fallback) const {
  return has(key) ? string(key) : fallback;
}

}  // namespace effarch::model
