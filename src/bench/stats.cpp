// Statistics of repeated measurements and the log-log fits of the scaling table.

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <set>

#include "effarch/bench/bench.h"

namespace effarch::bench {

double percentile(std::vector<double> values, double q) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const double pos = q / 100.0 * static_cast<double>(values.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, values.size() - 1);
  return values[lo] + (values[hi] - values[lo]) * (pos - static_cast<double>(lo));
}

Stats summarize(std::vector<double> samples) {
  Stats s;
  s.samples = samples;
  if (samples.empty()) return s;
  const double n = static_cast<double>(samples.size());
  s.mean = std::accumulate(samples.begin(), samples.end(), 0.0) / n;
  double var = 0;
  for (double x : samples) var += (x - s.mean) * (x - s.mean);
  s.stddev = samples.size() > 1 ? std::sqrt(var / (n - 1)) : 0.0;  // sample standard deviation
  s.median = percentile(samples, 50);
  s.min = *std::min_element(samples.begin(), samples.end());
  s.max = *std::max_element(samples.begin(), samples.end());
  return s;
}

nlohmann::json to_json(const Stats& s) {
  return {{"mean", s.mean}, {"stddev", s.stddev}, {"median", s.median}, {"min", s.min}, {"max", s.max},
          {"samples", s.samples}};
}

Stats stats_from_json(const nlohmann::json& j) {
  Stats s;
  s.mean = j.at("mean").get<double>();
  s.stddev = j.at("stddev").get<double>();
  s.median = j.at("median").get<double>();
  s.min = j.at("min").get<double>();
  s.max = j.at("max").get<double>();
  s.samples = j.at("samples").get<std::vector<double>>();
  return s;
}

double expected_distinct_experts(int64_t num_experts, int64_t top_k, int64_t tokens) {
  if (num_experts <= 0 || top_k <= 0 || tokens <= 0) return 0;
  const double e = static_cast<double>(num_experts);
  // Each expert is missed by one token with probability 1 - k/E, by all of them with its power.
  return e * (1.0 - std::pow(1.0 - static_cast<double>(std::min(top_k, num_experts)) / e, static_cast<double>(tokens)));
}

std::optional<double> loglog_slope(const std::vector<std::pair<double, double>>& xy) {
  std::vector<std::pair<double, double>> logs;
  std::set<double> xs;
  for (const auto& [x, y] : xy) {
    if (x > 0 && y > 0) {
      logs.emplace_back(std::log(x), std::log(y));
      xs.insert(x);
    }
  }
  if (xs.size() < 2) return std::nullopt;
  double mx = 0, my = 0;
  for (const auto& [x, y] : logs) {
    mx += x;
    my += y;
  }
  mx /= static_cast<double>(logs.size());
  my /= static_cast<double>(logs.size());
  double sxy = 0, sxx = 0;
  for (const auto& [x, y] : logs) {
    sxy += (x - mx) * (y - my);
    sxx += (x - mx) * (x - mx);
  }
  return sxy / sxx;
}

nlohmann::json scaling(const std::vector<nlohmann::json>& points) {
  std::map<std::string, std::vector<const nlohmann::json*>> groups;
  for (const auto& p : points) {
    if (p.value("status", "") != "ok") continue;
    const auto& k = p.at("key");
    groups[k.at("model").get<std::string>() + "|" + k.at("dtype").get<std::string>() + "|" +
           std::to_string(k.at("batch").get<int64_t>()) + "|" + k.at("device").get<std::string>() + "|" +
           k.at("cuda_graphs").get<std::string>()]
        .push_back(&p);
  }
  nlohmann::json out = nlohmann::json::array();
  for (const auto& [name, ps] : groups) {
    std::vector<std::pair<double, double>> prefill, peak, cache;
    std::vector<int64_t> lengths;
    for (const nlohmann::json* p : ps) {
      const double len = static_cast<double>(p->at("key").at("prompt_len").get<int64_t>());
      lengths.push_back(static_cast<int64_t>(len));
      if (p->contains("speed")) prefill.emplace_back(len, p->at("speed").at("prefill_s").at("median").get<double>());
      if (p->contains("memory")) {
        const auto& m = p->at("memory");
        peak.emplace_back(len, m.at("peak_bytes").get<double>());
        cache.emplace_back(len, m.at("cache_bytes").get<double>());
      }
    }
    const auto& k = ps.front()->at("key");
    auto opt = [](const std::optional<double>& v) { return v ? nlohmann::json(*v) : nlohmann::json(nullptr); };
    out.push_back({{"model", k.at("model")},
                   {"dtype", k.at("dtype")},
                   {"batch", k.at("batch")},
                   {"device", k.at("device")},
                   {"cuda_graphs", k.at("cuda_graphs")},
                   {"prompt_lengths", lengths},
                   {"prefill_time_exponent", opt(loglog_slope(prefill))},
                   {"peak_memory_exponent", opt(loglog_slope(peak))},
                   {"cache_exponent", opt(loglog_slope(cache))}});
  }
  return out;
}

}  // namespace effarch::bench
