// The results document: assembly, validation on read (version 1 files converted), atomic writing.

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <unistd.h>

#include <fmt/format.h>

#include "effarch/bench/bench.h"
#include "effarch/common/error.h"
#include "effarch/common/files.h"
#include "effarch/io/strict_json.h"

namespace effarch::bench {

nlohmann::json make_document(const SweepSpec& spec, const nlohmann::json& environment,
                             const std::vector<std::string>& command_line, const std::vector<Point>& points,
                             bool interrupted) {
  nlohmann::json doc;
  doc["schema"] = "effarch-bench";
  doc["schema_version"] = kSchemaVersion;
  doc["environment"] = environment;
  doc["command_line"] = command_line;
  doc["settings"] = {{"suite", spec.suite_name},
                     {"models", spec.models},
                     {"prompt_lengths", spec.prompt_lengths},
                     {"batch", spec.batches},
                     {"gen_tokens", spec.gen_tokens},
                     {"reps", spec.reps},
                     {"warmup", spec.warmup},
                     {"dtype", spec.dtype},
                     {"device", spec.device},
                     {"cuda_graphs", cuda_graphs_list_name(spec.cuda_graphs)},
                     {"pdl", pdl_list_name(spec.pdl)},
                     {"attention", spec.attention},
                     {"backend", backend_list_name(spec.backends)},
                     {"threads", spec.threads ? nlohmann::json(*spec.threads) : nlohmann::json(nullptr)},
                     {"modes", mode_names(spec.modes)},
                     {"memory_limit_bytes", spec.memory_limit ? nlohmann::json(*spec.memory_limit) : nlohmann::json(nullptr)}};
  doc["points"] = points;
  doc["scaling"] = scaling(points);
  doc["interrupted"] = interrupted;
  size_t failed = 0;
  for (const auto& p : points) failed += p.status != PointStatus::Ok;
  doc["summary"] = {{"points", points.size()}, {"failed", failed}};
  return doc;
}

namespace {

// Version 1 -> 2: the key gains backend (every version 1 run asked for the ops' default, "auto"),
// implementations (not recorded: {}, unknown) and weights (the run's dtype: the only format then);
// the checkpoint/random field `weights` becomes `weights_source`.
void upgrade_point_from_v1(nlohmann::json& p) {
  if (!p.is_object() || !p.contains("key") || !p["key"].is_object()) return;  // reported by the typed read
  nlohmann::json& k = p["key"];
  if (!k.contains("backend")) k["backend"] = "auto";
  if (!k.contains("implementations")) k["implementations"] = nlohmann::json::object();
  if (!k.contains("weights") && k.contains("dtype")) k["weights"] = k["dtype"];
  if (p.contains("weights") && !p.contains("weights_source")) {
    p["weights_source"] = p["weights"];
    p.erase("weights");
  }
}

// The points of a run, one JSON object per line; points of version 1 lack the key's backend.
nlohmann::json read_points_file(const std::string& path) {
  if (const std::string why = unreadable_reason(path); !why.empty()) throw FormatError(fmt::format("{}: {}", path, why));
  std::ifstream in(path);
  if (!in) throw FormatError(fmt::format("{}: cannot read", path));
  nlohmann::json doc = {{"schema", "effarch-bench"},
                        {"schema_version", kSchemaVersion},
                        {"environment", nlohmann::json::object()},
                        {"points", nlohmann::json::array()}};
  std::string line;
  for (size_t n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json p;
    try {
      p = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      throw FormatError(fmt::format("{}: line {} is not JSON: {}", path, n, e.what()));
    }
    if (p.is_object() && p.contains("key") && p["key"].is_object() && !p["key"].contains("backend")) {
      upgrade_point_from_v1(p);
    }
    doc["points"].push_back(std::move(p));
  }
  return doc;
}

}  // namespace

nlohmann::json read_document(const std::string& path) {
  nlohmann::json doc;
  if (std::filesystem::path(path).extension() == ".jsonl") {
    doc = read_points_file(path);
  } else {
    try {
      doc = io::read_json_file(path);
    } catch (const Error& e) {
      throw FormatError(fmt::format("{}: not a results file: {}", path, e.what()));
    }
  }
  auto fail = [&](const std::string& what) { throw FormatError(fmt::format("{}: {}", path, what)); };
  if (!doc.is_object() || doc.value("schema", "") != "effarch-bench") fail("not an effarch bench results file (schema)");
  if (!doc.contains("schema_version") || !doc["schema_version"].is_number_integer()) fail("no schema_version");
  const int version = doc["schema_version"].get<int>();
  if (version > kSchemaVersion) {
    fail(fmt::format("schema_version {} is newer than this effarch reads ({})", version, kSchemaVersion));
  }
  if (version < 1) fail(fmt::format("schema_version {} is unknown (1 to {})", version, kSchemaVersion));
  if (!doc.contains("points") || !doc["points"].is_array()) fail("no points list");
  if (!doc.contains("environment")) doc["environment"] = nlohmann::json::object();
  // A key without `pdl` was written before keys had it, when --pdl was a setting of the whole run
  // that the environment recorded.
  const nlohmann::json& env = doc["environment"];
  const bool run_pdl = env.is_object() && env.contains("programmatic_launch") &&
                       env["programmatic_launch"].is_string() && env["programmatic_launch"].get<std::string>() == "on";
  // Every point through the typed reader: what it accepts is what the rest of effarch uses.
  std::vector<Point> points;
  size_t i = 0;
  for (auto& p : doc["points"]) {
    if (!p.is_object() || !p.contains("key") || !p.contains("status")) fail(fmt::format("point {} has no key or status", i));
    if (version == 1) upgrade_point_from_v1(p);
    if (p["key"].is_object() && !p["key"].contains("pdl")) p["key"]["pdl"] = run_pdl ? "on" : "off";
    try {
      points.push_back(p.get<Point>());
    } catch (const std::exception& e) {
      fail(fmt::format("point {}{}: {}", i, p["key"].is_object() ? " (" + p["key"].dump() + ")" : "", e.what()));
    }
    ++i;
  }
  if (version < kSchemaVersion) {
    doc["converted_from_schema_version"] = version;
    doc["schema_version"] = kSchemaVersion;
    doc["points"] = points;
    if (doc.contains("scaling")) doc["scaling"] = scaling(points);
  }
  return doc;
}

std::vector<Point> points_of(const nlohmann::json& doc) { return doc.at("points").get<std::vector<Point>>(); }

namespace {

// The file a path names through its symlinks, a dangling one's target too (what a write makes).
std::filesystem::path through_links(std::filesystem::path p) {
  namespace fs = std::filesystem;
  std::error_code ec;
  for (int i = 0; i < 40 && fs::is_symlink(p, ec); ++i) {
    const fs::path target = fs::read_symlink(p, ec);
    if (ec) break;
    p = target.is_absolute() ? target : p.parent_path() / target;
  }
  return p;
}

std::string system_reason() { return errno != 0 ? std::strerror(errno) : "unknown reason"; }

}  // namespace

void check_output_path(const std::string& path, const std::string& option, OutputFolder folder) {
  namespace fs = std::filesystem;
  if (path.empty()) throw UsageError(fmt::format("{}: the path is empty", option));
  std::error_code ec;
  const fs::path target = through_links(path);
  if (fs::is_directory(target, ec)) throw UsageError(fmt::format("{}: {} is a directory", option, path));
  if (fs::exists(target, ec) && !fs::is_regular_file(target, ec)) {
    // Written by renaming a new file over it: a device (/dev/null) or pipe would be replaced.
    throw UsageError(fmt::format("{}: {} is not a regular file (a device, pipe or socket): give a file path", option,
                                 path));
  }
  const fs::path parent = target.has_parent_path() ? target.parent_path() : fs::path(".");
  if (!fs::exists(parent, ec)) {
    if (folder == OutputFolder::MustExist) {
      throw UsageError(fmt::format("{}: cannot write {}: the folder {} does not exist", option, path, parent.string()));
    }
    return;  // made when the file is written (write_atomically)
  }
  if (!fs::is_directory(parent, ec)) {
    throw UsageError(fmt::format("{}: cannot write {}: {} is not a folder", option, path, parent.string()));
  }
  const bool exists = fs::exists(target, ec);
  if (access(exists ? path.c_str() : parent.c_str(), exists ? W_OK : W_OK | X_OK) != 0) {
    throw UsageError(fmt::format("{}: cannot write {} (permission denied)", option, path));
  }
}

void write_atomically(const std::string& path, const std::string& text) {
  namespace fs = std::filesystem;
  const fs::path target = through_links(path);  // through a symlink, its target is replaced
  std::error_code ec;
  if (target.has_parent_path()) fs::create_directories(target.parent_path());
  const std::string tmp = target.string() + ".partial";
  errno = 0;
  std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
  if (!out) throw Error(fmt::format("cannot write {}: {}", tmp, system_reason()));
  out << text;
  out.flush();
  out.close();
  if (!out) {
    const std::string why = system_reason();
    fs::remove(tmp, ec);
    throw Error(fmt::format("writing {} failed: {}", target.string(), why));
  }
  fs::rename(tmp, target, ec);
  if (ec) {
    fs::remove(tmp, ec);
    throw Error(fmt::format("cannot replace {}: {}", target.string(), ec.message()));
  }
}

LineLog::LineLog(const std::string& path) : path_(path), out_(path, std::ios::trunc) {
  if (!out_) throw UsageError(fmt::format("-o: cannot write {}", path));
}

void LineLog::append(const std::string& line) {
  if (failed_) return;
  errno = 0;
  out_ << line << "\n";
  out_.flush();
  if (!out_) {
    failed_ = true;
    fmt::print(stderr, "warning: -o: writing {} failed ({}); the run goes on, and its results are printed and "
                       "written at the end\n", path_, system_reason());
  }
}

}  // namespace effarch::bench
