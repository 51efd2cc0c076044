// The human formats of a results document: table, markdown, CSV (and JSON, JSON Lines).

#include <algorithm>
#include <sstream>

#include <fmt/format.h>

#include "effarch/bench/bench.h"
#include "effarch/common/error.h"
#include "effarch/common/format.h"

namespace effarch::bench {

namespace {

// "mean ± stddev" of a statistic (scaled), or "-".
std::string pm(const std::optional<Stats>& st, double scale, int digits) {
  if (!st) return "-";
  return fmt::format("{:.{}f} ± {:.{}f}", st->mean * scale, digits, st->stddev * scale, digits);
}

// A fraction as a percentage with about three significant digits: tiny models on a big GPU
// reach thousandths of a percent of its bandwidth, which "0.0%" would hide.
std::string percent(const std::optional<double>& fraction) {
  if (!fraction) return "-";
  const double v = *fraction * 100;
  if (v == 0) return "0%";
  if (v >= 10) return fmt::format("{:.1f}%", v);
  if (v >= 1) return fmt::format("{:.2f}%", v);
  if (v >= 0.001) return fmt::format("{:.3f}%", v);
  return "<0.001%";
}

std::vector<std::string> row(const Point& p) {
  const PointKey& k = p.key;
  const std::optional<SpeedResult>& s = p.speed;
  const std::optional<DecodeStepStats> steps = s ? s->decode_step_s : std::nullopt;
  std::optional<double> bandwidth, gemm;
  if (p.roofline) {
    gemm = p.roofline->prefill_fraction_of_gemm;
    if (p.roofline->decode) bandwidth = p.roofline->decode->fraction_of_bandwidth;
  }
  return {k.model,
          k.dtype,
          std::to_string(k.batch),
          std::to_string(k.prompt_len),
          std::to_string(k.gen_tokens),
          to_string(p.status),
          pm(s ? std::optional<Stats>(s->prefill_tokens_per_s) : std::nullopt, 1, 1),
          pm(s ? std::optional<Stats>(s->ttft_s) : std::nullopt, 1e3, 2),
          pm(s ? s->decode_tokens_per_s : std::nullopt, 1, 1),
          pm(steps ? std::optional<Stats>(steps->p50) : std::nullopt, 1e3, 3),
          pm(steps ? std::optional<Stats>(steps->p99) : std::nullopt, 1e3, 3),
          p.memory ? human_bytes(p.memory->peak_bytes) : "-",
          p.memory ? human_bytes(p.memory->cache_bytes) : "-",
          percent(bandwidth),
          percent(gemm),
          percent(p.harness_overhead_fraction)};
}

const std::vector<std::string> kHeader = {"model", "dtype", "batch", "prompt", "gen", "status", "prefill tok/s",
                                          "TTFT ms", "decode tok/s", "step p50 ms", "step p99 ms", "peak mem",
                                          "cache", "decode BW", "prefill GEMM", "harness"};

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

std::string exponent(const nlohmann::json& v) { return v.is_null() ? "-" : fmt::format("{:.2f}", v.get<double>()); }

}  // namespace

std::string format_results(const nlohmann::json& doc, const std::string& format) {
  if (format == "json") return doc.dump(2) + "\n";
  std::ostringstream out;
  if (format == "jsonl") {
    for (const auto& p : doc.at("points")) out << p.dump() << "\n";
    return out.str();
  }
  const std::vector<Point> points = points_of(doc);
  std::vector<std::vector<std::string>> rows;
  for (const auto& p : points) rows.push_back(row(p));
  if (format == "csv") {
    std::vector<std::string> h = kHeader;
    for (size_t i = 0; i < h.size(); ++i) out << (i ? "," : "") << csv_field(h[i]);
    out << "\n";
    for (const auto& r : rows) {
      for (size_t i = 0; i < r.size(); ++i) out << (i ? "," : "") << csv_field(r[i]);
      out << "\n";
    }
    return out.str();
  }
  if (format != "table" && format != "md") throw UsageError(fmt::format("--format: unknown format '{}'", format));
  std::vector<size_t> width(kHeader.size());
  for (size_t i = 0; i < kHeader.size(); ++i) width[i] = kHeader[i].size();
  auto display_width = [](const std::string& s) {
    size_t n = 0;
    for (unsigned char c : s) n += (c & 0xC0) != 0x80;  // count UTF-8 code points (the ± sign)
    return n;
  };
  for (const auto& r : rows) {
    for (size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], display_width(r[i]));
  }
  auto line = [&](const std::vector<std::string>& cells) {
    out << "|";
    for (size_t i = 0; i < cells.size(); ++i) {
      const size_t pad = width[i] - display_width(cells[i]);
      const bool left = i < 2 || i == 5;
      out << " " << (left ? cells[i] + std::string(pad, ' ') : std::string(pad, ' ') + cells[i]) << " |";
    }
    out << "\n";
  };
  line(kHeader);
  out << "|";
  for (size_t i = 0; i < width.size(); ++i) out << std::string(width[i] + 2, '-') << "|";
  out << "\n";
  for (const auto& r : rows) line(r);
  if (doc.contains("scaling") && !doc["scaling"].empty()) {
    out << "\nScaling with prompt length (log-log slope: 1 = linear, 2 = quadratic, 0 = flat):\n";
    out << "| model | dtype | batch | prompt lengths | prefill time | peak memory | cache |\n";
    out << "|---|---|---|---|---|---|---|\n";
    for (const auto& s : doc["scaling"]) {
      std::string lens;
      for (const auto& l : s.at("prompt_lengths")) lens += (lens.empty() ? "" : ",") + std::to_string(l.get<int64_t>());
      out << fmt::format("| {} | {} | {} | {} | {} | {} | {} |\n", s.at("model").get<std::string>(),
                         s.at("dtype").get<std::string>(), s.at("batch").get<int64_t>(), lens,
                         exponent(s.at("prefill_time_exponent")), exponent(s.at("peak_memory_exponent")),
                         exponent(s.at("cache_exponent")));
    }
  }
  for (const auto& p : points) {
    if (p.status != PointStatus::Ok) out << fmt::format("\n{}: {}: {}", p.key.str(), to_string(p.status), p.error);
  }
  if (doc.value("interrupted", false)) out << "\n(interrupted: the points above are those that finished)";
  const auto& env = doc.at("environment");
  if (env.contains("device")) {
    const auto& d = env["device"];
    out << fmt::format("\n\ndevice: {} ({}); copy bandwidth {:.1f} GB/s, GEMM {:.2f} TFLOP/s ({}); harness {:.2f} us "
                       "per timed region\n",
                       d.value("name", "?"), d.value("string", "?"), d.value("copy_bandwidth_bytes_per_s", 0.0) / 1e9,
                       d.value("gemm_flops_per_s", 0.0) / 1e12, d.value("gemm_dtype", "?"),
                       env.value("harness_timer_overhead_s", 0.0) * 1e6);
  }
  return out.str();
}

}  // namespace effarch::bench
