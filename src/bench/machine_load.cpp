// The machine's load around each point (/proc/loadavg), the busy rule, and the default CPU thread
// count (docs/bench.md, "A busy machine").

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "effarch/bench/bench.h"

namespace effarch::bench {

std::optional<LoadSample> parse_loadavg(const std::string& text) {
  // "0.52 0.58 0.59 3/467 12345": three load averages, runnable/total entities, the last pid.
  std::istringstream in(text);
  double load1 = 0, load5 = 0, load15 = 0;
  std::string entities;
  if (!(in >> load1 >> load5 >> load15 >> entities)) return std::nullopt;
  const size_t slash = entities.find('/');
  if (slash == std::string::npos || slash == 0) return std::nullopt;
  int64_t runnable = 0;
  try {
    size_t used = 0;
    runnable = std::stoll(entities.substr(0, slash), &used);
    if (used != slash || runnable < 0) return std::nullopt;
  } catch (const std::exception&) {
    return std::nullopt;
  }
  if (load1 < 0) return std::nullopt;
  LoadSample s;
  s.load1 = load1;
  s.others_runnable = std::max<int64_t>(0, runnable - 1);  // the thread reading the file is runnable
  return s;
}

std::string loadavg_path() {
  const char* fixture = std::getenv("EFFARCH_LOADAVG");
  return fixture != nullptr && *fixture != '\0' ? fixture : "/proc/loadavg";
}

std::optional<LoadSample> read_machine_load(const std::string& path, int samples) {
  // A single reading is a snapshot of a scheduler queue that changes every millisecond: the median
  // of a few readings 10 ms apart, the first after ATen's worker threads went idle.
  std::vector<LoadSample> got;
  for (int i = 0; i < std::max(1, samples); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    std::ifstream f(path);
    if (!f) return std::nullopt;
    std::stringstream text;
    text << f.rdbuf();
    const std::optional<LoadSample> s = parse_loadavg(text.str());
    if (!s) return std::nullopt;
    got.push_back(*s);
  }
  std::sort(got.begin(), got.end(),
            [](const LoadSample& a, const LoadSample& b) { return a.others_runnable < b.others_runnable; });
  return got[got.size() / 2];
}

int64_t usable_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  return std::max<int64_t>(1, static_cast<int64_t>(std::thread::hardware_concurrency()));
}

bool too_busy(const LoadSample& sample, int64_t cores, int64_t threads) {
  return sample.others_runnable + threads > cores;
}

int default_cpu_threads(int64_t cores, std::optional<LoadSample> at_start) {
  int64_t n = cores - 1;
  if (at_start) n = std::min(n, cores - at_start->others_runnable);
  return static_cast<int>(std::max<int64_t>(1, n));
}

MachineLoad judge_load(std::optional<LoadSample> before, std::optional<LoadSample> after, int64_t cores,
                       int64_t threads) {
  MachineLoad m;
  m.before = before;
  m.after = after;
  m.cores = cores;
  m.threads = threads;
  m.busy = (before && too_busy(*before, cores, threads)) || (after && too_busy(*after, cores, threads));
  return m;
}

}  // namespace effarch::bench
