// effarch compare BASE.json NEW.json... : points matched by key, ratios per metric, exit 1 on a
// regression past the threshold and beyond the runs' noise, or when nothing was compared
// (docs/bench.md). With one file, the
// launch settings of that run against its first.

#include <cmath>
#include <filesystem>

#include <fmt/format.h>

#include "commands.h"
#include "effarch/bench/bench.h"
#include "effarch/common/error.h"

namespace effarch::cli {
namespace {

struct CompareCmd {
  std::vector<std::string> files;
  std::string max_regression = "5%";
  std::vector<std::string> metrics;
  double noise_sigmas = 2.0;
  bool ignore_launch = false;
};

int run_compare(const CompareCmd& cmd) {
  bench::CompareOptions opt;
  opt.max_regression = bench::parse_fraction(cmd.max_regression, "--max-regression");
  opt.noise_sigmas = cmd.noise_sigmas;
  opt.ignore_launch = cmd.ignore_launch;
  if (!(opt.noise_sigmas >= 0) || !std::isfinite(opt.noise_sigmas)) {  // NaN passed a plain < 0 and gated nothing
    throw UsageError(fmt::format("--noise-sigmas must be a finite number >= 0, got {}", opt.noise_sigmas));
  }
  if (!cmd.metrics.empty()) {
    opt.metrics = cmd.metrics;
    opt.metrics_required = true;
  }
  std::vector<nlohmann::json> docs;
  std::vector<std::string> labels;
  for (const auto& f : cmd.files) {
    try {
      docs.push_back(bench::read_document(f));
    } catch (const FormatError& e) {
      throw UsageError(e.what());  // exit 2: exit 1 means a regression
    }
    labels.push_back(std::filesystem::path(f).filename().string());
  }
  // One file: its launch settings against each other (bench --cuda-graphs off,on / --pdl off,on).
  const bench::CompareResult r =
      docs.size() == 1 ? bench::compare_launch_settings(docs[0], cmd.files[0], opt)
                       : bench::compare(docs[0], std::vector<nlohmann::json>(docs.begin() + 1, docs.end()), labels, opt);
  fmt::print("{}", r.report);
  return r.regressed || r.incomplete ? 1 : 0;
}

}  // namespace

void register_compare(CLI::App& app, int* exit_code) {
  auto cmd = std::make_shared<CompareCmd>();
  auto* sub = app.add_subcommand("compare", "Compare bench results: ratios per point, exit 1 on a regression");
  sub->add_option("FILES", cmd->files,
                  "BASE.json NEW.json [NEW2.json ...], or one RUN.json of several launch settings (bench "
                  "--cuda-graphs off,on / --pdl off,on): each against the first")
      ->required();
  sub->add_option("--max-regression", cmd->max_regression, "Worse by more than this is a regression (5%, 0.05)")
      ->capture_default_str();
  sub->add_option("--metric", cmd->metrics,
                  "Metrics to check (repeat or comma-separate): prefill_tokens_per_s, decode_tokens_per_s, ttft_s, "
                  "prefill_s, decode_step_p50_s, decode_step_p99_s, peak_bytes, cache_bytes")
      ->delimiter(',');
  sub->add_option("--noise-sigmas", cmd->noise_sigmas,
                  "A change must also exceed this many combined standard deviations")
      ->capture_default_str();
  sub->add_flag("--ignore-launch", cmd->ignore_launch,
                "Pair points whose keys differ only in how effarch ran them (backend, graphs, pdl and the "
                "implementations record): two runs of one workload under different settings, such as bench "
                "--parallel-block (or --norm-prologue) separate against fused");
  sub->callback([cmd, exit_code] { *exit_code = run_compare(*cmd); });
}

}  // namespace effarch::cli
