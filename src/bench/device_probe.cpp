// Device helpers for the benchmark: see device_probe.h.

#include "device_probe.h"

#include <atomic>
#include <cctype>
#include <chrono>
#include <fstream>
#include <mutex>
#include <new>
#include <sstream>
#include <unordered_map>

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/util/Exception.h>

#ifdef EFFARCH_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <cuda_runtime_api.h>
#endif

#include "effarch/common/error.h"

namespace effarch::bench::detail {
namespace {

// A field of /proc/self/status in bytes (the kernel prints kB).
uint64_t proc_status_bytes(const std::string& field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) {
      std::istringstream ss(line.substr(field.size() + 1));
      uint64_t kb = 0;
      ss >> kb;
      return kb * 1024;
    }
  }
  return 0;
}

// Counts the bytes ATen holds on the CPU; the allocation itself is the original allocator's.
// A block's context is its own address, as ATen's CPU allocator gives them: oneDNN (bf16 GEMMs)
// takes raw blocks through raw_allocate()/raw_deallocate(), which require exactly that, so the
// size and the original deleter of each live block are kept in a table beside it.
class CountingCpuAllocator final : public c10::Allocator {
 public:
  explicit CountingCpuAllocator(c10::Allocator* base) : base_(base) {}
  // The allocator that allocates. Blocks allocated through an earlier base keep their own deleter.
  void set_base(c10::Allocator* base) { base_ = base; }

  c10::DataPtr allocate(size_t n) override {
    const uint64_t now = live_.fetch_add(n) + n;
    const uint64_t limit = limit_.load();
    if (limit != 0 && now > limit) {
      live_.fetch_sub(n);
      TORCH_CHECK_WITH(OutOfMemoryError, false, "CPU out of memory: tried to allocate ", n, " bytes with ", now - n,
                       " in use, over the benchmark's --memory-limit (", limit, " bytes in all)");
    }
    c10::DataPtr inner;
    try {
      inner = base_->allocate(n);
    } catch (...) {  // the allocator refused (out of memory): nothing is held, nor was at its peak
      live_.fetch_sub(n);
      throw;
    }
    uint64_t peak = peak_.load();
    while (now > peak && !peak_.compare_exchange_weak(peak, now)) {
    }
    void* data = inner.get();
    const c10::Device device = inner.device();
    const c10::DeleterFnPtr free_fn = inner.get_deleter();
    if (data == nullptr || inner.get_context() != data || free_fn == nullptr) {
      // Not a plain block (an allocator of another kind): wrap it; raw_allocate() then refuses.
      auto* ctx = new Wrapped{std::move(inner), n, this};
      return {data, ctx, &release_wrapped, device};
    }
    inner.release_context();  // freed by free_fn from now on
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      auto [it, fresh] = blocks_.try_emplace(data, Block{n, free_fn});
      if (!fresh) {  // the address came back: its earlier block was freed past this allocator (after a scope)
        live_.fetch_sub(it->second.n);
        it->second = Block{n, free_fn};
      }
    }
    return {data, data, &release_block, device};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &release_block; }
  void copy_data(void* dest, const void* src, std::size_t count) const override { default_copy_data(dest, src, count); }

  uint64_t live() const { return live_.load(); }
  uint64_t peak() const { return peak_.load(); }
  void reset_peak() { peak_.store(live_.load()); }
  void set_limit(uint64_t bytes) { limit_.store(bytes); }

 private:
  struct Block {
    size_t n;
    c10::DeleterFnPtr free_fn;  // the original allocator's
  };
  struct Wrapped {
    c10::DataPtr inner;
    size_t n;
    CountingCpuAllocator* owner;
  };
  static CountingCpuAllocator* self();
  static void release_block(void* p) {
    CountingCpuAllocator* a = self();
    c10::DeleterFnPtr free_fn = nullptr;
    {
      const std::lock_guard<std::mutex> lock(a->mutex_);
      auto it = a->blocks_.find(p);
      if (it != a->blocks_.end()) {
        a->live_.fetch_sub(it->second.n);
        free_fn = it->second.free_fn;
        a->blocks_.erase(it);
      }
    }
    if (free_fn != nullptr) free_fn(p);
  }
  static void release_wrapped(void* p) {
    auto* held = static_cast<Wrapped*>(p);
    held->owner->live_.fetch_sub(held->n);
    delete held;  // the original allocator frees the memory
  }
  c10::Allocator* base_;
  std::atomic<uint64_t> live_{0}, peak_{0}, limit_{0};
  std::mutex mutex_;
  std::unordered_map<void*, Block> blocks_;
};

// Created once and never destroyed: tensors it allocated may outlive any scope (their deleter
// counts the bytes back). `counting` is set only while a CpuCountingScope is active.
CountingCpuAllocator* counting_instance() {
  static auto* instance = new CountingCpuAllocator(c10::GetCPUAllocator());
  return instance;
}
CountingCpuAllocator* CountingCpuAllocator::self() { return counting_instance(); }
CountingCpuAllocator* counting = nullptr;

}  // namespace

CpuCountingScope::CpuCountingScope() {
  if (counting != nullptr) return;  // nested
  previous_ = c10::GetCPUAllocator();
  CountingCpuAllocator* c = counting_instance();
  c->set_base(previous_);
  // The lowest priority that takes is the current allocator's own: restoring at it leaves ATen's
  // registry as it was.
  for (int p = 0; p <= 255; ++p) {
    c10::SetCPUAllocator(c, static_cast<uint8_t>(p));
    if (c10::GetCPUAllocator() == c) {
      priority_ = static_cast<uint8_t>(p);
      break;
    }
  }
  counting = c;
}

CpuCountingScope::~CpuCountingScope() {
  if (previous_ == nullptr) return;
  c10::SetCPUAllocator(previous_, priority_);
  counting->set_limit(0);
  counting = nullptr;
}

std::string parse_nvidia_driver_version(const std::string& line) {
  const size_t module = line.find("Kernel Module");
  if (module == std::string::npos) return "";
  std::istringstream ss(line.substr(module + 13));
  std::string token;
  while (ss >> token) {
    if (std::isdigit(static_cast<unsigned char>(token.front())) && token.find('.') != std::string::npos) return token;
  }
  return "";
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void synchronize(const c10::Device& device) {
#ifdef EFFARCH_WITH_CUDA
  if (device.is_cuda()) c10::cuda::device_synchronize();
#else
  (void)device;
#endif
}

void reset_peaks(const c10::Device& device) {
#ifdef EFFARCH_WITH_CUDA
  if (device.is_cuda()) {
    c10::cuda::CUDACachingAllocator::emptyCache();
    c10::cuda::CUDACachingAllocator::resetPeakStats(device.index() < 0 ? 0 : device.index());
    return;
  }
#endif
  (void)device;
  if (counting != nullptr) counting->reset_peak();
  std::ofstream clear("/proc/self/clear_refs");
  clear << "5";  // resets VmHWM to the current RSS
}

MemorySnapshot memory(const c10::Device& device) {
  MemorySnapshot m;
  m.rss = proc_status_bytes("VmRSS");
  m.peak_rss = proc_status_bytes("VmHWM");
#ifdef EFFARCH_WITH_CUDA
  if (device.is_cuda()) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index() < 0 ? 0 : device.index());
    const auto agg = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
    m.allocated = static_cast<uint64_t>(stats.allocated_bytes[agg].current);
    m.peak_allocated = static_cast<uint64_t>(stats.allocated_bytes[agg].peak);
    m.reserved = static_cast<uint64_t>(stats.reserved_bytes[agg].current);
    m.peak_reserved = static_cast<uint64_t>(stats.reserved_bytes[agg].peak);
  }
#endif
  if (!device.is_cuda() && counting != nullptr) {
    m.allocated = m.reserved = counting->live();
    m.peak_allocated = m.peak_reserved = counting->peak();
  }
  return m;
}

uint64_t device_total_memory(const c10::Device& device) {
#ifdef EFFARCH_WITH_CUDA
  if (device.is_cuda()) {
    // The named device's properties: cudaMemGetInfo would report the current device instead.
    const c10::DeviceIndex index = device.index() < 0 ? c10::cuda::current_device() : device.index();
    return static_cast<uint64_t>(at::cuda::getDeviceProperties(index)->totalGlobalMem);
  }
#endif
  (void)device;
  std::ifstream in("/proc/meminfo");
  std::string key;
  uint64_t kb = 0;
  while (in >> key >> kb) {
    if (key == "MemTotal:") return kb * 1024;
    in.ignore(256, '\n');
  }
  return 0;
}

uint64_t available_host_memory() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  uint64_t kb = 0;
  while (in >> key >> kb) {
    if (key == "MemAvailable:") return kb * 1024;
    in.ignore(256, '\n');
  }
  return 0;
}

void set_memory_limit(const c10::Device& device, uint64_t bytes) {
#ifdef EFFARCH_WITH_CUDA
  if (device.is_cuda()) {
    const int index = device.index() < 0 ? 0 : device.index();
    const double total = static_cast<double>(device_total_memory(device));
    if (bytes == 0 || total <= 0) {
      c10::cuda::CUDACachingAllocator::setMemoryFraction(1.0, index);
    } else {
      const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(index);
      const auto agg = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
      const double used = static_cast<double>(stats.reserved_bytes[agg].current);
      c10::cuda::CUDACachingAllocator::setMemoryFraction(std::min(1.0, (used + static_cast<double>(bytes)) / total),
                                                         index);
    }
    return;
  }
#endif
  (void)device;
  if (counting != nullptr) counting->set_limit(bytes == 0 ? 0 : counting->live() + bytes);
}

PointStatus classify(const std::exception& e) { return is_out_of_memory(e) ? PointStatus::Oom : PointStatus::Error; }

}  // namespace effarch::bench::detail
