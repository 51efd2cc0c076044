// Energy counters: NVML through dlopen (no NVML or CUDA headers: the few types and functions
// bench calls are declared here), RAPL from sysfs, and the per-token arithmetic.

#include "effarch/bench/energy.h"

#include <dlfcn.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <regex>

#include <fmt/format.h>

namespace effarch::bench {

nlohmann::json EnergyCounter::describe() const {
  if (!available()) return {{"source", nullptr}, {"unavailable_reason", unavailable_reason}};
  nlohmann::json j = {{"source", source}};
  j["power_limit_w"] = power_limit_w ? nlohmann::json(*power_limit_w) : nlohmann::json(nullptr);
  return j;
}

// ---- NVML ----

namespace {

// NVML's C interface, as its documentation defines it: nvmlReturn_t is an enum (0 = success),
// nvmlDevice_t an opaque pointer; energy in millijoules since the driver loaded, limits in
// milliwatts.
using NvmlReturn = int;
using NvmlDevice = struct NvmlDeviceOpaque*;
using NvmlInitFn = NvmlReturn (*)();
using NvmlHandleByIndexFn = NvmlReturn (*)(unsigned int, NvmlDevice*);
using NvmlEnergyFn = NvmlReturn (*)(NvmlDevice, unsigned long long*);
using NvmlLimitFn = NvmlReturn (*)(NvmlDevice, unsigned int*);

struct NvmlLibrary {
  void* handle = nullptr;
  ~NvmlLibrary() {
    if (handle != nullptr) dlclose(handle);
  }
};

}  // namespace

EnergyCounter open_nvml(unsigned nvml_index, const std::string& library) {
  EnergyCounter c;
  auto lib = std::make_shared<NvmlLibrary>();
  lib->handle = dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (lib->handle == nullptr) {
    const char* err = dlerror();
    c.unavailable_reason = fmt::format("NVML: cannot load {}: {}", library, err != nullptr ? err : "unknown error");
    return c;
  }
  const auto sym = [&](const char* name) { return dlsym(lib->handle, name); };
  const auto init = reinterpret_cast<NvmlInitFn>(sym("nvmlInit_v2"));
  const auto by_index = reinterpret_cast<NvmlHandleByIndexFn>(sym("nvmlDeviceGetHandleByIndex_v2"));
  const auto energy = reinterpret_cast<NvmlEnergyFn>(sym("nvmlDeviceGetTotalEnergyConsumption"));
  const auto limit = reinterpret_cast<NvmlLimitFn>(sym("nvmlDeviceGetPowerManagementLimit"));
  if (init == nullptr || by_index == nullptr || energy == nullptr) {
    c.unavailable_reason = fmt::format("NVML: {} lacks nvmlInit_v2, nvmlDeviceGetHandleByIndex_v2 or "
                                       "nvmlDeviceGetTotalEnergyConsumption",
                                       library);
    return c;
  }
  if (const NvmlReturn r = init(); r != 0) {
    c.unavailable_reason = fmt::format("NVML: nvmlInit_v2 returned {}", r);
    return c;
  }
  NvmlDevice device = nullptr;
  if (const NvmlReturn r = by_index(nvml_index, &device); r != 0) {
    c.unavailable_reason = fmt::format("NVML: no device {} (nvmlDeviceGetHandleByIndex_v2 returned {})", nvml_index, r);
    return c;
  }
  unsigned long long mj = 0;
  if (const NvmlReturn r = energy(device, &mj); r != 0) {
    c.unavailable_reason =
        fmt::format("NVML: device {} has no total-energy counter (nvmlDeviceGetTotalEnergyConsumption returned {}; "
                    "Volta and newer only)",
                    nvml_index, r);
    return c;
  }
  unsigned int limit_mw = 0;
  if (limit != nullptr && limit(device, &limit_mw) == 0) c.power_limit_w = limit_mw / 1000.0;
  c.source = "nvml";
  // The library stays loaded while the counter lives (nvmlShutdown is left to process exit:
  // other counters may share the library's initialisation).
  c.read_joules = [lib, energy, device]() -> std::optional<double> {
    unsigned long long now = 0;
    if (energy(device, &now) != 0) return std::nullopt;
    return static_cast<double>(now) / 1e3;
  };
  return c;
}

// ---- RAPL ----

uint64_t rapl_delta_uj(uint64_t before, uint64_t after, uint64_t max_range) {
  if (after >= before) return after - before;
  return max_range > before ? max_range - before + after : after;  // wrapped once
}

namespace {

std::optional<uint64_t> read_u64(const std::string& path) {
  std::ifstream f(path);
  uint64_t v = 0;
  if (!(f >> v)) return std::nullopt;
  return v;
}

}  // namespace

std::vector<RaplDomain> find_rapl_domains(const std::string& root, std::string* why_not) {
  namespace fs = std::filesystem;
  std::vector<RaplDomain> out;
  std::error_code ec;
  if (!fs::is_directory(root, ec)) {
    if (why_not != nullptr) *why_not = fmt::format("RAPL: no {} (not Linux, or no powercap driver)", root);
    return out;
  }
  static const std::regex package(R"(intel-rapl:\d+)");
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(root, ec)) {
    const std::string name = e.path().filename().string();
    if (std::regex_match(name, package)) names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  if (names.empty()) {
    if (why_not != nullptr) *why_not = fmt::format("RAPL: no intel-rapl:N domain under {}", root);
    return out;
  }
  for (const std::string& name : names) {
    const fs::path dir = fs::path(root) / name;
    RaplDomain d;
    d.name = name;
    d.energy_path = (dir / "energy_uj").string();
    const std::optional<uint64_t> range = read_u64((dir / "max_energy_range_uj").string());
    if (!read_u64(d.energy_path) || !range) {
      if (why_not != nullptr) {
        *why_not = fmt::format("RAPL: cannot read {} (energy_uj is readable by root only on many kernels)",
                               d.energy_path);
      }
      return {};
    }
    d.max_energy_range_uj = *range;
    out.push_back(d);
  }
  return out;
}

EnergyCounter open_rapl(const std::string& root) {
  EnergyCounter c;
  const std::vector<RaplDomain> domains = find_rapl_domains(root, &c.unavailable_reason);
  if (domains.empty()) return c;
  c.source = "rapl";
  // A running total in microjoules: each read adds every domain's wrap-corrected delta.
  struct State {
    std::vector<RaplDomain> domains;
    std::vector<uint64_t> last;
    double total_uj = 0;
  };
  auto st = std::make_shared<State>();
  st->domains = domains;
  for (const auto& d : domains) st->last.push_back(*read_u64(d.energy_path));
  c.read_joules = [st]() -> std::optional<double> {
    for (size_t i = 0; i < st->domains.size(); ++i) {
      const std::optional<uint64_t> now = read_u64(st->domains[i].energy_path);
      if (!now) return std::nullopt;
      st->total_uj += static_cast<double>(rapl_delta_uj(st->last[i], *now, st->domains[i].max_energy_range_uj));
      st->last[i] = *now;
    }
    return st->total_uj / 1e6;
  };
  return c;
}

EnergyCounter open_energy_counter(const c10::Device& device) {
  return device.is_cuda() ? open_nvml(static_cast<unsigned>(device.has_index() ? device.index() : 0)) : open_rapl();
}

// ---- the figures ----

bool EnergyResult::operator==(const EnergyResult& o) const {
  return source == o.source && prefill_joules == o.prefill_joules && decode_joules == o.decode_joules &&
         joules_per_prefill_token == o.joules_per_prefill_token &&
         joules_per_decode_token == o.joules_per_decode_token && average_power_w == o.average_power_w;
}

void to_json(nlohmann::json& j, const EnergyResult& e) {
  j = {{"source", e.source},
       {"prefill_joules", e.prefill_joules},
       {"decode_joules", e.decode_joules},
       {"joules_per_prefill_token", e.joules_per_prefill_token},
       {"average_power_w", e.average_power_w}};
  if (e.joules_per_decode_token) j["joules_per_decode_token"] = *e.joules_per_decode_token;
}

void from_json(const nlohmann::json& j, EnergyResult& e) {
  j.at("source").get_to(e.source);
  j.at("prefill_joules").get_to(e.prefill_joules);
  j.at("decode_joules").get_to(e.decode_joules);
  j.at("joules_per_prefill_token").get_to(e.joules_per_prefill_token);
  j.at("average_power_w").get_to(e.average_power_w);
  e.joules_per_decode_token.reset();
  if (j.contains("joules_per_decode_token")) e.joules_per_decode_token = j.at("joules_per_decode_token").get<double>();
}

EnergyResult energy_figures(const std::string& source, double prefill_joules, double prefill_tokens,
                            double prefill_seconds, double decode_joules, double decode_tokens,
                            double decode_seconds) {
  EnergyResult e;
  e.source = source;
  e.prefill_joules = prefill_joules;
  e.decode_joules = decode_joules;
  e.joules_per_prefill_token = prefill_tokens > 0 ? prefill_joules / prefill_tokens : 0.0;
  if (decode_tokens > 0) e.joules_per_decode_token = decode_joules / decode_tokens;
  const double seconds = prefill_seconds + decode_seconds;
  e.average_power_w = seconds > 0 ? (prefill_joules + decode_joules) / seconds : 0.0;
  return e;
}

}  // namespace effarch::bench
