// effarch profile MODEL: where one decode step's (or, --phase prefill, one prefill's) time goes,
// per op kind (docs/kernels.md).

#include <cstdio>

#include <ATen/Parallel.h>
#include <fmt/format.h>

#include "commands.h"
#include "effarch/bench/bench.h"
#include "effarch/bench/profile.h"
#include "effarch/common/error.h"
#include "effarch/model/model.h"
#include "effarch/ops/backend.h"

namespace effarch::cli {
namespace {

struct ProfileCmd {
  bench::ProfileSpec spec;
  std::string phase = "decode";
  std::string cuda_graphs = "auto";
  std::string backend = "auto";
  std::string pdl = "auto";
  std::string parallel_block = "auto";
  std::string norm_prologue = "auto";
  std::string selective_scan = "auto";
  std::string output;
  bool output_given = false, trace_given = false;
  bool json = false;
  std::optional<int> threads;
  std::vector<std::string> argv;
};

int run_profile(ProfileCmd& cmd) {
  cmd.spec.phase = bench::parse_profile_phase(cmd.phase, "--phase");
  cmd.spec.cuda_graphs = model::parse_cuda_graphs_request(cmd.cuda_graphs, "--cuda-graphs");
  if (cmd.spec.phase == bench::ProfilePhase::Prefill && cmd.spec.cuda_graphs.value_or(model::DecodeMode::Eager) !=
                                                            model::DecodeMode::Eager) {
    throw UsageError(fmt::format("--cuda-graphs {}: a prefill is never replayed as a graph (--phase prefill)",
                                 cmd.cuda_graphs));
  }
  cmd.spec.backend = ops::parse_backend(cmd.backend, "--backend");
  cmd.spec.fuse_parallel_block = model::parse_parallel_block(cmd.parallel_block, "--parallel-block");
  cmd.spec.fuse_norm_prologue = model::parse_norm_prologue(cmd.norm_prologue, "--norm-prologue");
  cmd.spec.selective_scan = model::parse_selective_scan(cmd.selective_scan, "--selective-scan");
  apply_pdl_option(cmd.pdl, cmd.spec.device);
  check_threads(cmd.threads);
  // Both outputs checked before anything is profiled (an empty -o was once taken as "no file").
  if (cmd.output_given) bench::check_output_path(cmd.output, "-o", bench::OutputFolder::Made);
  if (cmd.trace_given) bench::check_output_path(cmd.spec.trace, "--trace", bench::OutputFolder::MustExist);
  at::set_num_threads(cmd.threads ? *cmd.threads
                                  : bench::default_cpu_threads(bench::usable_cores(), bench::read_machine_load()));
  note_shadowed_model(cmd.spec.model);
  nlohmann::json doc = bench::profile_model(cmd.spec);
  doc["schema"] = "effarch-profile";
  doc["schema_version"] = 1;
  doc["command_line"] = cmd.argv;
  fmt::print("{}", cmd.json ? doc.dump(2) + "\n" : bench::format_profile_table(doc));
  std::fflush(stdout);
  if (!cmd.output.empty()) {
    bench::write_atomically(cmd.output, doc.dump(2) + "\n");
    fmt::print(stderr, "wrote {}\n", cmd.output);
  }
  return 0;
}

}  // namespace

void register_profile(CLI::App& app, int* exit_code, const std::vector<std::string>& argv) {
  auto cmd = std::make_shared<ProfileCmd>();
  cmd->argv = argv;
  auto& s = cmd->spec;
  auto* sub = app.add_subcommand("profile", "Where one decode step's (or one prefill's) time goes: GEMM/GEMV, scan, "
                                            "conv, norm, attention, elementwise, copy, other (libtorch's profiler)");
  sub->add_option("MODEL", s.model, "Checkpoint folder, config file or built-in config name")->required();
  add_model_footer(sub);
  sub->add_option("--batch", s.batch, "Sequences decoded together")->capture_default_str();
  sub->add_option("--phase", cmd->phase,
                  "decode (the steps after a prefill of --context tokens) or prefill (the prefill of --context tokens "
                  "itself, to its first token)")
      ->capture_default_str();
  sub->add_option("--context", s.context, "Prompt tokens prefilled (before the profiled steps, or profiled)")
      ->capture_default_str();
  sub->add_option("--steps", s.steps, "Decode steps (or prefills) profiled")->capture_default_str();
  sub->add_option("--warmup", s.warmup, "Decode steps (or prefills, at least 1) run before the profiler starts")
      ->capture_default_str();
  sub->add_option("--dtype", s.dtype, "auto (fp32 on CPU, bf16 on GPU), float32, bfloat16, float16")
      ->capture_default_str();
  sub->add_option("--device", s.device, "auto, cpu, cuda, cuda:N")->capture_default_str();
  sub->add_option("--cuda-graphs", cmd->cuda_graphs,
                  "auto (a CUDA graph where the model supports it), on, off, static: as bench's")
      ->capture_default_str();
  sub->add_option("--attention", s.attention, "sdpa or eager")->capture_default_str();
  add_backend_option(sub, &cmd->backend);
  add_pdl_option(sub, &cmd->pdl);
  add_parallel_block_option(sub, &cmd->parallel_block);
  add_norm_prologue_option(sub, &cmd->norm_prologue);
  add_selective_scan_option(sub, &cmd->selective_scan);
  sub->add_option("--threads", cmd->threads, "CPU threads for ATen (default as bench's)");
  add_seed_option(sub, &s.seed, "Seed for the prompt and random weights");
  sub->add_option("--trace", s.trace, "Also write the profiled steps as a Chrome trace (chrome://tracing, Perfetto)");
  sub->add_option("-o,--output", cmd->output, "Write the JSON here");
  sub->add_flag("--json", cmd->json, "Print the JSON instead of the table");
  sub->callback([cmd, exit_code, sub] {
    cmd->output_given = sub->count("--output") > 0;  // given empty too: refused, not taken as none
    cmd->trace_given = sub->count("--trace") > 0;
    *exit_code = run_profile(*cmd);
  });
}

}  // namespace effarch::cli
