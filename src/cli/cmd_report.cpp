// effarch report RESULTS.json... [-o report.md] [--format md|github-bigger|github-smaller|bmf]:
// the Markdown report of bench results (docs/bench.md, "effarch report"), or their dashboard JSON.

#include <cstdlib>
#include <filesystem>

#include <fmt/format.h>

#include "commands.h"
#include "effarch/bench/bench.h"
#include "effarch/common/error.h"
#include "effarch/common/files.h"
#include "effarch/version.h"

namespace effarch::cli {
namespace {

struct ReportCmd {
  std::vector<std::string> files;
  std::string output;
  std::string format = "md";
  std::string python = "python3";
  bool python_given = false;
  bool no_plots = false;
  // The plots are drawn: the Markdown report, into a file, not --no-plots.
  bool plots() const { return format == "md" && !output.empty() && !no_plots; }
};

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// The charts beside the report (one per question), drawn by tools/plot_results.py --split when
// its Python has matplotlib: the Markdown that links them, or a line saying why there are none.
std::string plots(const ReportCmd& cmd) {
  namespace fs = std::filesystem;
  const fs::path tool = fs::path(EFFARCH_SOURCE_CONFIGS_DIR).parent_path() / "tools" / "plot_results.py";
  // Why there are none, in the report and on stderr.
  const auto none = [](const std::string& why) {
    fmt::print(stderr, "note: no plots: {}\n", why);
    return fmt::format("\n## Plots\n\nNone: {}.\n", why);
  };
  if (!fs::exists(tool)) return none(fmt::format("{} is not here", tool.string()));
  // A --python given that cannot run was refused before anything was read (run_report); the
  // default one missing only costs the plots.
  if (const std::string why = unrunnable_reason(cmd.python); !why.empty()) {
    return none(fmt::format("{} (the default --python) {}; give --python PATH to a Python with matplotlib",
                            cmd.python, why));
  }
  const std::string probe = shell_quote(cmd.python) + " -c 'import matplotlib' > /dev/null 2>&1";
  if (std::system(probe.c_str()) != 0) {
    return none(fmt::format("{} has no matplotlib (Debian: python3-matplotlib; --python picks another)", cmd.python));
  }
  const fs::path out = fs::path(cmd.output);
  const fs::path stem = out.parent_path() / out.stem();
  std::string files;
  for (const auto& f : cmd.files) files += " " + shell_quote(f);
  for (const char* ext : {"png", "svg"}) {
    const std::string run = fmt::format("{} {}{} --split -o {} > /dev/null", shell_quote(cmd.python),
                                        shell_quote(tool.string()), files,
                                        shell_quote(stem.string() + "." + ext));
    if (std::system(run.c_str()) != 0) return none("tools/plot_results.py failed");
  }
  std::string md = "\n## Plots\n\n";
  const std::string name = out.stem().string();
  for (const auto& [suffix, title] : std::vector<std::pair<std::string, std::string>>{
           {"memory", "Peak memory and cache (dashed) against prompt length"},
           {"prefill", "Prefill tokens/s against prompt length"},
           {"decode", "Decode tokens/s against prompt length"}}) {
    md += fmt::format("### {}\n\n![{}]({}-{}.png) ([SVG]({}-{}.svg))\n\n", title, title, name, suffix, name, suffix);
  }
  return md;
}

int run_report(const ReportCmd& cmd) {
  if (cmd.format != "md" && cmd.format != "github-bigger" && cmd.format != "github-smaller" && cmd.format != "bmf") {
    throw UsageError(fmt::format("--format: unknown format '{}' (md, github-bigger, github-smaller, bmf)", cmd.format));
  }
  // A --python named that cannot run: refused before any file is read or written (the default
  // python3 missing is said under Plots instead: the report itself does not need it).
  if (cmd.python_given && cmd.plots()) {
    if (const std::string why = unrunnable_reason(cmd.python); !why.empty()) {
      throw UsageError(fmt::format("--python: {} {} (the Python that draws the plots: give one that has matplotlib, "
                                   "or --no-plots)",
                                   cmd.python, why));
    }
  }
  if (!cmd.output.empty()) bench::check_output_path(cmd.output, "-o", bench::OutputFolder::Made);
  std::vector<bench::Point> points;
  std::vector<std::string> sources;
  for (const auto& f : cmd.files) {
    nlohmann::json doc;
    try {
      doc = bench::read_document(f);
    } catch (const FormatError& e) {
      throw UsageError(e.what());
    }
    for (auto& p : bench::points_of(doc)) points.push_back(std::move(p));
    sources.push_back(std::filesystem::path(f).filename().string());
  }
  std::string text;
  if (cmd.format == "md") {
    text = bench::markdown_report(points, sources);
    if (cmd.plots()) text += plots(cmd);
  } else {
    text = bench::format_results(nlohmann::json{{"points", points}}, cmd.format);
  }
  if (cmd.output.empty()) {
    fmt::print("{}", text);
  } else {
    bench::write_atomically(cmd.output, text);
    fmt::print(stderr, "wrote {}\n", cmd.output);
  }
  return 0;
}

}  // namespace

void register_report(CLI::App& app, int* exit_code) {
  auto cmd = std::make_shared<ReportCmd>();
  auto* sub = app.add_subcommand("report", "Markdown report of bench results: scaling, best-for verdicts; dashboards");
  sub->add_option("FILES", cmd->files, "Results files (.json or .jsonl)")->required();
  sub->add_option("-o,--output", cmd->output, "Write here instead of stdout");
  sub->add_option("--format", cmd->format,
                  "md (the report), github-bigger / github-smaller (github-action-benchmark), bmf (Bencher)")
      ->capture_default_str();
  sub->add_option("--python", cmd->python, "The Python that draws the plots (with matplotlib)")->capture_default_str();
  sub->add_flag("--no-plots", cmd->no_plots, "No charts beside the report (-o only)");
  sub->callback([cmd, exit_code, sub] {
    cmd->python_given = sub->count("--python") > 0;
    *exit_code = run_report(*cmd);
  });
}

}  // namespace effarch::cli
