#pragma once
// A linear layer, y = x W^T (+ b), as every projection of every architecture runs it: attention
// q/k/v/o, dense and expert MLPs, the Mamba projections (in, x, dt, out) and the head. One type
// and one call, so a weight format (the model's dtype, or int8 with per-channel scales) changes
// one place, not every block. Tensor-parallel shards are weights of the rank's rows or columns
// (model/sharding.h) in either format, so they need no format of their own.

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include <ATen/core/Tensor.h>

#include "effarch/ops/backend.h"
#include "effarch/ops/normed_input.h"

namespace effarch::kernels {
struct GemvConvUpdate;  // kernels/gemv/gemv_params.h
struct GemvActivation;
struct AddNormParams;  // kernels/add_norm/add_norm_params.h
}  // namespace effarch::kernels

namespace effarch::ops {

// How a linear layer's weight is stored.
enum class WeightFormat {
  Dense,  // the weight as it is, in the model's dtype ([out, in])
  Int8,   // weight-only int8, symmetric per output channel: W[o, :] ~ q[o, :] * scale[o]
};

// "dense" or "int8", as --weights takes them.
std::string weight_format_option(WeightFormat format);
// The value of a --weights option: dense (the model's dtype) or int8. Throws UsageError naming `option`.
WeightFormat parse_weight_format(const std::string& value, const std::string& option);

struct Linear {
  at::Tensor weight;  // [out, in]: the model's dtype (Dense) or int8 (Int8)
  std::optional<at::Tensor> bias;  // [out], the model's dtype (never quantised)
  at::Tensor scale;  // Int8: [out] fp32, the step of each output channel
  WeightFormat format = WeightFormat::Dense;
  // A measuring knob of the dense GEMV (kernels/gemv/gemv_params.h, GemvParams::unroll): 0 its
  // default of four 16-byte weight loads in flight a lane, or 8. `effarch kernels` times 8 as the
  // dense_gemv_*_u8 rows (docs/perf/pending.md, entry 25); the results are the same bit for bit.
  int cuda_gemv_unroll = 0;
  // A second measuring knob of the dense GEMV (GemvParams::split): 0 the plan's warps a row
  // (kernels/gemv/gemv_math.h, gemv_plan), or 1, 2, 4 or 8 forced (at most 4 with a gated
  // activation). `effarch kernels` times them as the dense_gemv_*_s1/_s2/_s4 rows (docs/perf/
  // pending.md, entry 25: how the grid's waves and a lane's rounds of loads set the kernel's time
  // on the 37-64 MB matrices). Another split adds in another order: equal to rounding, not bits.
  int cuda_gemv_split = 0;

  Linear() = default;
  Linear(at::Tensor w, std::optional<at::Tensor> b = std::nullopt) : weight(std::move(w)), bias(std::move(b)) {}
  // An int8 layer: q [out, in] int8, scale [out] fp32.
  static Linear int8(at::Tensor q, at::Tensor scale, std::optional<at::Tensor> b = std::nullopt);

  bool defined() const { return weight.defined(); }
  int64_t out_features() const { return weight.size(0); }
  int64_t in_features() const { return weight.size(1); }
  // Bytes a forward pass reads for this layer: the weight as stored (and its scales and bias).
  uint64_t bytes() const;
};

// The format's name as results record it: the weight's dtype for Dense ("bfloat16", "float32"),
// "int8" for Int8.
std::string format_name(const Linear& layer);

// Symmetric per-output-channel int8 of w [out, in] (any float dtype): scale[o] = max|w[o, :]| / 127
// in fp32 (1 for an all-zero row), q = round(w / scale) in [-127, 127]. Every element is within
// scale[o] / 2 of q * scale[o]. Returns {q int8 [out, in], scale fp32 [out]} on w's device.
std::pair<at::Tensor, at::Tensor> quantize_int8(const at::Tensor& w);
// A dense layer quantised (the bias stays as it is); an Int8 layer is returned unchanged.
Linear quantize_int8(const Linear& layer);
// The weight as a dense [out, in] tensor of `dtype`: cast (Dense) or q * scale (Int8, in fp32, then
// rounded to dtype): the reference every int8 kernel is tested against.
at::Tensor dense_weight(const Linear& layer, at::ScalarType dtype);

// x [..., in] -> [..., out] in x's dtype. Throws OpError naming `x` or the weight for a mismatch.
// A few rows (decode) run a GEMV kernel: on the CPU for fp32, bf16 and int8 weights (all
// threads), on CUDA for int8 weights (kernels/int8_gemv) and for dense weights in x's dtype
// (kernels/gemv, OpFamily::DenseGemv: when `backend` resolves to Cuda; --backend reference keeps
// at::linear = cuBLAS); otherwise the dense product (an int8 weight dequantised to x's dtype for
// the call: the reference the kernels are tested against).
at::Tensor linear(const at::Tensor& x, const Linear& layer, Backend backend = Backend::Auto);
// The same for a block's normed input: a pending add + norm (a decode step's block boundary) runs
// in the dense GEMV's prologue where NormedInput::prologue_for allows (one launch, the same bits),
// else the add_norm first, then linear(x.tensor()). The residual is then x.residual().
at::Tensor linear(const NormedInput& x, const Linear& layer, Backend backend = Backend::Auto);

namespace detail {
// Rows of x up to which a CUDA int8 layer runs the int8 GEMV kernel.
inline constexpr int64_t kCudaInt8GemvMaxRows = 8;
// Rows of x up to which a CUDA dense layer runs the dense GEMV kernel (OpFamily::DenseGemv) when
// asked for it (Backend::Cuda), and up to which Backend::Auto takes it: on an H200 (2026-11-26,
// docs/perf/README.md) the kernel beat cuBLAS at 1 and 2 rows on every decode shape timed (in_proj
// 24.0 against 28.2 us, Phi-2's fc2 25.9 against 29.3, the LM head 75.3 against 82.2 at 2 rows)
// and lost from 4 (33.2 against 27.4 us; 2x slower at 8): its lanes re-read x per row.
inline constexpr int64_t kCudaDenseGemvMaxRows = 8;
inline constexpr int64_t kCudaDenseGemvAutoMaxRows = 2;
// Rows of x up to which, from kCudaDenseGemvMaxRows + 1, a CUDA dense bf16 / fp16 layer runs the
// rows GEMM on tensor cores (kernels/rows_gemm, OpFamily::DenseGemv: a batched decode step's
// projections) when asked for the kernels (Backend::Cuda). Backend::Auto keeps cuBLAS there until
// a GPU has timed the kernel against it (docs/perf/pending.md entry 41).
inline constexpr int64_t kCudaRowsGemmMaxRows = 64;
// The rows the GEMV takes with a gated activation in its epilogue (ops::linear_gated_activation):
// a decode step's 1-2, under either backend; more rows run the GEMV (or cuBLAS) then the activation.
inline constexpr int64_t kCudaGatedGemvMaxRows = 2;
// Whether linear(x, layer, backend) runs the CUDA dense GEMV: a dense contiguous weight in x's
// dtype (fp32, bf16 or fp16) on x's CUDA device, 1..kCudaDenseGemvMaxRows rows under
// Backend::Cuda (1..kCudaDenseGemvAutoMaxRows under Auto), sizes that fit an int, and `backend`
// resolving to Cuda for OpFamily::DenseGemv.
bool dense_gemv_applies(const at::Tensor& x, const Linear& layer, Backend backend);
// Whether linear(x, layer, backend) runs the CUDA rows GEMM: Backend::Cuda, a dense contiguous
// bf16 or fp16 weight in x's dtype on x's CUDA device, 32-byte aligned, kCudaDenseGemvMaxRows + 1
// ..kCudaRowsGemmMaxRows rows, features and K multiples of 16 that fit an int.
bool rows_gemm_applies(const at::Tensor& x, const Linear& layer, Backend backend);
// What linear checks first, for the ops that run a projection with something fused into it: a
// [out, in] weight, and x [..., in]. Throws OpError naming `op`.
void check_linear(const at::Tensor& x, const Linear& layer, const char* op);
#ifdef EFFARCH_WITH_CUDA
// x [..., K] on CUDA (R = numel / K <= kCudaInt8GemvMaxRows rows), an int8 layer on x's device
// -> [..., O].
at::Tensor int8_gemv_cuda(const at::Tensor& x, const Linear& layer);
// x [..., K] on CUDA (R = numel / K <= kCudaDenseGemvMaxRows rows), a dense layer in x's dtype on
// x's device -> [..., O].
// Fused into the kernel's epilogue, or none: `conv` a conv update (ops::linear_conv_update),
// `activation` an activation of every output (ops::linear_activation), of the outputs from a row
// on (ops::linear_activation_tail) or, gated, of the gate half times the up half
// (ops::linear_gated_activation: [..., 2I] rows -> [..., I]).
// `out`: where the outputs go, an [R, C] view of x's dtype and device whose columns are
// contiguous (rows any stride apart: a column range of a wider buffer); null: a new tensor.
// `norm`: the norm prologue (NormedInput::for_product): x is its stand-in (its shape, dtype and
// device; not read), the kernel computes the real rows from the add + norm and writes its residual.
at::Tensor dense_gemv_cuda(const at::Tensor& x, const Linear& layer, const kernels::GemvConvUpdate* conv = nullptr,
                           const kernels::GemvActivation* activation = nullptr, const at::Tensor* out = nullptr,
                           const kernels::AddNormParams* norm = nullptr);
// x [..., K] on CUDA (R = numel / K rows, rows_gemm_applies), a dense layer in x's dtype -> [..., O].
at::Tensor rows_gemm_cuda(const at::Tensor& x, const Linear& layer);
#endif
}  // namespace detail

}  // namespace effarch::ops
