#pragma once
// The CPU kernels (internal): fused loops that run on every thread ATen was given
// (at::get_num_threads(), which bench --threads sets) through at::parallel_for. They are
// compiled with OpenMP (torch's own runtime, see src/CMakeLists.txt) and vectorised per file;
// the ATen references in the ops stay the oracle their tests compare against.

#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include <ATen/core/Tensor.h>

#include "effarch/ops/moe.h"
#include "effarch/ops/ssd.h"

namespace effarch::ops::cpu {

// Whether at::parallel_for in these kernels runs in parallel (this build compiled them with
// OpenMP); without it they still run, on one thread.
bool parallel_build();

// Rows of x up to which linear() takes the GEMV path: a decode step's handful of tokens.
inline constexpr int64_t kGemvMaxRows = 4;

// Whether gemv() handles this product: CPU tensors, x with at most kGemvMaxRows rows, a
// contiguous fp32, bf16 or int8 (with fp32 scales) weight [out, in], bias (if any) of any float dtype.
bool gemv_applies(const at::Tensor& x, const Linear& layer);

// y = x W^T (+ b) with the output features split across threads; the dot products accumulate in
// fp32 (an int8 layer's times its scale per channel). x [..., in] -> [..., out] in x's dtype.
// Call only where gemv_applies().
at::Tensor gemv(const at::Tensor& x, const Linear& layer);

// One product of a group: `rows` (<= kGemvMaxRows) rows of fp32 x [rows, K] times the layer
// (one gemv_applies() takes) plus bias (fp32 [O] or null) into fp32 y, whose rows are ldy floats
// apart (O for a [rows, O] output; more to write into columns of a wider buffer).
struct GemvJob {
  const float* x;
  int rows;
  const Linear* layer;
  const float* bias;
  float* y;
  int64_t ldy;
};

// Every job's product in one parallel region, the output features of all jobs split evenly
// across the threads (a decode step's MoE experts: one pass over the chosen experts' weights).
void gemv_grouped(const std::vector<GemvJob>& jobs);

}  // namespace effarch::ops::cpu

namespace effarch::ops::cpu {

// The Mamba-1 selective scan fused in one pass over time (include/effarch/ops/selective_scan.h
// has the recurrence): arguments already checked by the op. u, delta, z [B, D, L] and Bmat,
// Cmat [B, N, L] in any strides and float dtypes; A [D, N]; D, delta_bias [D] (any float dtype
// and strides, read in place); ssm_state [B, D, N] fp32, read as h[-1] when `from_state`, written
// with h[L-1]. Returns y [B, D, L] in u's dtype (a view of a [B, L, D] tensor, the layout the
// mixer's out_proj reads), written in that dtype directly.
at::Tensor selective_scan(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& Bmat, const at::Tensor& Cmat,
                          const std::optional<at::Tensor>& z, const at::Tensor& A, const std::optional<at::Tensor>& D,
                          const std::optional<at::Tensor>& delta_bias, bool delta_softplus, at::Tensor& ssm_state,
                          bool from_state);

// Its one-token step from the state, updated in place: u, delta, z [B, D], Bmat, Cmat [B, N].
// No ATen call besides y's allocation (no views, no dtype conversions, no temporaries): y [B, D]
// in u's dtype.
at::Tensor selective_state_update(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& Bmat,
                                  const at::Tensor& Cmat, const std::optional<at::Tensor>& z, const at::Tensor& A,
                                  const std::optional<at::Tensor>& D, const std::optional<at::Tensor>& delta_bias,
                                  bool delta_softplus, at::Tensor& ssm_state);

}  // namespace effarch::ops::cpu

namespace effarch::ops::cpu {

// The Mamba-2 SSD scan as its recurrence, sequential in time (include/effarch/ops/ssd.h; the op
// has checked the arguments): x [B, L, H, P], dt [B, L, H], Bmat, Cmat [B, L, G, N] in any strides
// and float dtypes; args.A, D, dt_bias [H]; state [B, H, P, N] fp32, read as S[-1] when
// `from_state`, written with S[L-1]. dt is clamped where the reference clamps (args.dt_min > 0 or
// a finite dt_max). Returns y [B, L, H, P] fp32, contiguous. L >= 1.
at::Tensor ssd_scan(const at::Tensor& x, const at::Tensor& dt, const at::Tensor& Bmat, const at::Tensor& Cmat,
                    const SsdArgs& args, at::Tensor& state, bool from_state);

// One token of it from the state, updated in place: x [B, H, P], dt [B, H], Bmat, Cmat [B, G, N].
// Returns y [B, H, P] fp32.
at::Tensor ssd_state_update(const at::Tensor& x, const at::Tensor& dt, const at::Tensor& Bmat, const at::Tensor& Cmat,
                            const SsdArgs& args, at::Tensor& state);

}  // namespace effarch::ops::cpu

namespace effarch::ops::cpu {

// The MoE expert dispatch (include/effarch/ops/moe.h): x [N, H] on the CPU, expert_ids [N, k]
// int64 and weights [N, k] already checked by the op; an id outside 0..E-1 throws OpError.
// `check_expert(e)` is called for each expert that runs, before it runs. Same result as the
// reference: each contribution rounded to x's dtype, summed per token in ascending expert id.
at::Tensor moe_dispatch(const at::Tensor& x, const at::Tensor& expert_ids, const at::Tensor& weights,
                        const std::vector<ExpertWeights>& experts, Activation activation,
                        const std::function<void(int64_t)>& check_expert);

}  // namespace effarch::ops::cpu
