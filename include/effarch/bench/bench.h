#pragma once
// effarch bench: sweeps of models x prompt lengths x batch sizes, measuring prefill and decode
// speed and peak memory per point, with the device's measured copy bandwidth and GEMM rate as
// the roofline. Definitions of every figure: docs/bench.md.

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace effarch::bench {

inline constexpr int kSchemaVersion = 1;

// "512,1024", "512-32768*2" (geometric), "1-8+1" (arithmetic), or a mix: "1,4-16*2". Sorted as
// given, duplicates removed; throws UsageError naming `option` for anything else or a value < 1.
std::vector<int64_t> parse_int_list(const std::string& text, const std::string& option);

struct SweepSpec {
  std::vector<std::string> models;
  std::vector<int64_t> prompt_lengths{128, 512};
  std::vector<int64_t> batches{1};
  int64_t gen_tokens = 32;
  int reps = 3;
  int warmup = 1;
  std::string dtype = "auto";
  std::string device = "auto";
  std::string cuda_graphs = "off";
  std::string attention = "sdpa";
  bool speed = true;
  bool memory = true;
  uint64_t seed = 0;
  std::optional<uint64_t> memory_limit;  // bytes a point may allocate beyond what it started with
  std::optional<int> threads;            // ATen's CPU threads (intra-op); none: its default
  std::string suite_name;                // set when read from a suite file
};

// A suite file (configs/suites/NAME.json): {"name", "description", "models": [...],
// "prompt_lengths": [...] or "a-b*f", "batch": [...], "gen_tokens", "reps", "warmup", "dtype",
// "cuda_graphs", "attention", "threads", "mode": ["speed", "memory"]}. A bare NAME is looked up in configs/suites/.
// Keys the file leaves out keep `defaults`; unknown keys are an error naming the file and key.
SweepSpec load_suite(const std::string& name_or_path, const SweepSpec& defaults);

struct Stats {
  double mean = 0, stddev = 0, median = 0, min = 0, max = 0;
  std::vector<double> samples;
};
Stats summarize(std::vector<double> samples);
double percentile(std::vector<double> values, double q);  // linear interpolation, q in [0, 100]
nlohmann::json to_json(const Stats& s);
Stats stats_from_json(const nlohmann::json& j);

// Fitted exponent of y ~ x^k over (x, y) pairs (least squares on logs); nullopt with fewer than
// two distinct x.
std::optional<double> loglog_slope(const std::vector<std::pair<double, double>>& xy);

// Distinct experts that `tokens` tokens, each picking top_k of num_experts uniformly at random,
// touch on average: E x (1 - (1 - k/E)^tokens). The roofline's fallback when routing was not
// observed (no warm-up run).
double expected_distinct_experts(int64_t num_experts, int64_t top_k, int64_t tokens);

// What the whole run measured once: host, device, versions, copy bandwidth and GEMM rate.
nlohmann::json probe_environment(const std::string& device, const std::string& dtype);

struct RunCallbacks {
  // Called with each finished point (status ok, oom or error) before the next starts.
  std::function<void(const nlohmann::json& point)> on_point;
  // Progress: index of the point about to run (from 0), the total, and a label.
  std::function<void(size_t index, size_t total, const std::string& label)> on_start;
  const std::atomic<bool>* stop = nullptr;  // set (e.g. by SIGINT): no new point starts
};

// Runs the sweep; returns the finished points in order. Points that fail are recorded with their
// status and message; only an interruption ends the sweep early.
std::vector<nlohmann::json> run_sweep(const SweepSpec& spec, const nlohmann::json& environment,
                                      const RunCallbacks& callbacks);

// Per (model, dtype, batch, device, cuda_graphs): log-log slopes of prefill time, peak memory and
// cache bytes against prompt length over the ok points.
nlohmann::json scaling(const std::vector<nlohmann::json>& points);

// The whole results document (schema in docs/bench.md).
nlohmann::json make_document(const SweepSpec& spec, const nlohmann::json& environment,
                             const std::vector<std::string>& command_line, const std::vector<nlohmann::json>& points,
                             bool interrupted);
// Reads and checks a results document; throws FormatError naming the file and what is wrong.
nlohmann::json read_document(const std::string& path);
// Writes `doc` to `path` atomically (a temporary file beside it, then rename).
void write_atomically(const std::string& path, const std::string& text);

// Human output of the points: "table" (fmt, mean ± stddev), "md", "csv"; "json"/"jsonl" give the
// document / one point per line.
std::string format_results(const nlohmann::json& doc, const std::string& format);

// The key a point is matched by across files.
std::string point_key(const nlohmann::json& point);

// effarch compare.
struct CompareOptions {
  double max_regression = 0.05;  // a 5% worse mean is a regression ...
  double noise_sigmas = 2.0;     // ... when the difference also exceeds 2 x sqrt(sd_base^2 + sd_new^2)
  std::vector<std::string> metrics{"prefill_tokens_per_s", "decode_tokens_per_s", "ttft_s", "peak_bytes"};
};
struct CompareResult {
  std::string report;
  bool regressed = false;
  size_t matched = 0, regressions = 0, improvements = 0, only_base = 0, only_new = 0;
};
// "5%", "0.05", "5 %" -> 0.05. Throws UsageError naming `option`.
double parse_fraction(const std::string& text, const std::string& option);
// The metrics compare knows: name -> whether higher is better.
const std::vector<std::pair<std::string, bool>>& compare_metrics();
// BASE against one or more NEW documents (labels name them in the report). Points match by their
// full key; with several NEW files the report also puts each file's points side by side by
// (dtype, batch, prompt, gen, device, graphs), whatever the model.
CompareResult compare(const nlohmann::json& base, const std::vector<nlohmann::json>& news,
                      const std::vector<std::string>& labels, const CompareOptions& options);

}  // namespace effarch::bench
