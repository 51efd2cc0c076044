// The benchmark's pure parts: list and range parsing, statistics, log-log fits, the results
// schema's round trip, the formats, and compare's verdicts on crafted results (regression,
// improvement, noise, status changes, points on one side only, several NEW files).

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>

#include <c10/core/CPUAllocator.h>

#include "../../src/bench/device_probe.h"
#include "../test_util.h"
#include "effarch/bench/bench.h"
#include "effarch/common/error.h"
#include "effarch/common/format.h"

namespace effarch::bench {
namespace {

using nlohmann::json;

// A suite's bad values are blamed on the suite file and its key, not on an option that was never
// given: an empty list, a dtype only found bad later (once named --dtype).
TEST(BenchSuite, MessagesNameTheFileAndKey) {
  effarch::testing::TempDir dir;
  const std::string path = (dir / "s.json").string();
  std::ofstream(path) << R"({"models": ["tiny-llama"], "batch": []})";
  EXPECT_THROW_WITH(load_suite(path, SweepSpec{}), UsageError, {"s.json", "'batch' is an empty list"});
  std::ofstream(path) << R"({"models": ["tiny-llama"], "prompt_lengths": []})";
  EXPECT_THROW_WITH(load_suite(path, SweepSpec{}), UsageError, {"s.json", "'prompt_lengths' is an empty list"});
  std::ofstream(path) << R"({"models": ["tiny-llama"], "batch": 4})";
  EXPECT_THROW_WITH(load_suite(path, SweepSpec{}), UsageError, {"s.json", "'batch' must be a list or a range string"});
  std::ofstream(path) << R"({"models": ["tiny-llama"], "dtype": "float64"})";
  try {
    (void)load_suite(path, SweepSpec{});
    ADD_FAILURE() << "a suite's dtype float64 was taken";
  } catch (const UsageError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("s.json: 'dtype': unknown dtype 'float64'"), std::string::npos) << msg;
    EXPECT_EQ(msg.find("--dtype"), std::string::npos) << msg;
  }
  std::ofstream(path) << R"({"models": ["tiny-llama"], "dtype": "auto", "batch": "1-4*2"})";
  const SweepSpec s = load_suite(path, SweepSpec{});
  EXPECT_EQ(s.dtype, "auto");
  EXPECT_EQ(s.batches, (std::vector<int64_t>{1, 2, 4}));
}

// The model-load switches a suite may set, like their options: --parallel-block's and
// --norm-prologue's words, a bad one blamed on the file and its key.
TEST(BenchSuite, LayoutSwitches) {
  effarch::testing::TempDir dir;
  const std::string path = (dir / "s.json").string();
  std::ofstream(path) << R"({"models": ["tiny-llama"]})";
  SweepSpec s = load_suite(path, SweepSpec{});
  EXPECT_EQ(s.fuse_parallel_block, std::nullopt);  // auto unless given
  EXPECT_EQ(s.fuse_norm_prologue, std::nullopt);
  std::ofstream(path) << R"({"models": ["tiny-llama"], "parallel_block": "fused", "norm_prologue": "separate"})";
  s = load_suite(path, SweepSpec{});
  EXPECT_EQ(s.fuse_parallel_block, std::optional<bool>(true));
  EXPECT_EQ(s.fuse_norm_prologue, std::optional<bool>(false));
  std::ofstream(path) << R"({"models": ["tiny-llama"], "norm_prologue": "auto"})";
  EXPECT_EQ(load_suite(path, SweepSpec{}).fuse_norm_prologue, std::nullopt);
  std::ofstream(path) << R"({"models": ["tiny-llama"], "norm_prologue": "on"})";
  EXPECT_THROW_WITH(load_suite(path, SweepSpec{}), UsageError,
                    {"s.json: 'norm_prologue'", "unknown value 'on'", "auto, fused or separate"});
  std::ofstream(path) << R"({"models": ["tiny-llama"], "norm_prologue": true})";
  EXPECT_THROW_WITH(load_suite(path, SweepSpec{}), UsageError, {"s.json", "norm_prologue"});
  // A misspelt key lists the keys there are, this one among them.
  std::ofstream(path) << R"({"models": ["tiny-llama"], "norm_prolog": "fused"})";
  EXPECT_THROW_WITH(load_suite(path, SweepSpec{}), UsageError, {"unknown key 'norm_prolog'", "norm_prologue"});
}

TEST(BenchLists, ListsAndRanges) {
  EXPECT_EQ(parse_int_list("512,1024", "--x"), (std::vector<int64_t>{512, 1024}));
  EXPECT_EQ(parse_int_list("512-32768*2", "--x"), (std::vector<int64_t>{512, 1024, 2048, 4096, 8192, 16384, 32768}));
  EXPECT_EQ(parse_int_list("1-7+3", "--x"), (std::vector<int64_t>{1, 4, 7}));
  EXPECT_EQ(parse_int_list("1,4-16*2,4", "--x"), (std::vector<int64_t>{1, 4, 8, 16}));  // duplicates dropped
  EXPECT_EQ(parse_int_list("3-3", "--x"), (std::vector<int64_t>{3}));
  EXPECT_THROW_WITH(parse_int_list("", "--batch"), UsageError, {"--batch", "empty"});
  EXPECT_THROW_WITH(parse_int_list("1,x", "--batch"), UsageError, {"--batch", "'x'"});
  EXPECT_THROW_WITH(parse_int_list("0,4", "--batch"), UsageError, {"at least 1"});
  EXPECT_THROW_WITH(parse_int_list("64-8*2", "--p"), UsageError, {"ends below"});
  EXPECT_THROW_WITH(parse_int_list("8-64*1", "--p"), UsageError, {"factor of at least 2"});
  EXPECT_THROW_WITH(parse_int_list("8,", "--p"), UsageError, {"--p"});
  // A negative value is said to be one (it once read as a range with no start: "'' is not a number").
  for (const char* negative : {"-8", "8,-8", "-8-16"}) {
    EXPECT_THROW_WITH(parse_int_list(negative, "--prompt-lengths"), UsageError,
                      {"--prompt-lengths", "is negative", "zero and negative values are refused"});
  }
  EXPECT_THROW_WITH(parse_int_list("8--16", "--p"), UsageError, {"-16 in '8--16'", "zero and negative values are refused"});
  EXPECT_THROW_WITH(parse_int_list("0", "--p"), UsageError, {"0 in '0'", "zero and negative values are refused"});
  // The split every comma list goes through keeps empty items for its caller to judge.
  using Words = std::vector<std::string>;
  EXPECT_EQ(split_commas("a,b"), (Words{"a", "b"}));
  EXPECT_EQ(split_commas("a,,b,"), (Words{"a", "", "b", ""}));
  EXPECT_EQ(split_commas(""), Words{""});
}

TEST(BenchStats, SummaryAndPercentiles) {
  const Stats s = summarize({4, 1, 3, 2});
  EXPECT_DOUBLE_EQ(s.mean, 2.5);
  EXPECT_DOUBLE_EQ(s.median, 2.5);
  EXPECT_DOUBLE_EQ(s.min, 1);
  EXPECT_DOUBLE_EQ(s.max, 4);
  EXPECT_NEAR(s.stddev, std::sqrt(5.0 / 3.0), 1e-12);  // sample standard deviation
  EXPECT_EQ(s.samples, (std::vector<double>{4, 1, 3, 2}));  // raw, in measurement order
  EXPECT_DOUBLE_EQ(percentile({10, 20, 30, 40, 50}, 90), 46);
  EXPECT_DOUBLE_EQ(percentile({7}, 99), 7);
  EXPECT_DOUBLE_EQ(summarize({5}).stddev, 0);
  const Stats back = json(s).get<Stats>();
  EXPECT_EQ(back.samples, s.samples);
  EXPECT_DOUBLE_EQ(back.stddev, s.stddev);
}

TEST(BenchStats, LogLogSlope) {
  std::vector<std::pair<double, double>> quadratic, linear, flat;
  for (double x : {512.0, 1024.0, 4096.0}) {
    quadratic.emplace_back(x, 3e-9 * x * x);
    linear.emplace_back(x, 2e-3 * x);
    flat.emplace_back(x, 7.0);
  }
  EXPECT_NEAR(*loglog_slope(quadratic), 2.0, 1e-9);
  EXPECT_NEAR(*loglog_slope(linear), 1.0, 1e-9);
  EXPECT_NEAR(*loglog_slope(flat), 0.0, 1e-9);
  EXPECT_FALSE(loglog_slope({{512, 1}, {512, 2}}).has_value());  // one distinct length
}

TEST(BenchRoofline, ExpectedDistinctExperts) {
  EXPECT_DOUBLE_EQ(expected_distinct_experts(8, 2, 1), 2.0);  // one token: exactly its top-k
  EXPECT_NEAR(expected_distinct_experts(8, 2, 8), 8.0 * (1.0 - std::pow(0.75, 8)), 1e-12);
  EXPECT_NEAR(expected_distinct_experts(64, 6, 4), 64.0 * (1.0 - std::pow(58.0 / 64.0, 4)), 1e-12);
  EXPECT_DOUBLE_EQ(expected_distinct_experts(8, 8, 3), 8.0);  // every expert used by every token
  EXPECT_NEAR(expected_distinct_experts(8, 2, 10000), 8.0, 1e-9);
  EXPECT_DOUBLE_EQ(expected_distinct_experts(0, 2, 4), 0.0);
  // Grows with the batch, never past the expert count or batch x k.
  double last = 0;
  for (int64_t b = 1; b <= 64; ++b) {
    const double e = expected_distinct_experts(16, 2, b);
    EXPECT_GT(e, last);
    EXPECT_LE(e, std::min(16.0, 2.0 * static_cast<double>(b)) + 1e-12);
    last = e;
  }
}

// A point as run_sweep writes it, with chosen figures.
Point point(const std::string& model, int64_t len, double prefill_tps, double sd, double peak,
            const std::string& status = "ok", const std::string& backend = "auto",
            const std::map<std::string, std::string>& implementations = {}) {
  json p = {{"key", {{"model", model}, {"dtype", "bfloat16"}, {"batch", 1}, {"prompt_len", len}, {"gen_tokens", 16},
                     {"device", "cuda:0"}, {"cuda_graphs", "off"}, {"backend", backend},
                     {"implementations", implementations}, {"weights", "bfloat16"}}},
            {"status", status}};
  if (status != "ok") {
    p["error"] = "CUDA out of memory";
    return p.get<Point>();
  }
  const auto st = [&](double mean, double stddev) {
    return json{{"mean", mean}, {"stddev", stddev}, {"median", mean}, {"min", mean - stddev}, {"max", mean + stddev},
                {"samples", {mean - stddev, mean + stddev}}};
  };
  p["speed"] = {{"prefill_tokens_per_s", st(prefill_tps, sd)},
                {"prefill_s", st(static_cast<double>(len) / prefill_tps, 0)},
                {"ttft_s", st(static_cast<double>(len) / prefill_tps, 0)},
                {"decode_tokens_per_s", st(100, 1)},
                {"decode_step_s", {{"p50", st(0.01, 0)}, {"p90", st(0.011, 0)}, {"p99", st(0.012, 0)}}}};
  p["memory"] = {{"peak_bytes", peak},     {"cache_bytes", peak / 2},     {"weights_bytes", 1},
                 {"kv_cache_bytes", peak / 2}, {"state_bytes", 0},        {"peak_allocated_bytes", peak},
                 {"activations_bytes", 0}, {"source", "test"}};
  return p.get<Point>();
}

json document(const std::vector<Point>& points) {
  SweepSpec spec;
  spec.models = {"m"};
  json env = {{"time", "t"}, {"device", {{"name", "test"}, {"string", "cuda:0"}}}};
  return make_document(spec, env, {"effarch", "bench"}, points, false);
}

TEST(BenchSchema, RoundTripThroughAFile) {
  effarch::testing::TempDir dir;
  const json doc = document({point("a", 512, 1000, 10, 1e9), point("a", 2048, 900, 10, 4e9),
                             point("b", 512, 0, 0, 0, "oom")});
  const std::string path = (dir / "r.json").string();
  write_atomically(path, doc.dump(2));
  EXPECT_FALSE(std::filesystem::exists(path + ".partial"));
  const json back = read_document(path);
  EXPECT_EQ(back, doc);
  EXPECT_EQ(back["schema_version"], kSchemaVersion);
  EXPECT_EQ(back["summary"]["failed"], 1);
  ASSERT_EQ(back["scaling"].size(), 1u);  // model a only: b has no ok point
  EXPECT_NEAR(back["scaling"][0]["peak_memory_exponent"].get<double>(), 1.0, 1e-9);  // 4x memory for 4x tokens

  std::ofstream(dir / "bad.json") << R"({"schema": "something-else", "points": []})";
  EXPECT_THROW_WITH(read_document((dir / "bad.json").string()), FormatError, {"bad.json", "schema"});
  std::ofstream(dir / "newer.json") << R"({"schema": "effarch-bench", "schema_version": 99, "points": []})";
  EXPECT_THROW_WITH(read_document((dir / "newer.json").string()), FormatError, {"newer than"});
  std::ofstream(dir / "nokey.json") << R"({"schema": "effarch-bench", "schema_version": 2, "points": [{"status": "ok"}]})";
  EXPECT_THROW_WITH(read_document((dir / "nokey.json").string()), FormatError, {"point 0"});
  std::ofstream(dir / "cut.json") << doc.dump().substr(0, 100);
  EXPECT_THROW_WITH(read_document((dir / "cut.json").string()), FormatError, {"cut.json"});
}

TEST(BenchSchema, Formats) {
  const json doc = document({point("a", 512, 1000, 10, 1e9), point("b", 512, 0, 0, 0, "oom")});
  const std::string csv = format_results(doc, "csv");
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 3);  // header + 2 points
  EXPECT_NE(csv.find("a,bfloat16,1,512,16,ok"), std::string::npos);
  const std::string table = format_results(doc, "table");
  EXPECT_NE(table.find("1000.0 ± 10.0"), std::string::npos);
  EXPECT_NE(table.find("oom: CUDA out of memory"), std::string::npos);
  const std::string jsonl = format_results(doc, "jsonl");
  EXPECT_EQ(std::count(jsonl.begin(), jsonl.end(), '\n'), 2);
  EXPECT_THROW_WITH(format_results(doc, "xml"), UsageError, {"'xml'"});
}

TEST(BenchCompare, Verdicts) {
  const json base = document({point("a", 512, 1000, 10, 1e9), point("a", 1024, 1000, 10, 1e9),
                              point("a", 2048, 1000, 100, 1e9), point("a", 4096, 1000, 10, 1e9),
                              point("a", 8192, 1000, 10, 1e9)});
  CompareOptions opt;
  opt.metrics = {"prefill_tokens_per_s", "peak_bytes"};
  {  // 10% slower beyond noise: regression, exit 1
    const auto r = compare(base, {document({point("a", 512, 900, 10, 1e9)})}, {"base", "new"}, opt);
    EXPECT_TRUE(r.regressed);
    EXPECT_EQ(r.regressions, 1u);
    EXPECT_EQ(r.only_base, 4u);
    EXPECT_NE(r.report.find("only in base: a bfloat16 b1 p1024 g16 cuda:0 graphs=off backend=auto weights=bfloat16"),
              std::string::npos);
  }
  {  // 10% slower but the runs' noise (stddev 100 on each side: 2 sigma = 283) covers it
    const auto r = compare(base, {document({point("a", 2048, 900, 100, 1e9)})}, {"base", "new"}, opt);
    EXPECT_FALSE(r.regressed);
    EXPECT_NE(r.report.find("within noise"), std::string::npos);
  }
  {  // faster, smaller: improvements only
    const auto r = compare(base, {document({point("a", 512, 1200, 10, 5e8)})}, {"base", "new"}, opt);
    EXPECT_FALSE(r.regressed);
    EXPECT_EQ(r.improvements, 2u);
  }
  {  // 3% slower: under the 5% threshold
    const auto r = compare(base, {document({point("a", 512, 970, 1, 1e9)})}, {"base", "new"}, opt);
    EXPECT_FALSE(r.regressed);
  }
  {  // memory up 20%: regression (deterministic figure, no noise)
    const auto r = compare(base, {document({point("a", 4096, 1000, 10, 1.2e9)})}, {"base", "new"}, opt);
    EXPECT_TRUE(r.regressed);
  }
  {  // ok -> oom is a regression; a point only in new is listed
    const auto r = compare(base, {document({point("a", 8192, 0, 0, 0, "oom"), point("a", 16384, 1, 0, 1)})},
                           {"base", "new"}, opt);
    EXPECT_TRUE(r.regressed);
    EXPECT_EQ(r.only_new, 1u);
  }
  {  // a looser threshold lets 10% through
    CompareOptions loose = opt;
    loose.max_regression = 0.15;
    EXPECT_FALSE(compare(base, {document({point("a", 512, 900, 10, 1e9)})}, {"base", "new"}, loose).regressed);
  }
  {  // several NEW files: side by side whatever the model
    const auto r = compare(document({point("llama", 512, 1000, 10, 4e9)}),
                           {document({point("mamba", 512, 2000, 10, 1e9)}), document({point("jamba", 512, 1500, 10, 2e9)})},
                           {"llama.json", "mamba.json", "jamba.json"}, opt);
    EXPECT_NE(r.report.find("side by side: prefill_tokens_per_s"), std::string::npos);
    EXPECT_NE(r.report.find("2000.000 (mamba)"), std::string::npos);
    EXPECT_EQ(r.matched, 0u);  // different models: nothing to gate on
  }
  EXPECT_THROW_WITH(compare(base, {base}, {"a", "b"}, CompareOptions{0.05, 2.0, {"speed"}}), UsageError,
                    {"unknown metric 'speed'"});
  EXPECT_DOUBLE_EQ(parse_fraction("5%", "--max-regression"), 0.05);
  EXPECT_DOUBLE_EQ(parse_fraction("0.1", "--max-regression"), 0.1);
  EXPECT_THROW_WITH(parse_fraction("five", "--max-regression"), UsageError, {"--max-regression"});
}

// ---- typed results ----

template <typename T>
void expect_round_trip(const T& value) {
  const json j = value;
  const T back = j.get<T>();
  EXPECT_TRUE(back == value) << j.dump();
  EXPECT_EQ(json(back), j);
}

Stats stats(double base) { return summarize({base, base * 1.5, base * 0.75}); }

TEST(BenchResults, EveryStructRoundTripsThroughJson) {
  expect_round_trip(stats(2.0));
  PointKey k;
  k.model = "tiny-mamba";
  k.dtype = k.weights = "float32";
  k.batch = 4;
  k.prompt_len = 512;
  k.gen_tokens = 8;
  k.device = "cuda:1";
  k.cuda_graphs = model::DecodeMode::Static;
  k.backend = ops::Backend::Reference;
  k.implementations = {{"causal_conv1d", "cuda"}, {"selective_scan", "reference"}};
  expect_round_trip(k);
  EXPECT_EQ(json(k)["backend"], "reference");
  EXPECT_EQ(json(k)["cuda_graphs"], "static");
  EXPECT_EQ(k.str(), "tiny-mamba float32 b4 p512 g8 cuda:1 graphs=static backend=reference weights=float32 "
                     "ops=causal_conv1d:cuda,selective_scan:reference");
  // Beside the families, which variant of a CUDA path ran: only its own values.
  PointKey variants = k;
  variants.implementations = {{"ssd_scan", "cuda"}, {"ssd_scan_products", "tensor_cores"},
                              {"moe_dispatch", "cuda"}, {"moe_prefill", "grouped"},
                              {"selective_scan", "cuda"}, {"selective_scan_variant", "lanes16"}};
  expect_round_trip(variants);
  // ("states": the lane-per-state scan, removed; the model never ran it, so no results record it.)
  for (const auto& [record, wrong] : {std::pair{"ssd_scan_products", "cuda"}, {"moe_prefill", "tensor_cores"},
                                      {"ssd_scan", "fma"}, {"selective_scan_variant", "seg16"},
                                      {"selective_scan_variant", "states"}}) {
    json bad = json(variants);
    bad["implementations"][record] = wrong;
    EXPECT_THROW_WITH(bad.get<PointKey>(), UsageError, {"key.implementations", wrong, record});
  }
  SpeedResult sp;
  sp.prefill_s = stats(0.1);
  sp.prefill_tokens_per_s = stats(5000);
  sp.ttft_s = stats(0.11);
  expect_round_trip(sp);  // nothing decoded
  sp.decode_tokens_per_s = stats(100);
  sp.decode_step_s = DecodeStepStats{stats(0.01), stats(0.011), stats(0.02)};
  expect_round_trip(sp);
  sp.prefill_attention = PrefillAttention{"flash_attention", false};
  expect_round_trip(sp);
  EXPECT_EQ(json(sp)["prefill_attention"], (json{{"sdpa_backend", "flash_attention"}, {"mask", false}}));
  MemoryResult m;
  m.source = "cpu_counting_allocator";
  m.weights_bytes = 1000;
  m.cache_bytes = m.kv_cache_bytes = 300;
  m.peak_allocated_bytes = m.peak_bytes = 5000;
  m.activations_bytes = 3700;
  m.peak_rss_growth_bytes = 9000;
  expect_round_trip(m);
  EXPECT_FALSE(json(m).contains("peak_reserved_bytes"));
  Roofline r{1e9, 2e10, 0.1, std::nullopt};
  expect_round_trip(r);
  r.decode = Roofline::Decode{1e6, 1e9, 0.05, 2.5, ExpertsSource::Measured};
  expect_round_trip(r);
  EXPECT_EQ(json(r)["decode_experts_source"], "measured");
  Point p;
  p.key = k;
  p.loaded = ModelInfo{"configs/models/tiny-mamba.json", "random", "MambaForCausalLM", "mamba", 10, 10, std::nullopt};
  p.speed = sp;
  p.harness_overhead_fraction = 1e-4;
  p.roofline = r;
  p.memory = m;
  p.beyond_trained_context = true;
  p.elapsed_s = 1.5;
  expect_round_trip(p);
  EXPECT_TRUE(json(p)["max_position_embeddings"].is_null());
  Point failed;
  failed.key = k;
  failed.status = PointStatus::Oom;
  failed.error = "CPU out of memory";
  expect_round_trip(failed);
  EXPECT_FALSE(json(failed).contains("model_path"));

  EXPECT_THROW_WITH(parse_status("fine", "status"), UsageError, {"status", "'fine'"});
  EXPECT_THROW_WITH(json({{"model", "m"}}).get<PointKey>(), json::exception, {"dtype"});
  json bad_impl = k;
  bad_impl["implementations"]["selective_scan"] = "triton";
  EXPECT_THROW_WITH(bad_impl.get<PointKey>(), UsageError, {"'triton'", "selective_scan"});
}

TEST(BenchResults, Modes) {
  const Modes both = parse_modes(std::string("speed,memory"), "--mode");
  EXPECT_TRUE(both.speed && both.memory);
  const Modes memory = parse_modes(std::vector<std::string>{"memory"}, "suite.json: 'mode'");
  EXPECT_TRUE(!memory.speed && memory.memory);
  EXPECT_EQ(mode_names(memory), std::vector<std::string>{"memory"});
  EXPECT_THROW_WITH(parse_modes(std::string("speed,fast"), "--mode"), UsageError, {"--mode: unknown mode 'fast'"});
  EXPECT_THROW_WITH(parse_modes(std::vector<std::string>{}, "s.json: 'mode'"), UsageError, {"s.json", "no mode"});
}

// ---- reading version 1 files ----

// A point of a version 1 file as read_document must convert it.
json upgraded_v1(json p) {
  auto& k = p["key"];
  k["backend"] = "auto";
  k["implementations"] = json::object();
  k["weights"] = k["dtype"];
  k["pdl"] = "off";  // their runs had no --pdl (read_document takes the environment's record)
  if (p.contains("weights")) {
    p["weights_source"] = p["weights"];
    p.erase("weights");
  }
  return p;
}

TEST(BenchResults, ReadsVersionOneFromDocsPerf) {
  const auto dir = effarch::testing::tests_dir().parent_path() / "docs" / "perf" / "2026-11-22-h100";
  size_t files = 0, points = 0;
  for (const char* name : {"quickstart.json", "mamba-vs-transformer.json", "moe.json", "memory-curve.json",
                           "mamba-vs-transformer-graphs.json"}) {
    const std::string path = (dir / name).string();
    std::ifstream in(path);
    const json raw = json::parse(in);
    ASSERT_EQ(raw["schema_version"], 1) << name;
    const json doc = read_document(path);
    ++files;
    EXPECT_EQ(doc["schema_version"], kSchemaVersion);
    EXPECT_EQ(doc["converted_from_schema_version"], 1);
    ASSERT_EQ(doc["points"].size(), raw["points"].size());
    for (size_t i = 0; i < raw["points"].size(); ++i, ++points) {
      // Every field of a real point survives the typed reader: converted, then written again.
      EXPECT_EQ(doc["points"][i], upgraded_v1(raw["points"][i])) << name << " point " << i;
      const Point p = doc["points"][i].get<Point>();
      EXPECT_EQ(p.key.backend, ops::Backend::Auto);
      EXPECT_TRUE(p.key.implementations.empty());
      EXPECT_EQ(p.key.weights, p.key.dtype);
    }
    // A version 1 baseline against itself: every point pairs, nothing regresses.
    const auto r = compare(doc, {doc}, {"base", "new"}, CompareOptions{});
    EXPECT_EQ(r.matched, raw["points"].size()) << name;
    EXPECT_FALSE(r.regressed);
  }
  EXPECT_EQ(files, 5u);
  EXPECT_GT(points, 20u);
}

TEST(BenchResults, ReadsACraftedVersionOneFileAndRefusesUnknownVersions) {
  effarch::testing::TempDir dir;
  const json v1 = {{"schema", "effarch-bench"},
                   {"schema_version", 1},
                   {"environment", {{"time", "t"}}},
                   {"points",
                    {{{"key", {{"model", "tiny-llama"}, {"dtype", "float32"}, {"batch", 1}, {"prompt_len", 64},
                               {"gen_tokens", 16}, {"device", "cpu"}, {"cuda_graphs", "off"}}},
                      {"status", "oom"},
                      {"error", "CPU out of memory"},
                      {"model_path", "configs/models/tiny-llama.json"},
                      {"weights", "random"},
                      {"architecture", "LlamaForCausalLM"},
                      {"family", "transformer"},
                      {"params_total", 1},
                      {"params_active", 1},
                      {"max_position_embeddings", 2048},
                      {"elapsed_s", 0.5}}}}};
  std::ofstream(dir / "v1.json") << v1.dump();
  const json doc = read_document((dir / "v1.json").string());
  const Point p = points_of(doc).at(0);
  EXPECT_EQ(p.key.backend, ops::Backend::Auto);
  EXPECT_EQ(p.key.weights, "float32");
  EXPECT_TRUE(p.key.implementations.empty());
  EXPECT_EQ(p.status, PointStatus::Oom);
  ASSERT_TRUE(p.loaded.has_value());
  EXPECT_EQ(p.loaded->weights_source, "random");
  EXPECT_EQ(p.loaded->max_position_embeddings.value_or(-1), 2048);
  EXPECT_EQ(doc["points"][0], upgraded_v1(v1["points"][0]));

  json broken = v1;
  broken["points"][0]["key"]["cuda_graphs"] = "sometimes";
  std::ofstream(dir / "broken-v1.json") << broken.dump();
  EXPECT_THROW_WITH(read_document((dir / "broken-v1.json").string()), FormatError,
                    {"broken-v1.json", "point 0", "sometimes"});
  json v0 = v1;
  v0["schema_version"] = 0;
  std::ofstream(dir / "v0.json") << v0.dump();
  EXPECT_THROW_WITH(read_document((dir / "v0.json").string()), FormatError, {"v0.json", "schema_version 0"});
  // A version 2 point must carry the new key fields.
  json v2 = v1;
  v2["schema_version"] = 2;
  std::ofstream(dir / "v2-without-backend.json") << v2.dump();
  EXPECT_THROW_WITH(read_document((dir / "v2-without-backend.json").string()), FormatError,
                    {"v2-without-backend.json", "point 0", "backend"});
  // The points file of a run (version 1 lines converted the same way).
  std::ofstream(dir / "run.jsonl") << v1["points"][0].dump() << "\n" << json(point("a", 64, 1000, 1, 1e6)).dump() << "\n";
  const json lines = read_document((dir / "run.jsonl").string());
  ASSERT_EQ(lines["points"].size(), 2u);
  EXPECT_EQ(points_of(lines)[0].key.backend, ops::Backend::Auto);
  EXPECT_EQ(points_of(lines)[1], point("a", 64, 1000, 1, 1e6));
}

// ---- compare keeps what ran apart ----

TEST(BenchCompare, BackendsAndImplementationsAreDifferentPoints) {
  CompareOptions opt;
  opt.metrics = {"prefill_tokens_per_s"};
  const std::map<std::string, std::string> ref = {{"selective_scan", "reference"}}, cuda = {{"selective_scan", "cuda"}};
  const json base = document({point("m", 512, 1000, 1, 1e9, "ok", "auto", ref)});
  {  // another backend: no pair, even with a 2x faster prefill
    const auto r = compare(base, {document({point("m", 512, 2000, 1, 1e9, "ok", "reference", ref)})}, {"b", "n"}, opt);
    EXPECT_EQ(r.matched, 0u);
    EXPECT_EQ(r.only_base, 1u);
    EXPECT_EQ(r.only_new, 1u);
    EXPECT_NE(r.report.find("only in n: m bfloat16 b1 p512 g16 cuda:0 graphs=off backend=reference"), std::string::npos);
  }
  {  // the same backend, another implementation (a kernel against the reference): no pair
    const auto r = compare(base, {document({point("m", 512, 500, 1, 1e9, "ok", "auto", cuda)})}, {"b", "n"}, opt);
    EXPECT_EQ(r.matched, 0u);
    EXPECT_FALSE(r.regressed);
  }
  {  // both in one NEW file: each pairs with its own
    const auto r = compare(document({point("m", 512, 1000, 1, 1e9, "ok", "auto", ref),
                                     point("m", 512, 1000, 1, 1e9, "ok", "reference", ref)}),
                           {document({point("m", 512, 1000, 1, 1e9, "ok", "reference", ref),
                                      point("m", 512, 800, 1, 1e9, "ok", "auto", ref)})},
                           {"b", "n"}, opt);
    EXPECT_EQ(r.matched, 2u);
    EXPECT_EQ(r.regressions, 1u);  // the auto point only
  }
  {  // a version 1 baseline (implementations unknown) pairs with the same backend, whatever ran
    const json v1_base = document({point("m", 512, 1000, 1, 1e9, "ok", "auto", {})});
    const auto r = compare(v1_base, {document({point("m", 512, 2000, 1, 1e9, "ok", "auto", cuda),
                                               point("m", 512, 900, 1, 1e9, "ok", "reference", ref)})},
                           {"b", "n"}, opt);
    EXPECT_EQ(r.matched, 1u);
    EXPECT_EQ(r.improvements, 1u);
    EXPECT_EQ(r.only_new, 1u);  // the reference run: v1 files record backend auto
  }
  {  // an exact pair wins over a compatible one
    const json b2 = document({point("m", 512, 1000, 1, 1e9, "ok", "auto", {}), point("m", 512, 500, 1, 1e9, "ok", "auto", cuda)});
    const auto r = compare(b2, {document({point("m", 512, 500, 1, 1e9, "ok", "auto", cuda)})}, {"b", "n"}, opt);
    EXPECT_EQ(r.matched, 1u);
    EXPECT_FALSE(r.regressed);
    EXPECT_EQ(r.only_base, 1u);
  }
  EXPECT_TRUE(PointKey{}.matches(PointKey{}));
}

// ---- a real sweep on the CPU ----

// One quick point of `model` on the CPU: 3 tokens generated, one run, no warm-up.
SweepSpec one_point_on_the_cpu(const std::string& model, int64_t prompt_len) {
  SweepSpec spec;
  spec.models = {model};
  spec.prompt_lengths = {prompt_len};
  spec.gen_tokens = 3;
  spec.reps = 1;
  spec.warmup = 0;
  spec.device = "cpu";
  return spec;
}

// bf16 GEMMs on the CPU run in oneDNN, which takes raw blocks from ATen's CPU allocator (the
// counting one during a sweep) and requires a block's context to be its address: a bf16 prefill
// used to fail there with "dptr.get() == dptr.get_context()". And int8 weights through a sweep.
TEST(BenchSweep, Bf16AndInt8OnTheCpuUnderTheCountingAllocator) {
  const json env = {{"device", {{"copy_bandwidth_bytes_per_s", 1e10}, {"gemm_flops_per_s", 1e11}}},
                    {"harness_timer_overhead_s", 1e-6}};
  for (const auto weights : {ops::WeightFormat::Dense, ops::WeightFormat::Int8}) {
    SweepSpec spec = one_point_on_the_cpu("tiny-llama", 64);
    spec.dtype = "bfloat16";
    spec.weights = weights;
    const std::vector<Point> points = run_sweep(spec, env, {});
    ASSERT_EQ(points.size(), 1u);
    EXPECT_EQ(points[0].status, PointStatus::Ok) << points[0].error;
    EXPECT_EQ(points[0].key.weights, weights == ops::WeightFormat::Int8 ? "int8" : "bfloat16");
    ASSERT_TRUE(points[0].memory.has_value());
    EXPECT_GE(points[0].memory->peak_bytes, points[0].memory->weights_bytes);
  }
}

// A point records the SDPA backend its prefill ran (what the framework picks for those tensors:
// on the CPU its flash kernel or the math one) and that a plain causal prefill passes no mask;
// a model without attention records nothing.
TEST(BenchSweep, PrefillRecordsTheSdpaBackendItRan) {
  const json env = {{"device", {{"copy_bandwidth_bytes_per_s", 1e10}, {"gemm_flops_per_s", 1e11}}},
                    {"harness_timer_overhead_s", 1e-6}};
  for (const char* model : {"tiny-llama", "tiny-jamba", "tiny-mamba"}) {
    const std::vector<Point> points = run_sweep(one_point_on_the_cpu(model, 32), env, {});
    ASSERT_EQ(points.size(), 1u);
    ASSERT_EQ(points[0].status, PointStatus::Ok) << points[0].error;
    ASSERT_TRUE(points[0].speed.has_value());
    const std::optional<PrefillAttention>& a = points[0].speed->prefill_attention;
    if (std::string(model) == "tiny-mamba") {
      EXPECT_FALSE(a.has_value()) << model;
      continue;
    }
    ASSERT_TRUE(a.has_value()) << model;
    EXPECT_TRUE(a->sdpa_backend == "flash_attention" || a->sdpa_backend == "math") << model << ": " << a->sdpa_backend;
    EXPECT_FALSE(a->mask) << model;
  }
}

TEST(BenchSweep, BackendsOnTheCpuAndTheAllocatorRestored) {
  c10::Allocator* const original = c10::GetCPUAllocator();
  const json env = {{"device", {{"copy_bandwidth_bytes_per_s", 1e10}, {"gemm_flops_per_s", 1e11}}},
                    {"harness_timer_overhead_s", 1e-6}};
  std::vector<Point> all;
  for (const auto backend : {ops::Backend::Auto, ops::Backend::Reference}) {
    SweepSpec spec = one_point_on_the_cpu("tiny-mamba", 16);
    spec.backends = {backend};
    std::vector<c10::Allocator*> during;
    RunCallbacks cb;
    cb.on_point = [&](const Point&) { during.push_back(c10::GetCPUAllocator()); };
    const std::vector<Point> points = run_sweep(spec, env, cb);
    ASSERT_EQ(points.size(), 1u);
    const Point& p = points[0];
    EXPECT_EQ(p.status, PointStatus::Ok) << p.error;
    EXPECT_EQ(p.key.backend, backend);
    EXPECT_EQ(json(p)["key"]["backend"], backend == ops::Backend::Auto ? "auto" : "reference");
    EXPECT_EQ(p.key.weights, "float32");
    EXPECT_FALSE(p.key.implementations.empty());  // Mamba's scan and conv families
    // On the CPU: auto runs the CPU kernel where a family has one, reference the reference; the
    // block boundaries' add + norm stays in its own op (the norm in the GEMV is CUDA's alone).
    EXPECT_EQ(p.key.implementations.at(model::kNormPrologueRecord), "separate");
    for (const auto& [family, impl] : p.key.implementations) {
      if (family == model::kNormPrologueRecord) continue;
      const bool cpu_kernel = family == "selective_scan" || family == "selective_state_update";
      EXPECT_EQ(impl, backend == ops::Backend::Auto && cpu_kernel ? "cpu" : "reference") << family;
    }
    ASSERT_TRUE(p.memory.has_value());
    EXPECT_EQ(p.memory->source, "cpu_counting_allocator");
    EXPECT_GE(p.memory->peak_bytes, p.memory->weights_bytes + p.memory->cache_bytes);
    // A real point through JSON: the same struct, the same JSON.
    expect_round_trip(p);
    // Counted while it ran; ATen's own allocator back after.
    ASSERT_EQ(during.size(), 1u);
    EXPECT_NE(during[0], original);
    EXPECT_EQ(c10::GetCPUAllocator(), original);
    all.push_back(p);
  }
  EXPECT_NE(all[0].key, all[1].key);
  // Put back at its own priority: an allocator of the lowest priority may still replace it.
  struct Forwarding final : c10::Allocator {
    c10::Allocator* base;
    explicit Forwarding(c10::Allocator* b) : base(b) {}
    c10::DataPtr allocate(size_t n) override { return base->allocate(n); }
    c10::DeleterFnPtr raw_deleter() const override { return base->raw_deleter(); }
    void copy_data(void* d, const void* s, std::size_t n) const override { default_copy_data(d, s, n); }
  };
  static Forwarding forwarding(original);
  c10::SetCPUAllocator(&forwarding, 0);
  EXPECT_EQ(c10::GetCPUAllocator(), &forwarding);
  c10::SetCPUAllocator(original, 0);
  EXPECT_EQ(c10::GetCPUAllocator(), original);
  // Points of the two backends are apart in compare too.
  const auto r = compare(document({all[0]}), {document({all[1]})}, {"auto", "reference"}, CompareOptions{});
  EXPECT_EQ(r.matched, 0u);
}

}  // namespace
}  // namespace effarch::bench

// The driver version a results file records, from both module lines /proc/driver/nvidia/version
// can start with (an H200 with the open module recorded "for" before this parse).
TEST(Environment, NvidiaDriverVersionFromEitherModuleLine) {
  using effarch::bench::detail::parse_nvidia_driver_version;
  EXPECT_EQ(parse_nvidia_driver_version(
                "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build  (dvs-builder@U16)"),
            "580.159.04");
  EXPECT_EQ(parse_nvidia_driver_version("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 2023"),
            "535.104.05");
  EXPECT_EQ(parse_nvidia_driver_version("NVRM version: NVIDIA UNIX Open Kernel Module for aarch64  580.95.05  Release"),
            "580.95.05");
  EXPECT_EQ(parse_nvidia_driver_version("NVRM version: NVIDIA UNIX Kernel Module for x86_64"), "");
  EXPECT_EQ(parse_nvidia_driver_version(""), "");
}
