#pragma once
// Energy counters for bench: NVIDIA's NVML total-energy counter on a GPU (the driver's
// libnvidia-ml, loaded at run time with dlopen so effarch runs where it is absent) and Linux
// RAPL (powercap) package counters on the CPU; the per-token arithmetic. docs/bench.md, "Energy".

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <c10/core/Device.h>
#include <nlohmann/json.hpp>

namespace effarch::bench {

// A cumulative energy counter, or why there is none.
struct EnergyCounter {
  std::string source;  // "nvml", "rapl"; "" when unavailable
  std::string unavailable_reason;  // why not, when source is ""
  std::optional<double> power_limit_w;  // NVML: the GPU's power management limit
  // Joules since an arbitrary origin (wraparound handled inside); nullopt if a read fails.
  std::function<std::optional<double>()> read_joules;
  bool available() const { return !source.empty() && read_joules != nullptr; }
  // {"source", "power_limit_w"} or {"source": null, "unavailable_reason"}: environment.energy.
  nlohmann::json describe() const;
};

// NVML for the GPU of `nvml_index`, from `library` (the driver's "libnvidia-ml.so.1"). Without the
// library, a symbol, or a device, the counter is unavailable with the reason (dlerror, NVML's
// return code); nothing throws.
EnergyCounter open_nvml(unsigned nvml_index, const std::string& library = "libnvidia-ml.so.1");

// One RAPL domain: `root`/intel-rapl:N (top-level package domains only: their sub-domains, core
// and uncore, are parts of them).
struct RaplDomain {
  std::string name;    // "intel-rapl:0"
  std::string energy_path;  // .../energy_uj
  uint64_t max_energy_range_uj = 0;
};
// The package domains under `root` (a sysfs powercap folder, /sys/class/powercap by default;
// tests pass a fixture), with the reason in `why_not` when there is none or one is unreadable
// (energy_uj is root-only on many kernels).
std::vector<RaplDomain> find_rapl_domains(const std::string& root, std::string* why_not);
// The counter summing those domains' energy_uj, each delta taken modulo max_energy_range_uj.
EnergyCounter open_rapl(const std::string& root = "/sys/class/powercap");
// The microjoules from `before` to `after` of a counter that wraps at `max_range` (after <
// before: it wrapped once).
uint64_t rapl_delta_uj(uint64_t before, uint64_t after, uint64_t max_range);

// The counter for a run on `device`: NVML for a CUDA device (its index, 0 when none is named;
// NVML's order is taken to be CUDA's), else RAPL.
EnergyCounter open_energy_counter(const c10::Device& device);

// What a point consumed, summed over its timed runs.
struct EnergyResult {
  std::string source;
  double prefill_joules = 0, decode_joules = 0;
  double joules_per_prefill_token = 0;
  std::optional<double> joules_per_decode_token;  // absent when nothing is decoded
  double average_power_w = 0;                     // (prefill + decode joules) / their seconds
  bool operator==(const EnergyResult& o) const;
};
void to_json(nlohmann::json& j, const EnergyResult& e);
void from_json(const nlohmann::json& j, EnergyResult& e);
// The per-token figures: joules over tokens per phase, the average power over both phases' time.
EnergyResult energy_figures(const std::string& source, double prefill_joules, double prefill_tokens,
                            double prefill_seconds, double decode_joules, double decode_tokens,
                            double decode_seconds);

}  // namespace effarch::bench
