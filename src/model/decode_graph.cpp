// DecodeMode::CudaGraph: one decode step recorded with at::cuda::CUDAGraph and replayed for every
// later step. The step reads its position from a device tensor (Model::forward_static), so the
// recorded kernels serve any position; stream capture records without executing, so capturing
// does not advance the cache.

#include "decode_graph.h"

#include <fmt/format.h>

#include "effarch/common/error.h"

#ifdef EFFARCH_WITH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace effarch::model {

#ifdef EFFARCH_WITH_CUDA
namespace {

struct CudaDecodeGraph final : DecodeGraph {
  at::cuda::CUDAGraph graph;
  void replay() override { graph.replay(); }
};

}  // namespace

std::unique_ptr<DecodeGraph> capture_decode_graph(const at::Tensor& ids,
                                                  const std::function<at::Tensor(const at::Tensor&)>& step) {
  auto g = std::make_unique<CudaDecodeGraph>();
  g->ids = ids.clone();
  const c10::cuda::CUDAStream current = c10::cuda::getCurrentCUDAStream(ids.device().index());
  const c10::cuda::CUDAStream side = c10::cuda::getStreamFromPool(/*isHighPriority=*/false, ids.device().index());
  at::cuda::CUDAEvent ready;
  ready.record(current);
  ready.block(side);
  {
    const c10::cuda::CUDAStreamGuard guard(side);
    g->graph.capture_begin();
    try {
      g->logits = step(g->ids);
      g->graph.capture_end();
    } catch (...) {
      try {
        g->graph.capture_end();
      } catch (...) {
      }
      throw;
    }
  }
  at::cuda::CUDAEvent captured;
  captured.record(side);
  captured.block(current);
  return g;
}
#else
std::unique_ptr<DecodeGraph> capture_decode_graph(const at::Tensor&, const std::function<at::Tensor(const at::Tensor&)>&) {
  throw UsageError("CUDA graphs: this effarch was built without CUDA");
}
#endif

}  // namespace effarch::model
