// The benchmark's pure parts: list and range parsing, statistics, log-log fits, the results
// schema's round trip, the formats, and compare's verdicts on crafted results (regression,
// improvement, noise, status changes, points on one side only, several NEW files).

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "../test_util.h"
#include "effarch/bench/bench.h"
#include "effarch/common/error.h"

namespace effarch::bench {
namespace {

using nlohmann::json;

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
  const Stats back = stats_from_json(to_json(s));
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
json point(const std::string& model, int64_t len, double prefill_tps, double sd, double peak, const std::string& status = "ok") {
  json p = {{"key", {{"model", model}, {"dtype", "bfloat16"}, {"batch", 1}, {"prompt_len", len}, {"gen_tokens", 16},
                     {"device", "cuda:0"}, {"cuda_graphs", "off"}}},
            {"status", status}};
  if (status != "ok") {
    p["error"] = "CUDA out of memory";
    return p;
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
  p["memory"] = {{"peak_bytes", peak}, {"cache_bytes", peak / 2}, {"weights_bytes", 1}, {"source", "test"}};
  return p;
}

json document(const std::vector<json>& points) {
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
  std::ofstream(dir / "nokey.json") << R"({"schema": "effarch-bench", "schema_version": 1, "points": [{"status": "ok"}]})";
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
    EXPECT_NE(r.report.find("only in base: a bfloat16 b1 p1024"), std::string::npos);
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

}  // namespace
}  // namespace effarch::bench
