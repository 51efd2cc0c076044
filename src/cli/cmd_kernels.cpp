// effarch kernels: each op alone on shapes from real configs, against the bytes it must move and
// the measured copy bandwidth, with attention beside the scans (docs/kernels.md). Every finished
// row goes to a JSON Lines file at once; the final JSON is written atomically at the end.

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>

#include <ATen/Parallel.h>
#include <fmt/format.h>

#include "commands.h"
#include "stop_signal.h"
#include "effarch/bench/bench.h"
#include "effarch/bench/kernels.h"
#include "effarch/common/error.h"
#include "effarch/common/format.h"

namespace effarch::cli {
namespace {

struct KernelsCmd {
  bench::KernelSweep sweep;
  std::optional<std::string> ops, lengths, batch;  // given as "": refused, not the default
  std::string memory_limit;
  std::string output = "effarch-kernels.json";
  std::string pdl = "auto";
  bool json = false;
  bool list = false;
  std::optional<int> threads;
  std::vector<std::string> argv;
};

// --ops a,b: the names given, empty items dropped.
std::vector<std::string> op_names(const std::string& text) {
  std::vector<std::string> out;
  for (std::string& item : split_commas(text)) {
    if (!item.empty()) out.push_back(std::move(item));
  }
  return out;
}

int run_kernels_cmd(KernelsCmd& cmd) {
  if (cmd.list) {
    for (const auto& c : bench::kernel_cases()) {
      fmt::print("{:<24} {:<12} {}\n  bytes: {}\n", c.op, bench::to_string(c.model),
                 c.sweeps_length ? "at each length" : "one decode token", c.bytes_formula);
    }
    return 0;
  }
  auto& sweep = cmd.sweep;
  if (cmd.ops) {
    sweep.ops = op_names(*cmd.ops);
    if (sweep.ops.empty()) throw UsageError("--ops: no op named (leave --ops out for every op; --list shows them)");
  }
  if (cmd.lengths) sweep.lengths = bench::parse_int_list(*cmd.lengths, "--lengths");
  if (cmd.batch) sweep.batches = bench::parse_int_list(*cmd.batch, "--batch");
  if (!cmd.memory_limit.empty()) sweep.memory_limit = parse_size(cmd.memory_limit, "--memory-limit");
  for (const auto& config : bench::kernel_sweep_configs(sweep)) note_shadowed_model(config);  // those --ops read
  bench::check_kernel_sweep(sweep);  // ops, counts and models before the device is looked at
  check_threads(cmd.threads);
  apply_pdl_option(cmd.pdl, sweep.device);
  if (std::filesystem::path(cmd.output).extension() == ".jsonl") {
    throw UsageError(fmt::format("-o: '{}' ends in .jsonl, where the rows go one by one (give the JSON file)",
                                 cmd.output));
  }
  const std::string jsonl = std::filesystem::path(cmd.output).replace_extension(".jsonl").string();
  // Checked now; the .jsonl is truncated only once the device is known to be usable.
  bench::check_output_path(cmd.output, "-o", bench::OutputFolder::MustExist);
  bench::check_output_path(jsonl, "-o", bench::OutputFolder::MustExist);
  const int threads = cmd.threads ? *cmd.threads
                                  : bench::default_cpu_threads(bench::usable_cores(), bench::read_machine_load());
  at::set_num_threads(threads);
  // The device's copy bandwidth, versions and host: the same probe as bench's.
  const nlohmann::json env = bench::probe_environment(sweep.device, sweep.dtype);
  bench::LineLog lines(jsonl);
  fmt::print(stderr, "effarch kernels: results to {} (each row also to {} as it finishes)\n", cmd.output, jsonl);
  bench::KernelCallbacks cb;
  // Ctrl-C: no new row starts; the rows measured so far are written (the JSON marked interrupted)
  // and the command exits 130. The row in progress finishes first (an op call cannot be cut short).
  bool interrupted = false;
  int stop_code = 0;
  std::vector<nlohmann::json> rows;
  {
    const StopOnSigint stop;
    cb.stop = stop.flag();
    cb.on_row = [&](const nlohmann::json& row) { lines.append(row.dump()); };
    rows = bench::run_kernels(sweep, env, cb);
    interrupted = stop.requested();
    stop_code = stop.exit_code();
  }
  const nlohmann::json doc = bench::kernels_document(sweep, env, cmd.argv, rows, interrupted);
  // The figures on stdout first: a results file that cannot be written (a full disk) loses none.
  fmt::print("{}", cmd.json ? doc.dump(2) + "\n" : bench::format_kernels_table(doc));
  std::fflush(stdout);
  bench::write_atomically(cmd.output, doc.dump(2) + "\n");  // an Error (exit 1) where it cannot be written
  fmt::print(stderr, "wrote {} ({} row(s){})\n", cmd.output, rows.size(), interrupted ? ", interrupted" : "");
  if (interrupted) return stop_code;
  for (const auto& r : rows) {
    const std::string status = r.at("status").get<std::string>();
    if (status == "error") return 1;
  }
  return 0;
}

}  // namespace

void register_kernels(CLI::App& app, int* exit_code, const std::vector<std::string>& argv) {
  auto cmd = std::make_shared<KernelsCmd>();
  cmd->argv = argv;
  auto& s = cmd->sweep;
  auto* sub = app.add_subcommand("kernels", "Each op alone (scans, conv, norm, attention, MoE prefill) on shapes from "
                                            "real configs: time, bytes it must move, GB/s and the fraction of the copy "
                                            "bandwidth");
  sub->add_option("--ops", cmd->ops, "Comma-separated ops (default all; --list shows them)");
  sub->add_flag("--list", cmd->list, "List the ops, where their shapes come from and the bytes each must move");
  sub->add_option("--lengths", cmd->lengths,
                  "Prompt / cache lengths: 512,4096 or 512-65536*2 (default 512-65536*2 on a GPU, 512-4096*2 on the CPU)");
  sub->add_option("--batch", cmd->batch, "Batch sizes: 1,8 or 1-8*2 (default 1)");
  sub->add_option("--dtype", s.dtype, "auto (fp32 on CPU, bf16 on GPU), float32, bfloat16, float16")
      ->capture_default_str();
  sub->add_option("--device", s.device, "auto, cpu, cuda, cuda:N")->capture_default_str();
  sub->add_option("--reps", s.reps, "Timed calls per row (the median is reported)")->capture_default_str();
  sub->add_option("--warmup", s.warmup, "Untimed calls before them")->capture_default_str();
  sub->add_option("--mamba1", s.mamba1, "Config the Mamba-1 ops take their shapes from")->capture_default_str();
  sub->add_option("--mamba2", s.mamba2, "Config the Mamba-2 ops take their shapes from")->capture_default_str();
  sub->add_option("--transformer", s.transformer, "Config attention takes its heads and head size from")
      ->capture_default_str();
  sub->add_option("--moe", s.moe, "Config the MoE prefill rows take their experts, top-k and sizes from")
      ->capture_default_str();
  sub->add_option("--memory-limit", cmd->memory_limit,
                  "Skip rows whose inputs and outputs exceed this (e.g. 20GB) and cap what a row may allocate");
  sub->add_option("--threads", cmd->threads, "CPU threads for ATen (default as bench's)");
  add_seed_option(sub, &s.seed, "Seed for the inputs");
  add_pdl_option(sub, &cmd->pdl);
  sub->add_option("-o,--output", cmd->output, "Results JSON (rows also go to the .jsonl beside it)")
      ->capture_default_str();
  sub->add_flag("--json", cmd->json, "Print the JSON document instead of the table");
  sub->callback([cmd, exit_code] { *exit_code = run_kernels_cmd(*cmd); });
}

}  // namespace effarch::cli
