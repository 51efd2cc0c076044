#pragma once
// The activations Hugging Face configs name in `hidden_act` (transformers' ACT2FN), each with
// transformers' own formula, so a config's activation gives the same numbers here. Used by the
// dense MLPs, the MoE experts and the Mamba mixers' conv output.

#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "effarch/ops/backend.h"
#include "effarch/ops/linear.h"

namespace effarch::ops {

enum class Activation {
  SiLU,         // silu, swish
  Gelu,         // gelu, gelu_python: x * Phi(x) with erf
  GeluNew,      // gelu_new, gelu_python_tanh, gelu_accurate: the tanh approximation, term by term
  GeluTanh,     // gelu_pytorch_tanh: torch's fused tanh approximation
  GeluFast,     // gelu_fast
  QuickGelu,    // quick_gelu: x * sigmoid(1.702 x)
  Gelu10,       // gelu_10: gelu clipped to [-10, 10]
  Relu,         // relu
  Relu2,        // relu2: relu(x)^2
  Relu6,        // relu6
  LeakyRelu,    // leaky_relu (slope 0.01, torch's default)
  Sigmoid,      // sigmoid
  Tanh,         // tanh
  Mish,         // mish
  Hardswish,    // hardswish
  Laplace,      // laplace
  SqrtSoftplus, // sqrtsoftplus
  Linear,       // linear: the identity
};

// The activation a `hidden_act` name denotes; nullopt for a name effarch does not implement
// (e.g. prelu and xielu, which carry learned parameters).
std::optional<Activation> activation_from_name(const std::string& name);
// The names activation_from_name accepts, for error messages.
const std::vector<std::string>& activation_names();
// x with the activation applied elementwise, in x's dtype.
at::Tensor activate(Activation act, const at::Tensor& x);

// Whether `act` has the fused CUDA kernel (kernels/activation/: SiLU and GeluNew).
bool has_activation_kernel(Activation act);
// activate(act, x) with a Backend switch (OpFamily::Activation): on CUDA with a kernel for `act`,
// one launch that rounds every step as the ATen ops do (Phi's gelu_new is eight ATen kernels);
// otherwise the reference. Backend::Cuda for an activation without a kernel is an OpError.
at::Tensor activate(Activation act, const at::Tensor& x, Backend backend);
// act(gate_up[..., :I]) * gate_up[..., I:] for the fused gate/up product's output [..., 2I]: the
// reference activates the gate half, then multiplies (two ATen kernels); the CUDA kernel does both.
at::Tensor gated_activation(Activation act, const at::Tensor& gate_up, Backend backend);

// act(linear(x, layer)): a non-gated MLP's fc1 and its activation (Phi: bias + gelu_new). Where
// linear_activation_fuses says so the dense GEMV kernel activates each output as it stores it
// (one launch instead of two: docs/engine.md, "Fused small ops"), with the activation kernel's
// arithmetic on the rounded projection, so the same bits as the GEMV then the activation kernel;
// elsewhere activate(act, linear(x, layer, backend), backend).
at::Tensor linear_activation(const at::Tensor& x, const Linear& layer, Activation act, Backend backend = Backend::Auto);
// The dense GEMV runs the projection (detail::dense_gemv_applies) and the activation has its CUDA
// kernel, resolved for `backend`.
bool linear_activation_fuses(const at::Tensor& x, const Linear& layer, Activation act, Backend backend);
// linear(x, layer) with act applied to the outputs from `from` on (0 <= from < O; those before it
// stay the plain projection): a parallel block's fused input product, q/k/v rows then fc1's
// (docs/engine.md, "The parallel block's two products"). x [..., K]; the outputs go to `out`
// where given (an [R, O] view of x's dtype and device, R = x's rows, contiguous columns: a column
// range of a wider buffer) and it is returned; else a new [..., O]. Where linear_activation_fuses
// says so, one dense GEMV launch that activates the rows from `from` as it stores them (the same
// bits as the GEMV then the activation kernel on those columns); elsewhere linear, then the
// activation of the column range, copied into place.
at::Tensor linear_activation_tail(const at::Tensor& x, const Linear& layer, Activation act, int64_t from,
                                  Backend backend = Backend::Auto, const at::Tensor* out = nullptr);
// The same for a block's normed input: a pending add + norm runs in the fused GEMV's prologue
// where it runs (NormedInput::prologue_for), else first (ops::linear's NormedInput form).
at::Tensor linear_activation_tail(const NormedInput& x, const Linear& layer, Activation act, int64_t from,
                                  Backend backend = Backend::Auto, const at::Tensor* out = nullptr);

// gated_activation(act, linear(x, gate_up)): a gated MLP's fused gate/up product ([2I, H], gate
// rows first: GatedMlpWeights::gate_up) and its activation, x [..., H] -> [..., I]. Where
// linear_gated_activation_fuses says so the dense GEMV kernel computes each gate row beside its up
// row and stores act(gate) * up (one launch instead of two, and no [..., 2I] tensor), with the
// gated activation kernel's arithmetic on the two rounded projections: the same bits as the GEMV
// then that kernel (docs/engine.md, "Fused small ops"); elsewhere the two ops, each on `backend`.
at::Tensor linear_gated_activation(const at::Tensor& x, const Linear& gate_up, Activation act,
                                   Backend backend = Backend::Auto);
// The same for a block's normed input (as linear_activation_tail's NormedInput form).
at::Tensor linear_gated_activation(const NormedInput& x, const Linear& gate_up, Activation act,
                                   Backend backend = Backend::Auto);
// linear_activation_fuses for the gated form; gate_up's rows must also be even, and x has at most
// detail::kCudaGatedGemvMaxRows rows.
bool linear_gated_activation_fuses(const at::Tensor& x, const Linear& gate_up, Activation act, Backend backend);

#ifdef EFFARCH_WITH_CUDA
namespace detail {
at::Tensor activation_cuda(Activation act, const at::Tensor& x, bool gated);
// The fused linear_activation / linear_gated_activation / linear_activation_tail (x [..., K] with
// the GEMV's rows at most, a kernel for `act`; `from` and `out` as linear_activation_tail's).
// `norm`: the GEMV's norm prologue, x its stand-in (detail::dense_gemv_cuda).
at::Tensor linear_activation_cuda(const at::Tensor& x, const Linear& layer, Activation act, bool gated = false,
                                  int64_t from = 0, const at::Tensor* out = nullptr,
                                  const kernels::AddNormParams* norm = nullptr);
}  // namespace detail
#endif

}  // namespace effarch::ops
