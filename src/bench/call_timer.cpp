// How effarch kernels times one call (call_timer.h, docs/kernels.md "Timing").

#include "call_timer.h"

#include <atomic>
#include <optional>
#include <string>

#include <fmt/format.h>

#include "effarch/common/error.h"
#include "timing/blocking_kernel_params.h"

#ifdef EFFARCH_WITH_CUDA
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>

#include "timing/blocking_kernel.h"
#endif

namespace effarch::bench {

const char* timer_name(CallTimer timer) {
  switch (timer) {
    case CallTimer::SteadyClock: return "steady_clock";
    case CallTimer::CudaEvents: return "cuda_events";
    case CallTimer::CudaEventsQueued: return "cuda_events_queued";
  }
  return "?";
}

uint64_t l2_scrub_bytes(uint64_t l2_cache_bytes) {
  if (l2_cache_bytes == 0) return kUnknownL2ScrubBytes;
  constexpr uint64_t kPage = 4096;
  return (2 * l2_cache_bytes + kPage - 1) / kPage * kPage;
}

BlockerOutcome blocker_outcome(int32_t status) {
  switch (status) {
    case kernels::kBlockerReleased: return BlockerOutcome::Released;
    case kernels::kBlockerTimedOut: return BlockerOutcome::TimedOut;
    default: return BlockerOutcome::NotRun;
  }
}

CallTimes time_queued_with_fallback(int warmup, int reps, const std::function<void()>& call,
                                    const std::function<QueuedCall()>& queued, const std::function<double()>& plain,
                                    double timeout_s) {
  CallTimes out;
  out.timer = CallTimer::CudaEventsQueued;
  // One queued call, tried again once if its blocker timed out (a first use's one-time sync: lazy
  // module loading, a library handle). Its seconds, or nothing when both timed out (the reason
  // then in out.fallback).
  const auto run_queued = [&](const std::string& which) -> std::optional<double> {
    for (int attempt = 0; attempt < 2; ++attempt) {
      const QueuedCall q = queued();
      if (q.outcome == BlockerOutcome::NotRun) {
        throw Error(fmt::format("effarch kernels: the blocking kernel did not run ({}): its status word was "
                                "not written",
                                which));
      }
      if (q.outcome == BlockerOutcome::Released) return q.seconds;
    }
    out.fallback = fmt::format(
        "{} waited on the GPU from the host (a synchronisation inside the call, e.g. .item(), or more launches "
        "than the GPU's launch queue holds): the blocking kernel ended on its {:g} ms timeout twice in a row, so "
        "the call's launches could not be queued; "
        "every sample timed with plain CUDA events, the host's dispatch included",
        which, timeout_s * 1e3);
    return std::nullopt;
  };
  for (int i = 0; i + 1 < warmup; ++i) call();
  bool queue = warmup <= 0 || run_queued("the last warm-up call").has_value();
  for (int i = 0; queue && i < reps; ++i) {
    const std::optional<double> t = run_queued(fmt::format("timed call {} of {}", i + 1, reps));
    queue = t.has_value();
    if (queue) out.seconds.push_back(*t);
  }
  if (!queue) {
    out.timer = CallTimer::CudaEvents;
    out.seconds.clear();
    for (int i = 0; i < reps; ++i) out.seconds.push_back(plain());
  }
  return out;
}

void record_timer(nlohmann::json& row, const CallTimes& times) {
  row["timer"] = timer_name(times.timer);
  if (!times.fallback.empty()) row["timer_fallback"] = times.fallback;
}

#ifdef EFFARCH_WITH_CUDA
namespace {

void cuda_check(cudaError_t error, const char* what) {
  if (error != cudaSuccess) {
    throw Error(fmt::format("effarch kernels: {} failed: {} ({})", what, cudaGetErrorName(error),
                            cudaGetErrorString(error)));
  }
}

void launch_check(const kernels::LaunchStatus& status) {
  if (!status.ok()) cuda_check(status.error, status.what);
}

cudaStream_t current_stream(int device) { return c10::cuda::getCurrentCUDAStream(device).stream(); }

}  // namespace

QueuedCudaTimer::QueuedCudaTimer(const c10::Device& device, double timeout_s) : timeout_s_(timeout_s) {
  if (!(timeout_s > 0)) throw Error(fmt::format("effarch kernels: a blocker timeout of {} s", timeout_s));
  device_index_ = device.index() < 0 ? c10::cuda::current_device() : device.index();
  const c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device_index_));
  try {
    // Portable: mapped for every device, whichever is current.
    void* host = nullptr;
    cuda_check(cudaHostAlloc(&host, 2 * sizeof(int32_t), cudaHostAllocMapped | cudaHostAllocPortable),
               "cudaHostAlloc (the blocking kernel's flags)");
    host_flags_ = static_cast<volatile int32_t*>(host);
    host_flags_[0] = 0;
    host_flags_[1] = kernels::kBlockerPending;
    cuda_check(cudaHostGetDevicePointer(&device_flags_, host, 0), "cudaHostGetDevicePointer");
    int l2 = 0;
    cuda_check(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, device_index_), "cudaDeviceGetAttribute (L2)");
    cuda_check(cudaDeviceGetAttribute(&multiprocessors_, cudaDevAttrMultiProcessorCount, device_index_),
               "cudaDeviceGetAttribute (SMs)");
    scrub_bytes_ = l2_scrub_bytes(static_cast<uint64_t>(l2 > 0 ? l2 : 0));
    // The scrub words, then 16 bytes for the scrub's sink; zeroed so the sink is never written.
    cuda_check(cudaMalloc(&scrub_, scrub_bytes_ + 16), "cudaMalloc (the L2 scrub buffer)");
    cuda_check(cudaMemset(scrub_, 0, scrub_bytes_ + 16), "cudaMemset (the L2 scrub buffer)");
    cudaEvent_t start = nullptr, end = nullptr;
    cuda_check(cudaEventCreate(&start), "cudaEventCreate");
    start_ = start;
    cuda_check(cudaEventCreate(&end), "cudaEventCreate");
    end_ = end;
  } catch (...) {
    free_all();
    throw;
  }
}

QueuedCudaTimer::~QueuedCudaTimer() { free_all(); }

void QueuedCudaTimer::free_all() noexcept {
  // None of these needs the device current. Errors are ignored: nothing to do about them here.
  if (start_ != nullptr) (void)cudaEventDestroy(static_cast<cudaEvent_t>(start_));
  if (end_ != nullptr) (void)cudaEventDestroy(static_cast<cudaEvent_t>(end_));
  if (scrub_ != nullptr) (void)cudaFree(scrub_);
  if (host_flags_ != nullptr) (void)cudaFreeHost(const_cast<int32_t*>(host_flags_));
  start_ = end_ = scrub_ = nullptr;
  host_flags_ = nullptr;
}

void QueuedCudaTimer::scrub(void* stream) {
  kernels::L2ScrubParams p;
  p.buffer = scrub_;
  p.bytes = scrub_bytes_;
  p.sink = reinterpret_cast<int32_t*>(static_cast<char*>(scrub_) + scrub_bytes_);
  p.blocks = 8 * multiprocessors_;
  launch_check(kernels::l2_scrub_cuda(p, static_cast<cudaStream_t>(stream)));
}

double QueuedCudaTimer::elapsed_s() {
  cuda_check(cudaEventSynchronize(static_cast<cudaEvent_t>(end_)), "cudaEventSynchronize");
  float ms = 0;
  cuda_check(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start_), static_cast<cudaEvent_t>(end_)),
             "cudaEventElapsedTime");
  return static_cast<double>(ms) / 1e3;
}

QueuedCall QueuedCudaTimer::queued(const std::function<void()>& fn) {
  const c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device_index_));
  const cudaStream_t stream = current_stream(device_index_);
  scrub(stream);
  host_flags_[0] = 0;
  host_flags_[1] = kernels::kBlockerPending;
  std::atomic_thread_fence(std::memory_order_seq_cst);
  kernels::BlockingKernelParams p;
  p.release = static_cast<const volatile int32_t*>(device_flags_);
  p.status = static_cast<volatile int32_t*>(device_flags_) + 1;
  p.timeout_ns = static_cast<uint64_t>(timeout_s_ * 1e9);
  launch_check(kernels::blocking_kernel_cuda(p, stream));
  // From here the blocker must be released whatever happens, or the stream waits out its timeout.
  struct Release {
    volatile int32_t* flag;
    ~Release() {
      std::atomic_thread_fence(std::memory_order_release);
      *flag = 1;
    }
  };
  {
    const Release release{host_flags_};
    cuda_check(cudaEventRecord(static_cast<cudaEvent_t>(start_), stream), "cudaEventRecord");
    fn();
    cuda_check(cudaEventRecord(static_cast<cudaEvent_t>(end_), stream), "cudaEventRecord");
  }
  QueuedCall out;
  out.seconds = elapsed_s();
  // The end event follows the blocker on the stream, and the kernel fenced its write to the host.
  std::atomic_thread_fence(std::memory_order_acquire);
  out.outcome = blocker_outcome(host_flags_[1]);
  return out;
}

double QueuedCudaTimer::plain(const std::function<void()>& fn) {
  const c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device_index_));
  const cudaStream_t stream = current_stream(device_index_);
  scrub(stream);
  // The scrub done before the start event is recorded: else the host's dispatch of the call
  // overlaps the scrub and the event, stamped when the scrub ends, leaves part of it out.
  cuda_check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  cuda_check(cudaEventRecord(static_cast<cudaEvent_t>(start_), stream), "cudaEventRecord");
  fn();
  cuda_check(cudaEventRecord(static_cast<cudaEvent_t>(end_), stream), "cudaEventRecord");
  return elapsed_s();
}

CallTimes QueuedCudaTimer::time(int warmup, int reps, const std::function<void()>& fn) {
  return time_queued_with_fallback(
      warmup, reps, fn, [&] { return queued(fn); }, [&] { return plain(fn); }, timeout_s_);
}
#endif

}  // namespace effarch::bench
