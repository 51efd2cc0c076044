#pragma once
// Safetensors: a header parser that validates everything before any tensor is touched, a reader
// that memory-maps the file and hands out at::Tensor views, and a streaming writer.
//
// File layout: [u64 little-endian N][N bytes of UTF-8 JSON header][data section]. The header maps
// tensor names to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the data
// section) and may hold "__metadata__", a string-to-string map.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "effarch/common/dtype.h"

namespace effarch::io {

// Upper bound on the JSON header: real checkpoints have headers of a few hundred KB.
constexpr uint64_t kMaxHeaderBytes = 100ull * 1024 * 1024;

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t data_begin = 0;  // offsets inside the data section
  uint64_t data_end = 0;
  uint64_t numel = 0;
  uint64_t nbytes() const { return data_end - data_begin; }
};

struct SafetensorsHeader {
  uint64_t header_bytes = 0;  // N: the JSON's length
  uint64_t data_offset = 0;   // 8 + N: where the data section starts in the file
  std::vector<TensorInfo> tensors;  // ordered by data_begin
  std::map<std::string, std::string> metadata;
};

// Validates the bytes of a whole file. `origin` (the path) starts every error message.
// Throws FormatError naming the tensor and the broken rule.
SafetensorsHeader parse_safetensors(const uint8_t* bytes, uint64_t size, const std::string& origin);

// A memory-mapped, validated safetensors file. Copies share the mapping.
class SafetensorsFile {
 public:
  static SafetensorsFile open(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return path_; }
  const std::vector<TensorInfo>& tensors() const { return header_->tensors; }
  const std::map<std::string, std::string>& metadata() const { return header_->metadata; }
  uint64_t file_size() const;
  const TensorInfo* find(const std::string& name) const;
  const TensorInfo& info(const std::string& name) const;  // throws naming file and tensor

  // A read-only CPU tensor on the mapping (F8 types as ATen's float8). Copied when the data is not
  // aligned to its element size. Do not write into it.
  at::Tensor view(const std::string& name) const;
  // The tensor converted to `dtype` on `device` (a view when nothing needs to change).
  at::Tensor load(const std::string& name, at::ScalarType dtype, at::Device device) const;

 private:
  struct Mapping;
  std::filesystem::path path_;
  std::shared_ptr<Mapping> mapping_;
  std::shared_ptr<const SafetensorsHeader> header_;
  std::shared_ptr<const std::map<std::string, size_t>> index_;
};

// Streaming writer: declare every tensor first (the header is written from the declarations),
// then write each tensor's data in declaration order. Holds one tensor in memory at a time.
class SafetensorsWriter {
 public:
  struct Entry {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
  };
  SafetensorsWriter(std::filesystem::path path, std::vector<Entry> entries,
                    std::map<std::string, std::string> metadata = {});
  ~SafetensorsWriter();
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

  // Writes the next declared tensor; its name, dtype and shape must match the declaration.
  void write(const std::string& name, const at::Tensor& tensor);
  // Checks every tensor was written, flushes and renames the temporary file into place.
  void finish();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Convenience: writes a whole map of tensors (sorted by name) in one call.
void save_safetensors(const std::filesystem::path& path, const std::map<std::string, at::Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// Bytes a file holding these entries occupies (header included), for sharding decisions.
uint64_t safetensors_file_size(const std::vector<SafetensorsWriter::Entry>& entries,
                               const std::map<std::string, std::string>& metadata = {});

}  // namespace effarch::io
