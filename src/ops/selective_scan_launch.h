#pragma once
// The selective scan kernels' launch, prepared on the host (every build): the tensors a launch reads
// and writes, and the params that point at them. src/ops/selective_scan_cuda.cpp launches it on
// the GPU; the CPU tests run the kernels' host emulation on it (kernels/selective_scan/
// selective_scan_math.h), so this code and the kernels' math are tested without a GPU.

#include <optional>

#include <ATen/core/Tensor.h>

#include "effarch/ops/selective_scan.h"
#include "selective_scan/selective_scan_params.h"

namespace effarch::ops::detail {

struct SelectiveScanLaunch {
  at::Tensor u, delta, B, C, z;  // the inputs in the kernels' one element type (z may be undefined; delta too, with dt_proj fused)
  at::Tensor A, D, delta_bias;   // float32 (D, delta_bias may be undefined)
  at::Tensor y;                  // the output the kernel writes, in the inputs' element type
  at::Tensor workspace;          // fp32, the split's piece states and dt sums (undefined unsplit)
  at::Tensor dt_low, dt_proj;    // the update with dt_proj fused: its inputs (undefined otherwise)
  kernels::SelectiveScanParams params;
  at::ScalarType out_type;       // u's dtype: what the op returns
  // y in the op's dtype (a copy only when the inputs had to be widened to float32).
  at::Tensor result() const { return y.scalar_type() == out_type ? y : y.to(out_type); }
};

// Prefill (u [B, D, L]) or the one-token update (u [B, D]) over checked arguments (delta undefined
// only for the update whose dt_proj is fused: prepare_selective_state_update_dt_proj); the state is
// read (from_state) and written through the params. `sm_count`: the GPU's, for the prefill's
// automatic split (args.cuda_split -1; 0 SMs: no split); the split's workspace is allocated here.
SelectiveScanLaunch prepare_selective_scan(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& Bmat,
                                           const at::Tensor& Cmat, const std::optional<at::Tensor>& z,
                                           const SelectiveScanArgs& args, at::Tensor& ssm_state, bool from_state,
                                           const char* op, int sm_count = 0);

// The one-token update with Mamba-1's dt_proj fused (ops::selective_state_update_dt_proj): the
// params read dt_low [B, R] and dt_proj [D, R] (in the inputs' element type) instead of delta.
SelectiveScanLaunch prepare_selective_state_update_dt_proj(const at::Tensor& u, const at::Tensor& dt_low,
                                                           const at::Tensor& dt_proj, const at::Tensor& Bmat,
                                                           const at::Tensor& Cmat, const std::optional<at::Tensor>& z,
                                                           const SelectiveScanArgs& args, at::Tensor& ssm_state,
                                                           const char* op);

}  // namespace effarch::ops::detail
