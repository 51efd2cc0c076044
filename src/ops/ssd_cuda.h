#pragma once
// CUDA paths of the Mamba-2 ops (src/ops/ssd_cuda.cpp, CUDA builds only): called by the entries in
// src/ops/ssd.cpp after their argument checks, when resolve_backend picks Backend::Cuda.

#include <ATen/core/Tensor.h>

#include "effarch/ops/ssd.h"

namespace effarch::ops::detail {

// Returns y [B, H, P] fp32; state updated in place.
at::Tensor ssd_state_update_cuda(const at::Tensor& x, const at::Tensor& dt, const at::Tensor& Bmat,
                                 const at::Tensor& Cmat, const SsdArgs& args, const at::Tensor& state);
// Returns y [B, L, H, P] fp32 (L > 0); state read when from_state, written with the final state.
at::Tensor ssd_chunk_scan_cuda(const at::Tensor& x, const at::Tensor& dt, const at::Tensor& Bmat,
                               const at::Tensor& Cmat, const SsdArgs& args, const at::Tensor& state,
                               bool from_state);
// Returns weight * round_y(y SiLU(z) rsqrt(mean_group (y SiLU(z))^2 + eps)), shaped as y, in
// out_dtype where given, else ATen's dtype of weight * y.
at::Tensor gated_rms_norm_cuda(const at::Tensor& y, const at::Tensor& z, const at::Tensor& weight, int64_t group_size,
                               double eps, std::optional<at::ScalarType> out_dtype);

}  // namespace effarch::ops::detail
