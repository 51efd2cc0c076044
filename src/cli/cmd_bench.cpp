// effarch bench MODEL... | --suite NAME: the speed and memory sweep (docs/bench.md). Every
// finished point is appended to a JSON Lines file at once; the final JSON is written atomically;
// Ctrl-C stops after the point in progress is abandoned, keeping every finished point.

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>

#include <ATen/Parallel.h>
#include <fmt/format.h>

#include "commands.h"
#include "parallel_options.h"
#include "stop_signal.h"
#include "effarch/bench/bench.h"
#include "effarch/common/error.h"
#include "effarch/model/model.h"
#include "effarch/ops/attention.h"
#include "effarch/ops/backend.h"

namespace effarch::cli {
namespace {

struct BenchCmd {
  std::vector<std::string> models;
  std::string suite;
  std::optional<std::string> prompt_lengths, batch;  // given as "": an empty list, refused
  std::optional<int64_t> gen_tokens;
  std::optional<int> reps, warmup, threads;
  std::optional<std::string> dtype, device, cuda_graphs, attention;
  std::string backend = "auto";  // applied when given (backend_given): a suite's otherwise
  bool backend_given = false;
  std::string weights = "dense";  // applied when given (weights_given), like backend
  bool weights_given = false;
  std::string parallel_block = "auto";  // applied when given, like weights
  bool parallel_block_given = false;
  std::string norm_prologue = "auto";  // applied when given, like weights
  bool norm_prologue_given = false;
  std::string selective_scan = "auto";  // applied when given, like weights
  bool selective_scan_given = false;
  std::string pdl = "auto";  // applied when given (pdl_given), like backend
  bool pdl_given = false;
  std::optional<std::string> mode;
  std::string output = "effarch-bench.json";
  std::string format = "table";
  std::string memory_limit;
  uint64_t seed = 0;
  bool no_progress = false;
  bool wide = false;
  std::vector<std::string> argv;
  ParallelCmd parallel;  // --tp, --ep
};

int run_bench(const BenchCmd& cmd) {
  bench::SweepSpec spec;
  if (!cmd.suite.empty()) {
    if (!cmd.models.empty()) throw UsageError("give MODEL... or --suite, not both");
    spec = bench::load_suite(cmd.suite, spec);
  } else {
    if (cmd.models.empty()) throw UsageError("name at least one MODEL, or a --suite");
    spec.models = cmd.models;
  }
  // Options given on the command line override the suite's.
  if (cmd.prompt_lengths) spec.prompt_lengths = bench::parse_int_list(*cmd.prompt_lengths, "--prompt-lengths");
  if (cmd.batch) spec.batches = bench::parse_int_list(*cmd.batch, "--batch");
  if (cmd.gen_tokens) spec.gen_tokens = *cmd.gen_tokens;
  if (cmd.reps) spec.reps = *cmd.reps;
  if (cmd.warmup) spec.warmup = *cmd.warmup;
  if (cmd.dtype) spec.dtype = *cmd.dtype;
  if (cmd.device) spec.device = *cmd.device;
  if (cmd.cuda_graphs) spec.cuda_graphs = bench::parse_cuda_graphs_list(*cmd.cuda_graphs, "--cuda-graphs");
  if (cmd.attention) {
    (void)ops::parse_attention_impl(*cmd.attention, "--attention");  // a bad value fails before the probe
    spec.attention = *cmd.attention;
  }
  if (cmd.backend_given) spec.backends = bench::parse_backend_list(cmd.backend, "--backend");
  if (cmd.weights_given) spec.weights = ops::parse_weight_format(cmd.weights, "--weights");
  if (cmd.parallel_block_given) {
    spec.fuse_parallel_block = model::parse_parallel_block(cmd.parallel_block, "--parallel-block");
  }
  if (cmd.norm_prologue_given) {
    spec.fuse_norm_prologue = model::parse_norm_prologue(cmd.norm_prologue, "--norm-prologue");
  }
  if (cmd.selective_scan_given) {
    spec.selective_scan = model::parse_selective_scan(cmd.selective_scan, "--selective-scan");
  }
  if (cmd.pdl_given) spec.pdl = bench::parse_pdl_list(cmd.pdl, "--pdl");
  for (const auto& on : spec.pdl) {
    if (on.value_or(false)) ops::set_programmatic_launch(true, "--pdl");  // a build without CUDA refuses on
  }
  ops::set_programmatic_launch(false, "--pdl");  // until the device is known (below)
  if (cmd.threads) spec.threads = *cmd.threads;
  check_threads(spec.threads, cmd.threads ? "--threads" : "the suite's threads");
  spec.seed = cmd.seed;
  if (spec.gen_tokens < 1) throw UsageError("--gen-tokens must be at least 1");
  model::check_sequence_tokens(spec.gen_tokens, "--gen-tokens");
  for (int64_t n : spec.prompt_lengths) model::check_sequence_tokens(n, "--prompt-lengths");
  if (spec.reps < 1) throw UsageError("--reps must be at least 1");
  if (spec.warmup < 0) throw UsageError("--warmup must be at least 0");
  if (cmd.mode) spec.modes = bench::parse_modes(*cmd.mode, "--mode");
  if (!cmd.memory_limit.empty()) spec.memory_limit = parse_size(cmd.memory_limit, "--memory-limit");
  if (cmd.format != "table" && cmd.format != "md" && cmd.format != "csv" && cmd.format != "json" &&
      cmd.format != "jsonl" && cmd.format != "github-bigger" && cmd.format != "github-smaller" && cmd.format != "bmf") {
    throw UsageError(fmt::format(
        "--format: unknown format '{}' (table, md, csv, json, jsonl, github-bigger, github-smaller, bmf)", cmd.format));
  }

  // Every MODEL named and its config read before anything is probed or measured: a misspelt name
  // or a refused config field is a usage error now, not an error point after a long sweep. (A
  // point whose weights fail to load is still an error point, the other points measured.)
  if (const auto twice = first_repeat(spec.models)) {
    throw UsageError(fmt::format("MODEL '{}' is given twice: its points would have the same keys", *twice));
  }
  std::vector<model::ModelConfig> configs;
  for (const std::string& name : spec.models) {
    note_shadowed_model(name);
    configs.push_back(model::resolve_model(name).config);
  }

  // --tp/--ep: every model checked to split and the launch to match before anything loads; the
  // process group started. Every rank runs the sweep in lockstep; rank 0 writes and prints.
  std::shared_ptr<parallel::Context> par;
  if (cmd.parallel.tp != 1 || cmd.parallel.ep != 1 || parallel::read_launch_env(/*slurm=*/false).launcher != "none") {
    par = start_parallel(cmd.parallel, configs, &spec.device);
    if (par->grouped()) spec.parallel = par;
  }
  const bool lead = !par || par->rank() == 0;
  if (std::filesystem::path(cmd.output).extension() == ".jsonl") {
    throw UsageError(fmt::format("-o: '{}' ends in .jsonl, where the points go one by one (give the JSON file: "
                                 "-o results.json writes results.json and results.jsonl)",
                                 cmd.output));
  }
  const std::string jsonl = std::filesystem::path(cmd.output).replace_extension(".jsonl").string();
  if (lead) {  // checked now; the .jsonl is truncated only once the device is known to be usable
    bench::check_output_path(cmd.output, "-o", bench::OutputFolder::MustExist);
    bench::check_output_path(jsonl, "-o", bench::OutputFolder::MustExist);
  }
  // Before the probe: its GEMM rate depends on it. Without --threads (or a suite's), the default
  // that does not collapse when other work shares the cores (docs/bench.md, "A busy machine").
  const int threads = spec.threads ? *spec.threads
                                   : bench::default_cpu_threads(bench::usable_cores(), bench::read_machine_load());
  at::set_num_threads(threads);
  // Each point sets its own (bench::run_sweep); this one, auto resolved for this rank's device
  // (after start_parallel named it), is what the environment's probe sees.
  ops::set_programmatic_launch(resolve_pdl(spec.pdl.front(), spec.device), "--pdl");
  nlohmann::json env = bench::probe_environment(spec.device, spec.dtype);
  if (spec.pdl.size() > 1) env["programmatic_launch"] = bench::pdl_list_name(spec.pdl);  // each point's key says which
  if (spec.parallel) env["parallel"] = parallel_json(*par);
  bench::check_sweep(spec);  // what the device allows, before the last run's .jsonl is truncated
  std::optional<bench::LineLog> lines;
  if (lead) lines.emplace(jsonl);
  const bool progress = lead && !cmd.no_progress && isatty(STDERR_FILENO);
  if (lead) {
    fmt::print(stderr, "effarch bench: {} point(s); results to {} (each point also to {} as it finishes){}\n",
               spec.models.size() * spec.batches.size() * spec.prompt_lengths.size() * bench::launch_settings(spec).size(),
               cmd.output, jsonl,
               spec.parallel ? fmt::format("; {} processes over {} (--tp {} --ep {})", par->world_size(),
                                           par->backend, par->layout.tp, par->layout.ep)
                             : "");
  }

  // Ctrl-C (stop_signal.h) stops after the point in progress. That cannot be kept in step across
  // ranks (one may stop mid-point while another waits in a collective): a multi-process run leaves
  // SIGINT to its default (and to torchrun).
  std::optional<StopOnSigint> stop(std::in_place, /*install=*/!spec.parallel);
  const double start = std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  bench::RunCallbacks cb;
  cb.stop = stop->flag();
  cb.on_point = [&](const bench::Point& p) {
    if (!lead) return;
    if (p.machine_load && p.machine_load->busy) {
      const auto& ml = *p.machine_load;
      const auto others = [](const std::optional<bench::LoadSample>& s) {
        return s ? fmt::format("{} (load average {:.2f})", s->others_runnable, s->load1) : std::string("?");
      };
      fmt::print(stderr,
                 "warning: {}: the machine was too busy to time: other runnable threads before {}, after {}, "
                 "with {} thread(s) on {} core(s); its timings may be far too low (marked \"busy\" in the results; "
                 "memory figures are not affected)\n",
                 p.key.str(), others(ml.before), others(ml.after), ml.threads, ml.cores);
    }
    lines->append(nlohmann::json(p).dump());
  };
  cb.on_start = [&](size_t i, size_t total, const std::string& label) {
    if (!progress) return;
    const double now = std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
    const double elapsed = now - start;
    const std::string eta = i == 0 ? "?" : fmt::format("{:.0f} s", elapsed / static_cast<double>(i) * static_cast<double>(total - i));
    fmt::print(stderr, "[{}/{}] {} (elapsed {:.0f} s, about {} left)\n", i + 1, total, label, elapsed, eta);
  };
  const std::vector<bench::Point> points = bench::run_sweep(spec, env, cb);
  const bool interrupted = stop->requested();
  const int stop_code = stop->exit_code();
  stop.reset();  // the default SIGINT again
  if (spec.parallel) par->barrier();  // no rank leaves (rank 0 serves the store) while another still runs
  if (!lead) return 0;
  const nlohmann::json doc = bench::make_document(spec, env, cmd.argv, points, interrupted);
  // The figures on stdout first: a results file that cannot be written (a full disk) loses none.
  bench::TableOptions table;
  table.wide = cmd.wide;
  table.max_width = bench::terminal_width();
  fmt::print("{}", bench::format_results(doc, cmd.format, table));
  // Several launch settings: each against the first, point by point (what `effarch compare` of
  // this file prints), for human formats only.
  if (bench::launch_settings(spec).size() > 1 && (cmd.format == "table" || cmd.format == "md")) {
    bench::CompareOptions side;
    side.metrics = {"prefill_tokens_per_s", "decode_tokens_per_s", "decode_step_p50_s", "peak_bytes"};
    try {
      fmt::print("\n{}", bench::compare_launch_settings(doc, cmd.output, side).report);
    } catch (const UsageError&) {  // every point of one setting failed or was never run: the table says so
    }
  }
  std::fflush(stdout);
  bench::write_atomically(cmd.output, doc.dump(2) + "\n");  // an Error (exit 1) where it cannot be written
  fmt::print(stderr, "wrote {} ({} point(s){})\n", cmd.output, points.size(), interrupted ? ", interrupted" : "");
  if (interrupted) return stop_code;
  for (const auto& p : points) {
    if (p.status != bench::PointStatus::Ok) return 1;
  }
  return 0;
}

}  // namespace

void register_bench(CLI::App& app, int* exit_code, const std::vector<std::string>& argv) {
  auto cmd = std::make_shared<BenchCmd>();
  cmd->argv = argv;
  auto* sub = app.add_subcommand("bench", "Speed and memory of models across context lengths (JSON for CI)");
  sub->add_option("MODEL", cmd->models, "Checkpoint folders, config files or built-in config names");
  add_model_footer(sub);
  sub->add_option("--suite", cmd->suite, "A sweep from configs/suites/NAME.json (or a suite file)");
  sub->add_option("--prompt-lengths", cmd->prompt_lengths, "Prompt lengths: 512,4096 or 512-32768*2 (default 128,512)");
  sub->add_option("--batch", cmd->batch, "Batch sizes: 1,8 or 1-8*2 (default 1)");
  sub->add_option("--gen-tokens", cmd->gen_tokens, "Tokens generated per run (the first from prefill; default 32)");
  sub->add_option("--reps", cmd->reps, "Timed repetitions per point (default 3)");
  sub->add_option("--warmup", cmd->warmup, "Untimed runs before them (default 1)");
  sub->add_option("--dtype", cmd->dtype, "auto (fp32 on CPU, bf16 on GPU), float32, bfloat16, float16");
  sub->add_option("--device", cmd->device, "auto, cpu, cuda, cuda:N");
  sub->add_option("--cuda-graphs", cmd->cuda_graphs, "auto (default): decode replayed as a CUDA graph wherever the model supports it (CUDA device, no "
                  "MoE layer on the reference dispatch), else off; on; off; static. The key records the mode that ran. "
                  "Several (off,on) run every point under each in turn, side by side in one run");
  sub->add_option("--attention", cmd->attention, "sdpa (default) or eager");
  add_backend_option(sub, &cmd->backend, /*list=*/true);  // recorded in each point's key
  add_weights_option(sub, &cmd->weights);  // recorded in each point's key ("weights")
  add_parallel_block_option(sub, &cmd->parallel_block);  // recorded in the key's implementations
  add_norm_prologue_option(sub, &cmd->norm_prologue);     // recorded in the key's implementations
  add_selective_scan_option(sub, &cmd->selective_scan);   // recorded in the key's implementations
  add_pdl_option(sub, &cmd->pdl, /*list=*/true);  // recorded in each point's key
  add_parallel_options(sub, &cmd->parallel);
  sub->add_option("--threads", cmd->threads,
                  "CPU threads for ATen's operators (default: cores - 1, fewer when other work already runs; see "
                  "docs/bench.md); recorded in the results");
  sub->add_option("--mode", cmd->mode, "speed, memory, or speed,memory (default both)");
  sub->add_option("-o,--output", cmd->output, "Results JSON (points also go to the .jsonl beside it)")
      ->capture_default_str();
  sub->add_option("--format", cmd->format, "stdout: table, md, csv, json, jsonl; dashboards: github-bigger / github-smaller "
                  "(github-action-benchmark customBiggerIsBetter / customSmallerIsBetter), bmf (Bencher)")->capture_default_str();
  sub->add_flag("--wide", cmd->wide,
                "table: every column (dtype, gen, status, TTFT, step percentiles, GEMM and harness fractions) "
                "instead of those that fit the terminal");
  sub->add_option("--memory-limit", cmd->memory_limit,
                  "Cap what a point may allocate (e.g. 2GB): beyond it the point is recorded as oom");
  add_seed_option(sub, &cmd->seed, "Seed for prompts and random weights");
  sub->add_flag("--no-progress", cmd->no_progress, "No progress lines on stderr");
  sub->callback([cmd, exit_code, sub] {
    cmd->backend_given = sub->count("--backend") > 0;
    cmd->weights_given = sub->count("--weights") > 0;
    cmd->parallel_block_given = sub->count("--parallel-block") > 0;
    cmd->norm_prologue_given = sub->count("--norm-prologue") > 0;
    cmd->selective_scan_given = sub->count("--selective-scan") > 0;
    cmd->pdl_given = sub->count("--pdl") > 0;
    *exit_code = run_bench(*cmd);
  });
}

}  // namespace effarch::cli
