#pragma once
// A decode step captured as a CUDA graph (DecodeMode::CudaGraph). Internal to the library.

#include <functional>
#include <memory>

#include <ATen/core/Tensor.h>

namespace effarch::model {

struct DecodeGraph {
  virtual ~DecodeGraph() = default;
  at::Tensor ids;     // [B, 1] int64: copy the step's tokens here, then replay
  at::Tensor logits;  // [B, V] fp32: what the last replay wrote
  virtual void replay() = 0;
};

// Records `step` (reading `ids`, returning the logits) into a CUDA graph on a side stream; the
// step must have run once eagerly before (lazy initialisation inside kernels and libraries).
// Throws UsageError in builds without CUDA.
std::unique_ptr<DecodeGraph> capture_decode_graph(const at::Tensor& ids,
                                                  const std::function<at::Tensor(const at::Tensor&)>& step);

}  // namespace effarch::model
