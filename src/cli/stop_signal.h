#pragma once
// Ctrl-C for the measuring commands (bench, kernels): the first SIGINT or SIGTERM (`timeout`'s
// default, a job scheduler's) asks the sweep to stop after what is in progress, so what finished
// is written (the results marked interrupted) and the command exits 128 + the signal (130, 143).
// A second one a second or more later ends the process at once (the .jsonl keeps what finished);
// one that arrives together with the first (`timeout` signals the child and then its whole
// process group) is the same request.

#include <atomic>

namespace effarch::cli {

// While alive: the request flag cleared and, when `install`, SIGINT and SIGTERM handled as above;
// the default handlers are back when it goes (on an exception too). One at a time per process.
class StopOnSigint {
 public:
  explicit StopOnSigint(bool install = true);
  ~StopOnSigint();
  StopOnSigint(const StopOnSigint&) = delete;
  StopOnSigint& operator=(const StopOnSigint&) = delete;

  const std::atomic<bool>* flag() const;  // for the sweeps' callbacks
  bool requested() const;
  int exit_code() const;  // 128 + the first signal: 130 (SIGINT), 143 (SIGTERM)

 private:
  bool installed_;
};

}  // namespace effarch::cli
