#pragma once
// The Mamba-2 kernels' launches, prepared on the host (every build): the tensors a launch reads and
// writes, and the params (kernels/ssd/ssd_params.h) that point at them. src/ops/ssd_cuda.cpp
// launches them on the GPU; the CPU tests run the kernels' host emulation (kernels/ssd/ssd_math.h)
// on them, so this code and the kernels' math are tested without a GPU. x, dt, B, C (and z) are
// passed by their strides (the mixer's views, no copies); A, D, dt_bias ([H]) in fp32.

#include <optional>

#include <ATen/core/Tensor.h>

#include "effarch/ops/ssd.h"
#include "ssd/ssd_params.h"

namespace effarch::ops::detail {

// The per-head [H] tensors in contiguous fp32, kept alive with the launch.
struct SsdHeadTensors {
  at::Tensor A, D, dt_bias;
};

struct SsdUpdateLaunch {
  at::Tensor x, dt, B, C;  // the inputs in the kernel's one element type (x's)
  SsdHeadTensors head;
  at::Tensor y;            // [B, H, P] fp32, written by the kernel
  kernels::SsdUpdateParams params;
};

// Over checked arguments (src/ops/ssd.cpp's ssd_state_update); the state is updated in place.
SsdUpdateLaunch prepare_ssd_state_update(const at::Tensor& x, const at::Tensor& dt, const at::Tensor& Bmat,
                                         const at::Tensor& Cmat, const SsdArgs& args, const at::Tensor& state);

struct SsdScanLaunch {
  at::Tensor x, dt, B, C;
  SsdHeadTensors head;
  at::Tensor y;          // [B, L, H, P] fp32
  at::Tensor workspace;  // fp32, kernels::ssd_scan_workspace_floats(params): linear in L
  kernels::SsdScanParams params;
};

// Over checked arguments with L > 0 (src/ops/ssd.cpp's ssd_chunk_scan): the state is read when
// from_state and written with the final state.
SsdScanLaunch prepare_ssd_chunk_scan(const at::Tensor& x, const at::Tensor& dt, const at::Tensor& Bmat,
                                     const at::Tensor& Cmat, const SsdArgs& args, const at::Tensor& state,
                                     bool from_state);

struct GatedRmsNormLaunch {
  at::Tensor y, z, weight;  // y, z as [rows, D] (views where the layout allows)
  at::Tensor out;           // [rows, D] in the result dtype
  kernels::GatedRmsNormParams params;
};

// Over checked arguments with y.numel() > 0; out in out_dtype where given, else ATen's dtype of
// weight * y. The result is launch.out viewed as y's shape.
GatedRmsNormLaunch prepare_gated_rms_norm(const at::Tensor& y, const at::Tensor& z, const at::Tensor& weight,
                                          int64_t group_size, double eps, std::optional<at::ScalarType> out_dtype);

}  // namespace effarch::ops::detail
