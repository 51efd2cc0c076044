// Memory-mapped safetensors reader: the whole file is validated by parse_safetensors before any
// tensor is handed out; tensors are views on the mapping that keep it alive.

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "effarch/common/error.h"
#include "effarch/io/safetensors.h"

namespace effarch::io {

struct SafetensorsFile::Mapping {
  void* address = nullptr;
  uint64_t size = 0;
  ~Mapping() {
    if (address != nullptr && address != MAP_FAILED) munmap(address, size);
  }
};

SafetensorsFile SafetensorsFile::open(const std::filesystem::path& path) {
  const std::string origin = path.string();
  const int fd = ::open(origin.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw FormatError(fmt::format("{}: cannot open: {}", origin, std::strerror(errno)));
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw FormatError(fmt::format("{}: not a regular file", origin));
  }
  auto mapping = std::make_shared<Mapping>();
  mapping->size = static_cast<uint64_t>(st.st_size);
  if (mapping->size == 0) {
    ::close(fd);
    throw FormatError(fmt::format("{}: file is empty", origin));
  }
  mapping->address = mmap(nullptr, mapping->size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_errno = errno;
  ::close(fd);
  if (mapping->address == MAP_FAILED) {
    mapping->address = nullptr;
    throw FormatError(fmt::format("{}: mmap failed: {}", origin, std::strerror(map_errno)));
  }

  SafetensorsFile file;
  file.path_ = path;
  file.header_ = std::make_shared<const SafetensorsHeader>(
      parse_safetensors(static_cast<const uint8_t*>(mapping->address), mapping->size, origin));
  auto index = std::make_shared<std::map<std::string, size_t>>();
  for (size_t i = 0; i < file.header_->tensors.size(); ++i) index->emplace(file.header_->tensors[i].name, i);
  file.index_ = std::move(index);
  file.mapping_ = std::move(mapping);
  return file;
}

uint64_t SafetensorsFile::file_size() const { return mapping_->size; }

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
  auto it = index_->find(name);
  return it == index_->end() ? nullptr : &header_->tensors[it->second];
}

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  const TensorInfo* t = find(name);
  if (t == nullptr) throw CheckpointError(fmt::format("{}: no tensor named '{}'", path_.string(), name));
  return *t;
}

at::Tensor SafetensorsFile::view(const std::string& name) const {
  const TensorInfo& t = info(name);
  const auto options = at::TensorOptions().dtype(to_scalar_type(t.dtype)).device(at::kCPU);
  if (t.numel == 0) return at::empty(t.shape, options);
  auto* data = static_cast<uint8_t*>(mapping_->address) + header_->data_offset + t.data_begin;
  if (reinterpret_cast<uintptr_t>(data) % dtype_size(t.dtype) != 0) {
    // Unaligned data (legal in the format, rare in practice): copy into aligned memory.
    at::Tensor copy = at::empty(t.shape, options);
    std::memcpy(copy.data_ptr(), data, t.nbytes());
    return copy;
  }
  auto keep_alive = mapping_;
  return at::from_blob(data, t.shape, [keep_alive](void*) {}, options);
}

at::Tensor SafetensorsFile::load(const std::string& name, at::ScalarType dtype, at::Device device) const {
  at::Tensor t = view(name);
  if (t.scalar_type() == dtype && device.is_cpu()) return t;
  return t.to(device, dtype, /*non_blocking=*/false, /*copy=*/true);
}

}  // namespace effarch::io
