// effarch report RESULTS.json... [-o report.md] [--format md|github-bigger|github-smaller|bmf]:
// the Markdown report of bench results (docs/bench.md, "effarch report"), or their dashboard JSON.

#include <cstdlib>
#include <filesystem>

#include <fmt/format.h>

#include "commands.h"
#include "effarch/bench/bench.h"
#include "effarch/common/error.h"
#include "effarch/version.h"

namespace effarch::cli {
namespace {

struct ReportCmd {
  std::vector<std::string> files;
  std::string output;
  std::string format = "md";
  std::string python = "python3";
  bool no_plots = false;
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
  if (!fs::exists(tool)) return fmt::format("\n## Plots\n\nNone: {} is not here.\n", tool.string());
  const std::string probe = shell_quote(cmd.python) + " -c 'import matplotlib' > /dev/null 2>&1";
  if (std::system(probe.c_str()) != 0) {
    return fmt::format("\n## Plots\n\nNone: {} has no matplotlib (Debian: python3-matplotlib; --python picks "
                       "another).\n",
                       cmd.python);
  }
  const fs::path out = fs::path(cmd.output);
  const fs::path stem = out.parent_path() / out.stem();
  std::string files;
  for (const auto& f : cmd.files) files += " " + shell_quote(f);
  for (const char* ext : {"png", "svg"}) {
    const std::string run = fmt::format("{} {}{} --split -o {} > /dev/null", shell_quote(cmd.python),
                                        shell_quote(tool.string()), files,
                                        shell_quote(stem.string() + "." + ext));
    if (std::system(run.c_str()) != 0) return "\n## Plots\n\nNone: tools/plot_results.py failed.\n";
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
    if (!cmd.output.empty() && !cmd.no_plots) text += plots(cmd);
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
  sub->callback([cmd, exit_code] { *exit_code = run_report(*cmd); });
}

}  // namespace effarch::cli
