// effarch report: the Markdown report of one or more results files. Every figure and every
// sentence comes from the points (docs/bench.md, "effarch report").

#include <algorithm>
#include <functional>
#include <iterator>
#include <map>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "effarch/bench/bench.h"
#include "effarch/common/format.h"

namespace effarch::bench {

namespace {

// One series: a model's ok points at every prompt length, the rest of the key equal.
struct Series {
  PointKey key;  // prompt_len 0
  std::vector<const Point*> points;  // sorted by prompt length
};

std::string growth(const std::optional<double>& exponent) {
  if (!exponent) return "-";
  // The nearest of O(1), O(n), O(n^2) to the fitted exponent, halfway between as the boundary.
  const char* order = *exponent < 0.5 ? "O(1)" : *exponent < 1.5 ? "O(n)" : "O(n^2)";
  return fmt::format("{:.2f} ({})", *exponent, order);
}

std::string tps(const std::optional<Stats>& s) { return s ? fmt::format("{:.1f}", s->mean) : "-"; }

// The comparison group a verdict is made in: the key without model, prompt length and what ran
// (the backend asked for stays: a reference run is not compared with a kernel run).
std::string group_of(const PointKey& k) {
  return fmt::format("{} {} batch {} gen {} graphs={}{}{}", k.device, k.dtype, k.batch, k.gen_tokens,
                     model::to_string(k.cuda_graphs), k.pdl ? " pdl=on" : "",
                     k.backend == ops::Backend::Auto ? "" : fmt::format(" backend={}", ops::backend_name(k.backend)));
}

}  // namespace

std::string markdown_report(const std::vector<Point>& points, const std::vector<std::string>& sources) {
  std::map<PointKey, Series> by_series;
  for (const Point& p : points) {
    if (p.status != PointStatus::Ok) continue;
    PointKey k = p.key;
    k.prompt_len = 0;
    Series& s = by_series[k];
    s.key = k;
    s.points.push_back(&p);
  }
  for (auto& [k, s] : by_series) {
    std::sort(s.points.begin(), s.points.end(),
              [](const Point* a, const Point* b) { return a->key.prompt_len < b->key.prompt_len; });
  }
  std::ostringstream out;
  out << "# effarch report\n\n";
  std::string from;
  for (const auto& s : sources) from += (from.empty() ? "" : ", ") + s;
  const auto ok = std::count_if(points.begin(), points.end(), [](const Point& p) { return p.status == PointStatus::Ok; });
  out << fmt::format("From {} ({} point(s), {} ok).\n", from.empty() ? "-" : from, points.size(), ok);
  size_t busy = 0;
  for (const Point& p : points) busy += p.machine_load && p.machine_load->busy;
  if (busy > 0) {
    out << fmt::format("\n{} point(s) ran while the machine was too busy to measure: their speed figures are suspect.\n",
                       busy);
  }

  out << "\n## Per model\n\n";
  out << "Scaling exponents are least-squares slopes of log(figure) against log(prompt length): 0 is flat (O(1)), "
         "1 linear (O(n)), 2 quadratic (O(n^2)); the order shown is the nearest.\n\n";
  out << "| model | device, dtype, batch | prompt lengths | prefill time | peak memory | cache | cache at longest | "
         "decode tok/s shortest | decode tok/s longest | J per decoded token (longest) |\n";
  out << "|---|---|---|---|---|---|---|---|---|---|\n";
  for (const auto& [k, s] : by_series) {
    std::vector<std::pair<double, double>> prefill, peak, cache;
    std::string lengths;
    for (const Point* p : s.points) {
      const double len = static_cast<double>(p->key.prompt_len);
      lengths += (lengths.empty() ? "" : ",") + std::to_string(p->key.prompt_len);
      if (p->speed) prefill.emplace_back(len, p->speed->prefill_s.median);
      if (p->memory) {
        peak.emplace_back(len, static_cast<double>(p->memory->peak_bytes));
        cache.emplace_back(len, static_cast<double>(p->memory->cache_bytes));
      }
    }
    const Point& shortest = *s.points.front();
    const Point& longest = *s.points.back();
    out << fmt::format(
        "| {} | {} {} b{} | {} | {} | {} | {} | {} | {} | {} | {} |\n", k.model, k.device, k.dtype, k.batch, lengths,
        growth(loglog_slope(prefill)), growth(loglog_slope(peak)), growth(loglog_slope(cache)),
        longest.memory ? fmt::format("{} ({} tokens)", human_bytes(longest.memory->cache_bytes), longest.key.prompt_len)
                       : "-",
        shortest.speed ? tps(shortest.speed->decode_tokens_per_s) : "-",
        longest.speed ? tps(longest.speed->decode_tokens_per_s) : "-",
        longest.energy && longest.energy->joules_per_decode_token
            ? fmt::format("{:.3g} ({})", *longest.energy->joules_per_decode_token, longest.energy->source)
            : "-");
  }

  // Verdicts per comparison group, at the longest prompt length every model of the group ran.
  std::map<std::string, std::vector<const Series*>> groups;
  for (const auto& [k, s] : by_series) groups[group_of(k)].push_back(&s);
  out << "\n## Best for\n\n";
  bool any = false;
  for (const auto& [group, series] : groups) {
    std::set<std::string> models;
    for (const Series* s : series) models.insert(s->key.model);
    if (models.size() < 2) continue;
    std::set<int64_t> common;
    for (const Point* p : series.front()->points) common.insert(p->key.prompt_len);
    for (const Series* s : series) {
      std::set<int64_t> mine, both;
      for (const Point* p : s->points) mine.insert(p->key.prompt_len);
      std::set_intersection(common.begin(), common.end(), mine.begin(), mine.end(), std::inserter(both, both.end()));
      common = both;
    }
    out << fmt::format("### {}\n\n", group);
    any = true;
    if (common.empty()) {
      out << "No prompt length was run by every model here: no verdict.\n\n";
      continue;
    }
    const int64_t len = *common.rbegin();
    std::vector<const Point*> at;
    for (const Series* s : series) {
      for (const Point* p : s->points) {
        if (p->key.prompt_len == len) at.push_back(p);
      }
    }
    // The best of `at` by `value` (nullopt: not measured), and the runner-up for scale.
    const auto verdict = [&](const char* question, bool higher, const char* unit,
                             const std::function<std::optional<double>(const Point&)>& value,
                             const std::function<std::string(double)>& show) {
      std::vector<std::pair<double, const Point*>> v;
      for (const Point* p : at) {
        if (const auto x = value(*p)) v.emplace_back(*x, p);
      }
      if (v.empty()) return;
      std::stable_sort(v.begin(), v.end(), [&](const auto& a, const auto& b) { return higher ? a.first > b.first : a.first < b.first; });
      out << fmt::format("- **{}** at {} prompt tokens: **{}** ({}{})", question, len, v[0].second->key.model,
                         show(v[0].first), unit);
      if (v.size() > 1) {
        // How far apart the best and the runner-up are, as the larger over the smaller.
        const double lo = std::min(v[0].first, v[1].first), hi = std::max(v[0].first, v[1].first);
        out << fmt::format("; next {} ({}{})", v[1].second->key.model, show(v[1].first), unit);
        if (lo > 0) out << fmt::format(", {:.2f}x apart", hi / lo);
      }
      out << ".\n";
    };
    const auto number = [](double x) { return fmt::format("{:.1f}", x); };
    verdict("Highest decode rate", true, " tok/s",
            [](const Point& p) -> std::optional<double> {
              if (!p.speed || !p.speed->decode_tokens_per_s) return std::nullopt;
              return p.speed->decode_tokens_per_s->mean;
            },
            number);
    verdict("Smallest cache", false, "",
            [](const Point& p) -> std::optional<double> {
              if (!p.memory) return std::nullopt;
              return static_cast<double>(p.memory->cache_bytes);
            },
            [](double x) { return human_bytes(static_cast<uint64_t>(x)); });
    verdict("Fastest prefill", true, " tok/s",
            [](const Point& p) -> std::optional<double> {
              if (!p.speed) return std::nullopt;
              return p.speed->prefill_tokens_per_s.mean;
            },
            number);
    verdict("Least energy per decoded token", false, " J",
            [](const Point& p) -> std::optional<double> {
              if (!p.energy || !p.energy->joules_per_decode_token) return std::nullopt;
              return *p.energy->joules_per_decode_token;
            },
            [](double x) { return fmt::format("{:.3g}", x); });
    out << "\n";
  }
  if (!any) out << "Fewer than two models ran under the same settings: nothing to compare.\n";
  return out.str();
}

}  // namespace effarch::bench
