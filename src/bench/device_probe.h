#pragma once
// Device helpers for the benchmark (internal): synchronisation, allocator statistics, process
// memory, memory limits, and classifying an exception as out-of-memory.

#include <cstdint>
#include <exception>
#include <string>

#include <c10/core/Allocator.h>
#include <c10/core/Device.h>

#include "effarch/bench/results.h"

namespace effarch::bench::detail {

void synchronize(const c10::Device& device);

// The NVIDIA kernel module's version ("580.159.04") in the first line of
// /proc/driver/nvidia/version: the first token after "Kernel Module" that starts with a digit
// ("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build ..."; the
// proprietary module's line has no "for x86_64"). "" where there is none.
std::string parse_nvidia_driver_version(const std::string& line);
double now_s();  // steady clock, seconds

// On the CPU the benchmark measures through a counting allocator in front of ATen's (its live and
// peak bytes are exact, and it can enforce a limit by throwing c10::OutOfMemoryError). While a
// scope lives, the counting allocator is ATen's CPU allocator and memory() / reset_peaks() /
// set_memory_limit() use it; its destructor puts back the allocator that was there before, at
// the priority that allocator had (c10::SetAllocator only lets an equal or higher priority
// replace the current one, and has no getter: the scope finds the priority by trying upward).
// Scopes may nest (the inner one does nothing). Not thread-safe, like c10::SetAllocator: create
// it while no other thread allocates.
class CpuCountingScope {
 public:
  CpuCountingScope();
  ~CpuCountingScope();
  CpuCountingScope(const CpuCountingScope&) = delete;
  CpuCountingScope& operator=(const CpuCountingScope&) = delete;

 private:
  c10::Allocator* previous_ = nullptr;  // null: an outer scope is active
  uint8_t priority_ = 0;
};

struct MemorySnapshot {
  uint64_t allocated = 0, reserved = 0;            // CUDA caching allocator, or the CPU counting allocator
  uint64_t peak_allocated = 0, peak_reserved = 0;  // since the last reset
  uint64_t rss = 0, peak_rss = 0;                  // the process (VmRSS, VmHWM)
};
// Empties the allocator's cache and resets its peaks (CUDA) / the process's high-water mark (CPU).
void reset_peaks(const c10::Device& device);
MemorySnapshot memory(const c10::Device& device);
// The memory of `device`: the CUDA device it names (index -1: the current one), or the host's RAM.
uint64_t device_total_memory(const c10::Device& device);
// The host memory available to new allocations (/proc/meminfo's MemAvailable), in bytes; 0 if unknown.
uint64_t available_host_memory();

// Caps what the CPU counting allocator or the CUDA caching allocator (memory fraction) may hold to
// `bytes` beyond what is in use now; 0 removes the cap.
void set_memory_limit(const c10::Device& device, uint64_t bytes);

// Oom for allocation failures (effarch::is_out_of_memory), else Error.
PointStatus classify(const std::exception& e);

}  // namespace effarch::bench::detail
