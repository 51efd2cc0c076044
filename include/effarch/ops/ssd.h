#pragma once
// The Mamba-2 state space dual (SSD) scan (docs/models.md, Mamba-2), per head h (group g = h / (H/G)),
// head channel p and state n:
//
//   dt[t,h]     = clamp(softplus(dt_raw[t,h] + dt_bias[h]), dt_min, dt_max)
//   S[t,h,p,n]  = exp(dt[t,h] A[h]) S[t-1,h,p,n] + dt[t,h] B[t,g,n] x[t,h,p]
//   y[t,h,p]    = sum_n C[t,g,n] S[t,h,p,n] + D[h] x[t,h,p]
//
// fp32 inside whatever the input dtype; y comes back in fp32 (the gated RMSNorm reads it in fp32,
// as transformers does) and the state is fp32.

#include <limits>
#include <optional>

#include <ATen/core/Tensor.h>

#include "effarch/ops/backend.h"

namespace effarch::ops {

// How the CUDA chunked scan computes its chunk products (stages 2 and 4, kernels/ssd/): Auto takes
// tensor cores (input-dtype operands, fp32 accumulation, docs/mamba2.md) for bf16 / fp16 x with
// d_state <= 128 and the fp32 FMA loops otherwise; Fma always the FMA loops (bf16 too, for
// comparison); TensorCores requires them (an OpError where they cannot run). The CPU and
// reference paths ignore it.
enum class SsdScanProducts { Auto, TensorCores, Fma };

struct SsdArgs {
  at::Tensor A;                        // [H] fp32 (= -exp(A_log))
  std::optional<at::Tensor> D;         // [H]
  std::optional<at::Tensor> dt_bias;   // [H]
  bool dt_softplus = true;
  double dt_min = 0.0;                 // the time_step_limit clamp (none by default)
  double dt_max = std::numeric_limits<double>::infinity();
  int64_t chunk_size = 256;
  SsdScanProducts products = SsdScanProducts::Auto;
};

// Whether the CUDA chunked scan runs its products on tensor cores for x of `x_dtype` and
// `d_state` under `products`; throws OpError (naming ssd_chunk_scan) where TensorCores cannot run.
bool ssd_scan_uses_tensor_cores(at::ScalarType x_dtype, int64_t d_state, SsdScanProducts products);
// "tensor_cores" or "fma": the same decision as a name (effarch kernels records it per row).
const char* ssd_scan_products_name(at::ScalarType x_dtype, int64_t d_state, SsdScanProducts products);

// The implementation ssd_chunk_scan runs for `requested` on `device`: resolve_backend's, except
// that Auto on a GPU runs the reference for fp32 x with `products` Auto. The CUDA scan would take
// its FMA products there, which on an H200 ran 4x slower than the reference (221 against 53 ms
// at 32k tokens, Codestral's shapes; docs/perf/README.md). Backend::Cuda still runs the kernel.
// The reference's peak memory grows with its per-chunk [Q, Q] blocks (docs/mamba2.md).
Backend ssd_scan_backend(Backend requested, at::ScalarType x_dtype, SsdScanProducts products,
                         const c10::Device& device);

// Prefill, chunked: x [B, L, H, P]; dt [B, L, H]; Bmat, Cmat [B, L, G, N]. state [B, H, P, N] fp32 is
// written with S[L-1]; when `from_state` it is also read as S[-1], else the scan starts from zeros.
// Returns y [B, L, H, P] fp32.
at::Tensor ssd_chunk_scan(const at::Tensor& x, const at::Tensor& dt, const at::Tensor& Bmat, const at::Tensor& Cmat,
                          const SsdArgs& args, at::Tensor& state, bool from_state, Backend backend = Backend::Auto);

// Decode, one token: x [B, H, P]; dt [B, H]; Bmat, Cmat [B, G, N]; state updated in place.
// Returns y [B, H, P] fp32.
at::Tensor ssd_state_update(const at::Tensor& x, const at::Tensor& dt, const at::Tensor& Bmat, const at::Tensor& Cmat,
                            const SsdArgs& args, at::Tensor& state, Backend backend = Backend::Auto);

// Mamba-2's gated RMSNorm as transformers 5.x computes it: h = y * SiLU(z) in fp32, normalised
// over groups of `group_size` channels (d_inner / n_groups; one group over all channels when
// n_groups is 1), cast back to y's dtype, times weight. y, z [..., D]; weight [D]. The result has
// ATen's dtype of weight * y, or `out_dtype` where given: the same product rounded once to it
// (what `.to(out_dtype)` of the result gives, without the intermediate tensor).
at::Tensor gated_rms_norm(const at::Tensor& y, const at::Tensor& z, const at::Tensor& weight, int64_t group_size,
                          double eps, Backend backend = Backend::Auto,
                          std::optional<at::ScalarType> out_dtype = std::nullopt);

}  // namespace effarch::ops
