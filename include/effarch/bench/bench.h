#pragma once
// effarch bench: sweeps of models x prompt lengths x batch sizes, measuring prefill and decode
// speed and peak memory per point, with the device's measured copy bandwidth and GEMM rate as
// the roofline. Definitions of every figure: docs/bench.md.

#include <atomic>
#include <cstdint>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "effarch/bench/results.h"
#include "effarch/bench/roofline.h"
#include "effarch/model/model.h"
#include "effarch/ops/backend.h"
#include "effarch/ops/linear.h"

namespace effarch::bench {

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
  // --cuda-graphs: nullopt is auto (a CUDA graph wherever the model supports it, else eager),
  // resolved per model by model::resolve_decode_mode; the key records the mode that ran. Several
  // modes (--cuda-graphs off,on) and several --pdl values run every point under each launch
  // setting in turn, on the model loaded once (launch_settings; docs/bench.md, "Side by side in
  // one run").
  std::vector<std::optional<model::DecodeMode>> cuda_graphs{std::nullopt};
  // Programmatic dependent launch of the decode kernels (--pdl): on, off, or nullopt for auto
  // (ops::programmatic_launch_auto on the sweep's device), the default.
  std::vector<std::optional<bool>> pdl{std::nullopt};
  std::string attention = "sdpa";             // checked by ops::parse_attention_impl where it is read
  // Asked of every op (ModelOptions::backend); several (--backend reference,auto) are launch
  // settings like the lists below: each point runs under each, on the model loaded once.
  std::vector<ops::Backend> backends{ops::Backend::Auto};
  ops::WeightFormat weights = ops::WeightFormat::Dense;  // ModelOptions::weights; the key's "weights" 
  // ModelOptions::fuse_parallel_block (--parallel-block; nullopt: auto); the key's
  // implementations record what ran (parallel_block_products) for a model with parallel blocks.
  std::optional<bool> fuse_parallel_block;
  // ModelOptions::fuse_norm_prologue (--norm-prologue; nullopt: auto); the key's implementations
  // record what ran (add_norm_in_gemv), so a fused point is compared only with a fused one.
  std::optional<bool> fuse_norm_prologue;
  // ModelOptions::selective_scan (--selective-scan; nullopt: auto); the key's implementations
  // record the variant that ran (selective_scan_variant).
  std::optional<std::string> selective_scan;
  Modes modes;                                // speed and memory by default
  uint64_t seed = 0;
  std::optional<uint64_t> memory_limit;  // bytes a point may allocate beyond what it started with
  std::optional<int> threads;            // ATen's CPU threads (intra-op); none: its default
  std::string suite_name;                // set when read from a suite file
  bool energy = true;                    // read the device's energy counter where there is one
  // A multi-process run (--tp/--ep, docs/parallel.md): every rank runs the same sweep in lockstep;
  // the points' memory records each rank's bytes. Any error on any rank ends the whole run.
  std::shared_ptr<const parallel::Context> parallel;
};

// How a point runs: the backend its ops are asked for, the decode mode asked for (nullopt: auto)
// and --pdl. None changes the weights, so one loaded model runs a point under each in turn.
struct LaunchSetting {
  ops::Backend backend = ops::Backend::Auto;
  std::optional<model::DecodeMode> cuda_graphs;
  std::optional<bool> pdl;  // nullopt: auto, resolved for the device as the point runs
};
// The sweep's launch settings: every backend x every cuda_graphs value x every pdl value, in that
// nesting (backend outermost), each list in the order given.
std::vector<LaunchSetting> launch_settings(const SweepSpec& spec);
// "off,on": --cuda-graphs values (auto, off, on, static), comma-separated; auto only alone, no
// value twice. Throws UsageError naming `option`.
std::vector<std::optional<model::DecodeMode>> parse_cuda_graphs_list(const std::string& text, const std::string& option);
// "off,on": --pdl values (auto, on, off), the same rules.
std::vector<std::optional<bool>> parse_pdl_list(const std::string& text, const std::string& option);
// "reference,auto": --backend values (auto, reference, cuda), no value twice.
std::vector<ops::Backend> parse_backend_list(const std::string& text, const std::string& option);
// A list back in the options' words ("off,on"; "auto").
std::string cuda_graphs_list_name(const std::vector<std::optional<model::DecodeMode>>& values);
std::string pdl_list_name(const std::vector<std::optional<bool>>& values);
std::string backend_list_name(const std::vector<ops::Backend>& values);

// A suite file (configs/suites/NAME.json): {"name", "description", "models": [...],
// "prompt_lengths": [...] or "a-b*f", "batch": [...], "gen_tokens", "reps", "warmup", "dtype",
// "cuda_graphs" (one value or a list as "off,on"), "pdl" (likewise), "attention", "backend"
// (likewise), "threads", "mode": ["speed", "memory"]}. A bare NAME is looked up in configs/suites/.
// Keys the file leaves out keep `defaults`; unknown keys are an error naming the file and key.
SweepSpec load_suite(const std::string& name_or_path, const SweepSpec& defaults);

Stats summarize(std::vector<double> samples);  // Stats: effarch/bench/results.h
double percentile(std::vector<double> values, double q);  // linear interpolation, q in [0, 100]

// Fitted exponent of y ~ x^k over (x, y) pairs (least squares on logs); nullopt with fewer than
// two distinct x.
std::optional<double> loglog_slope(const std::vector<std::pair<double, double>>& xy);

// What the whole run measured once: host, device, versions, copy bandwidth and GEMM rate.
nlohmann::json probe_environment(const std::string& device, const std::string& dtype);

struct RunCallbacks {
  // Called with each finished point (status ok, oom or error) before the next starts.
  std::function<void(const Point& point)> on_point;
  // Progress: index of the point about to run (from 0), the total, and a label.
  std::function<void(size_t index, size_t total, const std::string& label)> on_start;
  const std::atomic<bool>* stop = nullptr;  // set (e.g. by SIGINT): no new point starts
};

// ---- the machine's load (docs/bench.md, "A busy machine") ----

// /proc/loadavg's text ("0.52 0.58 0.59 3/467 12345"): the 1-minute load average and the runnable
// entities less one (the reader). nullopt for text that is not in that form.
std::optional<LoadSample> parse_loadavg(const std::string& text);
// The file bench reads the load from: $EFFARCH_LOADAVG when set (tests point it at a fixture), else
// /proc/loadavg.
std::string loadavg_path();
// The median of `samples` readings of `path`, 10 ms apart; nullopt when it cannot be read or parsed.
std::optional<LoadSample> read_machine_load(const std::string& path = loadavg_path(), int samples = 5);
// The CPUs this process may run on (sched_getaffinity; the hardware's count if that fails).
int64_t usable_cores();
// Too busy to measure: other runnable threads + the point's threads exceed the cores.
bool too_busy(const LoadSample& sample, int64_t cores, int64_t threads);
// The ATen thread count bench uses when --threads is not given: one core left for everything else
// (cores - 1), and no more than the cores that other runnable threads leave free at start; at
// least 1. Why: docs/bench.md, "A busy machine" (ATen's pool collapses when its threads share cores).
int default_cpu_threads(int64_t cores, std::optional<LoadSample> at_start);
// The record of a point's load: busy when either reading is too_busy.
MachineLoad judge_load(std::optional<LoadSample> before, std::optional<LoadSample> after, int64_t cores,
                       int64_t threads);

// The sweep's usage errors (device, dtype, launch settings and what the device allows of them),
// thrown as UsageError before anything runs; run_sweep checks them too.
void check_sweep(const SweepSpec& spec);
// Runs the sweep; returns the finished points in order. Points that fail are recorded with their
// status and message; only an interruption ends the sweep early. On the CPU, ATen's allocator is
// the benchmark's counting allocator for the sweep only: the original is back when this returns.
std::vector<Point> run_sweep(const SweepSpec& spec, const nlohmann::json& environment,
                                      const RunCallbacks& callbacks);

// Per key without its prompt length (model, dtype, batch, device, graphs, backend, ...): log-log
// slopes of prefill time, peak memory and cache bytes against prompt length over the ok points.
nlohmann::json scaling(const std::vector<Point>& points);

// The whole results document (schema in docs/bench.md).
nlohmann::json make_document(const SweepSpec& spec, const nlohmann::json& environment,
                             const std::vector<std::string>& command_line, const std::vector<Point>& points,
                             bool interrupted);
// Reads and checks a results document, every point parsed into a Point; throws FormatError naming
// the file and what is wrong. A version 1 document is converted to the current version (its keys
// get backend "auto", implementations {} (unknown) and weights = the dtype). A .jsonl file (the
// points of a run, one per line, e.g. of one that was killed) reads as a document of those points.
nlohmann::json read_document(const std::string& path);
// The points of a document read_document accepted (or make_document built).
std::vector<Point> points_of(const nlohmann::json& doc);
// Writes `doc` to `path` atomically (a temporary file beside it, then rename; through a symlink,
// its target is replaced). A failed write (a full disk) is an Error saying what the system
// reported, the temporary file removed: callers print what they measured before writing.
void write_atomically(const std::string& path, const std::string& text);
// The .jsonl beside a results file: each point or row appended and flushed as it finishes. A
// failed write (a full disk) warns once, naming the file and the system's reason, and the run goes
// on (its results are still printed and written at the end), appending nothing more.
class LineLog {
 public:
  // Truncates `path`; a UsageError naming -o when it cannot be opened.
  explicit LineLog(const std::string& path);
  void append(const std::string& line);

 private:
  std::string path_;
  std::ofstream out_;
  bool failed_ = false;
};
// Whether an output path can be written, checked before any work: a UsageError naming `option`
// for an empty path, a directory, a path that exists and is not a regular file (a device such as
// /dev/null, a pipe), a parent that is not a folder or cannot be written, and (with MustExist) a
// folder that does not exist; nothing is created or truncated.
enum class OutputFolder { MustExist, Made };
void check_output_path(const std::string& path, const std::string& option, OutputFolder folder);

// How the "table" format is laid out (md and csv always have every figure).
struct TableOptions {
  bool wide = false;     // every column, mean ± stddev (--wide)
  size_t max_width = 0;  // otherwise: fit the default columns in this many characters (0: no limit)
};
// Human output of the points: "table" (the columns a reader scans first, fitted to
// options.max_width; every column with options.wide), "md" (every column, mean ± stddev), "csv"
// (every figure a plain number in its JSON unit, named in the header; mean and stddev in two
// columns: docs/bench.md, "The csv"); "json"/"jsonl" give the document / one point per line;
// dashboards: "github-bigger" and "github-smaller" (github-action-benchmark's customBiggerIsBetter /
// customSmallerIsBetter arrays of {name, unit, value, range}) and "bmf" (Bencher Metric Format),
// named by the point key.
std::string format_results(const nlohmann::json& doc, const std::string& format, const TableOptions& options = {});
// The width a table for stdout should fit: the terminal's (TIOCGWINSZ on stdout), else $COLUMNS,
// else 120 (stdout not a terminal, e.g. piped or in CI).
size_t terminal_width();
// The rule behind it: `terminal_columns` (the ioctl's answer, if any), then `columns_env` ($COLUMNS,
// may be null) when it is a positive integer, else 120.
size_t resolve_terminal_width(std::optional<size_t> terminal_columns, const char* columns_env);

// effarch report: Markdown of the points (of one or more files, named in `sources`): per model the
// fitted scaling exponents with the nearest order (O(1), O(n), O(n^2)), the cache at the longest
// prompt, decode tok/s at the shortest and longest, energy per decoded token when measured; per
// group of equal settings (device, dtype, batch, generated tokens, graphs) with two or more models,
// which model was best for decode rate, cache size, prefill rate and energy at the longest prompt
// length all of them ran. Every sentence is computed from the points.
std::string markdown_report(const std::vector<Point>& points, const std::vector<std::string>& sources);

// effarch compare.
struct CompareOptions {
  double max_regression = 0.05;  // a 5% worse mean is a regression ...
  double noise_sigmas = 2.0;     // ... when the difference also exceeds 2 x sqrt(sd_base^2 + sd_new^2)
  std::vector<std::string> metrics{"prefill_tokens_per_s", "decode_tokens_per_s", "ttft_s", "peak_bytes"};
  // Pair points whose keys differ only in their launch setting (backend and what ran, graphs,
  // pdl): one run's settings against each other (split_by_launch).
  bool ignore_launch = false;
  // The metrics were asked for by name (--metric): each must then have a value on both sides of
  // some matched pair, else the comparison is incomplete.
  bool metrics_required = false;
};
struct CompareResult {
  std::string report;
  bool regressed = false;
  size_t matched = 0, regressions = 0, improvements = 0, only_base = 0, only_new = 0;
  // Nothing (or not what was asked for) was compared: no pair of points matched, no metric had a
  // value on both sides of a pair, or (metrics_required) one of the metrics had none. A CI gate
  // fails on it as on a regression: a results file with no usable point must not pass.
  bool incomplete = false;
};
// "5%", "0.05", "5 %" -> 0.05. Throws UsageError naming `option`.
double parse_fraction(const std::string& text, const std::string& option);
// The metrics compare knows: name -> whether higher is better.
const std::vector<std::pair<std::string, bool>>& compare_metrics();
// The engine that made a results document: environment.engine.name ("transformers" from
// tools/hf_bench.py), "effarch" when absent (effarch's own files).
std::string engine_name(const nlohmann::json& doc);
// BASE against one or more NEW documents (labels name them in the report). Points match by their
// key (PointKey::matches: implementations unknown on one side match any); a NEW file of another
// engine than BASE matches by the workload only (model, dtype, batch, prompt, gen, device,
// weights) and adds a table of both engines' tokens/s and how many times faster NEW's is. With
// several NEW files the report also puts each file's points side by side by the key without the
// model.
CompareResult compare(const nlohmann::json& base, const std::vector<nlohmann::json>& news,
                      const std::vector<std::string>& labels, const CompareOptions& options);

// One run of several launch settings (bench --backend reference,auto, --cuda-graphs off,on,
// --pdl off,on) as one document per setting, in the order the settings first ran, each labelled
// "backend=auto graphs=on pdl=off"; compare them with CompareOptions::ignore_launch. A run of one
// setting gives one document.
struct LaunchSplit {
  std::vector<nlohmann::json> docs;
  std::vector<std::string> labels;
};
LaunchSplit split_by_launch(const nlohmann::json& doc);
// The first launch setting of one run (read from `source`) against each of the others: compare
// with ignore_launch. Throws UsageError naming `source` when it ran one setting.
CompareResult compare_launch_settings(const nlohmann::json& doc, const std::string& source, CompareOptions options);

}  // namespace effarch::bench
