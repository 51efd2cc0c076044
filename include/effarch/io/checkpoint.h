#pragma once
// A Hugging Face checkpoint's tensors, across shards: model.safetensors, or the shards named by
// model.safetensors.index.json, or (no index) every *.safetensors in the folder.

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "effarch/io/safetensors.h"

namespace effarch::io {

class TensorStore {
 public:
  // A checkpoint folder. Errors name the folder, the index, the shard and the tensor.
  static TensorStore open_folder(const std::filesystem::path& dir);
  // A single .safetensors file.
  static TensorStore open_file(const std::filesystem::path& file);

  const std::filesystem::path& root() const { return root_; }
  const std::vector<SafetensorsFile>& files() const { return files_; }
  bool has_index() const { return has_index_; }
  std::vector<std::string> names() const;  // sorted
  size_t size() const { return where_.size(); }
  const TensorInfo* find(const std::string& name) const;
  const SafetensorsFile& file_of(const std::string& name) const;  // throws CheckpointError
  at::Tensor view(const std::string& name) const { return file_of(name).view(name); }
  at::Tensor load(const std::string& name, at::ScalarType dtype, at::Device device) const {
    return file_of(name).load(name, dtype, device);
  }

 private:
  std::filesystem::path root_;
  bool has_index_ = false;
  std::vector<SafetensorsFile> files_;
  std::map<std::string, size_t> where_;  // tensor name -> index into files_
};

// The files of a checkpoint folder that the loader reads its weights from, or would without an
// index: model.safetensors.index.json (where present) and every *.safetensors entry, sorted (one
// that is not a file is opened, and refused by name, like a broken one). effarch init --force
// removes them before writing a checkpoint over the folder.
std::vector<std::filesystem::path> weight_files(const std::filesystem::path& dir);

// Writes model.safetensors.index.json for shards written by effarch init.
void write_index(const std::filesystem::path& dir, const std::map<std::string, std::string>& weight_map,
                 uint64_t total_size);

}  // namespace effarch::io
