#pragma once
// The fused residual add + RMSNorm / LayerNorm of a block boundary: residual_out = x + y (+ z) in
// the residual's dtype, normed = norm(residual_out) in the model dtype, one launch instead of an
// add and the norm's several ATen kernels. One block per row, fp32 sums. Params and rounding:
// add_norm_params.h and add_norm_math.h. No torch types: src/ops/add_norm_launch.cpp fills the
// params from checked tensors, src/ops/add_norm_cuda.cpp launches them.

#include "add_norm/add_norm_params.h"
#include "common/element_type.h"

namespace effarch::kernels {

LaunchStatus add_norm_fp32(const AddNormParams& params, cudaStream_t stream);
LaunchStatus add_norm_bf16(const AddNormParams& params, cudaStream_t stream);
LaunchStatus add_norm_fp16(const AddNormParams& params, cudaStream_t stream);

inline LaunchStatus add_norm(const AddNormParams& params, cudaStream_t stream) {
  return dispatch_element_type<AddNormParams>(params.type, {add_norm_fp32, add_norm_bf16, add_norm_fp16}, params,
                                              stream, "add_norm: unknown element type");
}

}  // namespace effarch::kernels
