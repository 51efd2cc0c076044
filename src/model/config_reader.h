#pragma once
// Typed access to config.json keys; every error names the file and the key.

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace effarch::model {

class ConfigReader {
 public:
  ConfigReader(const nlohmann::json& doc, std::string source) : doc_(doc), source_(std::move(source)) {}

  const std::string& source() const { return source_; }
  const nlohmann::json& doc() const { return doc_; }
  // Present and not null.
  bool has(const std::string& key) const;

  int64_t integer(const std::string& key) const;
  int64_t integer_or(const std::string& key, int64_t fallback) const;
  int64_t positive(const std::string& key) const;  // required, > 0
  int64_t positive_or(const std::string& key, int64_t fallback) const;
  int64_t non_negative_or(const std::string& key, int64_t fallback) const;
  double number(const std::string& key) const;
  double number_or(const std::string& key, double fallback) const;
  double positive_number_or(const std::string& key, double fallback) const;
  bool boolean_or(const std::string& key, bool fallback) const;
  // A positive integer that transformers' config class also reads under another name (its
  // attribute_map: Mixtral's num_experts for num_local_experts): `key`, else `alias`, else the
  // fallback; both given and different is refused, naming both.
  int64_t positive_aliased_or(const std::string& key, const std::string& alias, int64_t fallback) const;
  std::string string(const std::string& key) const;
  std::string string_or(const std::string& key, const std::string& fallback) const;

  [[noreturn]] void fail(const std::string& key, const std::string& what) const;

 private:
  const nlohmann::json& value(const std::string& key) const;
  const nlohmann::json& doc_;
  std::string source_;
};

}  // namespace effarch::model
