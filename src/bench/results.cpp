// The results document: assembly, validation on read, atomic writing, and the human formats.

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "effarch/bench/bench.h"
#include "effarch/common/error.h"
#include "effarch/io/strict_json.h"

namespace effarch::bench {

std::string point_key(const nlohmann::json& point) {
  const auto& k = point.at("key");
  return fmt::format("{} {} b{} p{} g{} {} graphs={}", k.at("model").get<std::string>(), k.at("dtype").get<std::string>(),
                     k.at("batch").get<int64_t>(), k.at("prompt_len").get<int64_t>(), k.at("gen_tokens").get<int64_t>(),
                     k.at("device").get<std::string>(), k.at("cuda_graphs").get<std::string>());
}

nlohmann::json make_document(const SweepSpec& spec, const nlohmann::json& environment,
                             const std::vector<std::string>& command_line, const std::vector<nlohmann::json>& points,
                             bool interrupted) {
  nlohmann::json doc;
  doc["schema"] = "effarch-bench";
  doc["schema_version"] = kSchemaVersion;
  doc["environment"] = environment;
  doc["command_line"] = command_line;
  doc["settings"] = {{"suite", spec.suite_name},
                     {"models", spec.models},
                     {"prompt_lengths", spec.prompt_lengths},
                     {"batch", spec.batches},
                     {"gen_tokens", spec.gen_tokens},
                     {"reps", spec.reps},
                     {"warmup", spec.warmup},
                     {"dtype", spec.dtype},
                     {"device", spec.device},
                     {"cuda_graphs", spec.cuda_graphs},
                     {"attention", spec.attention},
                     {"threads", spec.threads ? nlohmann::json(*spec.threads) : nlohmann::json(nullptr)},
                     {"modes", nlohmann::json::array()},
                     {"memory_limit_bytes", spec.memory_limit ? nlohmann::json(*spec.memory_limit) : nlohmann::json(nullptr)}};
  if (spec.speed) doc["settings"]["modes"].push_back("speed");
  if (spec.memory) doc["settings"]["modes"].push_back("memory");
  doc["points"] = points;
  doc["scaling"] = scaling(points);
  doc["interrupted"] = interrupted;
  size_t failed = 0;
  for (const auto& p : points) failed += p.value("status", "") != "ok";
  doc["summary"] = {{"points", points.size()}, {"failed", failed}};
  return doc;
}

nlohmann::json read_document(const std::string& path) {
  nlohmann::json doc;
  try {
    doc = io::read_json_file(path);
  } catch (const Error& e) {
    throw FormatError(fmt::format("{}: not a results file: {}", path, e.what()));
  }
  auto fail = [&](const std::string& what) { throw FormatError(fmt::format("{}: {}", path, what)); };
  if (!doc.is_object() || doc.value("schema", "") != "effarch-bench") fail("not an effarch bench results file (schema)");
  if (!doc.contains("schema_version") || !doc["schema_version"].is_number_integer()) fail("no schema_version");
  if (doc["schema_version"].get<int>() > kSchemaVersion) {
    fail(fmt::format("schema_version {} is newer than this effarch reads ({})", doc["schema_version"].get<int>(),
                     kSchemaVersion));
  }
  if (!doc.contains("points") || !doc["points"].is_array()) fail("no points list");
  size_t i = 0;
  for (const auto& p : doc["points"]) {
    if (!p.is_object() || !p.contains("key") || !p.contains("status")) fail(fmt::format("point {} has no key or status", i));
    for (const char* k : {"model", "dtype", "batch", "prompt_len", "gen_tokens", "device", "cuda_graphs"}) {
      if (!p["key"].contains(k)) fail(fmt::format("point {} key lacks '{}'", i, k));
    }
    ++i;
  }
  return doc;
}

void write_atomically(const std::string& path, const std::string& text) {
  const std::filesystem::path target(path);
  if (target.has_parent_path()) std::filesystem::create_directories(target.parent_path());
  const std::string tmp = path + ".partial";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw UsageError(fmt::format("-o: cannot write {}", tmp));
    out << text;
    out.flush();
    if (!out) throw UsageError(fmt::format("-o: writing {} failed", tmp));
  }
  std::filesystem::rename(tmp, target);
}

namespace {

std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) {
    b /= 1024;
    ++u;
  }
  return fmt::format(u == 0 ? "{:.0f} {}" : "{:.1f} {}", b, units[u]);
}

// "mean ± stddev" of a statistic at `path` (scaled), or "-".
std::string pm(const nlohmann::json& p, const std::vector<std::string>& path, double scale, int digits) {
  const nlohmann::json* j = &p;
  for (const auto& k : path) {
    if (!j->contains(k)) return "-";
    j = &(*j)[k];
  }
  return fmt::format("{:.{}f} ± {:.{}f}", j->at("mean").get<double>() * scale, digits,
                     j->at("stddev").get<double>() * scale, digits);
}

// A fraction as a percentage with about three significant digits: tiny models on a big GPU
// reach thousandths of a percent of its bandwidth, which "0.0%" would hide.
std::string percent(const nlohmann::json& p, const std::vector<std::string>& path) {
  const nlohmann::json* j = &p;
  for (const auto& k : path) {
    if (!j->contains(k) || (*j)[k].is_null()) return "-";
    j = &(*j)[k];
  }
  const double v = j->get<double>() * 100;
  if (v == 0) return "0%";
  if (v >= 10) return fmt::format("{:.1f}%", v);
  if (v >= 1) return fmt::format("{:.2f}%", v);
  if (v >= 0.001) return fmt::format("{:.3f}%", v);
  return "<0.001%";
}

std::vector<std::string> row(const nlohmann::json& p) {
  const auto& k = p.at("key");
  const std::string status = p.at("status").get<std::string>();
  return {k.at("model").get<std::string>(),
          k.at("dtype").get<std::string>(),
          std::to_string(k.at("batch").get<int64_t>()),
          std::to_string(k.at("prompt_len").get<int64_t>()),
          std::to_string(k.at("gen_tokens").get<int64_t>()),
          status,
          pm(p, {"speed", "prefill_tokens_per_s"}, 1, 1),
          pm(p, {"speed", "ttft_s"}, 1e3, 2),
          pm(p, {"speed", "decode_tokens_per_s"}, 1, 1),
          pm(p, {"speed", "decode_step_s", "p50"}, 1e3, 3),
          pm(p, {"speed", "decode_step_s", "p99"}, 1e3, 3),
          p.contains("memory") ? human_bytes(p["memory"].at("peak_bytes").get<double>()) : "-",
          p.contains("memory") ? human_bytes(p["memory"].at("cache_bytes").get<double>()) : "-",
          percent(p, {"roofline", "decode_fraction_of_bandwidth"}),
          percent(p, {"roofline", "prefill_fraction_of_gemm"}),
          percent(p, {"harness_overhead_fraction"})};
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
  std::vector<std::vector<std::string>> rows;
  for (const auto& p : doc.at("points")) rows.push_back(row(p));
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
  for (const auto& p : doc.at("points")) {
    if (p.at("status") != "ok") out << fmt::format("\n{}: {}: {}", point_key(p), p.at("status").get<std::string>(),
                                                   p.value("error", ""));
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
