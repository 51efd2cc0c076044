#pragma once
// The rows GEMM's kernels (rows_gemm.h has the contract, rows_gemm_math.h the plan and the math):
// the products, templated on the element type and on x's 16-row tiles (1-4: the accumulators
// stay in registers, indexed at compile time), and the reduce that adds the splits; instantiated
// per element type in rows_gemm_<dtype>.cu. Both keep common/grid_dependency.h's contract: the
// wait comes before the first read of x and the first write.

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "common/convert.cuh"
#include "common/grid_dependency.h"
#include "common/launch.h"
#include "rows_gemm/rows_gemm.h"
#include "rows_gemm/rows_gemm_math.h"

namespace effarch::kernels {
namespace rows_gemm_detail {

template <typename T, int kFrags>
__global__ void __launch_bounds__(kRowsGemmThreads) rows_gemm_kernel(const RowsGemmParams p, const RowsGemmPlan plan) {
  __shared__ __align__(32) T xs[kFrags * tile::kDim * kRowsGemmXsLd];
  allow_dependent_launch();
  grid_dependency_wait();  // x comes from the kernel before; the partial buffer may be a block it read
  const RowsGemmBlock blk = rows_gemm_block(p, plan, static_cast<int>(blockIdx.x), static_cast<int>(blockIdx.y));
  const int n0 = blk.n_base + static_cast<int>(threadIdx.x / 32) * tile::kDim;
  const bool active = n0 < p.out;  // whole warps: wmma needs all 32 lanes
  tile::FragAcc acc[kFrags];
#pragma unroll
  for (int i = 0; i < kFrags; ++i) tile::zero(acc[i]);
  for (int k0 = blk.k_begin; k0 < blk.k_end; k0 += kRowsGemmSlab) {
    rows_gemm_stage_x<T>(p, kFrags * tile::kDim, k0, blk.k_end, static_cast<int>(threadIdx.x), kRowsGemmThreads, xs);
    __syncthreads();
    const int k_len = blk.k_end - k0 < kRowsGemmSlab ? blk.k_end - k0 : kRowsGemmSlab;
    if (active) rows_gemm_warp_slab<T, kFrags>(p, n0, k0, k_len, xs, acc);
    __syncthreads();  // every warp done with the slab before the next is staged
  }
  if (active) rows_gemm_store<kFrags>(p, plan, static_cast<int>(blockIdx.y), n0, acc);
}

template <typename T>
__global__ void __launch_bounds__(kRowsGemmReduceThreads) rows_gemm_reduce_kernel(const RowsGemmParams p,
                                                                                 const RowsGemmPlan plan) {
  allow_dependent_launch();
  grid_dependency_wait();  // the partial sums come from the kernel before
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kRowsGemmReduceThreads + threadIdx.x;
  if (i >= static_cast<int64_t>(p.rows) * p.out) return;
  const int r = static_cast<int>(i / p.out), n = static_cast<int>(i % p.out);
  static_cast<T*>(p.y)[r * p.y_row_stride + n] = rows_gemm_output<T>(p, plan, r, n);
}

template <typename T, int kFrags>
LaunchStatus rows_gemm_launch(const RowsGemmParams& p, const RowsGemmPlan& plan, cudaStream_t stream) {
  const LaunchStatus products =
      launch_kernel(rows_gemm_kernel<T, kFrags>, dim3(plan.feature_blocks, plan.splits), dim3(kRowsGemmThreads), 0,
                    stream, "rows_gemm_kernel", p, plan);
  if (!products.ok()) return products;
  const int64_t outputs = static_cast<int64_t>(p.rows) * p.out;
  return launch_kernel(rows_gemm_reduce_kernel<T>,
                       dim3(static_cast<unsigned>((outputs + kRowsGemmReduceThreads - 1) / kRowsGemmReduceThreads)),
                       dim3(kRowsGemmReduceThreads), 0, stream, "rows_gemm_reduce_kernel", p, plan);
}

}  // namespace rows_gemm_detail

template <typename T>
LaunchStatus rows_gemm_cuda(const RowsGemmParams& p, cudaStream_t stream) {
  using namespace rows_gemm_detail;
  if (!rows_gemm_shape_ok(p.rows, p.out, p.in)) {
    return {cudaErrorInvalidValue, "rows_gemm: rows 9..64, and features and K multiples of 16"};
  }
  if (!rows_gemm_aligned(p.w, p.x, p.x_row_stride, p.partial) || p.partial == nullptr) {
    return {cudaErrorInvalidValue, "rows_gemm: W and the partial buffer 32-byte aligned, x 16-byte, x's rows 8 apart"};
  }
  const RowsGemmPlan plan = rows_gemm_plan(p.out, p.in, p.rows, p.sm_count);
  switch (plan.frags) {
    case 1: return rows_gemm_launch<T, 1>(p, plan, stream);
    case 2: return rows_gemm_launch<T, 2>(p, plan, stream);
    case 3: return rows_gemm_launch<T, 3>(p, plan, stream);
    default: return rows_gemm_launch<T, 4>(p, plan, stream);
  }
}

}  // namespace effarch::kernels
