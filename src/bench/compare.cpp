// effarch compare: points matched by key, each metric's ratio, and a regression only when the
// change is both past the threshold and beyond the runs' noise.

#include <cmath>
#include <map>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "effarch/bench/bench.h"
#include "effarch/common/error.h"

namespace effarch::bench {
namespace {

struct Value {
  double mean = 0, stddev = 0;
};

// The statistic (or plain number) of `metric` in a point, if it has one.
std::optional<Value> metric_value(const nlohmann::json& p, const std::string& metric) {
  if (p.value("status", "") != "ok") return std::nullopt;
  auto stat = [&](std::initializer_list<const char*> path) -> std::optional<Value> {
    const nlohmann::json* j = &p;
    for (const char* k : path) {
      if (!j->contains(k)) return std::nullopt;
      j = &(*j)[k];
    }
    if (j->is_number()) return Value{j->get<double>(), 0.0};
    return Value{j->at("mean").get<double>(), j->at("stddev").get<double>()};
  };
  if (metric == "prefill_tokens_per_s") return stat({"speed", "prefill_tokens_per_s"});
  if (metric == "decode_tokens_per_s") return stat({"speed", "decode_tokens_per_s"});
  if (metric == "ttft_s") return stat({"speed", "ttft_s"});
  if (metric == "prefill_s") return stat({"speed", "prefill_s"});
  if (metric == "decode_step_p50_s") return stat({"speed", "decode_step_s", "p50"});
  if (metric == "decode_step_p99_s") return stat({"speed", "decode_step_s", "p99"});
  if (metric == "peak_bytes") return stat({"memory", "peak_bytes"});
  if (metric == "cache_bytes") return stat({"memory", "cache_bytes"});
  return std::nullopt;
}

std::string fmt_value(double v) {
  if (v != 0 && (std::fabs(v) >= 1e6 || std::fabs(v) < 1e-2)) return fmt::format("{:.4g}", v);
  return fmt::format("{:.3f}", v);
}

std::string side_key(const nlohmann::json& p) {
  const auto& k = p.at("key");
  return fmt::format("{} b{} p{} g{} {} graphs={}", k.at("dtype").get<std::string>(), k.at("batch").get<int64_t>(),
                     k.at("prompt_len").get<int64_t>(), k.at("gen_tokens").get<int64_t>(),
                     k.at("device").get<std::string>(), k.at("cuda_graphs").get<std::string>());
}

}  // namespace

const std::vector<std::pair<std::string, bool>>& compare_metrics() {
  static const std::vector<std::pair<std::string, bool>> m = {
      {"prefill_tokens_per_s", true}, {"decode_tokens_per_s", true}, {"ttft_s", false},     {"prefill_s", false},
      {"decode_step_p50_s", false},   {"decode_step_p99_s", false},  {"peak_bytes", false}, {"cache_bytes", false}};
  return m;
}

double parse_fraction(const std::string& text, const std::string& option) {
  std::string t;
  for (char c : text) {
    if (c != ' ') t += c;
  }
  const bool percent = !t.empty() && t.back() == '%';
  if (percent) t.pop_back();
  size_t used = 0;
  double v = -1;
  try {
    v = std::stod(t, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (t.empty() || used != t.size() || !(v >= 0)) {
    throw UsageError(fmt::format("{}: '{}' is not a fraction (5%, 0.05)", option, text));
  }
  return percent ? v / 100.0 : v;
}

CompareResult compare(const nlohmann::json& base, const std::vector<nlohmann::json>& news,
                      const std::vector<std::string>& labels, const CompareOptions& options) {
  std::map<std::string, bool> higher_better;
  for (const auto& [name, hb] : compare_metrics()) higher_better[name] = hb;
  for (const auto& m : options.metrics) {
    if (!higher_better.count(m)) {
      std::vector<std::string> names;
      for (const auto& [name, hb] : compare_metrics()) names.push_back(name);
      throw UsageError(fmt::format("--metric: unknown metric '{}' (one of: {})", m, fmt::join(names, ", ")));
    }
  }
  CompareResult r;
  std::ostringstream out;
  std::map<std::string, const nlohmann::json*> base_points;
  for (const auto& p : base.at("points")) base_points[point_key(p)] = &p;

  for (size_t f = 0; f < news.size(); ++f) {
    std::map<std::string, const nlohmann::json*> new_points;
    for (const auto& p : news[f].at("points")) new_points[point_key(p)] = &p;
    out << fmt::format("== {} vs {}: threshold {:.1f}%, noise {} sigma\n", labels.at(f + 1), labels.at(0),
                       options.max_regression * 100, options.noise_sigmas);
    out << "| point | metric | base | new | new/base | verdict |\n|---|---|---:|---:|---:|---|\n";
    for (const auto& [key, np] : new_points) {
      auto it = base_points.find(key);
      if (it == base_points.end()) continue;
      ++r.matched;
      const nlohmann::json& bp = *it->second;
      const std::string bs = bp.value("status", ""), ns = np->value("status", "");
      if (bs != ns) {
        const bool worse = bs == "ok";
        out << fmt::format("| {} | status | {} | {} | | {} |\n", key, bs, ns, worse ? "REGRESSION" : "improved");
        if (worse) {
          ++r.regressions;
        } else {
          ++r.improvements;
        }
        continue;
      }
      for (const auto& metric : options.metrics) {
        const auto b = metric_value(bp, metric), n = metric_value(*np, metric);
        if (!b || !n) continue;
        const bool hb = higher_better[metric];
        const double ratio = b->mean != 0 ? n->mean / b->mean : 0;
        const double worse_by = b->mean != 0 ? (hb ? (b->mean - n->mean) : (n->mean - b->mean)) / std::fabs(b->mean) : 0;
        const double noise = options.noise_sigmas * std::sqrt(b->stddev * b->stddev + n->stddev * n->stddev);
        const bool beyond_noise = std::fabs(n->mean - b->mean) > noise;
        std::string verdict = "ok";
        if (worse_by > options.max_regression && beyond_noise) {
          verdict = "REGRESSION";
          ++r.regressions;
        } else if (worse_by > options.max_regression) {
          verdict = "within noise";
        } else if (-worse_by > options.max_regression && beyond_noise) {
          verdict = "improved";
          ++r.improvements;
        }
        out << fmt::format("| {} | {} | {} | {} | {:.3f} | {} |\n", key, metric, fmt_value(b->mean), fmt_value(n->mean),
                           ratio, verdict);
      }
    }
    for (const auto& [key, bp] : base_points) {
      if (!new_points.count(key)) {
        out << fmt::format("only in {}: {}\n", labels.at(0), key);
        ++r.only_base;
      }
    }
    for (const auto& [key, np] : new_points) {
      if (!base_points.count(key)) {
        out << fmt::format("only in {}: {}\n", labels.at(f + 1), key);
        ++r.only_new;
      }
    }
    out << "\n";
  }

  if (news.size() > 1) {  // side by side, whatever the model (e.g. Mamba vs Transformer)
    std::vector<std::map<std::string, const nlohmann::json*>> by_side(news.size() + 1);
    std::set<std::string> keys;
    auto collect = [&](const nlohmann::json& doc, size_t i) {
      for (const auto& p : doc.at("points")) {
        by_side[i][side_key(p)] = &p;
        keys.insert(side_key(p));
      }
    };
    collect(base, 0);
    for (size_t f = 0; f < news.size(); ++f) collect(news[f], f + 1);
    for (const auto& metric : options.metrics) {
      out << fmt::format("== side by side: {}\n| point |", metric);
      for (const auto& l : labels) out << " " << l << " |";
      out << "\n|---|";
      for (size_t i = 0; i < labels.size(); ++i) out << "---:|";
      out << "\n";
      for (const auto& key : keys) {
        out << "| " << key << " |";
        for (size_t i = 0; i < by_side.size(); ++i) {
          auto it = by_side[i].find(key);
          if (it == by_side[i].end()) {
            out << " - |";
            continue;
          }
          const auto v = metric_value(*it->second, metric);
          const std::string model = it->second->at("key").at("model").get<std::string>();
          out << " " << (v ? fmt_value(v->mean) : it->second->value("status", "?")) << " (" << model << ") |";
        }
        out << "\n";
      }
      out << "\n";
    }
  }
  r.regressed = r.regressions > 0;
  out << fmt::format("{} matched point(s): {} regression(s), {} improvement(s); {} only in the base, {} only in new\n",
                     r.matched, r.regressions, r.improvements, r.only_base, r.only_new);
  r.report = out.str();
  return r;
}

}  // namespace effarch::bench
