#pragma once
// Each effarch command registers its subcommand and options here; main() dispatches.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "effarch/common/format.h"  // human_bytes

namespace effarch::cli {

// Registers the subcommand; its callback runs the command and stores the exit code in *exit_code.
void register_info(CLI::App& app, int* exit_code);
void register_inspect(CLI::App& app, int* exit_code);
void register_init(CLI::App& app, int* exit_code);
void register_generate(CLI::App& app, int* exit_code);
void register_tokenize(CLI::App& app, int* exit_code);
void register_experts(CLI::App& app, int* exit_code);
void register_bench(CLI::App& app, int* exit_code, const std::vector<std::string>& argv);  // argv: recorded in results
void register_compare(CLI::App& app, int* exit_code);
void register_report(CLI::App& app, int* exit_code);
void register_kernels(CLI::App& app, int* exit_code, const std::vector<std::string>& argv);  // argv: recorded
void register_profile(CLI::App& app, int* exit_code, const std::vector<std::string>& argv);  // argv: recorded

// Options shared by the commands that run a model (generate, bench, experts), with one help text.
// --backend auto|reference|cuda: which implementation the ops with a CUDA kernel run.
void add_backend_option(CLI::App* sub, std::string* value, bool list = false);  // bench: a list
// --weights dense|int8: the linear layers' weight format (ModelOptions::weights).
void add_weights_option(CLI::App* sub, std::string* value);
// --parallel-block auto|fused|separate (ModelOptions::fuse_parallel_block), the same text everywhere.
void add_parallel_block_option(CLI::App* sub, std::string* value);
// --norm-prologue auto|fused|separate (ModelOptions::fuse_norm_prologue), the same text everywhere.
void add_norm_prologue_option(CLI::App* sub, std::string* value);
// --selective-scan auto|<variant> (ModelOptions::selective_scan), the same text everywhere.
void add_selective_scan_option(CLI::App* sub, std::string* value);
// --seed N (every command that draws random numbers): a decimal number from 0 to 2^64 - 1; a
// negative or too large one is a usage error (CLI11 alone would wrap it).
void add_seed_option(CLI::App* sub, uint64_t* value, const std::string& what);

// --pdl auto|on|off: programmatic dependent launch of the decode kernels (ops::set_programmatic_launch),
// for the commands that run kernels (generate, bench, profile, kernels); auto, the default, is on
// where ops::programmatic_launch_auto says for the run's device. apply_pdl_option parses and sets
// it (UsageError naming --pdl for a bad value, or on in a build without CUDA), `device` being the
// --device text (auto needs it; a device that cannot be had resolves auto to off and fails
// where it always did). bench takes a list (bench::parse_pdl_list) and sets it per point.
void add_pdl_option(CLI::App* sub, std::string* value, bool list = false);
void apply_pdl_option(const std::string& value, const std::string& device);
// A --pdl request (nullopt: auto) for the --device text `device`, as apply_pdl_option resolves it.
bool resolve_pdl(const std::optional<bool>& request, const std::string& device);

// --threads N (bench, kernels, profile): from 1 to 1024 (ATen starts every thread it is given:
// 100,000 ran for minutes before the first point). A UsageError naming `option` otherwise.
void check_threads(const std::optional<int>& threads, const std::string& option = "--threads");

// What MODEL may be, under the help of the commands that take one (info, generate, experts,
// bench, profile): add_model_footer. The top-level help's footer also names those commands.
std::string model_footer(bool commands = false);
void add_model_footer(CLI::App* sub);

// A MODEL (or CONFIG) that names both an existing path and a built-in config is the path: a note
// on stderr says so, and how to name the built-in (model::shadowed_builtin_note). Called by each
// command for each model name it is given, before the model is read.
void note_shadowed_model(const std::string& model);

// Formatting shared by the printers.
std::string group_digits(int64_t n);        // 8030261248 -> "8,030,261,248"
std::string human_count(int64_t n);         // 8030261248 -> "8.03B"
// "5GB", "500MB", "2GiB", "1024" -> bytes; throws UsageError naming `option`.
uint64_t parse_size(const std::string& text, const std::string& option);

}  // namespace effarch::cli
