#pragma once
// How `effarch kernels` times one call (internal; docs/kernels.md, "Timing").
//
// On a GPU, per timed call: read a buffer of twice the L2 (the L2 scrub: the call's inputs then
// come from memory, as in a decode step where the other layers' weights have evicted them), launch
// the blocking kernel (kernels/timing/), record the start event, run the call, record the end
// event, release the blocker, wait for the end event. Every launch of the call is queued behind
// the blocker, so the events time the GPU's work (its kernels and the gaps between them) and not
// the host's dispatch. A call that waits on the GPU from the host (`.item()`, a stream sync)
// cannot be queued: it waits on the blocker, which then ends on its timeout (twice in a row, so a
// first use's one-time sync is not taken for one); the row is timed again with plain events
// around the call (the host's dispatch included) and says so.
//
// The decisions (the scrub size, what a blocker status means, when to give up the queued timer,
// the row's label) are plain functions here, tested on the CPU; QueuedCudaTimer (CUDA builds) is
// the thin shell that launches and records.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <c10/core/Device.h>
#include <nlohmann/json.hpp>

namespace effarch::bench {

enum class CallTimer {
  SteadyClock,       // the CPU: the steady clock around the call
  CudaEvents,        // CUDA events around the call, L2 scrubbed before it: the host's dispatch included
  CudaEventsQueued,  // the same with the call queued behind the blocking kernel: the GPU's time alone
};
// The row's "timer": "steady_clock", "cuda_events", "cuda_events_queued".
const char* timer_name(CallTimer timer);

// How long the blocking kernel waits for the host: far longer than any call's dispatch (tens of
// microseconds; a reference of thousands of launches fills the launch queue and times out, which
// is right: its host cost is then part of its time), short enough that a call which syncs costs
// little (two such waits per row).
constexpr double kBlockerTimeoutS = 0.1;
// The scrub when the device does not report its L2 size (triton.testing.do_bench's 256 MiB).
constexpr uint64_t kUnknownL2ScrubBytes = uint64_t{256} << 20;

// The bytes the L2 scrub reads: twice the L2 (so no line of the call's inputs survives whatever
// the replacement policy), rounded up to 4 KiB; kUnknownL2ScrubBytes for an unknown (0) L2.
uint64_t l2_scrub_bytes(uint64_t l2_cache_bytes);

enum class BlockerOutcome {
  Released,  // the host released it: every launch of the call was queued behind it
  TimedOut,  // its timeout passed first: the host waited on the GPU inside the call
  NotRun,    // the status is still the host's (or unknown): the kernel did not run
};
// What the kernel's status word (kernels/timing/blocking_kernel_params.h, BlockerStatus) means.
BlockerOutcome blocker_outcome(int32_t status);

// One call timed behind the blocker.
struct QueuedCall {
  double seconds = 0;
  BlockerOutcome outcome = BlockerOutcome::Released;
};

// A row's samples and how they were taken.
struct CallTimes {
  std::vector<double> seconds;
  CallTimer timer = CallTimer::SteadyClock;
  std::string fallback;  // why the queued timer was given up; "" when it was not
};

// The GPU's sequence, given the ways to run one call: `warmup` untimed calls, the last of them
// queued (so a call that syncs is found before any timed one), then `reps` queued calls. A call
// whose blocker times out is run queued once more (a one-time sync of a first use: lazy module
// loading, a library handle); when that one times out too, every sample so far is dropped and all
// `reps` are timed with `plain`: a row's samples come from one timer. A blocker that did not run
// is an Error. `timeout_s` is only quoted in the fallback's reason.
CallTimes time_queued_with_fallback(int warmup, int reps, const std::function<void()>& call,
                                    const std::function<QueuedCall()>& queued, const std::function<double()>& plain,
                                    double timeout_s);

// Writes the row's "timer" and, when the queued timer was given up, "timer_fallback" (the reason).
void record_timer(nlohmann::json& row, const CallTimes& times);

class QueuedCudaTimer;  // CUDA builds only

#ifdef EFFARCH_WITH_CUDA
// The CUDA shell: host-mapped flags for the blocking kernel, the scrub buffer (cudaMalloc, outside
// the caching allocator, so --memory-limit's cap on that allocator does not count it), two
// events. Works on the current stream of `device`. One per sweep: creating it synchronises.
class QueuedCudaTimer {
 public:
  explicit QueuedCudaTimer(const c10::Device& device, double timeout_s = kBlockerTimeoutS);
  ~QueuedCudaTimer();
  QueuedCudaTimer(const QueuedCudaTimer&) = delete;
  QueuedCudaTimer& operator=(const QueuedCudaTimer&) = delete;

  // Scrub, block, start, fn, end, release, wait.
  QueuedCall queued(const std::function<void()>& fn);
  // Scrub, start, fn, end, wait: the fallback.
  double plain(const std::function<void()>& fn);
  // time_queued_with_fallback with the two above.
  CallTimes time(int warmup, int reps, const std::function<void()>& fn);

  uint64_t scrub_bytes() const { return scrub_bytes_; }
  double timeout_s() const { return timeout_s_; }

 private:
  void scrub(void* stream);
  void free_all() noexcept;
  double elapsed_s();

  int device_index_ = 0;
  double timeout_s_ = kBlockerTimeoutS;
  int multiprocessors_ = 1;
  volatile int32_t* host_flags_ = nullptr;  // [0] release (the host writes), [1] status (the kernel writes)
  void* device_flags_ = nullptr;            // the same two words, mapped into the device
  void* scrub_ = nullptr;                   // scrub_bytes_ of zeros, then a 16-byte sink
  uint64_t scrub_bytes_ = 0;
  void* start_ = nullptr;  // cudaEvent_t
  void* end_ = nullptr;
};
#endif

}  // namespace effarch::bench
