// The human formats of a results document: table, markdown, CSV (and JSON, JSON Lines).

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>

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

// One cell: the full text and, for a timed figure, the mean alone (what a narrow table shows).
struct Cell {
  std::string full, compact;
};

Cell stat_cell(const std::optional<Stats>& st, double scale, int digits) {
  if (!st) return {"-", "-"};
  return {pm(st, scale, digits), fmt::format("{:.{}f}", st->mean * scale, digits)};
}

Cell text(const std::string& s) { return {s, s}; }

// Every column, in the order of the wide table and md (the csv has its own: kCsvColumns).
struct Column {
  const char* header;
  bool left;  // left-aligned (text), else right-aligned (numbers)
};
const std::vector<Column> kColumns = {
    {"model", true},        {"dtype", true},        {"batch", false},       {"prompt", false},
    {"gen", false},         {"status", true},       {"prefill tok/s", false}, {"TTFT ms", false},
    {"decode tok/s", false}, {"step p50 ms", false}, {"step p99 ms", false}, {"peak mem", false},
    {"cache", false},       {"decode BW", false},   {"prefill GEMM", false}, {"harness", false},
    {"load s", false},      {"load GB/s", false},   {"prefill J/tok", false}, {"decode J/tok", false},
    {"power W", false},     {"busy", true},
    // Last, as in the csv (kCsvColumns), where the columns before keep their places.
    {"backend", true},      {"graphs", true},       {"pdl", true}};
// The default table's columns, by priority (the first kept longest when the terminal is narrow):
// model, batch, prompt, prefill tok/s, decode tok/s, peak mem, cache, decode BW.
const std::vector<size_t> kDefaultColumns = {0, 2, 3, 6, 8, 11, 12, 13};
constexpr size_t kStatusColumn = 5;
// In the default table when a run had several launch settings.
constexpr size_t kBackendColumn = 22, kGraphsColumn = 23, kPdlColumn = 24;

std::vector<Cell> row(const Point& p) {
  const PointKey& k = p.key;
  const std::optional<SpeedResult>& s = p.speed;
  const std::optional<DecodeStepStats> steps = s ? s->decode_step_s : std::nullopt;
  std::optional<double> bandwidth, gemm;
  const LoadTime* load = p.loaded && p.loaded->load ? &*p.loaded->load : nullptr;
  if (p.roofline) {
    gemm = p.roofline->prefill_fraction_of_gemm;
    if (p.roofline->decode) bandwidth = p.roofline->decode->fraction_of_bandwidth;
  }
  return {text(k.model),
          text(k.dtype),
          text(std::to_string(k.batch)),
          text(std::to_string(k.prompt_len)),
          text(std::to_string(k.gen_tokens)),
          text(to_string(p.status)),
          stat_cell(s ? std::optional<Stats>(s->prefill_tokens_per_s) : std::nullopt, 1, 1),
          stat_cell(s ? std::optional<Stats>(s->ttft_s) : std::nullopt, 1e3, 2),
          stat_cell(s ? s->decode_tokens_per_s : std::nullopt, 1, 1),
          stat_cell(steps ? std::optional<Stats>(steps->p50) : std::nullopt, 1e3, 3),
          stat_cell(steps ? std::optional<Stats>(steps->p99) : std::nullopt, 1e3, 3),
          text(p.memory ? human_bytes(p.memory->peak_bytes) : "-"),
          text(p.memory ? human_bytes(p.memory->cache_bytes) : "-"),
          text(percent(bandwidth)),
          text(percent(gemm)),
          text(percent(p.harness_overhead_fraction)),
          text(load ? fmt::format("{:.3f}", load->seconds) : "-"),
          text(load ? fmt::format("{:.2f}", load->bytes_per_s / 1e9) : "-"),
          text(p.energy ? fmt::format("{:.3g}", p.energy->joules_per_prefill_token) : "-"),
          text(p.energy && p.energy->joules_per_decode_token ? fmt::format("{:.3g}", *p.energy->joules_per_decode_token)
                                                             : "-"),
          text(p.energy ? fmt::format("{:.1f}", p.energy->average_power_w) : "-"),
          text(!p.machine_load ? "-" : p.machine_load->busy ? "busy" : "ok"),
          text(std::string(ops::backend_name(k.backend))),
          text(model::to_string(k.cuda_graphs)),
          text(k.pdl ? "on" : "off")};
}

size_t display_width(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;  // count UTF-8 code points (the ± sign)
  return n;
}

// The table of `columns` (indices into kColumns) as "| a | b |" lines; `compact`: means only.
std::string grid(const std::vector<std::vector<Cell>>& rows, const std::vector<size_t>& columns, bool compact) {
  std::vector<size_t> width;
  for (size_t c : columns) {
    size_t w = std::string(kColumns[c].header).size();
    for (const auto& r : rows) w = std::max(w, display_width(compact ? r[c].compact : r[c].full));
    width.push_back(w);
  }
  std::ostringstream out;
  auto line = [&](const std::vector<std::string>& cells) {
    out << "|";
    for (size_t i = 0; i < cells.size(); ++i) {
      const size_t pad = width[i] - display_width(cells[i]);
      const bool left = kColumns[columns[i]].left;
      out << " " << (left ? cells[i] + std::string(pad, ' ') : std::string(pad, ' ') + cells[i]) << " |";
    }
    out << "\n";
  };
  std::vector<std::string> header;
  for (size_t c : columns) header.emplace_back(kColumns[c].header);
  line(header);
  out << "|";
  for (size_t w : width) out << std::string(w + 2, '-') << "|";
  out << "\n";
  for (const auto& r : rows) {
    std::vector<std::string> cells;
    for (size_t c : columns) cells.push_back(compact ? r[c].compact : r[c].full);
    line(cells);
  }
  return out.str();
}

// The width of a grid's first line, in characters.
size_t grid_width(const std::string& g) { return display_width(g.substr(0, g.find('\n'))); }

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

// ---- csv ----

// The csv is for spreadsheets and dataframes: every figure a plain number in the JSON's own unit
// (seconds, bytes, tokens/s, fractions), named in its column's header; a timed figure's mean and
// its standard deviation over the repetitions in two columns; an empty field where the point has
// no such figure. Text columns are the key's words. docs/bench.md lists the columns.
const std::vector<const char*> kCsvColumns = {
    "model", "dtype", "batch", "prompt", "gen", "status",
    "prefill tok/s", "prefill tok/s stddev", "TTFT s", "TTFT s stddev",
    "decode tok/s", "decode tok/s stddev", "step p50 s", "step p50 s stddev", "step p99 s", "step p99 s stddev",
    "peak mem bytes", "cache bytes", "decode BW fraction", "prefill GEMM fraction", "harness fraction",
    "load s", "load bytes/s", "prefill J/tok", "decode J/tok", "power W", "busy",
    // Last, so that the columns before keep their places in csv files made before them.
    "backend", "graphs", "pdl"};

std::string number(double v) { return fmt::format("{}", v); }  // the shortest text that reads back as v
std::string number(const std::optional<double>& v) { return v ? number(*v) : ""; }

std::vector<std::string> csv_row(const Point& p) {
  const PointKey& k = p.key;
  const std::optional<SpeedResult>& s = p.speed;
  const std::optional<DecodeStepStats> steps = s ? s->decode_step_s : std::nullopt;
  const LoadTime* load = p.loaded && p.loaded->load ? &*p.loaded->load : nullptr;
  std::vector<std::string> out = {k.model, k.dtype, std::to_string(k.batch), std::to_string(k.prompt_len),
                                  std::to_string(k.gen_tokens), to_string(p.status)};
  const auto stat = [&](const std::optional<Stats>& st) {
    out.push_back(st ? number(st->mean) : "");
    out.push_back(st ? number(st->stddev) : "");
  };
  stat(s ? std::optional<Stats>(s->prefill_tokens_per_s) : std::nullopt);
  stat(s ? std::optional<Stats>(s->ttft_s) : std::nullopt);
  stat(s ? s->decode_tokens_per_s : std::nullopt);
  stat(steps ? std::optional<Stats>(steps->p50) : std::nullopt);
  stat(steps ? std::optional<Stats>(steps->p99) : std::nullopt);
  out.push_back(p.memory ? std::to_string(p.memory->peak_bytes) : "");
  out.push_back(p.memory ? std::to_string(p.memory->cache_bytes) : "");
  out.push_back(p.roofline && p.roofline->decode ? number(p.roofline->decode->fraction_of_bandwidth) : "");
  out.push_back(p.roofline ? number(p.roofline->prefill_fraction_of_gemm) : "");
  out.push_back(number(p.harness_overhead_fraction));
  out.push_back(load ? number(load->seconds) : "");
  out.push_back(load ? number(load->bytes_per_s) : "");
  out.push_back(p.energy ? number(p.energy->joules_per_prefill_token) : "");
  out.push_back(p.energy ? number(p.energy->joules_per_decode_token) : "");
  out.push_back(p.energy ? number(p.energy->average_power_w) : "");
  out.push_back(!p.machine_load ? "" : p.machine_load->busy ? "busy" : "ok");
  out.push_back(std::string(ops::backend_name(k.backend)));
  out.push_back(model::to_string(k.cuda_graphs));
  out.push_back(k.pdl ? "on" : "off");
  return out;
}

std::string csv(const std::vector<Point>& points) {
  std::ostringstream out;
  for (size_t i = 0; i < kCsvColumns.size(); ++i) out << (i ? "," : "") << csv_field(kCsvColumns[i]);
  out << "\n";
  for (const Point& p : points) {
    const std::vector<std::string> r = csv_row(p);
    for (size_t i = 0; i < r.size(); ++i) out << (i ? "," : "") << csv_field(r[i]);
    out << "\n";
  }
  return out.str();
}

// ---- dashboards ----

// One figure of a point for a dashboard: its value with the spread over the repetitions.
struct Figure {
  const char* slug;   // BMF measure
  const char* label;  // github-action-benchmark name suffix
  const char* unit;
  bool bigger_is_better;
  double value;
  std::optional<double> low, high, stddev;
};

std::vector<Figure> figures_of(const Point& p) {
  std::vector<Figure> out;
  const auto stat = [&](const char* slug, const char* label, const char* unit, bool bigger, const Stats& s) {
    out.push_back({slug, label, unit, bigger, s.mean, s.min, s.max, s.stddev});
  };
  if (p.speed) {
    stat("prefill-throughput", "prefill", "tokens/s", true, p.speed->prefill_tokens_per_s);
    if (p.speed->decode_tokens_per_s) stat("decode-throughput", "decode", "tokens/s", true, *p.speed->decode_tokens_per_s);
    stat("ttft", "TTFT", "s", false, p.speed->ttft_s);
  }
  if (p.memory) {
    out.push_back({"peak-memory", "peak memory", "bytes", false, static_cast<double>(p.memory->peak_bytes), {}, {}, {}});
    out.push_back({"cache", "cache", "bytes", false, static_cast<double>(p.memory->cache_bytes), {}, {}, {}});
  }
  if (p.loaded && p.loaded->load) out.push_back({"load-time", "load", "s", false, p.loaded->load->seconds, {}, {}, {}});
  if (p.energy) {
    out.push_back({"energy-per-prefill-token", "energy per prefill token", "J", false,
                   p.energy->joules_per_prefill_token, {}, {}, {}});
    if (p.energy->joules_per_decode_token) {
      out.push_back({"energy-per-decode-token", "energy per decoded token", "J", false,
                     *p.energy->joules_per_decode_token, {}, {}, {}});
    }
  }
  return out;
}

// github-action-benchmark's custom tools: an array of {name, unit, value, range?, extra?}, one
// file per direction (customBiggerIsBetter / customSmallerIsBetter).
nlohmann::json github_benchmark(const std::vector<Point>& points, bool bigger) {
  nlohmann::json out = nlohmann::json::array();
  for (const Point& p : points) {
    if (p.status != PointStatus::Ok) continue;
    for (const Figure& f : figures_of(p)) {
      if (f.bigger_is_better != bigger) continue;
      nlohmann::json e = {{"name", p.key.str() + " | " + f.label}, {"unit", f.unit}, {"value", f.value}};
      if (f.stddev) e["range"] = fmt::format("± {:.6g}", *f.stddev);
      if (p.machine_load && p.machine_load->busy) e["extra"] = "busy: the machine was too busy to measure";
      out.push_back(e);
    }
  }
  return out;
}

// Bencher Metric Format: {benchmark: {measure: {value, lower_value?, upper_value?}}}.
nlohmann::json bencher_metric_format(const std::vector<Point>& points) {
  nlohmann::json out = nlohmann::json::object();
  for (const Point& p : points) {
    if (p.status != PointStatus::Ok) continue;
    nlohmann::json measures = nlohmann::json::object();
    for (const Figure& f : figures_of(p)) {
      nlohmann::json m = {{"value", f.value}};
      if (f.low) m["lower_value"] = *f.low;
      if (f.high) m["upper_value"] = *f.high;
      measures[f.slug] = m;
    }
    if (!measures.empty()) out[p.key.str()] = measures;
  }
  return out;
}

std::string exponent(const nlohmann::json& v) { return v.is_null() ? "-" : fmt::format("{:.2f}", v.get<double>()); }

}  // namespace

size_t resolve_terminal_width(std::optional<size_t> terminal_columns, const char* columns_env) {
  if (terminal_columns && *terminal_columns > 0) return *terminal_columns;
  if (columns_env != nullptr) {
    char* end = nullptr;
    const long v = std::strtol(columns_env, &end, 10);
    if (end != columns_env && *end == '\0' && v > 0) return static_cast<size_t>(v);
  }
  return 120;
}

size_t terminal_width() {
  std::optional<size_t> cols;
  winsize ws{};
  if (isatty(STDOUT_FILENO) && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) cols = ws.ws_col;
  return resolve_terminal_width(cols, std::getenv("COLUMNS"));
}

std::string format_results(const nlohmann::json& doc, const std::string& format, const TableOptions& options) {
  if (format == "json") return doc.dump(2) + "\n";
  std::ostringstream out;
  if (format == "jsonl") {
    for (const auto& p : doc.at("points")) out << p.dump() << "\n";
    return out.str();
  }
  const std::vector<Point> points = points_of(doc);
  if (format == "github-bigger" || format == "github-smaller") {
    return github_benchmark(points, format == "github-bigger").dump(2) + "\n";
  }
  if (format == "bmf") return bencher_metric_format(points).dump(2) + "\n";
  if (format == "csv") return csv(points);
  std::vector<std::vector<Cell>> rows;
  for (const auto& p : points) rows.push_back(row(p));
  if (format != "table" && format != "md") throw UsageError(fmt::format("--format: unknown format '{}'", format));
  std::vector<size_t> all(kColumns.size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = i;
  if (format == "md" || options.wide) {
    out << grid(rows, all, false);
  } else {
    // The columns a reader scans first (status too when a point failed), fitted to the width:
    // first the means without their ± stddev, then the last columns dropped.
    std::vector<size_t> columns = kDefaultColumns;
    bool failed = false;
    for (const auto& p : points) failed = failed || p.status != PointStatus::Ok;
    if (failed) columns.insert(columns.begin() + 3, kStatusColumn);
    // A run of several launch settings (bench --backend reference,auto / --cuda-graphs off,on /
    // --pdl off,on): which row is which.
    std::set<std::string> settings;
    for (const auto& p : points) settings.insert(p.key.launch_str());
    if (settings.size() > 1) columns.insert(columns.begin() + 3, {kBackendColumn, kGraphsColumn, kPdlColumn});
    bool compact = false;
    std::string g = grid(rows, columns, compact);
    const size_t limit = options.max_width;
    if (limit > 0 && grid_width(g) > limit) {
      compact = true;
      g = grid(rows, columns, compact);
    }
    size_t dropped = 0;
    while (limit > 0 && grid_width(g) > limit && columns.size() > 1) {
      columns.pop_back();
      ++dropped;
      g = grid(rows, columns, compact);
    }
    out << g;
    if (compact || dropped > 0) {
      out << fmt::format("({}{}{} to fit {} characters; --wide shows every column with mean ± stddev)\n",
                         compact ? "means only" : "", compact && dropped > 0 ? ", " : "",
                         dropped > 0 ? fmt::format("{} column(s) left out", dropped) : "", limit);
    } else {
      out << fmt::format("({} of {} columns; --wide or --format md/csv/json show them all)\n", columns.size(),
                         kColumns.size());
    }
  }
  if (doc.contains("scaling") && !doc["scaling"].empty()) {
    out << "\nScaling with prompt length (log-log slope: 1 = linear, 2 = quadratic, 0 = flat):\n";
    out << "| model | dtype | batch | backend | graphs | pdl | prompt lengths | prefill time | peak memory | cache |\n";
    out << "|---|---|---|---|---|---|---|---|---|---|\n";
    for (const auto& s : doc["scaling"]) {
      std::string lens;
      for (const auto& l : s.at("prompt_lengths")) lens += (lens.empty() ? "" : ",") + std::to_string(l.get<int64_t>());
      out << fmt::format("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n", s.at("model").get<std::string>(),
                         s.at("dtype").get<std::string>(), s.at("batch").get<int64_t>(),
                         s.value("backend", std::string("auto")), s.value("cuda_graphs", std::string("-")),
                         s.value("pdl", std::string("off")), lens,
                         exponent(s.at("prefill_time_exponent")), exponent(s.at("peak_memory_exponent")),
                         exponent(s.at("cache_exponent")));
    }
  }
  // Notes on the points, one line each, as a block after one blank line (none when all is well).
  std::vector<std::string> notes;
  for (const auto& p : points) {
    if (p.status != PointStatus::Ok) notes.push_back(fmt::format("{}: {}: {}", p.key.str(), to_string(p.status), p.error));
  }
  size_t busy = 0;
  for (const auto& p : points) busy += p.machine_load && p.machine_load->busy;
  if (busy > 0) {
    notes.push_back(fmt::format("{} of {} point(s) ran while the machine was too busy to time (other runnable "
                                "threads + the point's threads > cores): their timings may be far below the "
                                "machine's; \"busy\": true in the JSON",
                                busy, points.size()));
  }
  size_t beyond = 0;
  for (const auto& p : points) beyond += p.status == PointStatus::Ok && p.beyond_trained_context;
  if (beyond > 0) {
    notes.push_back(fmt::format("{} of {} point(s) ran past their model's max_position_embeddings (prompt + generated "
                                "tokens): measured all the same, but the model was not trained that far; "
                                "\"beyond_trained_context\": true in the JSON",
                                beyond, points.size()));
  }
  if (doc.value("interrupted", false)) notes.emplace_back("(interrupted: the points above are those that finished)");
  if (!notes.empty()) out << fmt::format("\n{}\n", fmt::join(notes, "\n"));
  const auto& env = doc.at("environment");
  if (env.contains("device")) {
    const auto& d = env["device"];
    out << fmt::format("\ndevice: {} ({}); copy bandwidth {:.1f} GB/s, GEMM {:.2f} TFLOP/s ({}); harness {:.2f} us "
                       "per timed region\n",
                       d.value("name", "?"), d.value("string", "?"), d.value("copy_bandwidth_bytes_per_s", 0.0) / 1e9,
                       d.value("gemm_flops_per_s", 0.0) / 1e12, d.value("gemm_dtype", "?"),
                       env.value("harness_timer_overhead_s", 0.0) * 1e6);
  }
  if (env.contains("energy") && env["energy"].is_object()) {
    const auto& e = env["energy"];
    if (e.value("source", nlohmann::json()).is_string()) {
      const auto& limit = e.value("power_limit_w", nlohmann::json());
      out << fmt::format("energy: {}{} (--wide: joules per token, average power)\n", e["source"].get<std::string>(),
                         limit.is_number() ? fmt::format(", power limit {:.0f} W", limit.get<double>()) : "");
    } else {
      out << fmt::format("energy: not measured: {}\n", e.value("unavailable_reason", "?"));
    }
  }
  return out.str();
}

}  // namespace effarch::bench
