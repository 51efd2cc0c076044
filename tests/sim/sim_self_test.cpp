// The CPU executor itself (cuda_sim.h): what it must do for a kernel's result to mean anything
// (barriers, every warp collective, dynamic shared memory, the grid's coordinates), and the
// kernel bugs it must report rather than run through (a barrier part of the block skips, a
// collective whose mask leaves out a lane it reads or the caller, a deadlock), and a race that
// only the order of the threads shows.
#include <gtest/gtest.h>

#include <numeric>
#include <string>
#include <vector>

#include "common/host_device.h"
#include "cuda_sim.h"

namespace effarch::sim {
namespace {

struct Out {
  int* v;
};

// The executor's error for a one-block launch of `kernel` over `threads` threads, or a test
// failure ("no error") and an empty string if it ran through.
template <typename Kernel>
std::string launch_error(Kernel kernel, int threads) {
  std::vector<int> v(static_cast<size_t>(threads), 0);
  try {
    launch(kernel, dim3(1), dim3(threads), 0, Out{v.data()});
  } catch (const SimError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no error";
  return {};
}

__global__ void coordinates_kernel(Out o) {
  const unsigned b = blockIdx.x + gridDim.x * blockIdx.y;
  const unsigned t = threadIdx.x + blockDim.x * threadIdx.y;
  o.v[b * blockDim.x * blockDim.y + t] = static_cast<int>(1000 * b + t);
}

TEST(CudaSim, EveryThreadOfEveryBlockRunsWithItsCoordinates) {
  std::vector<int> v(3 * 2 * 8 * 4, -1);
  launch(coordinates_kernel, dim3(3, 2), dim3(8, 4), 0, Out{v.data()});
  for (unsigned b = 0; b < 6; ++b) {
    for (unsigned t = 0; t < 32; ++t) EXPECT_EQ(v[b * 32 + t], static_cast<int>(1000 * b + t));
  }
  EXPECT_EQ(last_launch().grid.x, 3u);
  EXPECT_EQ(last_launch().block.y, 4u);
}

// Each thread writes shared memory, the block waits, each reads its neighbour's: right only if
// the barrier holds every thread until all have written.
__global__ void barrier_kernel(Out o) {
  __shared__ int s[256];
  const int t = static_cast<int>(threadIdx.x), n = static_cast<int>(blockDim.x);
  s[t] = t * t;
  __syncthreads();
  o.v[t] = s[(t + 1) % n];
}

TEST(CudaSim, SyncthreadsHoldsTheBlockUntilAllArrive) {
  for (Schedule order : {Schedule::Forward, Schedule::Reverse}) {
    set_schedule(order);
    std::vector<int> v(256, -1);
    launch(barrier_kernel, dim3(1), dim3(256), 0, Out{v.data()});
    for (int t = 0; t < 256; ++t) EXPECT_EQ(v[t], ((t + 1) % 256) * ((t + 1) % 256));
  }
  set_schedule(Schedule::Forward);
}

// Without the barrier the result depends on the order the threads run: the executor's two
// schedules give different results, which is how tests/sim catch a shared-memory race.
__global__ void race_kernel(Out o) {
  __shared__ int s[64];
  const int t = static_cast<int>(threadIdx.x);
  s[t] = t + 1;
  o.v[t] = s[63 - t];  // no barrier: a race
}

TEST(CudaSim, ARaceGivesDifferentResultsUnderTheTwoSchedules) {
  std::vector<int> forward(64, 0), reverse(64, 0);
  launch(race_kernel, dim3(1), dim3(64), 0, Out{forward.data()});
  set_schedule(Schedule::Reverse);
  launch(race_kernel, dim3(1), dim3(64), 0, Out{reverse.data()});
  set_schedule(Schedule::Forward);
  EXPECT_NE(forward, reverse);
}

// Two block sums through one shared buffer without the barrier between the read of the first and
// the writes of the second: the warp that runs ahead overwrites a sum another warp has not read.
// Round robin (Forward) hides it; the eager schedule (Reverse) does not.
__global__ void reused_buffer_kernel(Out o) {
  __shared__ int red[4];
  const int t = static_cast<int>(threadIdx.x), warp = t / 32, lane = t % 32;
  int v = t;
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  if (lane == 0) red[warp] = v;
  __syncthreads();
  const int first = red[0] + red[1] + red[2] + red[3];
  // (a __syncthreads belongs here)
  int u = 2 * t;
  for (int offset = 16; offset > 0; offset /= 2) u += __shfl_xor_sync(0xffffffffu, u, offset);
  if (lane == 0) red[warp] = u;
  __syncthreads();
  o.v[t] = first * 100000 + red[0] + red[1] + red[2] + red[3];
}

TEST(CudaSim, ABufferReusedBeforeEveryWarpReadItShowsUnderTheEagerSchedule) {
  std::vector<int> forward(128, 0), reverse(128, 0);
  launch(reused_buffer_kernel, dim3(1), dim3(128), 0, Out{forward.data()});
  EXPECT_EQ(forward[0], (127 * 128 / 2) * 100000 + 127 * 128);  // round robin: as if the barrier were there
  set_schedule(Schedule::Reverse);
  launch(reused_buffer_kernel, dim3(1), dim3(128), 0, Out{reverse.data()});
  set_schedule(Schedule::Forward);
  EXPECT_NE(forward, reverse);
}

__global__ void shuffles_kernel(Out o) {
  const int lane = static_cast<int>(threadIdx.x) % 32, warp = static_cast<int>(threadIdx.x) / 32;
  int* r = o.v + (warp * 32 + lane) * 8;
  r[0] = __shfl_sync(0xffffffffu, lane * 10, 3);
  r[1] = __shfl_xor_sync(0xffffffffu, lane, 5);
  r[2] = __shfl_up_sync(0xffffffffu, lane, 2);
  r[3] = __shfl_down_sync(0xffffffffu, lane, 2);
  r[4] = static_cast<int>(__ballot_sync(0xffffffffu, lane % 3 == 0));
  r[5] = __any_sync(0xffffffffu, lane == 31 && warp == 1);
  r[6] = __all_sync(0xffffffffu, lane < 32);
  float sum = static_cast<float>(lane);
  for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
  r[7] = static_cast<int>(sum);
  __syncwarp();
}

TEST(CudaSim, WarpCollectivesGiveWhatCudaDefines) {
  std::vector<int> v(64 * 8, -1);
  launch(shuffles_kernel, dim3(1), dim3(64), 0, Out{v.data()});
  unsigned ballot = 0;
  for (int l = 0; l < 32; l += 3) ballot |= 1u << l;
  for (int t = 0; t < 64; ++t) {
    const int lane = t % 32, warp = t / 32;
    const int* r = v.data() + t * 8;
    EXPECT_EQ(r[0], 30);
    EXPECT_EQ(r[1], lane ^ 5);
    EXPECT_EQ(r[2], lane < 2 ? lane : lane - 2);  // below the first lane: its own value
    EXPECT_EQ(r[3], lane >= 30 ? lane : lane + 2);
    EXPECT_EQ(static_cast<unsigned>(r[4]), ballot);
    EXPECT_EQ(r[5], warp == 1 ? 1 : 0);
    EXPECT_EQ(r[6], 1);
    EXPECT_EQ(r[7], 31 * 32 / 2);
  }
}

// Width 8: four segments, each shuffling within itself.
__global__ void segment_kernel(Out o) {
  const int lane = static_cast<int>(threadIdx.x);
  o.v[lane] = __shfl_sync(0xffffffffu, lane, 1, 8);
}

TEST(CudaSim, ShuffleWidthKeepsEachSegmentApart) {
  std::vector<int> v(32, -1);
  launch(segment_kernel, dim3(1), dim3(32), 0, Out{v.data()});
  for (int l = 0; l < 32; ++l) EXPECT_EQ(v[l], l / 8 * 8 + 1);
}

// Dynamic shared memory: aligned, shared by the block, 0xff-filled before each block.
__global__ void dynamic_kernel(Out o) {
  EFFARCH_DYNAMIC_SHARED(16, int, d);
  const int t = static_cast<int>(threadIdx.x);
  if (t == 0) o.v[blockIdx.x * 2] = d[5];  // what no thread wrote: the fill
  __syncthreads();
  d[t] = static_cast<int>(blockIdx.x) + t;
  __syncthreads();
  if (t == 0) o.v[blockIdx.x * 2 + 1] = d[31];
}

TEST(CudaSim, DynamicSharedMemoryIsFilledBeforeEachBlock) {
  std::vector<int> v(4, 0);
  launch(dynamic_kernel, dim3(2), dim3(32), 32 * sizeof(int), Out{v.data()});
  EXPECT_EQ(v[0], -1);
  EXPECT_EQ(v[1], 31);
  EXPECT_EQ(v[2], -1);
  EXPECT_EQ(v[3], 32);
}

// ---- bugs it must report ----

__global__ void divergent_barrier_kernel(Out o) {
  if (threadIdx.x >= 16) return;
  __syncthreads();
  o.v[threadIdx.x] = 1;
}

TEST(CudaSim, ABarrierPartOfTheBlockSkipsIsAnError) {
  const std::string m = launch_error(divergent_barrier_kernel, 32);
  EXPECT_NE(m.find("__syncthreads"), std::string::npos) << m;
  EXPECT_NE(m.find("16 of the block's 32 threads have returned"), std::string::npos) << m;
}

__global__ void partial_mask_kernel(Out o) {
  const int lane = static_cast<int>(threadIdx.x);
  if (lane < 16) o.v[lane] = __shfl_sync(0x0000ffffu, lane, 20);  // reads a lane outside its mask
}

TEST(CudaSim, AShuffleReadingALaneOutsideItsMaskIsAnError) {
  std::vector<int> v(32, 0);
  EXPECT_THROW(launch(partial_mask_kernel, dim3(1), dim3(32), 0, Out{v.data()}), SimError);
}

__global__ void half_warp_kernel(Out o) {
  const int lane = static_cast<int>(threadIdx.x);
  if (lane < 16) o.v[lane] = __shfl_xor_sync(0xffffffffu, lane, 1);  // lanes 16..31 never come
}

TEST(CudaSim, ACollectiveMissingLanesIsAnError) {
  const std::string m = launch_error(half_warp_kernel, 32);
  EXPECT_NE(m.find("__shfl_xor_sync"), std::string::npos) << m;
}

// Two halves of a warp in collectives of their own at once (disjoint masks, different kinds):
// each completes with its own lanes, under either order of the threads.
__global__ void two_halves_kernel(Out o) {
  const int lane = static_cast<int>(threadIdx.x);
  if (lane < 16) {
    o.v[lane] = __shfl_xor_sync(0x0000ffffu, lane, 1);
  } else {
    o.v[lane] = static_cast<int>(__ballot_sync(0xffff0000u, lane % 2 == 0));
  }
}

TEST(CudaSim, DisjointCollectivesOfOneWarpEachComplete) {
  for (const Schedule order : {Schedule::Forward, Schedule::Reverse}) {
    std::vector<int> v(32, -1);
    set_schedule(order);
    launch(two_halves_kernel, dim3(1), dim3(32), 0, Out{v.data()});
    set_schedule(Schedule::Forward);
    for (int lane = 0; lane < 16; ++lane) EXPECT_EQ(v[lane], lane ^ 1) << lane;
    for (int lane = 16; lane < 32; ++lane) EXPECT_EQ(static_cast<unsigned>(v[lane]), 0x55550000u) << lane;
  }
}

// Lanes of one mask in collectives of different kinds.
__global__ void mixed_kinds_kernel(Out o) {
  const int lane = static_cast<int>(threadIdx.x);
  o.v[lane] = lane % 2 == 0 ? __shfl_xor_sync(0xffffffffu, lane, 1)
                            : static_cast<int>(__ballot_sync(0xffffffffu, true));
}

TEST(CudaSim, LanesOfOneMaskInDifferentCollectivesAreAnError) {
  const std::string m = launch_error(mixed_kinds_kernel, 32);
  EXPECT_NE(m.find("__ballot_sync with mask 0xffffffff while lane 0 of its warp waits in __shfl_xor_sync"),
            std::string::npos)
      << m;
}

// A lane of the mask waiting in another collective, after a lane of the mask that waits in the
// right one: in thread order lane 0 waits in {0, 1, 2}, lane 1 in {1, 3}, and lane 2's arrival in
// {0, 1, 2} must not count lane 1 as arrived.
__global__ void overlapping_masks_kernel(Out o) {
  const int lane = static_cast<int>(threadIdx.x);
  if (lane == 0 || lane == 2) o.v[lane] = __shfl_sync(0x7u, lane, 0);
  if (lane == 1 || lane == 3) o.v[lane] = __shfl_xor_sync(0xau, lane, 2);
}

TEST(CudaSim, ALaneWaitingUnderAnotherMaskIsNotCountedAsArrived) {
  const std::string m = launch_error(overlapping_masks_kernel, 32);
  EXPECT_NE(m.find("__shfl_sync with mask 0x7 while lane 1 of its warp waits in __shfl_xor_sync with mask 0xa"),
            std::string::npos)
      << m;
}

__global__ void deadlock_kernel(Out o) {
  const int t = static_cast<int>(threadIdx.x);
  if (t < 32) {
    __syncthreads();
  } else {
    o.v[t] = __shfl_xor_sync(0xffffffffu, t, 1);
    __syncthreads();
  }
}

TEST(CudaSim, AWarpThatShufflesThenReachesTheBarrierRuns) {
  std::vector<int> v(64, 0);
  // warp 1 reaches its shuffle together, then the barrier: fine (ADeadlockIsReported splits a warp)
  EXPECT_NO_THROW(launch(deadlock_kernel, dim3(1), dim3(64), 0, Out{v.data()}));
  EXPECT_EQ(v[33], 32);
}

__global__ void split_warp_kernel(Out o) {
  const int t = static_cast<int>(threadIdx.x);
  if (t % 2 == 0) {
    __syncthreads();
  } else {
    o.v[t] = __shfl_xor_sync(0xffffffffu, t, 1);
  }
}

TEST(CudaSim, ADeadlockIsReported) {
  const std::string m = launch_error(split_warp_kernel, 32);
  EXPECT_TRUE(m.find("deadlock") != std::string::npos || m.find("returned") != std::string::npos) << m;
}

TEST(CudaSim, BadLaunchShapesAreRefused) {
  std::vector<int> v(1, 0);
  EXPECT_THROW(launch(coordinates_kernel, dim3(1), dim3(2048), 0, Out{v.data()}), SimError);
  EXPECT_THROW(launch(coordinates_kernel, dim3(0), dim3(32), 0, Out{v.data()}), SimError);
  EXPECT_THROW(launch(dynamic_kernel, dim3(1), dim3(32), 300 * 1024, Out{v.data()}), SimError);
}

}  // namespace
}  // namespace effarch::sim
