// What makes bench's output readable and trustworthy (issue 16): the table fitted to a terminal,
// the machine's load around each point and the busy flag, the default CPU thread count,
// --cuda-graphs auto resolved per model without touching a GPU, and the load time.

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "../test_util.h"
#include "effarch/bench/bench.h"
#include "effarch/common/error.h"
#include "effarch/common/format.h"
#include "effarch/model/catalog.h"
#include "effarch/model/model.h"

namespace effarch::bench {
namespace {

using nlohmann::json;

Point ok_point(const std::string& model, int64_t len) {
  Point p;
  p.key.model = model;
  p.key.dtype = "float32";
  p.key.prompt_len = len;
  p.key.gen_tokens = 16;
  p.key.device = "cpu";
  p.key.weights = "float32";
  SpeedResult s;
  s.prefill_s = summarize({0.01, 0.011, 0.012});
  s.prefill_tokens_per_s = summarize({123456.7, 123000.1, 122000.5});
  s.ttft_s = summarize({0.0101, 0.0111, 0.0121});
  s.decode_tokens_per_s = summarize({2345.6, 2300.2, 2200.9});
  s.decode_step_s = DecodeStepStats{summarize({4e-4}), summarize({5e-4}), summarize({6e-4})};
  p.speed = s;
  MemoryResult m;
  m.source = "cpu_counting_allocator";
  m.peak_bytes = 3 << 20;
  m.cache_bytes = 80 << 10;
  p.memory = m;
  Roofline r;
  r.decode = Roofline::Decode{1e6, 1e9, 0.165, std::nullopt, std::nullopt};
  p.roofline = r;
  p.harness_overhead_fraction = 1e-4;
  return p;
}

json doc_of(const std::vector<Point>& points) {
  SweepSpec spec;
  spec.models = {"m"};
  return make_document(spec, json{{"time", "t"}}, {"effarch", "bench"}, points, false);
}

// The points' table: the lines starting with "|" before the first blank line (the note under it,
// then the scaling table, follow).
std::string points_table(const std::string& text) {
  std::istringstream in(text.substr(0, text.find("\n\n")));
  std::string out;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("|", 0) == 0) out += line + "\n";
  }
  return out;
}

size_t widest_table_line(const std::string& text) {
  size_t widest = 0;
  std::istringstream in(points_table(text));
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("|", 0) != 0) continue;
    size_t n = 0;
    for (unsigned char c : line) n += (c & 0xC0) != 0x80;
    widest = std::max(widest, n);
  }
  return widest;
}

TEST(BenchTable, TerminalWidthRule) {
  EXPECT_EQ(resolve_terminal_width(std::nullopt, nullptr), 120u);  // not a terminal, no $COLUMNS
  EXPECT_EQ(resolve_terminal_width(std::nullopt, "100"), 100u);
  EXPECT_EQ(resolve_terminal_width(size_t{80}, "100"), 80u);  // the terminal's own answer first
  EXPECT_EQ(resolve_terminal_width(std::nullopt, "wide"), 120u);
  EXPECT_EQ(resolve_terminal_width(std::nullopt, "-5"), 120u);
  EXPECT_EQ(resolve_terminal_width(size_t{0}, ""), 120u);
}

TEST(BenchTable, DefaultColumnsFitAndWideShowsAll) {
  const json doc = doc_of({ok_point("tiny-llama", 64), ok_point("tiny-mamba", 1024)});
  const std::string narrow = format_results(doc, "table", TableOptions{false, 120});
  for (const char* h : {"model", "batch", "prompt", "prefill tok/s", "decode tok/s", "peak mem", "cache", "decode BW"}) {
    EXPECT_NE(narrow.find(h), std::string::npos) << h;
  }
  for (const char* h : {"TTFT ms", "step p99 ms", "prefill GEMM", "harness", "dtype", "load s"}) {
    EXPECT_EQ(points_table(narrow).find(h), std::string::npos) << h;
  }
  EXPECT_LE(widest_table_line(narrow), 120u);
  const double prefill_mean = ok_point("x", 1).speed->prefill_tokens_per_s.mean;
  EXPECT_NE(narrow.find(fmt::format("{:.1f} ± ", prefill_mean)), std::string::npos) << narrow;  // where it fits

  // 80 columns: the means alone; 40: columns dropped from the end, model kept.
  const std::string eighty = format_results(doc, "table", TableOptions{false, 80});
  EXPECT_LE(widest_table_line(eighty), 80u);
  EXPECT_EQ(points_table(eighty).find(" ± "), std::string::npos) << eighty;  // the note under it mentions ±
  EXPECT_NE(eighty.find(fmt::format("{:.1f}", prefill_mean)), std::string::npos) << eighty;
  const std::string forty = format_results(doc, "table", TableOptions{false, 40});
  EXPECT_LE(widest_table_line(forty), 40u);
  EXPECT_NE(forty.find("column(s) left out"), std::string::npos);
  EXPECT_NE(forty.find("tiny-mamba"), std::string::npos);

  // --wide and md: every column, whatever the width (csv: BenchCsv below).
  for (const std::string& text : {format_results(doc, "table", TableOptions{true, 40}), format_results(doc, "md")}) {
    for (const char* h : {"TTFT ms", "step p99 ms", "prefill GEMM", "harness", "dtype", "load s", "load GB/s", "busy"}) {
      EXPECT_NE(text.find(h), std::string::npos) << h << "\n" << text;
    }
  }
  // A failed point brings the status column into the default table.
  Point failed = ok_point("tiny-jamba", 64);
  failed.status = PointStatus::Oom;
  failed.error = "CPU out of memory";
  EXPECT_NE(format_results(doc_of({ok_point("tiny-llama", 64), failed}), "table", TableOptions{false, 120}).find("status"),
            std::string::npos);
}

// The csv is for spreadsheets: every figure a plain number (no "±", no unit in the cell), the
// unit in the header, the mean and the stddev in columns of their own, empty where a point has no
// such figure; the values those of the JSON, unrounded.
TEST(BenchCsv, NumbersInTheirOwnColumnsWithUnitsInTheHeader) {
  Point memory_only = ok_point("tiny-mamba", 64);
  memory_only.speed.reset();
  memory_only.roofline.reset();
  memory_only.harness_overhead_fraction.reset();
  Point failed = ok_point("tiny-jamba", 64);
  failed.status = PointStatus::Oom;
  failed.error = "CPU out of memory";
  failed.speed.reset();
  failed.memory.reset();
  const std::string text = format_results(doc_of({ok_point("tiny-llama", 64), memory_only, failed}), "csv");
  EXPECT_EQ(text.find("±"), std::string::npos) << text;
  std::istringstream in(text);
  std::vector<std::vector<std::string>> rows;
  for (std::string line; std::getline(in, line);) rows.push_back(split_commas(line));  // no field is quoted here
  ASSERT_EQ(rows.size(), 4u) << text;
  const std::vector<std::string>& header = rows[0];
  const auto column = [&](const std::string& name) {
    const auto it = std::find(header.begin(), header.end(), name);
    EXPECT_NE(it, header.end()) << name << "\n" << text;
    return static_cast<size_t>(it - header.begin());
  };
  const std::set<std::string> text_columns = {"model", "dtype", "status", "busy", "backend", "graphs", "pdl"};
  for (const auto& r : rows) ASSERT_EQ(r.size(), header.size()) << text;
  for (size_t c = 0; c < header.size(); ++c) {
    if (text_columns.count(header[c])) continue;
    for (size_t i = 1; i < rows.size(); ++i) {
      const std::string& v = rows[i][c];
      if (v.empty()) continue;
      size_t used = 0;
      EXPECT_NO_THROW((void)std::stod(v, &used)) << header[c] << ": '" << v << "'";
      EXPECT_EQ(used, v.size()) << header[c] << ": '" << v << "' is not a number";
    }
  }
  const Point ok = ok_point("x", 1);
  const std::vector<std::string>& first = rows[1];
  EXPECT_EQ(std::stod(first[column("prefill tok/s")]), ok.speed->prefill_tokens_per_s.mean);
  EXPECT_EQ(std::stod(first[column("prefill tok/s stddev")]), ok.speed->prefill_tokens_per_s.stddev);
  EXPECT_EQ(std::stod(first[column("TTFT s")]), ok.speed->ttft_s.mean);
  EXPECT_EQ(std::stod(first[column("step p99 s")]), ok.speed->decode_step_s->p99.mean);
  EXPECT_EQ(first[column("peak mem bytes")], std::to_string(3 << 20));
  EXPECT_EQ(first[column("cache bytes")], std::to_string(80 << 10));
  EXPECT_EQ(std::stod(first[column("decode BW fraction")]), 0.165);
  EXPECT_EQ(std::stod(first[column("harness fraction")]), 1e-4);
  for (const char* h : {"decode tok/s", "decode tok/s stddev", "step p50 s stddev", "load s", "load bytes/s",
                        "prefill GEMM fraction", "prefill J/tok", "decode J/tok", "power W"}) {
    (void)column(h);
  }
  // A memory-only point: its timed columns empty, its bytes there; a failed one: its status.
  EXPECT_EQ(rows[2][column("TTFT s")], "");
  EXPECT_EQ(rows[2][column("decode tok/s stddev")], "");
  EXPECT_EQ(rows[2][column("peak mem bytes")], std::to_string(3 << 20));
  EXPECT_EQ(rows[3][column("status")], "oom");
  EXPECT_EQ(rows[3][column("peak mem bytes")], "");
  // The launch columns stay last, where csv files made before them have nothing.
  EXPECT_EQ(std::vector<std::string>(header.end() - 3, header.end()), (std::vector<std::string>{"backend", "graphs", "pdl"}));
}

// A point past its model's max_position_embeddings is measured, flagged in the JSON, and counted
// in a note under the table.
TEST(BenchTable, BeyondTheTrainedContextIsNoted) {
  Point past = ok_point("tiny-llama", 4096);
  past.beyond_trained_context = true;
  const std::string table = format_results(doc_of({ok_point("tiny-llama", 64), past}), "table", TableOptions{false, 120});
  EXPECT_NE(table.find("1 of 2 point(s) ran past their model's max_position_embeddings"), std::string::npos) << table;
  EXPECT_EQ(format_results(doc_of({ok_point("tiny-llama", 64)}), "table").find("max_position_embeddings"),
            std::string::npos);
}

TEST(BenchLoad, ParsesLoadavg) {
  const std::optional<LoadSample> s = parse_loadavg("3.89 4.05 3.75 7/120 24954\n");
  ASSERT_TRUE(s);
  EXPECT_DOUBLE_EQ(s->load1, 3.89);
  EXPECT_EQ(s->others_runnable, 6);  // the reader itself is one of the 7
  const std::optional<LoadSample> idle = parse_loadavg("0.00 0.01 0.05 1/80 1");
  ASSERT_TRUE(idle);
  EXPECT_EQ(idle->others_runnable, 0);
  for (const char* bad : {"", "0.1 0.2", "0.1 0.2 0.3 x/80 1", "0.1 0.2 0.3 /80 1", "0.1 0.2 0.3 4-80 1",
                          "-1 0.2 0.3 1/80 1"}) {
    EXPECT_FALSE(parse_loadavg(bad)) << bad;
  }
  // From a file (the sysfs path is a parameter): the median of the readings; unreadable: nullopt.
  effarch::testing::TempDir dir;
  std::ofstream(dir / "loadavg") << "2.50 1.00 0.50 4/300 999\n";
  const std::optional<LoadSample> f = read_machine_load((dir / "loadavg").string(), 3);
  ASSERT_TRUE(f);
  EXPECT_DOUBLE_EQ(f->load1, 2.5);
  EXPECT_EQ(f->others_runnable, 3);
  EXPECT_FALSE(read_machine_load((dir / "absent").string(), 1));
  EXPECT_GE(usable_cores(), 1);
}

TEST(BenchLoad, BusyRuleAndDefaultThreads) {
  const auto sample = [](int64_t others) { return LoadSample{1.0, others}; };
  EXPECT_FALSE(too_busy(sample(0), 2, 2));
  EXPECT_TRUE(too_busy(sample(1), 2, 2));  // two threads and another runnable on two cores
  EXPECT_FALSE(too_busy(sample(1), 2, 1));
  EXPECT_TRUE(too_busy(sample(2), 2, 1));
  EXPECT_FALSE(too_busy(sample(10), 16, 4));
  EXPECT_TRUE(too_busy(sample(13), 16, 4));

  MachineLoad m = judge_load(sample(0), sample(3), 4, 2);  // busy after only: flagged
  EXPECT_TRUE(m.busy);
  EXPECT_EQ(m.cores, 4);
  EXPECT_EQ(m.threads, 2);
  EXPECT_FALSE(judge_load(sample(1), sample(1), 4, 2).busy);
  EXPECT_FALSE(judge_load(std::nullopt, std::nullopt, 1, 1).busy);  // unreadable: not flagged
  EXPECT_TRUE(judge_load(std::nullopt, sample(1), 1, 1).busy);

  EXPECT_EQ(default_cpu_threads(2, std::nullopt), 1);
  EXPECT_EQ(default_cpu_threads(16, std::nullopt), 15);
  EXPECT_EQ(default_cpu_threads(16, sample(0)), 15);
  EXPECT_EQ(default_cpu_threads(16, sample(4)), 12);
  EXPECT_EQ(default_cpu_threads(2, sample(5)), 1);
  EXPECT_EQ(default_cpu_threads(1, std::nullopt), 1);

  // In the JSON: the figures under machine_load, and "busy": true on the point when flagged.
  Point p = ok_point("tiny-llama", 64);
  p.machine_load = m;
  const json j = p;
  EXPECT_EQ(j["busy"], true);
  EXPECT_EQ(j["machine_load"]["after"]["others_runnable"], 3);
  EXPECT_TRUE(j.get<Point>() == p);
  p.machine_load = judge_load(sample(0), sample(0), 4, 2);
  EXPECT_FALSE(json(p).contains("busy"));
  EXPECT_TRUE(json(p).get<Point>() == p);
  // The table says how many points were busy.
  Point busy = ok_point("tiny-mamba", 64);
  busy.machine_load = m;
  const std::string table = format_results(doc_of({p, busy}), "table", TableOptions{false, 120});
  EXPECT_NE(table.find("1 of 2 point(s) ran while the machine was too busy"), std::string::npos) << table;
}

TEST(BenchCudaGraphs, AutoResolvesPerModelWithoutAGpu) {
  EXPECT_FALSE(model::parse_cuda_graphs_request("auto", "--cuda-graphs"));
  EXPECT_EQ(model::parse_cuda_graphs_request("on", "--cuda-graphs"), model::DecodeMode::CudaGraph);
  EXPECT_EQ(model::parse_cuda_graphs_request("static", "x"), model::DecodeMode::Static);
  EXPECT_THROW_WITH(model::parse_cuda_graphs_request("yes", "--cuda-graphs"), UsageError,
                    {"--cuda-graphs", "'yes'", "auto"});
  const at::Device cpu(at::kCPU);
  const at::Device fake_cuda(at::kCUDA, 0);  // a device value only: nothing asks the GPU
  size_t tiny = 0;
  for (const std::string& name : model::builtin_model_names()) {
    if (name.rfind("tiny-", 0) != 0) continue;
    ++tiny;
    const model::ModelConfig config = model::resolve_model(name).config;
    const bool moe = config.count_layers(model::FfnKind::MoE) > 0;
    // The CPU: eager for every model, with or without CUDA in the build.
    EXPECT_EQ(model::resolve_decode_mode(config, cpu, std::nullopt), model::DecodeMode::Eager) << name;
    EXPECT_EQ(model::resolve_decode_mode(config, cpu, std::nullopt, true), model::DecodeMode::Eager) << name;
    // A CUDA device in a CUDA build: a graph, for MoE models too (the CUDA dispatch kernels decode
    // without a host sync, dense or int8 experts), except with the reference dispatch.
    EXPECT_EQ(model::resolve_decode_mode(config, fake_cuda, std::nullopt, true), model::DecodeMode::CudaGraph) << name;
    EXPECT_EQ(model::resolve_decode_mode(config, fake_cuda, std::nullopt, true, ops::Backend::Reference),
              moe ? model::DecodeMode::Eager : model::DecodeMode::CudaGraph)
        << name;
    EXPECT_EQ(model::resolve_decode_mode(config, fake_cuda, std::nullopt, true, ops::Backend::Auto,
                                         ops::WeightFormat::Int8),
              model::DecodeMode::CudaGraph)
        << name;
    EXPECT_EQ(model::moe_decode_not_capturable(config, ops::Backend::Cuda, ops::WeightFormat::Dense, true), std::nullopt)
        << name;
    EXPECT_EQ(model::resolve_decode_mode(config, fake_cuda, std::nullopt, false), model::DecodeMode::Eager) << name;
    // An explicit mode is what was asked for (load refuses "on" where it cannot run).
    for (auto mode : {model::DecodeMode::Eager, model::DecodeMode::Static, model::DecodeMode::CudaGraph}) {
      EXPECT_EQ(model::resolve_decode_mode(config, cpu, mode), mode);
    }
  }
  EXPECT_GE(tiny, 5u);
  const auto mixtral = model::resolve_model("tiny-mixtral").config;
  EXPECT_EQ(model::resolve_decode_mode(mixtral, fake_cuda, std::nullopt, true), model::DecodeMode::CudaGraph);
  EXPECT_EQ(model::resolve_decode_mode(mixtral, fake_cuda, std::nullopt, false), model::DecodeMode::Eager);
  const auto why = model::moe_decode_not_capturable(mixtral, ops::Backend::Reference, ops::WeightFormat::Dense, true);
  ASSERT_TRUE(why.has_value());
  EXPECT_NE(why->find("reference"), std::string::npos) << *why;
  // The real configs the issue names: within the kernels' limits (64 experts top-6 for DeepSeekMoE).
  for (const char* name : {"mixtral-8x7b", "deepseek-moe-16b", "jamba-v0.1"}) {
    EXPECT_EQ(model::moe_decode_not_capturable(model::resolve_model(name).config, ops::Backend::Auto,
                                               ops::WeightFormat::Dense, true),
              std::nullopt)
        << name;
  }
  const auto llama = model::resolve_model("tiny-llama").config;
  EXPECT_EQ(model::resolve_decode_mode(llama, fake_cuda, std::nullopt, true), model::DecodeMode::CudaGraph);
}

// A real sweep with the defaults: auto resolved to off on the CPU in the key and the settings,
// the load time recorded, the machine's load around the point.
TEST(BenchSweep, AutoGraphsLoadTimeAndMachineLoadOnTheCpu) {
  const json env = {{"device", {{"copy_bandwidth_bytes_per_s", 1e10}, {"gemm_flops_per_s", 1e11}}},
                    {"harness_timer_overhead_s", 1e-6}};
  SweepSpec spec;
  spec.models = {"tiny-llama", "tiny-mixtral"};
  spec.prompt_lengths = {16};
  spec.gen_tokens = 3;
  spec.reps = 1;
  spec.warmup = 0;
  spec.device = "cpu";
  ASSERT_EQ(spec.cuda_graphs.size(), 1u);  // auto by default
  ASSERT_FALSE(spec.cuda_graphs.front());
  const std::vector<Point> points = run_sweep(spec, env, RunCallbacks{});
  ASSERT_EQ(points.size(), 2u);
  for (const Point& p : points) {
    EXPECT_EQ(p.status, PointStatus::Ok) << p.error;
    EXPECT_EQ(p.key.cuda_graphs, model::DecodeMode::Eager);
    EXPECT_EQ(json(p)["key"]["cuda_graphs"], "off");
    EXPECT_EQ(json(p)["key"]["pdl"], "off");
    ASSERT_TRUE(p.loaded && p.loaded->load);
    const LoadTime& lt = *p.loaded->load;
    EXPECT_GT(lt.seconds, 0);
    ASSERT_TRUE(p.memory);
    EXPECT_EQ(lt.weights_bytes, p.memory->weights_bytes);
    EXPECT_NEAR(lt.bytes_per_s, static_cast<double>(lt.weights_bytes) / lt.seconds, 1e-6 * lt.bytes_per_s);
    ASSERT_TRUE(p.machine_load);
    EXPECT_GE(p.machine_load->cores, 1);
    EXPECT_GE(p.machine_load->threads, 1);
    EXPECT_TRUE(p.machine_load->before && p.machine_load->after);
    EXPECT_TRUE(json(p).get<Point>() == p);
  }
  EXPECT_EQ(make_document(spec, env, {}, points, false)["settings"]["cuda_graphs"], "auto");
}

}  // namespace
}  // namespace effarch::bench

namespace effarch::bench {
namespace {

// The shapes each dashboard documents. github-action-benchmark's custom tools: a JSON array of
// objects with name (string), unit (string), value (number), and optionally range and extra
// (strings). Bencher Metric Format: an object of benchmarks, each an object of measures, each an
// object with a number "value" (required) and optional number "lower_value"/"upper_value".
void expect_github_shape(const json& j) {
  ASSERT_TRUE(j.is_array());
  for (const auto& e : j) {
    ASSERT_TRUE(e.is_object());
    for (const auto& [k, v] : e.items()) {
      EXPECT_TRUE(k == "name" || k == "unit" || k == "value" || k == "range" || k == "extra") << k;
    }
    EXPECT_TRUE(e.at("name").is_string());
    EXPECT_TRUE(e.at("unit").is_string());
    EXPECT_TRUE(e.at("value").is_number());
    if (e.contains("range")) EXPECT_TRUE(e["range"].is_string());
    if (e.contains("extra")) EXPECT_TRUE(e["extra"].is_string());
  }
}

void expect_bmf_shape(const json& j) {
  ASSERT_TRUE(j.is_object());
  for (const auto& [benchmark, measures] : j.items()) {
    EXPECT_FALSE(benchmark.empty());
    EXPECT_LE(benchmark.size(), 1024u);
    ASSERT_TRUE(measures.is_object());
    for (const auto& [measure, metric] : measures.items()) {
      EXPECT_FALSE(measure.empty());
      EXPECT_LE(measure.size(), 64u);
      ASSERT_TRUE(metric.is_object());
      ASSERT_TRUE(metric.contains("value") && metric["value"].is_number());
      for (const char* bound : {"lower_value", "upper_value"}) {
        if (metric.contains(bound)) EXPECT_TRUE(metric[bound].is_number());
      }
      if (metric.contains("lower_value")) EXPECT_LE(metric["lower_value"].get<double>(), metric["value"].get<double>());
      if (metric.contains("upper_value")) EXPECT_GE(metric["upper_value"].get<double>(), metric["value"].get<double>());
    }
  }
}

TEST(BenchDashboards, GithubActionBenchmarkAndBencherShapes) {
  Point a = ok_point("tiny-llama", 64);
  a.loaded = ModelInfo{};
  a.loaded->load = LoadTime{0.5, 1000, 2000};
  a.energy = energy_figures("rapl", 2.0, 64, 0.01, 3.0, 15, 0.006);
  a.machine_load = judge_load(LoadSample{9, 9}, LoadSample{9, 9}, 2, 2);  // busy
  Point failed = ok_point("tiny-mamba", 64);
  failed.status = PointStatus::Error;
  const json doc = doc_of({a, failed, ok_point("tiny-mamba", 256)});

  const json bigger = json::parse(format_results(doc, "github-bigger"));
  const json smaller = json::parse(format_results(doc, "github-smaller"));
  expect_github_shape(bigger);
  expect_github_shape(smaller);
  // Bigger: prefill and decode tok/s of the two ok points; the name is the point key.
  ASSERT_EQ(bigger.size(), 4u);
  EXPECT_EQ(bigger[0]["name"], a.key.str() + " | prefill");
  EXPECT_EQ(bigger[0]["unit"], "tokens/s");
  EXPECT_DOUBLE_EQ(bigger[0]["value"].get<double>(), a.speed->prefill_tokens_per_s.mean);
  EXPECT_EQ(bigger[1]["name"], a.key.str() + " | decode");
  EXPECT_NE(bigger[0]["range"].get<std::string>().find("±"), std::string::npos);
  EXPECT_NE(bigger[0].value("extra", "").find("busy"), std::string::npos);
  // Smaller: TTFT, peak memory, cache, load and the two energies for a; TTFT, memory for the other.
  std::set<std::string> names;
  for (const auto& e : smaller) names.insert(e["name"].get<std::string>());
  for (const char* label : {" | TTFT", " | peak memory", " | cache", " | load", " | energy per prefill token",
                            " | energy per decoded token"}) {
    EXPECT_TRUE(names.count(a.key.str() + label)) << label;
  }
  EXPECT_EQ(smaller.size(), 6u + 3u);
  for (const auto& e : bigger) EXPECT_EQ(e["name"].get<std::string>().find("tiny-mamba float32 b1 p64"), std::string::npos);

  const json bmf = json::parse(format_results(doc, "bmf"));
  expect_bmf_shape(bmf);
  ASSERT_EQ(bmf.size(), 2u);  // the failed point has no figures
  const json& m = bmf.at(a.key.str());
  EXPECT_DOUBLE_EQ(m["decode-throughput"]["value"].get<double>(), a.speed->decode_tokens_per_s->mean);
  EXPECT_DOUBLE_EQ(m["decode-throughput"]["lower_value"].get<double>(), a.speed->decode_tokens_per_s->min);
  EXPECT_DOUBLE_EQ(m["decode-throughput"]["upper_value"].get<double>(), a.speed->decode_tokens_per_s->max);
  EXPECT_DOUBLE_EQ(m["energy-per-decode-token"]["value"].get<double>(), 0.2);
  EXPECT_DOUBLE_EQ(m["load-time"]["value"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(m["peak-memory"]["value"].get<double>(), 3 << 20);
}

}  // namespace
}  // namespace effarch::bench

namespace effarch::bench {
namespace {

// effarch report's verdicts come from the points: changing one figure flips the line.
TEST(BenchReport, VerdictsAreComputedAndFlip) {
  std::vector<Point> points;
  for (const std::string model : {"tiny-llama", "tiny-mamba"}) {
    for (int64_t len : {64, 256}) {
      Point p = ok_point(model, len);
      const bool mamba = model == "tiny-mamba";
      p.memory->cache_bytes = mamba ? 20 << 10 : static_cast<uint64_t>(len) * 1024;  // flat vs linear
      p.memory->peak_bytes = static_cast<uint64_t>(len) * 4096;
      p.speed->prefill_s = summarize({1e-5 * static_cast<double>(len)});
      p.speed->decode_tokens_per_s = summarize({mamba ? 200.0 : 100.0});
      points.push_back(p);
    }
  }
  const std::string md = markdown_report(points, {"a.json"});
  EXPECT_NE(md.find("From a.json (4 point(s), 4 ok)"), std::string::npos) << md;
  EXPECT_NE(md.find("**Highest decode rate** at 256 prompt tokens: **tiny-mamba** (200.0 tok/s); next tiny-llama "
                    "(100.0 tok/s), 2.00x apart"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("**Smallest cache** at 256 prompt tokens: **tiny-mamba**"), std::string::npos) << md;
  // Exponents: the Transformer's cache linear, Mamba's flat, prefill time linear.
  EXPECT_NE(md.find("| tiny-llama | cpu float32 b1 | 64,256 | 1.00 (O(n)) | 1.00 (O(n)) | 1.00 (O(n)) |"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("| 0.00 (O(1)) | 20.0 KiB (256 tokens) |"), std::string::npos) << md;
  EXPECT_EQ(md.find("Least energy"), std::string::npos);  // no energy measured: no such line

  // The Transformer decodes faster at 256 tokens in this crafted file: the verdict follows.
  points[1].speed->decode_tokens_per_s = summarize({300.0});
  const std::string flipped = markdown_report(points, {"a.json"});
  EXPECT_NE(flipped.find("**Highest decode rate** at 256 prompt tokens: **tiny-llama** (300.0 tok/s)"),
            std::string::npos)
      << flipped;
  // Energy, where measured, gets its own line and column.
  for (auto& p : points) p.energy = energy_figures("rapl", 1, 64, 0.1, p.key.model == "tiny-llama" ? 3 : 1, 15, 0.1);
  const std::string energy = markdown_report(points, {"a.json"});
  EXPECT_NE(energy.find("**Least energy per decoded token** at 256 prompt tokens: **tiny-mamba** (0.0667 J)"),
            std::string::npos)
      << energy;
  // One model alone: nothing to compare, said so.
  EXPECT_NE(markdown_report({points[0], points[1]}, {}).find("nothing to compare"), std::string::npos);
}

}  // namespace
}  // namespace effarch::bench
