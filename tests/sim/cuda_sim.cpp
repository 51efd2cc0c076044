// The CPU executor's scheduler (cuda_sim.h has the model): a block's threads are ucontext fibers
// on the calling thread, run in order until each returns or waits at a barrier or a warp
// collective; a wait completes when every thread it names has arrived.

#include "cuda_sim.h"

#include <fmt/format.h>
#include <cstdio>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#define EFFARCH_SIM_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EFFARCH_SIM_ASAN 1
#endif
#endif
#ifdef EFFARCH_SIM_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

namespace effarch::sim {
namespace {

// A fiber's stack: kernels keep small arrays in registers, which here are stack; the sanitizers'
// redzones make frames several times larger.
#ifdef EFFARCH_SIM_ASAN
constexpr size_t kStackBytes = 1 << 20;
#else
constexpr size_t kStackBytes = 256 << 10;
#endif
constexpr int kMaxThreads = 1024;
constexpr int kWarpSize = 32;

enum class State { Runnable, AtBarrier, AtWarp, Done };

// A fiber is made once (makecontext) and then runs thread after thread: fiber_main loops, running
// the kernel body for each block it is given. Switches are the compiler's __builtin_setjmp /
// __builtin_longjmp, which keep a frame pointer, a stack pointer and a return address (the
// compiler saves the registers live across them): swapcontext's system call each switch took half
// the run time, and then glibc's _longjmp, which unwinds cancellation handlers, a quarter. Only a
// fiber's first entry goes through its ucontext. A fiber abandoned by an error is made again at
// the next launch.
using Jump = void* [5];
struct Fiber {
  ucontext_t context;
  Jump jump;
  bool started = false;
  char* stack = nullptr;  // mmap'd, a guard page below
  State state = State::Done;
  uint3 index{};
  // the collective it waits in
  WarpOp op = WarpOp::Sync;
  unsigned mask = 0;
  uint64_t value = 0, result = 0;
  int arg = 0, width = kWarpSize;
  // cp.async: committed groups, oldest first, and the open one
  struct Copy {
    void* dst;
    const void* src;
    int bytes, src_bytes;
  };
  std::vector<std::vector<Copy>> groups;
  std::vector<Copy> open;
};

struct Executor {
  std::vector<Fiber> fibers;
  ucontext_t main_context;
  Jump main_jump;
  const void* main_stack_bottom = nullptr;
  size_t main_stack_size = 0;
  int current = -1, threads = 0, at_barrier = 0, done = 0;
  dim3 grid, block;
  uint3 block_index{};
  const std::function<void()>* body = nullptr;
  // Per warp of the block: the lanes that returned and the collectives open (a mask and a kind,
  // with the lanes arrived), so that an arrival checks its warp in a few operations (a scan of the
  // warp's 32 fibers at every lane's arrival took 45% of a whole-model test's run time).
  struct Open {
    unsigned mask, arrived;
    WarpOp op;
  };
  struct Warp {
    unsigned done = 0;
    int open_count = 0;
    Open open[kWarpSize];
  };
  Warp warps[kMaxThreads / kWarpSize];
  std::vector<unsigned char> shared;  // dynamic shared memory (+ 128 bytes for the alignment)
  size_t shared_bytes = 0;
  std::string error;
  Schedule schedule = Schedule::Forward;

  ~Executor() {
    for (Fiber& f : fibers) {
      if (f.stack != nullptr) munmap(f.stack - page(), kStackBytes + page());
    }
  }
  static size_t page() { return static_cast<size_t>(sysconf(_SC_PAGESIZE)); }
  char* stack_of(int t) {
    Fiber& f = fibers[t];
    if (f.stack == nullptr) {
      void* m = mmap(nullptr, kStackBytes + page(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                     -1, 0);
      if (m == MAP_FAILED) throw SimError("cuda_sim: cannot map a fiber stack");
      mprotect(m, page(), PROT_NONE);  // an overflow faults instead of writing another stack
      f.stack = static_cast<char*>(m) + page();
    }
    return f.stack;
  }
  Fiber& self() { return fibers[current]; }
  std::string where(int t) const {
    const Fiber& f = fibers[t];
    return fmt::format("block ({}, {}, {}) thread ({}, {}, {})", block_index.x, block_index.y, block_index.z, f.index.x,
                       f.index.y, f.index.z);
  }
};

thread_local Executor* g_exec = nullptr;
thread_local Schedule g_schedule = Schedule::Forward;
thread_local std::vector<LaunchRecord> g_log;  // every launch since the reset
thread_local const char* g_next_name = "";     // name_next_launch's, for the next record

Executor& exec() {
  if (g_exec == nullptr) throw SimError("cuda_sim: a device function ran outside a simulated launch");
  return *g_exec;
}

void asan_start(void** fake, const void* bottom, size_t size) {
#ifdef EFFARCH_SIM_ASAN
  __sanitizer_start_switch_fiber(fake, bottom, size);
#else
  (void)fake, (void)bottom, (void)size;
#endif
}
void asan_finish(void* fake) {
#ifdef EFFARCH_SIM_ASAN
  __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#else
  (void)fake;
#endif
}

// A jump to where __builtin_setjmp saved `to`: a function of its own, as the two builtins may not
// share one. Neither noreturn nor instrumented: AddressSanitizer's handler before a call that does
// not return unpoisons the whole stack it leaves (a memset of a fiber stack's shadow and a
// sigaltstack system call at every switch: nine tenths of a sanitized run), where the stack left
// here is a live fiber's, resumed later with its frames. An abandoned fiber's stack is unpoisoned
// when the fiber is made again (run_block).
// (noipa: GCC would otherwise find it cannot return and instrument its calls as such.)
#if defined(__clang__)
[[gnu::noinline, gnu::no_sanitize_address]]
#else
[[gnu::noipa, gnu::no_sanitize_address]]
#endif
void jump(Jump& to) {
  __builtin_longjmp(to, 1);
}

// From the scheduler into fiber t; returns when the fiber yields.
void enter(Executor& e, int t) {
  Fiber& f = e.fibers[t];
  e.current = t;
  void* fake = nullptr;
  if (__builtin_setjmp(e.main_jump) == 0) {
    asan_start(&fake, f.stack, kStackBytes);
    if (!f.started) {
      f.started = true;
      swapcontext(&e.main_context, &f.context);  // its first entry: fiber_main
    } else {
      jump(f.jump);
    }
  }
  asan_finish(fake);
  e.current = -1;
}

// From the current fiber back to the scheduler; returns when the scheduler resumes this fiber.
void yield() {
  Executor& e = exec();
  Fiber& f = e.self();
  void* fake = nullptr;
  if (__builtin_setjmp(f.jump) == 0) {
    asan_start(&fake, e.main_stack_bottom, e.main_stack_size);
    jump(e.main_jump);
  }
  asan_finish(fake);
}

// The calling fiber stops for good: the launch has failed (its error is recorded).
[[noreturn]] void stop_fiber() {
  exec().self().started = false;  // abandoned: made again at the next launch
  yield();
  std::abort();  // not reached: the scheduler does not resume a failed launch
}

// An error found in a fiber: recorded (the launch's first), and the fiber never runs again. The
// message is made here, by `make_message`, not by the caller: an abandoned fiber never finishes
// the expression it stopped in, so a temporary string live there (the caller's message, a
// where() inside it) would never be freed (LeakSanitizer found them).
template <typename MakeMessage>
[[noreturn]] void fail(MakeMessage&& make_message) {
  {
    std::string message = make_message();
    Executor& e = exec();
    if (e.error.empty()) e.error = std::move(message);
  }
  stop_fiber();
}

void release_barrier_if_complete(Executor& e) {
  const int live = e.threads - e.done;
  if (e.at_barrier == 0 || e.at_barrier < live) return;
  if (e.done > 0) {
    if (e.error.empty()) {
      e.error = fmt::format(
          "__syncthreads in block ({}, {}, {}): {} threads wait at the barrier while {} of the block's {} threads have "
          "returned (a barrier the whole block does not reach)",
          e.block_index.x, e.block_index.y, e.block_index.z, e.at_barrier, e.done, e.threads);
    }
    return;
  }
  for (int t = 0; t < e.threads; ++t) {
    if (e.fibers[t].state == State::AtBarrier) e.fibers[t].state = State::Runnable;
  }
  e.at_barrier = 0;
}

void fiber_main() {
  Executor& e = exec();
#ifdef EFFARCH_SIM_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &e.main_stack_bottom, &e.main_stack_size);
#endif
  for (;;) {  // a thread of each block the scheduler gives this fiber
    std::string error;  // set in the handler, failed outside it (the exception is freed on leaving)
    try {
      (*e.body)();
    } catch (const std::exception& ex) {
      error = fmt::format("{}: {}", e.where(e.current), ex.what());
    }
    if (!error.empty()) {
      fail([&] {
        std::string m;
        m.swap(error);
        return m;
      });
    }
    e.self().state = State::Done;
    e.warps[e.current / kWarpSize].done |= 1u << (e.current % kWarpSize);
    ++e.done;
    release_barrier_if_complete(e);
    yield();
  }
}

// The lane whose value lane `lane` reads in shuffle `f` (CUDA's rules: within the lane's segment of
// f.width lanes; a source past the segment gives the lane its own value: -1), or -1 for the
// collectives that read no single lane.
int source_lane(const Fiber& f, int lane) {
  const int width = f.width, segment = lane / width * width;
  switch (f.op) {
    case WarpOp::Index:
      return segment + ((f.arg % width) + width) % width;
    case WarpOp::Xor:
      return (lane ^ f.arg) < segment + width ? lane ^ f.arg : -1;
    case WarpOp::Up:
      return lane - f.arg >= segment ? lane - f.arg : -1;
    case WarpOp::Down:
      return lane + f.arg < segment + width ? lane + f.arg : -1;
    default:
      return -1;
  }
}

uint64_t collective_result(const Executor& e, int warp_base, const Fiber& f, int lane) {
  auto value_of = [&](int src) -> uint64_t { return e.fibers[warp_base + src].value; };
  switch (f.op) {
    case WarpOp::Index:
    case WarpOp::Xor:
    case WarpOp::Up:
    case WarpOp::Down: {
      const int src = source_lane(f, lane);
      return src < 0 ? f.value : value_of(src);
    }
    case WarpOp::Ballot:
    case WarpOp::Any:
    case WarpOp::All: {
      unsigned bits = 0;
      for (int l = 0; l < kWarpSize; ++l) {
        if ((f.mask >> l & 1u) != 0 && value_of(l) != 0) bits |= 1u << l;
      }
      if (f.op == WarpOp::Ballot) return bits;
      if (f.op == WarpOp::Any) return bits != 0 ? 1 : 0;
      return bits == f.mask ? 1 : 0;
    }
    case WarpOp::Sync:
      return 0;
  }
  return 0;
}

const char* op_name(WarpOp op) {
  switch (op) {
    case WarpOp::Index:
      return "__shfl_sync";
    case WarpOp::Xor:
      return "__shfl_xor_sync";
    case WarpOp::Up:
      return "__shfl_up_sync";
    case WarpOp::Down:
      return "__shfl_down_sync";
    case WarpOp::Ballot:
      return "__ballot_sync";
    case WarpOp::Any:
      return "__any_sync";
    case WarpOp::All:
      return "__all_sync";
    case WarpOp::Sync:
      return "__syncwarp";
  }
  return "?";
}

// A failed block's fibers stop where they are: each is made again at the next launch.
[[noreturn]] void abandon(Executor& e, const std::string& message) {
  for (Fiber& f : e.fibers) f.started = false;
  throw SimError(message);
}

void run_block(Executor& e) {
  for (int t = 0; t < e.threads; ++t) {
    Fiber& f = e.fibers[t];
    f.state = State::Runnable;
    f.groups.clear();
    f.open.clear();
    f.index = uint3{static_cast<unsigned>(t % e.block.x), static_cast<unsigned>(t / e.block.x % e.block.y),
                    static_cast<unsigned>(t / (e.block.x * e.block.y))};
    if (f.started) continue;
    char* stack = e.stack_of(t);
#ifdef EFFARCH_SIM_ASAN
    __asan_unpoison_memory_region(stack, kStackBytes);  // the redzones of an abandoned run's frames
#endif
    getcontext(&f.context);
    f.context.uc_stack.ss_sp = stack;
    f.context.uc_stack.ss_size = kStackBytes;
    f.context.uc_link = nullptr;
    makecontext(&f.context, fiber_main, 0);
  }
  e.at_barrier = 0;
  e.done = 0;
  for (Executor::Warp& w : e.warps) {
    w.done = 0;
    w.open_count = 0;
  }
  if (!e.shared.empty()) std::memset(e.shared.data(), 0xff, e.shared.size());
  // Forward: round robin from thread 0, every runnable thread to its next wait in turn (the warps
  // in near lock step). Reverse: always the highest runnable thread, so the last warp runs as far
  // ahead of the others as the barriers let it (a write to shared memory that another warp has
  // not read yet then lands first).
  const bool eager = e.schedule == Schedule::Reverse;
  while (e.done < e.threads) {
    bool ran = false;
    for (int i = 0; i < e.threads; ++i) {
      const int t = e.schedule == Schedule::Forward ? i : e.threads - 1 - i;
      Fiber& f = e.fibers[t];
      if (f.state != State::Runnable) continue;
      enter(e, t);
      ran = true;
      if (!e.error.empty()) abandon(e, e.error);
      if (eager) i = -1;  // from the top again
    }
    if (!ran && e.done < e.threads) {
      std::string waiting;
      for (int t = 0; t < e.threads && waiting.size() < 600; ++t) {
        const Fiber& f = e.fibers[t];
        if (f.state == State::AtWarp) {
          waiting += fmt::format(" thread {} in {} (mask {:#x});", t, op_name(f.op), f.mask);
        } else if (f.state == State::AtBarrier) {
          waiting += fmt::format(" thread {} at __syncthreads;", t);
        }
      }
      abandon(e, fmt::format("deadlock in block ({}, {}, {}): no thread can move ({} of {} returned):{}",
                             e.block_index.x, e.block_index.y, e.block_index.z, e.done, e.threads, waiting));
    }
  }
}

}  // namespace

namespace {
cudaDeviceProp h100() {
  cudaDeviceProp p{};
  std::snprintf(p.name, sizeof p.name, "%s", "cuda_sim (H100 SXM properties)");
  p.major = 9;
  p.minor = 0;
  p.multiProcessorCount = 132;
  p.l2CacheSize = 50 * 1024 * 1024;
  p.warpSize = kWarpSize;
  p.maxThreadsPerBlock = kMaxThreads;
  p.sharedMemPerBlock = 48 * 1024;
  p.sharedMemPerBlockOptin = 227 * 1024;
  return p;
}
thread_local cudaDeviceProp g_device = h100();
thread_local bool g_capturing = false;
}  // namespace

cudaDeviceProp& device_properties() { return g_device; }
void set_stream_capturing(bool capturing) { g_capturing = capturing; }
bool stream_capturing() { return g_capturing; }
void reset_device() {
  g_device = h100();
  g_capturing = false;
}

void set_schedule(Schedule s) { g_schedule = s; }
Schedule schedule() { return g_schedule; }
int launches() { return static_cast<int>(g_log.size()); }
void reset_launches() { g_log.clear(); }
const LaunchRecord& last_launch() {
  if (g_log.empty()) throw SimError("cuda_sim: last_launch() with no launch since the reset");
  return g_log.back();
}
const std::vector<LaunchRecord>& launch_log() { return g_log; }
void name_next_launch(const char* name) { g_next_name = name; }

const uint3& thread_index() {
  Executor& e = exec();
  return e.self().index;
}
const uint3& block_index() { return exec().block_index; }
const dim3& block_dim() { return exec().block; }
const dim3& grid_dim() { return exec().grid; }
void* dynamic_shared() {
  Executor& e = exec();
  if (e.shared_bytes == 0) return nullptr;
  const uintptr_t p = reinterpret_cast<uintptr_t>(e.shared.data());
  return reinterpret_cast<void*>((p + 127) / 128 * 128);
}

void sync_block() {
  Executor& e = exec();
  Fiber& f = e.self();
  f.state = State::AtBarrier;
  ++e.at_barrier;
  release_barrier_if_complete(e);
  while (f.state == State::AtBarrier) {
    yield();
    if (!e.error.empty()) stop_fiber();
  }
}

uint64_t warp_collective(WarpOp op, unsigned mask, uint64_t value, int arg, int width) {
  Executor& e = exec();
  const int t = e.current, lane = t % kWarpSize, base = t - lane;
  if ((mask >> lane & 1u) == 0) {
    fail([&] {
      return fmt::format("{}: {} with mask {:#x}, which does not name the calling lane {}", e.where(t), op_name(op),
                         mask, lane);
    });
  }
  const int lanes_here = std::min(kWarpSize, e.threads - base);
  if (lanes_here < kWarpSize && (mask >> lanes_here) != 0) {
    fail([&] {
      return fmt::format("{}: {} with mask {:#x} names lanes past the block's last thread (this warp has {} lanes)",
                         e.where(t), op_name(op), mask, lanes_here);
    });
  }
  if (width <= 0 || width > kWarpSize || (width & (width - 1)) != 0) {
    fail([&] { return fmt::format("{}: {} with width {} (a power of two up to 32)", e.where(t), op_name(op), width); });
  }
  Fiber& f = e.self();
  f.op = op;
  f.mask = mask;
  f.value = value;
  f.arg = arg;
  f.width = width;
  f.state = State::AtWarp;
  // Complete when every lane of the mask waits in the same collective. The first offending lane of
  // the mask, in lane order (one that returned, or one waiting in another collective or with
  // another mask), is the one named.
  Executor::Warp& w = e.warps[base / kWarpSize];
  int open = w.open_count;
  unsigned elsewhere = 0;  // lanes waiting in the warp's other collectives
  for (int i = 0; i < w.open_count; ++i) {
    if (w.open[i].mask == mask && w.open[i].op == op) {
      open = i;
    } else {
      elsewhere |= w.open[i].arrived;
    }
  }
  const unsigned returned = w.done & mask, mismatched = elsewhere & mask;
  if ((returned | mismatched) != 0) {
    const int l = __builtin_ctz(returned | mismatched);
    if ((returned >> l & 1u) != 0) {
      fail([&] {
        return fmt::format("{}: {} with mask {:#x} waits for lane {}, which has returned", e.where(t), op_name(op),
                           mask, l);
      });
    }
    const Fiber& g = e.fibers[base + l];
    fail([&] {
      return fmt::format("{}: {} with mask {:#x} while lane {} of its warp waits in {} with mask {:#x}", e.where(t),
                         op_name(op), mask, l, op_name(g.op), g.mask);
    });
  }
  if (open == w.open_count) w.open[w.open_count++] = Executor::Open{mask, 0u, op};
  w.open[open].arrived |= 1u << lane;
  const bool complete = w.open[open].arrived == mask;
  if (complete) {
    for (int l = 0; l < kWarpSize; ++l) {  // a shuffle's source lane must take part
      if ((mask >> l & 1u) == 0) continue;
      const int src = source_lane(e.fibers[base + l], l);
      if (src >= 0 && (src >= kWarpSize || (mask >> src & 1u) == 0)) {
        fail([&] {
          return fmt::format("{}: lane {} reads lane {} in {} with mask {:#x}, which does not name it", e.where(t), l,
                             src, op_name(op), mask);
        });
      }
    }
    for (int l = 0; l < kWarpSize; ++l) {
      if ((mask >> l & 1u) == 0) continue;
      e.fibers[base + l].result = collective_result(e, base, e.fibers[base + l], l);
    }
    for (int l = 0; l < kWarpSize; ++l) {
      if ((mask >> l & 1u) != 0) e.fibers[base + l].state = State::Runnable;
    }
    w.open[open] = w.open[--w.open_count];
  }
  while (f.state == State::AtWarp) {
    yield();
    if (!e.error.empty()) stop_fiber();
  }
  return f.result;
}

void async_copy(void* dst, const void* src, int bytes, int src_bytes) {
  exec().self().open.push_back(Fiber::Copy{dst, src, bytes, src_bytes});
}
void async_commit() {
  Fiber& f = exec().self();
  f.groups.push_back(std::move(f.open));
  f.open.clear();
}
void async_wait(int pending) {
  Fiber& f = exec().self();
  while (static_cast<int>(f.groups.size()) > pending) {
    for (const Fiber::Copy& c : f.groups.front()) {
      std::memcpy(c.dst, c.src, static_cast<size_t>(c.src_bytes));
      std::memset(static_cast<char*>(c.dst) + c.src_bytes, 0, static_cast<size_t>(c.bytes - c.src_bytes));
    }
    f.groups.erase(f.groups.begin());
  }
}

void sync_warp(unsigned mask) { (void)warp_collective(WarpOp::Sync, mask, 0, 0, kWarpSize); }

void run_grid(dim3 grid, dim3 block, size_t shared_bytes, const std::function<void()>& body) {
  if (g_exec != nullptr) throw SimError("cuda_sim: a launch from inside a kernel");
  const int64_t threads = static_cast<int64_t>(block.x) * block.y * block.z;
  if (threads < 1 || threads > kMaxThreads) {
    throw SimError(fmt::format("cuda_sim: a block of {} threads ({} x {} x {}): 1..1024 on a GPU", threads, block.x,
                               block.y, block.z));
  }
  if (grid.x < 1 || grid.y < 1 || grid.z < 1 || grid.y > 65535 || grid.z > 65535) {
    throw SimError(
        fmt::format("cuda_sim: a grid of {} x {} x {} blocks (x >= 1, y and z 1..65535)", grid.x, grid.y, grid.z));
  }
  if (shared_bytes > 227 * 1024) {
    throw SimError(
        fmt::format("cuda_sim: {} bytes of dynamic shared memory (an H100 block has at most 227 KiB)", shared_bytes));
  }
  thread_local Executor executor;
  Executor& e = executor;
  e.fibers.resize(kMaxThreads);
  e.grid = grid;
  e.block = block;
  e.threads = static_cast<int>(threads);
  e.body = &body;
  e.shared_bytes = shared_bytes;
  e.shared.assign(shared_bytes == 0 ? 0 : shared_bytes + 128, 0xff);
  e.error.clear();
  e.schedule = g_schedule;
  g_log.push_back(LaunchRecord{grid, block, shared_bytes, g_next_name});
  g_next_name = "";
  g_exec = &e;
  struct Reset {
    ~Reset() { g_exec = nullptr; }
  } reset;
  const int64_t blocks = static_cast<int64_t>(grid.x) * grid.y * grid.z;
  for (int64_t i = 0; i < blocks; ++i) {
    const int64_t b = e.schedule == Schedule::Forward ? i : blocks - 1 - i;
    e.block_index = uint3{static_cast<unsigned>(b % grid.x), static_cast<unsigned>(b / grid.x % grid.y),
                          static_cast<unsigned>(b / (static_cast<int64_t>(grid.x) * grid.y))};
    run_block(e);
  }
}

}  // namespace effarch::sim
