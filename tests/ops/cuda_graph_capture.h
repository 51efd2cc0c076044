#pragma once
// Captures `step` into a CUDA graph on a side stream (capture cannot run on the legacy default
// stream) and returns what the captured step returned: the buffer each replay rewrites. For the
// GPU tests that check a kernel replays without a host sync (CUDA builds only).

#ifdef EFFARCH_WITH_CUDA
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

namespace effarch::test {

template <typename Step>
at::Tensor capture_into(at::cuda::CUDAGraph& graph, Step&& step) {
  const c10::cuda::CUDAStream side = c10::cuda::getStreamFromPool(false, 0);
  const c10::cuda::CUDAStreamGuard guard(side);
  graph.capture_begin();
  at::Tensor out = step();
  graph.capture_end();
  return out;
}

}  // namespace effarch::test
#endif
