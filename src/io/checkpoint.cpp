#include "effarch/io/checkpoint.h"

#include <algorithm>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "effarch/common/error.h"
#include "effarch/io/strict_json.h"

namespace effarch::io {
namespace fs = std::filesystem;

namespace {

constexpr const char* kIndexName = "model.safetensors.index.json";

void add_file(std::vector<SafetensorsFile>& files, std::map<std::string, size_t>& where, SafetensorsFile file) {
  const size_t slot = files.size();
  for (const auto& t : file.tensors()) {
    auto [it, inserted] = where.emplace(t.name, slot);
    if (!inserted) {
      throw CheckpointError(fmt::format("{}: tensor '{}' is in both {} and {}", file.path().parent_path().string(), t.name,
                                        files[it->second].path().filename().string(), file.path().filename().string()));
    }
  }
  files.push_back(std::move(file));
}

}  // namespace

TensorStore TensorStore::open_file(const fs::path& file) {
  TensorStore store;
  store.root_ = file.parent_path();
  add_file(store.files_, store.where_, SafetensorsFile::open(file));
  return store;
}

std::vector<fs::path> weight_files(const fs::path& dir) {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const fs::path& p = entry.path();
    if (p.extension() == ".safetensors" || p.filename() == kIndexName) files.push_back(p);  // opening says what is wrong
  }
  std::sort(files.begin(), files.end());
  return files;
}

TensorStore TensorStore::open_folder(const fs::path& dir) {
  if (!fs::is_directory(dir)) throw CheckpointError(fmt::format("{}: not a checkpoint folder", dir.string()));
  TensorStore store;
  store.root_ = dir;
  // model.safetensors alone where it is there, as transformers reads the folder (before an index,
  // and beside other files: a Mistral release keeps its own consolidated.safetensors there).
  if (fs::exists(dir / "model.safetensors")) {
    add_file(store.files_, store.where_, SafetensorsFile::open(dir / "model.safetensors"));
    return store;
  }
  const fs::path index_path = dir / kIndexName;
  if (fs::exists(index_path)) {
    store.has_index_ = true;
    const std::string origin = index_path.string();
    nlohmann::json index = read_json_file(index_path);  // duplicate keys = a tensor listed twice
    if (!index.is_object()) throw FormatError(fmt::format("{}: must be a JSON object", origin));
    auto wm = index.find("weight_map");
    if (wm == index.end() || !wm->is_object()) {
      throw FormatError(fmt::format("{}: missing 'weight_map' object (tensor name -> shard file)", origin));
    }
    if (wm->empty()) throw FormatError(fmt::format("{}: 'weight_map' is empty", origin));
    std::map<std::string, std::vector<std::string>> by_shard;  // shard -> tensor names
    for (const auto& [name, shard] : wm->items()) {
      if (!shard.is_string()) {
        throw FormatError(fmt::format("{}: weight_map entry '{}' must name a shard file, got {}", origin, name, shard.dump()));
      }
      const auto& file = shard.get_ref<const std::string&>();
      if (file.empty() || file.find('/') != std::string::npos || file.find('\\') != std::string::npos || file == "." ||
          file == "..") {
        throw FormatError(fmt::format("{}: weight_map entry '{}' names '{}', which is not a file name in the folder",
                                      origin, name, file));
      }
      by_shard[file].push_back(name);
    }
    for (const auto& [shard, listed] : by_shard) {
      const fs::path shard_path = dir / shard;
      if (!fs::exists(shard_path)) {
        throw CheckpointError(fmt::format("{}: shard '{}' is missing (it should hold {} tensors, e.g. '{}')", origin,
                                          shard, listed.size(), listed.front()));
      }
      SafetensorsFile file = SafetensorsFile::open(shard_path);
      for (const auto& name : listed) {
        if (file.find(name) == nullptr) {
          throw CheckpointError(fmt::format("{}: tensor '{}' is listed in shard '{}' but the shard does not contain it",
                                            origin, name, shard));
        }
      }
      for (const auto& t : file.tensors()) {
        const auto it = wm->find(t.name);
        if (it == wm->end() || it->get<std::string>() != shard) {
          throw CheckpointError(fmt::format("{}: shard '{}' holds tensor '{}' which the index {}", origin, shard, t.name,
                                            it == wm->end() ? "does not list" : "assigns to '" + it->get<std::string>() + "'"));
        }
      }
      add_file(store.files_, store.where_, std::move(file));
    }
    return store;
  }
  // Neither: every *.safetensors in the folder.
  const std::vector<fs::path> shards = weight_files(dir);
  if (shards.empty()) {
    std::string pickles;
    for (const auto& entry : fs::directory_iterator(dir)) {
      const fs::path& p = entry.path();
      if (p.extension() == ".bin" || p.extension() == ".pt" || p.extension() == ".pth") {
        pickles = fmt::format(" ({} is a PyTorch pickle, which effarch does not read: save the model with "
                              "save_pretrained(..., safe_serialization=True) or convert it to safetensors)",
                              p.filename().string());
        break;
      }
    }
    throw CheckpointError(
        fmt::format("{}: no model.safetensors, {} or *.safetensors files{}", dir.string(), kIndexName, pickles));
  }
  for (const auto& s : shards) add_file(store.files_, store.where_, SafetensorsFile::open(s));
  return store;
}

std::vector<std::string> TensorStore::names() const {
  std::vector<std::string> out;
  out.reserve(where_.size());
  for (const auto& [name, slot] : where_) out.push_back(name);
  return out;
}

const TensorInfo* TensorStore::find(const std::string& name) const {
  auto it = where_.find(name);
  return it == where_.end() ? nullptr : files_[it->second].find(name);
}

const SafetensorsFile& TensorStore::file_of(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) throw CheckpointError(fmt::format("{}: no tensor named '{}'", root_.string(), name));
  return files_[it->second];
}

void write_index(const fs::path& dir, const std::map<std::string, std::string>& weight_map, uint64_t total_size) {
  nlohmann::ordered_json index;
  index["metadata"] = {{"total_size", total_size}};
  index["weight_map"] = weight_map;
  const fs::path path = dir / kIndexName;
  std::ofstream out(path);
  out << index.dump(2) << "\n";
  if (!out) throw Error(fmt::format("{}: write failed", path.string()));
}

}  // namespace effarch::io
