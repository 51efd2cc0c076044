#pragma once
// A CPU executor for the project's CUDA kernels: the kernels' own source (kernels/<op>/*.cuh and
// their launchers), compiled by the host compiler with EFFARCH_CUDA_SIM defined, runs on the CPU
// with every CUDA thread a fiber. Tests built on it (tests/sim/) call a kernel's launcher on host
// memory and compare what it wrote with the ATen reference, so that a machine without a GPU runs
// the code a GPU would: the indexing of blocks, warps and lanes, the barriers, the shuffles, the
// launch's grid and its path choices. What it cannot show is speed, and what only the hardware
// does (the SFU's approximations, fp contraction: nvcc fuses a * b + c, the host compiler does
// not), so its comparisons hold a tolerance where the GPU tests hold bits.
//
// The model (cuda_sim.cpp):
// - Blocks run one after another, in grid order (or reversed: Schedule). A block's threads are
//   fibers on one OS thread, switched only where a thread waits: __syncthreads, the warp
//   collectives (__shfl*_sync, __ballot_sync, __syncwarp). Runs are deterministic.
// - __syncthreads waits for every thread of the block; a thread that returned while others wait
//   at a barrier is an error (the barrier would hang or misbehave on a GPU), as is a thread left
//   waiting when no thread can move (a deadlock).
// - A warp collective waits for every lane its mask names: a mask naming a lane outside the block,
//   or lanes of one warp in collectives of different kinds, is an error.
// - __shared__ is a function-local static (blocks never overlap); dynamic shared memory
//   (EFFARCH_DYNAMIC_SHARED) is filled with 0xff bytes (a float NaN) before each block, so a
//   read of what no thread wrote shows in the results.
// - Schedule::Forward runs a block's threads round robin from thread 0, each to its next wait
//   (the warps in near lock step); Schedule::Reverse runs the blocks in reverse and always the
//   highest runnable thread, so the last warp runs as far ahead as the barriers let it. A kernel
//   whose result depends on the order (a shared-memory race, a buffer reused before every warp
//   has read it, blocks that assume an order) gives different bytes under the two, which
//   tests/sim compare (sim_test.h, run_both_orders).
// - Atomics are plain read-modify-writes, fences nothing, programmatic-launch waits nothing;
//   cp.async copies land at the thread's wait for them (async_copy).
//
// Include this first in a translation unit (before any kernel header): it includes the CUDA
// headers it needs and then redefines their host-side qualifiers.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#ifndef EFFARCH_CUDA_SIM
#error "tests/sim/cuda_sim.h: compile with EFFARCH_CUDA_SIM defined (tests/sim/CMakeLists.txt does)"
#endif

namespace effarch::sim {

// A kernel broke the model above (a divergent barrier, a deadlock, a bad mask): the launch stops
// and the launcher's caller sees this exception.
class SimError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class Schedule { Forward, Reverse };
// The order of the next launches (Forward by default); the calling thread's setting.
void set_schedule(Schedule s);
Schedule schedule();

struct LaunchRecord {
  dim3 grid, block;
  size_t shared_bytes = 0;
  const char* name = "";  // what the launcher calls the kernel (launch_plain's `what`), if it named it
};
// Every launch's shape since the last reset (its count, the last one: an error if none): tests
// check which launches a launcher made (the grids its plan chose).
int launches();
void reset_launches();
const LaunchRecord& last_launch();
const std::vector<LaunchRecord>& launch_log();
// The name the next launch records (a static string; launch_plain passes its `what`).
void name_next_launch(const char* name);

// The device the CUDA bindings (src/ops/*_cuda.cpp through cuda_binding.h) plan for: an H100's
// properties (132 SMs, 50 MiB of L2, compute capability 9.0) unless a test changes them, and
// whether the stream counts as captured into a CUDA graph (false unless set). reset_device()
// restores both. The calling thread's settings.
cudaDeviceProp& device_properties();
void set_stream_capturing(bool capturing);
bool stream_capturing();
void reset_device();

// The current thread's coordinates (what threadIdx, blockIdx, blockDim, gridDim read).
const uint3& thread_index();
const uint3& block_index();
const dim3& block_dim();
const dim3& grid_dim();

void sync_block();
void sync_warp(unsigned mask);
// A warp collective: every lane of `mask` passes `value` and `arg`; `op` says what each gets back.
enum class WarpOp { Index, Xor, Up, Down, Ballot, Any, All, Sync };
uint64_t warp_collective(WarpOp op, unsigned mask, uint64_t value, int arg, int width);
// cp.async: a copy of `bytes` (the first `src_bytes` from src, the rest zeros) into shared memory,
// queued in the thread's open group; async_commit closes the group; async_wait(n) lands every
// group but the newest n. The bytes land at the wait, so a read before it sees the old contents.
void async_copy(void* dst, const void* src, int bytes, int src_bytes);
void async_commit();
void async_wait(int pending);
// The launch's dynamic shared memory (128-byte aligned, 0xff-filled before each block).
void* dynamic_shared();

// Runs `body` as every thread of every block of the grid. Throws SimError.
void run_grid(dim3 grid, dim3 block, size_t shared_bytes, const std::function<void()>& body);

template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes, Args&&... args) {
  // Each thread gets its own copy of the parameters, as a kernel's parameters are per thread.
  run_grid(grid, block, shared_bytes, [&] { kernel(Params(args)...); });
}

template <typename T>
uint64_t to_bits(T v) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "warp collectives move up to 8 bytes");
  uint64_t u = 0;
  std::memcpy(&u, &v, sizeof v);
  return u;
}
template <typename T>
T from_bits(uint64_t u) {
  T v;
  std::memcpy(&v, &u, sizeof v);
  return v;
}

}  // namespace effarch::sim

// ---- the CUDA language, host side ----
#undef __shared__
#define __shared__ static
#undef __forceinline__
#define __forceinline__ inline
#undef __launch_bounds__
#define __launch_bounds__(...)

#define threadIdx (::effarch::sim::thread_index())
#define blockIdx (::effarch::sim::block_index())
#define blockDim (::effarch::sim::block_dim())
#define gridDim (::effarch::sim::grid_dim())

inline void __syncthreads() { ::effarch::sim::sync_block(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { ::effarch::sim::sync_warp(mask); }
inline void __threadfence() {}
inline void __threadfence_block() {}
inline void __threadfence_system() {}

template <typename T>
inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
  using namespace ::effarch::sim;
  return from_bits<T>(warp_collective(WarpOp::Index, mask, to_bits(v), src, width));
}
template <typename T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  using namespace ::effarch::sim;
  return from_bits<T>(warp_collective(WarpOp::Xor, mask, to_bits(v), lane_mask, width));
}
template <typename T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  using namespace ::effarch::sim;
  return from_bits<T>(warp_collective(WarpOp::Up, mask, to_bits(v), static_cast<int>(delta), width));
}
template <typename T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  using namespace ::effarch::sim;
  return from_bits<T>(warp_collective(WarpOp::Down, mask, to_bits(v), static_cast<int>(delta), width));
}
inline unsigned __ballot_sync(unsigned mask, int pred) {
  using namespace ::effarch::sim;
  return static_cast<unsigned>(warp_collective(WarpOp::Ballot, mask, pred != 0, 0, 32));
}
inline int __any_sync(unsigned mask, int pred) {
  using namespace ::effarch::sim;
  return static_cast<int>(warp_collective(WarpOp::Any, mask, pred != 0, 0, 32));
}
inline int __all_sync(unsigned mask, int pred) {
  using namespace ::effarch::sim;
  return static_cast<int>(warp_collective(WarpOp::All, mask, pred != 0, 0, 32));
}

inline int __popc(unsigned v) { return __builtin_popcount(v); }
inline int __popcll(unsigned long long v) { return __builtin_popcountll(v); }
inline int __ffs(int v) { return __builtin_ffs(v); }
inline int __clz(int v) { return v == 0 ? 32 : __builtin_clz(static_cast<unsigned>(v)); }

template <typename T>
inline T __ldg(const T* p) {
  return *p;
}
template <typename T>
inline T __ldcs(const T* p) {
  return *p;
}
template <typename T>
inline T __ldcg(const T* p) {
  return *p;
}
template <typename T>
inline T __ldlu(const T* p) {
  return *p;
}
template <typename T>
inline void __stcs(T* p, T v) {
  *p = v;
}
template <typename T>
inline void __stcg(T* p, T v) {
  *p = v;
}

// Atomics: blocks and fibers never run at once, so a plain read-modify-write is atomic.
template <typename T>
inline T atomicAdd(T* p, T v) {
  const T old = *p;
  *p = old + v;
  return old;
}
template <typename T>
inline T atomicMax(T* p, T v) {
  const T old = *p;
  *p = std::max(old, v);
  return old;
}
template <typename T>
inline T atomicMin(T* p, T v) {
  const T old = *p;
  *p = std::min(old, v);
  return old;
}
template <typename T>
inline T atomicExch(T* p, T v) {
  const T old = *p;
  *p = v;
  return old;
}
template <typename T>
inline T atomicCAS(T* p, T compare, T v) {
  const T old = *p;
  if (old == compare) *p = v;
  return old;
}

// Device math: the exact host functions (the GPU's approximate forms differ by a few ulp).
inline float __uint_as_float(unsigned u) { return ::effarch::sim::from_bits<float>(u); }
inline unsigned __float_as_uint(float f) { return static_cast<unsigned>(::effarch::sim::to_bits(f)); }
inline float __int_as_float(int i) { return ::effarch::sim::from_bits<float>(static_cast<unsigned>(i)); }
inline int __float_as_int(float f) { return static_cast<int>(::effarch::sim::to_bits(f)); }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __frcp_rn(float a) { return 1.0f / a; }
inline float __expf(float v) { return std::exp(v); }
inline float __logf(float v) { return std::log(v); }
inline float __powf(float a, float b) { return std::pow(a, b); }
inline float __saturatef(float v) { return v < 0.f ? 0.f : (v > 1.f ? 1.f : v); }
inline float rsqrtf(float v) { return 1.0f / std::sqrt(v); }
inline float __frsqrt_rn(float v) { return 1.0f / std::sqrt(v); }
inline double rsqrt(double v) { return 1.0 / std::sqrt(v); }
inline float exp10f(float v) { return std::pow(10.0f, v); }
inline float __sinf(float v) { return std::sin(v); }
inline float __cosf(float v) { return std::cos(v); }
inline void __sincosf(float v, float* s, float* c) {
  *s = std::sin(v);
  *c = std::cos(v);
}
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline int64_t min(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t max(int64_t a, int64_t b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline float min(float a, float b) { return std::fmin(a, b); }
inline float max(float a, float b) { return std::fmax(a, b); }
inline size_t __cvta_generic_to_shared(const void* p) { return reinterpret_cast<size_t>(p); }
