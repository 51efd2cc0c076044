// effarch inspect PATH: a safetensors file's tensors and metadata, or a checkpoint folder's
// tensors checked against its config. Exit 0 when valid, 1 with the problems listed otherwise.

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <optional>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "effarch/common/error.h"
#include "effarch/io/checkpoint.h"
#include "effarch/model/config.h"
#include "effarch/model/tensor_spec.h"

namespace effarch::cli {
namespace fs = std::filesystem;
namespace {

struct InspectOptions {
  std::string path;
  bool json = false;
  bool quiet = false;  // no per-tensor listing
};

// When `path` is a JSON file rather than a safetensors file (a config.json, a sharded checkpoint's
// index), what to pass instead; nullopt otherwise. The safetensors parser alone would report the
// text's first 8 bytes as an impossible header length. A safetensors file starts with its header's
// length (8 bytes, little-endian), so JSON text is told apart by that length not fitting the file.
std::optional<std::string> json_instead_of_safetensors(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::string head(4096, '\0');
  in.read(head.data(), static_cast<std::streamsize>(head.size()));
  head.resize(static_cast<size_t>(in.gcount()));
  const size_t first = head.find_first_not_of(" \t\r\n");
  if (first == std::string::npos || (head[first] != '{' && head[first] != '[')) return std::nullopt;
  std::error_code ec;
  const uint64_t size = fs::file_size(path, ec);
  if (!ec && size >= 8) {
    uint64_t header_length = 0;
    for (int i = 7; i >= 0; --i) header_length = (header_length << 8) | static_cast<unsigned char>(head[i]);
    if (header_length <= size - 8) return std::nullopt;  // a plausible safetensors header: let the parser judge
  }
  const std::string folder = path.has_parent_path() ? path.parent_path().string() : ".";
  const std::string name = path.filename().string();
  if (name.size() > 11 && name.substr(name.size() - 11) == ".index.json") {
    return fmt::format("{} is a sharded checkpoint's index (JSON), not a safetensors file: give its folder "
                       "(effarch inspect {}) to list and check every shard",
                       path.string(), folder);
  }
  if (name == "config.json") {
    return fmt::format("{} is a model config (JSON), not a safetensors file: `effarch inspect {}` checks the "
                       "checkpoint folder holding it against it, `effarch info {}` shows the model it describes",
                       path.string(), folder, path.string());
  }
  if (head.find("\"architectures\"") != std::string::npos || head.find("\"model_type\"") != std::string::npos) {
    return fmt::format("{} is a model config (JSON), not a safetensors file: `effarch info {}` shows the model it "
                       "describes; inspect takes a .safetensors file or a checkpoint folder (a config.json with its "
                       "safetensors)",
                       path.string(), path.string());
  }
  return fmt::format("{} is a JSON file, not a safetensors file: inspect takes a .safetensors file or a checkpoint "
                     "folder",
                     path.string());
}

nlohmann::json tensor_rows(const io::TensorStore& store) {
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& name : store.names()) {
    const auto* t = store.find(name);
    rows.push_back({{"name", name}, {"dtype", std::string(safetensors_name(t->dtype))}, {"shape", t->shape},
                    {"bytes", t->nbytes()}, {"file", store.file_of(name).path().filename().string()}});
  }
  return rows;
}

int run_inspect(const InspectOptions& opt) {
  const fs::path path(opt.path);
  if (!fs::exists(path)) throw UsageError(fmt::format("{}: no such file or folder", opt.path));
  const bool folder = fs::is_directory(path);
  if (!folder) {
    if (const auto instead = json_instead_of_safetensors(path)) throw UsageError(*instead);
  }
  io::TensorStore store = folder ? io::TensorStore::open_folder(path) : io::TensorStore::open_file(path);

  nlohmann::json out;
  out["path"] = opt.path;
  out["files"] = nlohmann::json::array();
  uint64_t total_bytes = 0;
  for (const auto& f : store.files()) {
    out["files"].push_back({{"file", f.path().filename().string()}, {"bytes", f.file_size()},
                            {"tensors", f.tensors().size()}, {"metadata", f.metadata()}});
    for (const auto& t : f.tensors()) total_bytes += t.nbytes();
  }
  out["tensors"] = tensor_rows(store);
  out["tensor_bytes"] = total_bytes;

  bool valid = true;
  std::optional<model::CheckpointCheck> check;
  if (folder && fs::exists(path / "config.json")) {
    const auto config = model::load_config(path / "config.json");
    check = model::check_checkpoint(config, store);
    valid = check->ok();
    nlohmann::json problems = nlohmann::json::array();
    for (const auto& p : check->problems) {
      problems.push_back({{"kind", model::kind_name(p.kind)}, {"tensor", p.tensor}, {"detail", p.detail}});
    }
    out["architecture"] = config.architecture;
    out["check"] = {{"ok", valid}, {"problems", problems}, {"ignored", check->ignored},
                    {"expected_found", check->resolved.size()}};
  }
  out["valid"] = valid;

  if (opt.json) {
    fmt::print("{}\n", out.dump(2));
    return valid ? 0 : 1;
  }
  for (const auto& f : out["files"]) {
    fmt::print("{}: {} tensors, {}\n", f["file"].get<std::string>(), f["tensors"].get<size_t>(),
               human_bytes(f["bytes"].get<uint64_t>()));
    for (const auto& [k, v] : f["metadata"].items()) fmt::print("  metadata {} = {}\n", k, v.get<std::string>());
  }
  if (!opt.quiet) {
    size_t name_w = 4;
    for (const auto& t : out["tensors"]) name_w = std::max(name_w, t["name"].get<std::string>().size());
    fmt::print("\n{:<{}}  {:<7}  {:<22}  {:>12}\n", "name", name_w, "dtype", "shape", "bytes");
    for (const auto& t : out["tensors"]) {
      fmt::print("{:<{}}  {:<7}  {:<22}  {:>12}\n", t["name"].get<std::string>(), name_w, t["dtype"].get<std::string>(),
                 fmt::format("[{}]", fmt::join(t["shape"].get<std::vector<int64_t>>(), ", ")),
                 group_digits(static_cast<int64_t>(t["bytes"].get<uint64_t>())));
    }
  }
  fmt::print("\n{} tensors, {} of tensor data\n", store.size(), human_bytes(total_bytes));
  if (check) {
    if (check->ok()) {
      fmt::print("checkpoint matches {} ({} expected tensors found{})\n", out["architecture"].get<std::string>(),
                 check->resolved.size(),
                 check->ignored.empty() ? "" : fmt::format(", {} harmless buffers ignored", check->ignored.size()));
    } else {
      fmt::print(stderr, "checkpoint does not match {}: {} problems\n", out["architecture"].get<std::string>(),
                 check->problems.size());
      for (const auto& p : out["check"]["problems"]) {
        std::string kind = p["kind"].get<std::string>();
        std::replace(kind.begin(), kind.end(), '_', ' ');  // "wrong shape", "wrong dtype"
        fmt::print(stderr, "  {} tensor '{}': {}\n", kind, p["tensor"].get<std::string>(),
                   p["detail"].get<std::string>());
      }
    }
  }
  return valid ? 0 : 1;
}

}  // namespace

void register_inspect(CLI::App& app, int* exit_code) {
  auto opt = std::make_shared<InspectOptions>();
  auto* cmd = app.add_subcommand("inspect", "List a .safetensors file's tensors and metadata, or check a checkpoint "
                                            "folder's tensors against its config.json");
  cmd->add_option("PATH", opt->path, "A .safetensors file or a checkpoint folder")->required();
  cmd->add_flag("--json", opt->json, "Print JSON");
  cmd->add_flag("-q,--quiet", opt->quiet, "Do not list every tensor");
  cmd->callback([opt, exit_code] { *exit_code = run_inspect(*opt); });
}

}  // namespace effarch::cli
