// Activations as transformers' ACT2FN computes them (src/transformers/activations.py in 5.23):
// the same formula term by term where it writes one out, the same torch function where it calls one.

#include "effarch/ops/activation.h"

#include <cmath>
#include <utility>

#include <ATen/ATen.h>
#include <ATen/record_function.h>
#include <fmt/format.h>

#include "activation_launch.h"
#include "arg_checks.h"
#include "effarch/common/error.h"

namespace effarch::ops {
namespace {

const std::vector<std::pair<std::string, Activation>>& table() {
  static const std::vector<std::pair<std::string, Activation>> t = {
      {"silu", Activation::SiLU},
      {"swish", Activation::SiLU},
      {"gelu", Activation::Gelu},
      {"gelu_python", Activation::Gelu},
      {"gelu_new", Activation::GeluNew},
      {"gelu_python_tanh", Activation::GeluNew},
      {"gelu_accurate", Activation::GeluNew},
      {"gelu_pytorch_tanh", Activation::GeluTanh},
      {"gelu_fast", Activation::GeluFast},
      {"quick_gelu", Activation::QuickGelu},
      {"gelu_10", Activation::Gelu10},
      {"relu", Activation::Relu},
      {"relu2", Activation::Relu2},
      {"relu6", Activation::Relu6},
      {"leaky_relu", Activation::LeakyRelu},
      {"sigmoid", Activation::Sigmoid},
      {"tanh", Activation::Tanh},
      {"mish", Activation::Mish},
      {"hardswish", Activation::Hardswish},
      {"laplace", Activation::Laplace},
      {"sqrtsoftplus", Activation::SqrtSoftplus},
      {"linear", Activation::Linear},
  };
  return t;
}

}  // namespace

std::optional<Activation> activation_from_name(const std::string& name) {
  for (const auto& [n, a] : table()) {
    if (n == name) return a;
  }
  return std::nullopt;
}

const std::vector<std::string>& activation_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const auto& entry : table()) v.push_back(entry.first);
    return v;
  }();
  return names;
}

at::Tensor activate(Activation act, const at::Tensor& x) {
  const double k = std::sqrt(2.0 / M_PI);
  switch (act) {
    case Activation::SiLU: return at::silu(x);
    case Activation::Gelu: return at::gelu(x);
    case Activation::GeluNew: return 0.5 * x * (1.0 + at::tanh(k * (x + 0.044715 * at::pow(x, 3.0))));
    case Activation::GeluTanh: return at::gelu(x, "tanh");
    case Activation::GeluFast: return 0.5 * x * (1.0 + at::tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)));
    case Activation::QuickGelu: return x * at::sigmoid(1.702 * x);
    case Activation::Gelu10: return at::clamp(at::gelu(x), -10, 10);
    case Activation::Relu: return at::relu(x);
    case Activation::Relu2: return at::square(at::relu(x));
    case Activation::Relu6: return at::hardtanh(x, 0.0, 6.0);
    case Activation::LeakyRelu: return at::leaky_relu(x, 0.01);
    case Activation::Sigmoid: return at::sigmoid(x);
    case Activation::Tanh: return at::tanh(x);
    case Activation::Mish: return at::mish(x);
    case Activation::Hardswish: return at::hardswish(x);
    case Activation::Laplace: {
      const at::Tensor t = (x - 0.707107).div(0.282095 * std::sqrt(2.0));
      return 0.5 * (1.0 + at::erf(t));
    }
    case Activation::SqrtSoftplus: return at::softplus(x).sqrt();
    case Activation::Linear: return x;
  }
  return x;
}

bool has_activation_kernel(Activation act) { return detail::kernel_activation(act).has_value(); }

namespace {

// Whether the fused kernel runs: the family resolves to CUDA and the activation has a kernel.
bool use_kernel(Activation act, const at::Tensor& x, Backend backend) {
  if (!x.defined()) throw OpError("activation: x is an undefined tensor");
  const at::ScalarType t = x.scalar_type();
  if (t != at::kFloat && t != at::kBFloat16 && t != at::kHalf) {
    throw OpError(fmt::format("activation: x has dtype {}, expected float32, bfloat16 or float16", c10::toString(t)));
  }
  if (!use_cuda_kernel(backend, OpFamily::Activation, x.device())) return false;
  if (has_activation_kernel(act)) return true;
  if (backend == Backend::Cuda) {
    throw OpError("activation: backend cuda requested, but only silu and gelu_new have a CUDA kernel (backend auto "
                  "runs the reference for the others)");
  }
  return false;
}

}  // namespace

at::Tensor activate(Activation act, const at::Tensor& x, Backend backend) {
  RECORD_USER_SCOPE("effarch::activation");  // names the op in profiles
  [[maybe_unused]] const bool cuda = use_kernel(act, x, backend);
#ifdef EFFARCH_WITH_CUDA
  if (cuda) return detail::activation_cuda(act, x, /*gated=*/false);
#endif
  return activate(act, x);
}

at::Tensor gated_activation(Activation act, const at::Tensor& gate_up, Backend backend) {
  RECORD_USER_SCOPE("effarch::activation");
  [[maybe_unused]] const bool cuda = use_kernel(act, gate_up, backend);
  if (gate_up.dim() < 1 || gate_up.size(-1) % 2 != 0) {
    throw OpError(fmt::format("activation: gate_up must be [..., 2I], got {} columns",
                              gate_up.dim() < 1 ? 0 : gate_up.size(-1)));
  }
#ifdef EFFARCH_WITH_CUDA
  if (cuda) return detail::activation_cuda(act, gate_up, /*gated=*/true);
#endif
  const int64_t inter = gate_up.size(-1) / 2;
  return activate(act, gate_up.narrow(-1, 0, inter)) * gate_up.narrow(-1, inter, inter);
}

bool linear_activation_fuses(const at::Tensor& x, const Linear& layer, Activation act, Backend backend) {
  return x.defined() && has_activation_kernel(act) && use_cuda_kernel(backend, OpFamily::Activation, x.device()) &&
         detail::dense_gemv_applies(x, layer, backend);
}

at::Tensor linear_activation(const at::Tensor& x, const Linear& layer, Activation act, Backend backend) {
  detail::check_linear(x, layer, "linear_activation");
#ifdef EFFARCH_WITH_CUDA
  if (linear_activation_fuses(x, layer, act, backend)) {
    RECORD_USER_SCOPE("effarch::linear");  // one GEMV launch: the activation inside counts as the projection's
    return detail::linear_activation_cuda(x, layer, act);
  }
#endif
  return activate(act, linear(x, layer, backend), backend);
}

namespace {

// linear_activation_tail; `norm`: the fused GEMV's norm prologue, x its stand-in
// (NormedInput::for_product, which gives it only where linear_activation_fuses holds).
at::Tensor activation_tail(const at::Tensor& x, const Linear& layer, Activation act, int64_t from, Backend backend,
                           const at::Tensor* out, [[maybe_unused]] const kernels::AddNormParams* norm) {
  constexpr const char* op = "linear_activation_tail";
  detail::check_linear(x, layer, op);
  const int64_t o = layer.out_features();
  if (from < 0 || from >= o) {
    throw OpError(fmt::format("{}: the activation's first output {} is outside the layer's {} outputs", op, from, o));
  }
  const int64_t rows = x.numel() / layer.in_features();
  if (out != nullptr && (out->dim() != 2 || out->size(0) != rows || out->size(1) != o ||
                         out->scalar_type() != x.scalar_type() || out->device() != x.device())) {
    throw OpError(fmt::format("{}: out {} must be [{}, {}] of x's dtype and device", op, detail::shape(*out), rows, o));
  }
#ifdef EFFARCH_WITH_CUDA
  if (linear_activation_fuses(x, layer, act, backend)) {
    RECORD_USER_SCOPE("effarch::linear");  // one GEMV launch: the activation inside counts as the projection's
    return detail::linear_activation_cuda(x, layer, act, /*gated=*/false, from, out, norm);
  }
#endif
  const at::Tensor y = linear(x, layer, backend);
  at::Tensor tail = y.narrow(-1, from, o - from);
  tail.copy_(activate(act, tail, backend));
  if (out == nullptr) return y;
  out->copy_(y.reshape({rows, o}));
  return *out;
}

// linear_gated_activation; `norm` as activation_tail's (given only where
// linear_gated_activation_fuses holds).
at::Tensor gated_product(const at::Tensor& x, const Linear& gate_up, Activation act, Backend backend,
                         [[maybe_unused]] const kernels::AddNormParams* norm) {
  detail::check_linear(x, gate_up, "linear_gated_activation");
  if (gate_up.out_features() % 2 != 0) {
    throw OpError(fmt::format("linear_gated_activation: gate_up has {} output features, expected 2I (gate rows, "
                              "then up rows)",
                              gate_up.out_features()));
  }
#ifdef EFFARCH_WITH_CUDA
  if (linear_gated_activation_fuses(x, gate_up, act, backend)) {
    RECORD_USER_SCOPE("effarch::linear");  // one GEMV launch: the activation inside counts as the projection's
    return detail::linear_activation_cuda(x, gate_up, act, /*gated=*/true, 0, nullptr, norm);
  }
#endif
  return gated_activation(act, linear(x, gate_up, backend), backend);
}

}  // namespace

at::Tensor linear_activation_tail(const at::Tensor& x, const Linear& layer, Activation act, int64_t from,
                                  Backend backend, const at::Tensor* out) {
  return activation_tail(x, layer, act, from, backend, out, nullptr);
}

at::Tensor linear_activation_tail(const NormedInput& x, const Linear& layer, Activation act, int64_t from,
                                  Backend backend, const at::Tensor* out) {
  const NormedInput::ProductInput in =
      x.for_product(layer, backend, x.is_pending() && linear_activation_fuses(x.stand_in(), layer, act, backend));
  return activation_tail(in.x, layer, act, from, backend, out, in.norm);
}

bool linear_gated_activation_fuses(const at::Tensor& x, const Linear& gate_up, Activation act, Backend backend) {
  return gate_up.out_features() % 2 == 0 && x.defined() && gate_up.in_features() > 0 &&
         x.numel() / gate_up.in_features() <= detail::kCudaGatedGemvMaxRows &&
         linear_activation_fuses(x, gate_up, act, backend);
}

at::Tensor linear_gated_activation(const at::Tensor& x, const Linear& gate_up, Activation act, Backend backend) {
  return gated_product(x, gate_up, act, backend, nullptr);
}

at::Tensor linear_gated_activation(const NormedInput& x, const Linear& gate_up, Activation act, Backend backend) {
  const NormedInput::ProductInput in = x.for_product(
      gate_up, backend, x.is_pending() && linear_gated_activation_fuses(x.stand_in(), gate_up, act, backend));
  return gated_product(in.x, gate_up, act, backend, in.norm);
}

}  // namespace effarch::ops
