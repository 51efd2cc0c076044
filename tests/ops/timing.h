#pragma once
// The timing helper of the standalone kernel timing binaries (ops/*_bench.cpp): median wall time
// of `repeats` calls after one warm-up call. Not used by tests (timed tests are not tests).

#include <algorithm>
#include <chrono>
#include <functional>
#include <vector>

namespace effarch::test {

inline double median_seconds(int repeats, const std::function<void()>& f) {
  f();  // warm-up
  std::vector<double> t;
  for (int i = 0; i < repeats; ++i) {
    const auto a = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace effarch::test
