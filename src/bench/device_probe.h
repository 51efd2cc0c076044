#pragma once
// Device helpers for the benchmark (internal): synchronisation, allocator statistics, process
// memory, memory limits, and classifying an exception as out-of-memory.

#include <cstdint>
#include <exception>
#include <string>

#include <c10/core/Device.h>

namespace effarch::bench::detail {

void synchronize(const c10::Device& device);
double now_s();  // steady clock, seconds

// On the CPU the benchmark installs a counting allocator in front of ATen's (its live and peak
// bytes are exact, and it can enforce a limit by throwing c10::OutOfMemoryError). Idempotent.
void install_cpu_counting_allocator();

struct MemorySnapshot {
  uint64_t allocated = 0, reserved = 0;            // CUDA caching allocator, or the CPU counting allocator
  uint64_t peak_allocated = 0, peak_reserved = 0;  // since the last reset
  uint64_t rss = 0, peak_rss = 0;                  // the process (VmRSS, VmHWM)
};
// Empties the allocator's cache and resets its peaks (CUDA) / the process's high-water mark (CPU).
void reset_peaks(const c10::Device& device);
MemorySnapshot memory(const c10::Device& device);
uint64_t device_total_memory(const c10::Device& device);

// Caps what the CPU counting allocator or the CUDA caching allocator (memory fraction) may hold to
// `bytes` beyond what is in use now; 0 removes the cap.
void set_memory_limit(const c10::Device& device, uint64_t bytes);

// "oom" for allocation failures (CUDA OOM, CPU allocator failures, std::bad_alloc), else "error".
std::string classify(const std::exception& e);
// The exception's message without the C++ backtrace that c10 errors carry.
std::string message(const std::exception& e);

}  // namespace effarch::bench::detail
