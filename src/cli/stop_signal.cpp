#include "stop_signal.h"

#include <time.h>
#include <unistd.h>

#include <csignal>
#include <cstdint>

namespace effarch::cli {
namespace {

std::atomic<bool> g_stop{false};
std::atomic<int64_t> g_first_signal_ns{0};
std::atomic<int> g_first_signal{SIGINT};

extern "C" void on_stop_signal(int signal) {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  const int64_t now = static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
  if (!g_stop.load()) {
    g_first_signal_ns.store(now);
    g_first_signal.store(signal);
    g_stop.store(true);
  } else if (now - g_first_signal_ns.load() > 1000000000) {
    _exit(128 + signal);
  }
}

}  // namespace

StopOnSigint::StopOnSigint(bool install) : installed_(install) {
  g_stop.store(false);
  g_first_signal.store(SIGINT);
  if (installed_) {
    std::signal(SIGINT, on_stop_signal);
    std::signal(SIGTERM, on_stop_signal);
  }
}

StopOnSigint::~StopOnSigint() {
  if (installed_) {
    std::signal(SIGINT, SIG_DFL);
    std::signal(SIGTERM, SIG_DFL);
  }
}

const std::atomic<bool>* StopOnSigint::flag() const { return &g_stop; }

bool StopOnSigint::requested() const { return g_stop.load(); }

int StopOnSigint::exit_code() const { return 128 + g_first_signal.load(); }

}  // namespace effarch::cli
