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

nlohmann::json scaling(const std::vector<Point>& points) {
  // A series: every field of the key but the prompt length.
  std::map<PointKey, std::vector<const Point*>> groups;
  for (const auto& p : points) {
    if (p.status != PointStatus::Ok) continue;
    PointKey series = p.key;
    series.prompt_len = 0;
    groups[series].push_back(&p);
  }
  nlohmann::json out = nlohmann::json::array();
  for (const auto& [k, ps] : groups) {
    std::vector<std::pair<double, double>> prefill, peak, cache;
    std::vector<int64_t> lengths;
    for (const Point* p : ps) {
      const double len = static_cast<double>(p->key.prompt_len);
      lengths.push_back(p->key.prompt_len);
      if (p->speed) prefill.emplace_back(len, p->speed->prefill_s.median);
      if (p->memory) {
        peak.emplace_back(len, static_cast<double>(p->memory->peak_bytes));
        cache.emplace_back(len, static_cast<double>(p->memory->cache_bytes));
      }
    }
    auto opt = [](const std::optional<double>& v) { return v ? nlohmann::json(*v) : nlohmann::json(nullptr); };
    out.push_back({{"model", k.model},
                   {"dtype", k.dtype},
                   {"batch", k.batch},
                   {"device", k.device},
                   {"cuda_graphs", model::to_string(k.cuda_graphs)},
                   {"pdl", k.pdl ? "on" : "off"},
                   {"backend", ops::backend_name(k.backend)},
                   {"implementations", k.implementations},
                   {"weights", k.weights},
                   {"prompt_lengths", lengths},
                   {"prefill_time_exponent", opt(loglog_slope(prefill))},
                   {"peak_memory_exponent", opt(loglog_slope(peak))},
                   {"cache_exponent", opt(loglog_slope(cache))}});
  }
  return out;
}

}  // namespace effarch::bench
