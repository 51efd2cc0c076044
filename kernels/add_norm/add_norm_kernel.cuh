#pragma once
// The fused residual add + norm kernels (add_norm.h): the element shape, one block of
// addnorm::threads_for(dim) threads per row, and the vector shape (add_norm_vec_kernel, below).
// The element shape: phase 1 writes the residual and sums (n^2 or n) over the block (warp
// shuffles, then the warps' sums through shared memory); LayerNorm then sums (n - mean)^2 the same
// way; the last phase writes the normed row, its weight (and bias) asked into L1 at the start. The
// norm's inputs stay in registers between the phases where the row fits (addnorm::RowCache: hidden
// sizes up to 4096); wider rows are read back from residual_out by the thread that wrote them (no
// barrier needed for that, L1/L2 hits).
// Instantiated per model dtype T; the residual is T or fp32 (a branch uniform over the grid).

#include "add_norm/add_norm.h"
#include "add_norm/add_norm_io.cuh"
#include "add_norm/add_norm_math.h"
#include "common/block_sum.cuh"
#include "common/convert.cuh"
#include "common/row8.h"
#include "common/grid_dependency.h"
#include "common/launch.h"

namespace effarch::kernels {

namespace addnorm {

// Both shapes' start: the next kernel may launch; the weight and LayerNorm's bias the last phase
// reads asked into L1 while the kernel before finishes; then the wait for it (x and y come from
// the kernels before).
__device__ __forceinline__ void start_row(const AddNormParams& p, int tid, int n) {
  allow_dependent_launch();
  prefetch_norm_weights(p, tid, n);
  grid_dependency_wait();
}

}  // namespace addnorm

template <typename T>
__global__ void __launch_bounds__(addnorm::kMaxThreads, 2) add_norm_kernel(const AddNormParams p) {
  using Io = addnorm::TypedIo<T>;
  __shared__ float red[addnorm::kMaxThreads / kWarpLanes];
  const int tid = static_cast<int>(threadIdx.x), n = static_cast<int>(blockDim.x);
  addnorm::start_row(p, tid, n);
  const int64_t row = blockIdx.x;
  addnorm::RowCache kept;  // registers: every index is a constant after unrolling
  addnorm::RowCache* cache = addnorm::caches_row(p.dim, n) ? &kept : nullptr;  // uniform over the grid
  const float first = block_sum(red, addnorm::add_partial<Io>(p, row, tid, n, cache));
  float second = 0.0f;
  if (p.norm == NormType::kLayer) {
    second = block_sum(red, addnorm::variance_partial<Io>(p, row, tid, n, addnorm::mean_of(first, p.dim), cache));
  }
  addnorm::norm_write<Io>(p, row, tid, n, first, second, cache);
}

// The vector shape (add_norm_math.h, "The vector shape"): a block of vector_threads_for(dim)
// threads a row, each with up to kVecSlots 16-byte vectors kept in registers.
template <typename T>
__global__ void __launch_bounds__(addnorm::kMaxThreads, 2) add_norm_vec_kernel(const AddNormParams p) {
  using Io = addnorm::TypedIo<T>;
  __shared__ float red[addnorm::kMaxThreads / kWarpLanes];
  const int tid = static_cast<int>(threadIdx.x), n = static_cast<int>(blockDim.x);
  addnorm::start_row(p, tid, n);
  const int64_t row = blockIdx.x;
  addnorm::VecCache kept;
  const float first = block_sum(red, addnorm::add_partial_vec<Io>(p, row, tid, n, kept));
  float second = 0.0f;
  if (p.norm == NormType::kLayer) {
    second = block_sum(red, addnorm::variance_partial_vec(p, tid, n, addnorm::mean_of(first, p.dim), kept));
  }
  addnorm::norm_write_vec<Io>(p, row, tid, n, first, second, kept);
}

template <typename T>
LaunchStatus add_norm_cuda(const AddNormParams& p, cudaStream_t stream) {
  if (p.rows == 0 || p.dim == 0) return {};
  if (p.residual_type != p.type && p.residual_type != ElementType::kFloat32) {
    return {cudaErrorInvalidValue, "add_norm: the residual must be the model dtype or fp32"};
  }
  if (p.x == nullptr || p.y == nullptr || p.residual_out == nullptr || p.normed == nullptr || p.weight == nullptr ||
      (p.norm == NormType::kLayer && p.bias == nullptr)) {
    return {cudaErrorInvalidValue, "add_norm: x, y, residual_out, normed, weight (and a LayerNorm's bias) are required"};
  }
  if (p.rows > 0x7fffffff) return {cudaErrorInvalidConfiguration, "add_norm: too many rows"};
  if (addnorm::runs_vector(p)) {
    return launch_kernel(add_norm_vec_kernel<T>, dim3(static_cast<unsigned>(p.rows)),
                         dim3(addnorm::vector_threads_for(p.dim)), 0, stream, "add_norm_vec_kernel", p);
  }
  const int threads = addnorm::threads_of(p);
  if (!addnorm::valid_threads(threads)) {
    return {cudaErrorInvalidConfiguration, "add_norm: threads a row must be a power of two from 32 to 512"};
  }
  return launch_kernel(add_norm_kernel<T>, dim3(static_cast<unsigned>(p.rows)), dim3(threads), 0,
                       stream, "add_norm_kernel", p);
}

}  // namespace effarch::kernels
