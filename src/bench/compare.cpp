// effarch compare: points matched by key, each metric's ratio, and a regression only when the
// change is both past the threshold and beyond the runs' noise.

#include <algorithm>
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
std::optional<Value> metric_value(const Point& p, const std::string& metric) {
  if (p.status != PointStatus::Ok) return std::nullopt;
  auto stat = [](const std::optional<Stats>& st) -> std::optional<Value> {
    if (!st) return std::nullopt;
    return Value{st->mean, st->stddev};
  };
  auto bytes = [&](uint64_t MemoryResult::*field) -> std::optional<Value> {
    if (!p.memory) return std::nullopt;
    return Value{static_cast<double>((*p.memory).*field), 0.0};
  };
  const auto& s = p.speed;
  const std::optional<DecodeStepStats> steps = s ? s->decode_step_s : std::nullopt;
  if (metric == "prefill_tokens_per_s") return s ? stat(s->prefill_tokens_per_s) : std::nullopt;
  if (metric == "decode_tokens_per_s") return s ? stat(s->decode_tokens_per_s) : std::nullopt;
  if (metric == "ttft_s") return s ? stat(s->ttft_s) : std::nullopt;
  if (metric == "prefill_s") return s ? stat(s->prefill_s) : std::nullopt;
  if (metric == "decode_step_p50_s") return steps ? stat(steps->p50) : std::nullopt;
  if (metric == "decode_step_p99_s") return steps ? stat(steps->p99) : std::nullopt;
  if (metric == "peak_bytes") return bytes(&MemoryResult::peak_bytes);
  if (metric == "cache_bytes") return bytes(&MemoryResult::cache_bytes);
  return std::nullopt;
}

// BASE and NEW points paired by key: an exact match first, else one that PointKey::matches (a
// version 1 baseline, whose implementations are unknown). Each point pairs at most once.
struct Pairing {
  std::vector<std::pair<const Point*, const Point*>> pairs;  // base, new; in the new file's order
  std::vector<const Point*> only_base, only_new;
};

// The workload a point measured, whatever ran it: what pairs points of different engines.
auto workload(const PointKey& k) { return std::tie(k.model, k.dtype, k.batch, k.prompt_len, k.gen_tokens, k.device, k.weights); }

std::string workload_str(const PointKey& k) {
  return fmt::format("{} {} b{} p{} g{} {}", k.model, k.dtype, k.batch, k.prompt_len, k.gen_tokens, k.device);
}

// The key with its launch setting (backend and what it ran, graphs, pdl) taken out: how one
// run's settings pair.
PointKey without_launch(PointKey k) {
  k.backend = ops::Backend::Auto;
  k.implementations.clear();
  k.cuda_graphs = model::DecodeMode::Eager;
  k.pdl = false;
  return k;
}

// Same engine: the exact key first, then PointKey::matches; with `ignore_launch` the keys without
// their launch settings. Across engines (`cross`): the workload alone, since backend,
// implementations and graphs describe effarch's execution.
Pairing pair_points(const std::vector<Point>& base, const std::vector<Point>& news, bool cross, bool ignore_launch) {
  Pairing r;
  std::vector<bool> used(base.size(), false);
  std::vector<const Point*> unpaired;
  for (int pass = 0; pass < 2; ++pass) {
    const std::vector<const Point*> todo = [&] {
      if (pass == 1) return unpaired;
      std::vector<const Point*> all;
      for (const auto& p : news) all.push_back(&p);
      return all;
    }();
    unpaired.clear();
    for (const Point* np : todo) {
      bool found = false;
      for (size_t i = 0; i < base.size() && !found; ++i) {
        const PointKey bk = ignore_launch ? without_launch(base[i].key) : base[i].key;
        const PointKey nk = ignore_launch ? without_launch(np->key) : np->key;
        const bool match = cross ? (pass == 0 && workload(bk) == workload(nk)) : (pass == 0 ? bk == nk : bk.matches(nk));
        if (used[i] || !match) continue;
        used[i] = found = true;
        r.pairs.emplace_back(&base[i], np);
      }
      if (!found) unpaired.push_back(np);
    }
  }
  r.only_new = unpaired;
  for (size_t i = 0; i < base.size(); ++i) {
    if (!used[i]) r.only_base.push_back(&base[i]);
  }
  std::sort(r.pairs.begin(), r.pairs.end(), [](const auto& a, const auto& b) { return a.second->key < b.second->key; });
  auto by_key = [](const Point* a, const Point* b) { return a->key < b->key; };
  std::sort(r.only_base.begin(), r.only_base.end(), by_key);
  std::sort(r.only_new.begin(), r.only_new.end(), by_key);
  return r;
}

std::string fmt_value(double v) {
  if (v != 0 && (std::fabs(v) >= 1e6 || std::fabs(v) < 1e-2)) return fmt::format("{:.4g}", v);
  return fmt::format("{:.3f}", v);
}

}  // namespace

std::string engine_name(const nlohmann::json& doc) {
  if (doc.contains("environment") && doc["environment"].is_object()) {
    const auto& env = doc["environment"];
    if (env.contains("engine") && env["engine"].is_object() && env["engine"].contains("name") &&
        env["engine"]["name"].is_string()) {
      return env["engine"]["name"].get<std::string>();
    }
  }
  return "effarch";
}

namespace {

std::string engine_label(const nlohmann::json& doc) {
  const std::string name = engine_name(doc);
  if (name == "effarch") {
    const auto& env = doc.at("environment");
    if (env.contains("effarch") && env["effarch"].is_object() && env["effarch"].contains("version")) {
      return "effarch " + env["effarch"]["version"].get<std::string>();
    }
    return name;
  }
  const auto& e = doc["environment"]["engine"];
  std::string label = name;
  if (e.contains("version") && e["version"].is_string()) label += " " + e["version"].get<std::string>();
  std::vector<std::string> modes;
  for (const char* k : {"attention", "cache"}) {
    if (e.contains(k) && e[k].is_string()) modes.push_back(e[k].get<std::string>());
  }
  if (e.contains("compile") && e["compile"] == "on") modes.emplace_back("compiled");
  if (!modes.empty()) label += fmt::format(" ({})", fmt::join(modes, ", "));
  return label;
}

// "effarch x1.52": how many times better NEW is than BASE (higher-better metrics: new/base;
// times and bytes: base/new).
std::string times_better(const std::string& engine, double base, double neu, bool higher_better) {
  if (base <= 0 || neu <= 0) return "-";
  return fmt::format("{} x{:.2f}", engine, higher_better ? neu / base : base / neu);
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
  if (t.empty() || used != t.size() || !(v >= 0) || !std::isfinite(v)) {  // inf would gate nothing
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
  std::map<std::string, size_t> compared;  // metric -> pairs with a value on both sides
  std::map<std::string, size_t> one_sided;  // metric -> ok pairs with a value on one side only
  size_t status_changes = 0;
  std::ostringstream out;
  const std::vector<Point> base_points = points_of(base);
  std::vector<std::vector<Point>> new_points;
  for (const auto& doc : news) new_points.push_back(points_of(doc));

  for (size_t f = 0; f < news.size(); ++f) {
    const std::string base_engine = engine_name(base), new_engine = engine_name(news[f]);
    const bool cross = base_engine != new_engine;
    const Pairing pairing = pair_points(base_points, new_points[f], cross, options.ignore_launch);
    out << fmt::format("== {} vs {}: threshold {:.1f}%, noise {} sigma\n", labels.at(f + 1), labels.at(0),
                       options.max_regression * 100, options.noise_sigmas);
    if (cross) {
      out << fmt::format("engines: {} ({}) against {} ({}); points paired by workload (model, dtype, batch, "
                         "prompt, gen, device, weights)\n",
                         engine_label(news[f]), labels.at(f + 1), engine_label(base), labels.at(0));
    }
    out << "| point | metric | base | new | new/base | verdict |\n|---|---|---:|---:|---:|---|\n";
    for (const auto& [bp, np] : pairing.pairs) {
      ++r.matched;
      const std::string key = cross ? workload_str(np->key) : np->key.str();
      if (bp->status != np->status) {
        const bool worse = bp->status == PointStatus::Ok;
        out << fmt::format("| {} | status | {} | {} | | {} |\n", key, to_string(bp->status), to_string(np->status),
                           worse ? "REGRESSION" : "improved");
        if (worse) {
          ++r.regressions;
        } else {
          ++r.improvements;
        }
        ++status_changes;
        continue;
      }
      for (const auto& metric : options.metrics) {
        const auto b = metric_value(*bp, metric), n = metric_value(*np, metric);
        if (!b && !n) continue;
        if (!b || !n) {  // measured on one side only (another --mode): said, never a silent pass
          ++one_sided[metric];
          out << fmt::format("| {} | {} | {} | {} | - | missing in {} |\n", key, metric,
                             b ? fmt_value(b->mean) : "-", n ? fmt_value(n->mean) : "-", b ? "new" : "base");
          continue;
        }
        ++compared[metric];
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
    if (cross && !pairing.pairs.empty()) {
      // Both engines' speeds and how many times faster NEW's engine is, one row per point.
      out << fmt::format("\n== {} against {}: tokens/s, x = how many times faster {} is\n", new_engine, base_engine,
                         new_engine);
      out << fmt::format("| point | prefill {0} | prefill {1} | prefill | decode {0} | decode {1} | decode |\n",
                         base_engine, new_engine);
      out << "|---|---:|---:|---|---:|---:|---|\n";
      auto cell = [](const std::optional<Value>& v) { return v ? fmt_value(v->mean) : std::string("-"); };
      for (const auto& [bp, np] : pairing.pairs) {
        const auto bpre = metric_value(*bp, "prefill_tokens_per_s"), npre = metric_value(*np, "prefill_tokens_per_s");
        const auto bdec = metric_value(*bp, "decode_tokens_per_s"), ndec = metric_value(*np, "decode_tokens_per_s");
        auto phrase = [&](const std::optional<Value>& b, const std::optional<Value>& n, const char* what) {
          if (!b || !n) return std::string(b || n ? "-" : fmt::format("{} / {}", to_string(bp->status), to_string(np->status)));
          return times_better(new_engine, b->mean, n->mean, true) + " " + what;
        };
        out << fmt::format("| {} | {} | {} | {} | {} | {} | {} |\n", workload_str(np->key), cell(bpre), cell(npre),
                           phrase(bpre, npre, "prefill"), cell(bdec), cell(ndec), phrase(bdec, ndec, "decode"));
      }
      const auto source = [](const std::vector<Point>& ps) {
        for (const auto& p : ps) {
          if (p.memory) return p.memory->source;
        }
        return std::string();
      };
      const std::string bs = source(base_points), ns = source(new_points[f]);
      if (!bs.empty() && !ns.empty() && bs != ns) {
        out << fmt::format("note: memory measured differently ({}: {}; {}: {}): compare bytes with care\n",
                           base_engine, bs, new_engine, ns);
      }
    }
    for (const Point* bp : pairing.only_base) {
      out << fmt::format("only in {}: {}\n", labels.at(0), bp->key.str());
      ++r.only_base;
    }
    for (const Point* np : pairing.only_new) {
      out << fmt::format("only in {}: {}\n", labels.at(f + 1), np->key.str());
      ++r.only_new;
    }
    out << "\n";
  }

  if (news.size() > 1) {  // side by side, whatever the model (e.g. Mamba vs Transformer)
    std::vector<std::map<std::string, const Point*>> by_side(news.size() + 1);
    std::set<std::string> keys;
    auto collect = [&](const std::vector<Point>& points, size_t i) {
      for (const auto& p : points) {
        // Without the model, and without what ran (the op families differ between models); for
        // one run's launch settings side by side, without those either.
        PointKey side = options.ignore_launch ? without_launch(p.key) : p.key;
        side.implementations.clear();
        const std::string k = side.str_without_model();
        by_side[i][k] = &p;
        keys.insert(k);
      }
    };
    collect(base_points, 0);
    for (size_t f = 0; f < news.size(); ++f) collect(new_points[f], f + 1);
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
          out << " " << (v ? fmt_value(v->mean) : std::string(to_string(it->second->status))) << " ("
              << it->second->key.model << ") |";
        }
        out << "\n";
      }
      out << "\n";
    }
  }
  r.regressed = r.regressions > 0;
  out << fmt::format("{} matched point(s): {} regression(s), {} improvement(s); {} only in the base, {} only in new\n",
                     r.matched, r.regressions, r.improvements, r.only_base, r.only_new);
  std::vector<std::string> without;  // metrics with no value on both sides of any pair
  for (const auto& metric : options.metrics) {
    if (compared[metric] == 0) without.push_back(metric);
  }
  if (r.matched == 0) {
    r.incomplete = true;
    out << "INCOMPLETE: no point of the new file(s) matches one of the base: nothing was compared\n";
  } else if (status_changes == 0 && without.size() == options.metrics.size()) {
    r.incomplete = true;
    out << fmt::format("INCOMPLETE: no matched pair has a value of {} on both sides: nothing was compared\n",
                       fmt::join(options.metrics, ", "));
  } else if (options.metrics_required && !without.empty()) {
    r.incomplete = true;
    out << fmt::format("INCOMPLETE: no matched pair has a value of {} on both sides (--metric)\n",
                       fmt::join(without, ", "));
  } else if (options.metrics_required && !one_sided.empty()) {
    r.incomplete = true;
    std::vector<std::string> which;
    for (const auto& [metric, n] : one_sided) which.push_back(fmt::format("{} ({} pair(s))", metric, n));
    out << fmt::format("INCOMPLETE: matched points with a value on one side only (--metric): {}\n",
                       fmt::join(which, ", "));
  }
  r.report = out.str();
  return r;
}

LaunchSplit split_by_launch(const nlohmann::json& doc) {
  LaunchSplit r;
  for (const auto& p : doc.at("points")) {
    const std::string label = p.at("key").get<PointKey>().launch_str();
    auto it = std::find(r.labels.begin(), r.labels.end(), label);
    if (it == r.labels.end()) {
      nlohmann::json part = doc;
      part["points"] = nlohmann::json::array();
      r.docs.push_back(std::move(part));
      r.labels.push_back(label);
      it = r.labels.end() - 1;
    }
    r.docs[static_cast<size_t>(it - r.labels.begin())]["points"].push_back(p);
  }
  return r;
}

CompareResult compare_launch_settings(const nlohmann::json& doc, const std::string& source, CompareOptions options) {
  LaunchSplit split = split_by_launch(doc);
  if (split.docs.size() < 2) {
    throw UsageError(fmt::format("{}: every point ran one launch setting ({}): compare one run only when it ran "
                                 "several (bench --backend reference,auto, --cuda-graphs off,on or --pdl off,on), else "
                                 "give BASE.json and NEW.json",
                                 source, split.labels.empty() ? "no points" : split.labels.front()));
  }
  options.ignore_launch = true;
  const std::vector<nlohmann::json> news(split.docs.begin() + 1, split.docs.end());
  return compare(split.docs.front(), news, split.labels, options);
}

}  // namespace effarch::bench
