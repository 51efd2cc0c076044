#pragma once
// A block's threads moving `count` elements, thread tid taking elements tid, tid + nthreads, ...
// (the plain strided loop's assignment), with kBatch reads in flight before any write.
//
// Why: a loop that reads an element and writes it (global to shared, or shared and global to
// global) through the generic pointers the kernels' parameter structs hold runs one element at a
// time on the GPU: the compiler cannot prove a write apart from the next iteration's read, so it
// cannot move the read up, and each element waits out a whole global-memory latency. ncu on an
// H200 put 60% of the SSD scan's stall cycles there (Codestral's shape, docs/perf/README.md).
// Reading kBatch elements into registers first keeps kBatch loads in flight per thread. The
// values and where they go are the plain loop's, so results are bitwise the same.
//
//   read(i)      -> V   the element's value (any copyable type: a float, a small struct)
//   write(i, v)         its destination

#include <type_traits>

#include "common/host_device.h"

namespace effarch::kernels {

inline constexpr int kStagedBatch = 8;  // reads in flight per thread

template <int kBatch = kStagedBatch, class Read, class Write>
EFFARCH_HD void staged_copy(int count, int tid, int nthreads, Read&& read, Write&& write) {
  using V = std::decay_t<decltype(read(0))>;
  for (int base = tid; base < count; base += kBatch * nthreads) {
    V v[kBatch]{};
EFFARCH_UNROLL
    for (int k = 0; k < kBatch; ++k) {
      const int i = base + k * nthreads;
      if (i < count) v[k] = read(i);
    }
EFFARCH_UNROLL
    for (int k = 0; k < kBatch; ++k) {
      const int i = base + k * nthreads;
      if (i < count) write(i, v[k]);
    }
  }
}

}  // namespace effarch::kernels
