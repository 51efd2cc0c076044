#pragma once
// The Mamba-1 selective scan (docs/models.md, Mamba-1): per channel d and state n,
//
//   dt[t,d]  = softplus(delta[t,d] + delta_bias[d])          (each step optional)
//   h[t,d,n] = exp(dt[t,d] A[d,n]) h[t-1,d,n] + dt[t,d] B[t,n] u[t,d]
//   y[t,d]   = (sum_n C[t,n] h[t,d,n] + D[d] u[t,d]) * SiLU(z[t,d])    (D and z optional)
//
// Everything inside runs in fp32 whatever the input dtypes (the mamba_ssm kernels' choice); y
// comes back in u's dtype and the state is fp32. Shapes follow the kernel layout: channel-first
// [B, D, L] / [B, N, L], but any strided view is accepted (e.g. the transpose of a [B, L, D]
// projection), so the mixer never copies to change layout.

#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "effarch/ops/backend.h"
#include "effarch/ops/linear.h"

namespace effarch::ops {

struct SelectiveScanArgs {
  at::Tensor A;                          // [D, N], fp32 (= -exp(A_log))
  std::optional<at::Tensor> D;           // [D] skip
  std::optional<at::Tensor> delta_bias;  // [D], added to delta before the softplus
  bool delta_softplus = true;
  // The CUDA prefill kernel's variant: timesteps a thread scans in sequence. 16 (the default) puts
  // a warp on each channel, its lanes over time (kernels/selective_scan/selective_scan_lanes.h,
  // "lanes16"); 4 (128 registers, two blocks per SM) or 8 (254 registers, one block per SM) put
  // 32 channels on a warp's lanes (selective_scan_math.h). Same results up to fp32 rounding;
  // `effarch kernels` times each (selective_scan, selective_scan_seg4, selective_scan_seg8);
  // docs/mamba.md has the measurements behind the default. 0 puts a thread on each channel, its
  // states in registers, over pieces of the sequence in two passes (selective_scan_pieces.h,
  // "pieces"; d_state up to 16; a measuring variant, `effarch kernels` row selective_scan_pieces,
  // with cuda_split its pieces). Other values are an OpError (1, a lane per state, was measured
  // slower than lanes16 on an H100 and removed: docs/mamba.md).
  int cuda_segment = 16;
  // With cuda_segment 16: the steps each lane scans in sequence, 16 (lanes16, the default) or 8
  // (lanes8: tiles of 256 steps, half the registers and shared memory, so four blocks share an
  // sm_90 SM where lanes16 fits two; a measuring variant, `effarch kernels` row
  // selective_scan_lanes8). Same results up to fp32 rounding. Other values, and 8 with another
  // segment, are an OpError.
  int cuda_lane_steps = 16;
  // The CUDA prefill split over time (kernels/selective_scan/selective_scan_math.h, "Sequence
  // split"): 0 off (one block per 32 channels and sequence walks the whole sequence), -1 the
  // launcher's choice from the GPU's SM count, batch, channels and length
  // (selective_scan_cuda_pieces), N >= 1 that many pieces, clamped to one per chunk. Same results
  // up to fp32 rounding; `effarch kernels` times it (selective_scan_split, and
  // selective_scan_pieces with cuda_segment 0). The prefill only: the one-token update and the CPU
  // paths ignore it. Other values, and a split with cuda_segment 16, are an OpError.
  int cuda_split = 0;
};

// A CUDA prefill variant, the fields of SelectiveScanArgs that pick it (its defaults: lanes16).
struct SelectiveScanVariant {
  int segment = 16;
  int lane_steps = 16;
  int split = 0;
  void apply(SelectiveScanArgs& args) const {
    args.cuda_segment = segment;
    args.cuda_lane_steps = lane_steps;
    args.cuda_split = split;
  }
};

// The variant a name selects, as selective_scan_variant_name writes it ("lanes16", "lanes8",
// "pieces" with the launcher's pieces, "seg4", "seg8", "split": seg4 split by the launcher), or
// nullopt for any other name; and the names, in that order (for messages).
std::optional<SelectiveScanVariant> selective_scan_variant_named(const std::string& name);
const std::vector<std::string>& selective_scan_variant_names();

// The CUDA prefill's variant for the record (Model::implementations(), bench keys, `effarch
// kernels` rows): "seg4", "seg8", "lanes16" or "pieces" (cuda_segment), "lanes8"
// (cuda_lane_steps), "split" where cuda_split asks for pieces of the 32-channel kernel.
const char* selective_scan_variant_name(const SelectiveScanArgs& args);

// The largest d_state the CUDA prefill variant `args` picks takes: 16 for the pieces kernel (its
// states in registers), else 256.
int64_t selective_scan_max_dstate(const SelectiveScanArgs& args);

// The number of sequence pieces the CUDA prefill runs for `args` on a [batch, dim, seqlen] input
// on a GPU with `sm_count` SMs; 1: the unsplit kernel. Throws OpError for a bad cuda_split.
int selective_scan_cuda_pieces(const SelectiveScanArgs& args, int64_t batch, int64_t dim, int64_t seqlen,
                               int sm_count);

// Prefill. u, delta, z: [B, D, L]; Bmat, Cmat: [B, N, L]. ssm_state: [B, D, N] fp32, written in
// place with h[L-1]; when `from_state` it is also read as h[-1] (continuing a sequence), else the
// scan starts from zeros. Returns y [B, D, L] in u's dtype.
at::Tensor selective_scan(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& Bmat, const at::Tensor& Cmat,
                          const std::optional<at::Tensor>& z, const SelectiveScanArgs& args, at::Tensor& ssm_state,
                          bool from_state, Backend backend = Backend::Auto);

// Decode: one token. u, delta, z: [B, D]; Bmat, Cmat: [B, N]; ssm_state [B, D, N] fp32 updated in
// place. Returns y [B, D] in u's dtype.
at::Tensor selective_state_update(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& Bmat,
                                  const at::Tensor& Cmat, const std::optional<at::Tensor>& z,
                                  const SelectiveScanArgs& args, at::Tensor& ssm_state,
                                  Backend backend = Backend::Auto);

// Decode with Mamba-1's dt_proj fused into the update: delta = dt_low dt_proj^T, the projection's
// result in u's dtype, then selective_state_update. dt_low [B, R] (the first R columns of the
// x_proj output: any strides); dt_proj [D, R] without a bias (the mixer passes its bias as
// args.delta_bias). Where selective_state_update_dt_proj_fuses says so, one CUDA kernel computes
// each channel's delta itself (kernels/selective_scan: fp32 sum, one rounding to u's dtype), so a
// step runs one launch instead of the dt_proj GEMV and the update; elsewhere (CPU, the reference,
// int8 weights) it is ops::linear(dt_low, dt_proj, backend) then selective_state_update, exactly
// the unfused path.
at::Tensor selective_state_update_dt_proj(const at::Tensor& u, const at::Tensor& dt_low, const Linear& dt_proj,
                                          const at::Tensor& Bmat, const at::Tensor& Cmat,
                                          const std::optional<at::Tensor>& z, const SelectiveScanArgs& args,
                                          at::Tensor& ssm_state, Backend backend = Backend::Auto);
// Whether the fused CUDA kernel runs: selective_state_update resolves to Cuda for u's device, and
// dt_proj is dense, without a bias, in u's dtype on u's device, as dt_low is.
bool selective_state_update_dt_proj_fuses(const at::Tensor& u, const at::Tensor& dt_low, const Linear& dt_proj,
                                          Backend backend);

namespace detail {
// The ATen reference: a two-level chunked scan. Arguments checked; shapes as above.
at::Tensor selective_scan_reference(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& Bmat,
                                    const at::Tensor& Cmat, const std::optional<at::Tensor>& z,
                                    const SelectiveScanArgs& args, const at::Tensor& ssm_state, bool from_state);
// Chunk length the reference uses for a sequence of `seqlen` tokens (exposed for tests).
int64_t selective_scan_chunk(int64_t seqlen);
#ifdef EFFARCH_WITH_CUDA
// The CUDA kernels (kernels/selective_scan/, src/ops/selective_scan_cuda.cpp). Arguments checked.
at::Tensor selective_scan_cuda(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& Bmat,
                               const at::Tensor& Cmat, const std::optional<at::Tensor>& z,
                               const SelectiveScanArgs& args, at::Tensor& ssm_state, bool from_state);
at::Tensor selective_state_update_cuda(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& Bmat,
                                       const at::Tensor& Cmat, const std::optional<at::Tensor>& z,
                                       const SelectiveScanArgs& args, at::Tensor& ssm_state);
// The update with dt_proj fused (checked arguments; dt_proj dense in u's dtype).
at::Tensor selective_state_update_dt_proj_cuda(const at::Tensor& u, const at::Tensor& dt_low, const at::Tensor& dt_proj,
                                               const at::Tensor& Bmat, const at::Tensor& Cmat,
                                               const std::optional<at::Tensor>& z, const SelectiveScanArgs& args,
                                               at::Tensor& ssm_state);
#endif
}  // namespace detail

}  // namespace effarch::ops
