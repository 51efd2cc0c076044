// Streaming safetensors writer: header from declarations, data tensor by tensor, then an atomic
// rename so a crash never leaves a half-written file under the final name.

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <unistd.h>

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "effarch/common/error.h"
#include "effarch/io/safetensors.h"

namespace effarch::io {
namespace {

uint64_t entry_bytes(const SafetensorsWriter::Entry& e) {
  uint64_t n = dtype_size(e.dtype);
  for (int64_t d : e.shape) n *= static_cast<uint64_t>(d);
  return n;
}

// The JSON header, padded with spaces to a multiple of 8 so data starts aligned.
std::string build_header(const std::vector<SafetensorsWriter::Entry>& entries,
                         const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& e : entries) {
    const uint64_t n = entry_bytes(e);
    header[e.name] = {{"dtype", std::string(safetensors_name(e.dtype))}, {"shape", e.shape}, {"data_offsets", {offset, offset + n}}};
    offset += n;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

}  // namespace

struct SafetensorsWriter::State {
  std::filesystem::path path;
  std::filesystem::path tmp_path;
  std::vector<Entry> entries;
  size_t next = 0;
  std::FILE* out = nullptr;
  bool finished = false;
};

SafetensorsWriter::SafetensorsWriter(std::filesystem::path path, std::vector<Entry> entries,
                                     std::map<std::string, std::string> metadata)
    : state_(std::make_unique<State>()) {
  state_->path = std::move(path);
  state_->tmp_path = state_->path;
  state_->tmp_path += ".partial";
  std::vector<std::string> names;
  for (const auto& e : entries) names.push_back(e.name);
  std::sort(names.begin(), names.end());
  if (auto dup = std::adjacent_find(names.begin(), names.end()); dup != names.end()) {
    throw UsageError(fmt::format("{}: tensor '{}' declared twice", state_->path.string(), *dup));
  }
  // Place wider element types first so every tensor stays aligned to its element size.
  std::stable_sort(entries.begin(), entries.end(),
                   [](const Entry& a, const Entry& b) { return dtype_size(a.dtype) > dtype_size(b.dtype); });
  state_->entries = std::move(entries);
  const std::string header = build_header(state_->entries, metadata);
  state_->out = std::fopen(state_->tmp_path.c_str(), "wb");
  if (state_->out == nullptr) {
    throw Error(fmt::format("{}: cannot create: {}", state_->tmp_path.string(), std::strerror(errno)));
  }
  uint8_t len[8];
  uint64_t n = header.size();
  for (int k = 0; k < 8; ++k) len[k] = static_cast<uint8_t>(n >> (8 * k));
  if (std::fwrite(len, 1, 8, state_->out) != 8 || std::fwrite(header.data(), 1, header.size(), state_->out) != header.size()) {
    throw Error(fmt::format("{}: write failed: {}", state_->tmp_path.string(), std::strerror(errno)));
  }
}

SafetensorsWriter::~SafetensorsWriter() {
  if (state_ && state_->out != nullptr) {
    std::fclose(state_->out);
    if (!state_->finished) std::filesystem::remove(state_->tmp_path);
  }
}

void SafetensorsWriter::write(const std::string& name, const at::Tensor& tensor) {
  // Tensors may arrive in any order; the file is written in declaration order, so find it.
  auto& entries = state_->entries;
  if (state_->next >= entries.size() || entries[state_->next].name != name) {
    auto it = std::find_if(entries.begin() + static_cast<std::ptrdiff_t>(state_->next), entries.end(),
                           [&](const Entry& e) { return e.name == name; });
    if (it == entries.end()) {
      throw UsageError(fmt::format("{}: tensor '{}' was not declared or was already written", state_->path.string(), name));
    }
    throw UsageError(fmt::format("{}: tensor '{}' written out of order (expected '{}')", state_->path.string(), name,
                                 entries[state_->next].name));
  }
  const Entry& e = entries[state_->next];
  if (tensor.sizes().vec() != e.shape || tensor.scalar_type() != to_scalar_type(e.dtype)) {
    throw UsageError(fmt::format("{}: tensor '{}' is {} [{}] but was declared {} [{}]", state_->path.string(), name,
                                 c10::toString(tensor.scalar_type()), fmt::join(tensor.sizes(), ", "),
                                 safetensors_name(e.dtype), fmt::join(e.shape, ", ")));
  }
  at::Tensor cpu = tensor.to(at::kCPU).contiguous();
  const size_t n = static_cast<size_t>(entry_bytes(e));
  if (n > 0 && std::fwrite(cpu.data_ptr(), 1, n, state_->out) != n) {
    throw Error(fmt::format("{}: write failed: {}", state_->tmp_path.string(), std::strerror(errno)));
  }
  ++state_->next;
}

void SafetensorsWriter::finish() {
  if (state_->next != state_->entries.size()) {
    throw UsageError(fmt::format("{}: finish() before tensor '{}' was written", state_->path.string(),
                                 state_->entries[state_->next].name));
  }
  const bool ok = std::fflush(state_->out) == 0 && fsync(fileno(state_->out)) == 0;
  std::fclose(state_->out);
  state_->out = nullptr;
  if (!ok) throw Error(fmt::format("{}: write failed: {}", state_->tmp_path.string(), std::strerror(errno)));
  std::filesystem::rename(state_->tmp_path, state_->path);
  state_->finished = true;
}

uint64_t safetensors_file_size(const std::vector<SafetensorsWriter::Entry>& entries,
                               const std::map<std::string, std::string>& metadata) {
  uint64_t total = 8 + build_header(entries, metadata).size();
  for (const auto& e : entries) total += entry_bytes(e);
  return total;
}

void save_safetensors(const std::filesystem::path& path, const std::map<std::string, at::Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::vector<SafetensorsWriter::Entry> entries;
  for (const auto& [name, t] : tensors) {
    auto dtype = dtype_from_scalar_type(t.scalar_type());
    if (!dtype) throw UsageError(fmt::format("{}: tensor '{}' has unsupported type {}", path.string(), name, c10::toString(t.scalar_type())));
    entries.push_back({name, *dtype, t.sizes().vec()});
  }
  SafetensorsWriter writer(path, entries, metadata);
  // Declaration order after the writer's stable sort: by element size, then name.
  std::vector<std::pair<size_t, std::string>> order;
  for (const auto& e : entries) order.emplace_back(dtype_size(e.dtype), e.name);
  std::stable_sort(order.begin(), order.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  for (const auto& [size, name] : order) writer.write(name, tensors.at(name));
  writer.finish();
}

}  // namespace effarch::io
