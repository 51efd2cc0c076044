// effarch: the command-line entry. Library errors become a message and an exit code here:
// 0 success, 1 a failure (bad file, bad checkpoint, failed run), 2 a usage error.

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>

#include <c10/util/Exception.h>
#include <c10/util/Logging.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "commands.h"
#include "effarch/common/error.h"
#include "effarch/common/linked_symbols.h"
#include "effarch/parallel/parallel.h"
#include "effarch/version.h"

int main(int argc, char** argv) {
  // A library that writes past another's variable (docs/building.md, "Three pitfalls"): the link
  // order prevents the one known case; say so at once if a system's libraries bring another.
  for (const auto& clash : effarch::undersized_symbol_clashes())
    fmt::print(stderr, "effarch: warning: two libraries define one variable and the smaller one wins, "
                       "so the other writes past it: {} (docs/building.md)\n", effarch::describe(clash));
  // A failed CAFFE_ENFORCE (the CPU allocator's "can't allocate memory" among them) must throw
  // c10::Error, which bench records as an oom point and the other commands report, not abort the
  // process. c10's default says so; it is restated here, where this binary's own copy of the flag
  // lives (a copy relocation, out of reach of the clash above, which once set it to 0xff).
  FLAGS_caffe2_use_fatal_for_enforce = false;
  CLI::App app{"effarch: what Mamba, Mixture-of-Experts and hybrid LLMs buy over Transformers, measured"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("effarch ") + EFFARCH_VERSION + " (" + effarch::git_commit() + ")");
  int exit_code = 0;
  effarch::cli::register_info(app, &exit_code);
  effarch::cli::register_inspect(app, &exit_code);
  effarch::cli::register_init(app, &exit_code);
  effarch::cli::register_tokenize(app, &exit_code);
  effarch::cli::register_generate(app, &exit_code);
  effarch::cli::register_experts(app, &exit_code);
  effarch::cli::register_bench(app, &exit_code, std::vector<std::string>(argv, argv + argc));
  effarch::cli::register_compare(app, &exit_code);
  effarch::cli::register_report(app, &exit_code);
  effarch::cli::register_kernels(app, &exit_code, std::vector<std::string>(argv, argv + argc));
  effarch::cli::register_profile(app, &exit_code, std::vector<std::string>(argv, argv + argc));
  // Set after the commands are registered: CLI11 copies a parent's footer into each subcommand it
  // adds, and only the commands that take a MODEL explain it (add_model_footer).
  app.footer(effarch::cli::model_footer(/*commands=*/true));
  // CLI11 would only say "a subcommand is required" for a misspelt command: name it.
  std::vector<std::string> names;
  for (const auto* sub : app.get_subcommands({})) names.push_back(sub->get_name());
  if (argc > 1 && argv[1][0] != '-' && std::find(names.begin(), names.end(), argv[1]) == names.end()) {
    fmt::print(stderr, "effarch: error: unknown command '{}' (commands: {})\n", argv[1], fmt::join(names, ", "));
    return 2;
  }
  // A failure: said on stderr (and, in a multi-process run, to the other ranks, which name this one).
  const auto fail = [](const std::string& what, int code, const char* kind = "error") {
    effarch::parallel::report_failure(what);
    fmt::print(stderr, "effarch: {}: {}\n", kind, what);
    return code;
  };
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 2;
  } catch (const effarch::UsageError& e) {
    return fail(e.what(), 2);
  } catch (const effarch::parallel::CommError& e) {
    // Another rank is lost or failed: say so and leave at once, without waiting on the process group.
    fmt::print(stderr, "effarch: error: {}\n", e.what());
    std::fflush(stdout);
    std::fflush(stderr);
    std::_Exit(1);
  } catch (const effarch::Error& e) {
    return fail(e.what(), 1);
  } catch (const std::filesystem::filesystem_error& e) {
    // A folder or file the command could not make or write (init into a read-only parent): the
    // path and the system's reason, not an internal error.
    return fail(e.what(), 1);
  } catch (const c10::Error& e) {
    // ATen's errors carry a C++ backtrace in what(): the message alone. Running out of memory is
    // the machine's limit, not a bug.
    return fail(effarch::error_message(e), 1, effarch::is_out_of_memory(e) ? "error: out of memory" : "internal error");
  } catch (const std::exception& e) {
    return fail(e.what(), 1, "internal error");
  }
  return exit_code;
}
