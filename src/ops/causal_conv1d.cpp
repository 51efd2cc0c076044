// effarch::ops::causal_conv1d{,_update} and linear_conv_update: argument checks, the ATen
// reference (the CPU path, and the yardstick of the CUDA kernels), and the choice between the two.

#include "effarch/ops/causal_conv1d.h"

#include <limits>

#include <ATen/ATen.h>
#include <ATen/record_function.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "effarch/common/error.h"
#include "arg_checks.h"

namespace effarch::ops {
namespace {

using detail::shape;

void check_defined(const at::Tensor& t, const char* op, const char* name) {
  if (!t.defined()) throw OpError(fmt::format("{}: {} is an undefined tensor", op, name));
}

void check_float_dtype(const at::Tensor& t, const char* op, const char* name) {
  const at::ScalarType type = t.scalar_type();
  if (type != at::kFloat && type != at::kBFloat16 && type != at::kHalf) {
    throw OpError(fmt::format("{}: {} has dtype {}, expected float32, bfloat16 or float16", op, name,
                                 c10::toString(type)));
  }
}

void check_same_device(const at::Tensor& t, const at::Tensor& x, const char* op, const char* name) {
  if (t.device() != x.device()) {
    throw OpError(fmt::format("{}: {} is on {} but x is on {}", op, name, t.device().str(), x.device().str()));
  }
}

// x [B, D, L]: float dtype, sizes that the kernels' int indices hold.
void check_x(const at::Tensor& x3, const at::Tensor& x, const char* op) {
  check_float_dtype(x, op, "x");
  for (int64_t size : x3.sizes()) {
    if (size > std::numeric_limits<int>::max()) {
      throw OpError(fmt::format("{}: x {} has a dimension above 2^31 - 1", op, shape(x)));
    }
  }
}

// weight [D, W] or [D, 1, W] -> a [D, W] view.
at::Tensor checked_weight(const at::Tensor& weight, const at::Tensor& x, int64_t dim, const char* op) {
  check_defined(weight, op, "weight");
  if (!(weight.dim() == 2 || (weight.dim() == 3 && weight.size(1) == 1))) {
    throw OpError(fmt::format("{}: weight has {} dims {}, expected [D, W] or [D, 1, W]", op, weight.dim(),
                                 shape(weight)));
  }
  const at::Tensor w = weight.dim() == 3 ? weight.select(1, 0) : weight;
  if (w.size(0) != dim) {
    throw OpError(fmt::format("{}: weight {} has {} channels but x {} has D = {}", op, shape(weight), w.size(0),
                                 shape(x), dim));
  }
  if (w.size(1) < 2 || w.size(1) > 4) {
    throw OpError(fmt::format("{}: weight {} has width {}; supported widths are 2, 3 and 4", op, shape(weight),
                                 w.size(1)));
  }
  check_float_dtype(weight, op, "weight");
  check_same_device(weight, x, op, "weight");
  return w;
}

// bias [D] or none (an empty optional or an undefined tensor).
std::optional<at::Tensor> checked_bias(const std::optional<at::Tensor>& bias, const at::Tensor& x, int64_t dim,
                                       const char* op) {
  if (!bias || !bias->defined()) return std::nullopt;
  if (bias->dim() != 1 || bias->size(0) != dim) {
    throw OpError(fmt::format("{}: bias has shape {}, expected [D] = [{}]", op, shape(*bias), dim));
  }
  check_float_dtype(*bias, op, "bias");
  check_same_device(*bias, x, op, "bias");
  return bias;
}

// A conv state [B, D, W] in x's dtype, on x's device, writable in place.
void check_state(const at::Tensor& state, const at::Tensor& x, int64_t batch, int64_t dim, int64_t width,
                 const char* op, const char* name) {
  check_defined(state, op, name);
  if (state.dim() != 3 || state.size(0) != batch || state.size(1) != dim || state.size(2) != width) {
    throw OpError(fmt::format("{}: {} has shape {}, expected [B, D, W] = [{}, {}, {}]", op, name, shape(state),
                                 batch, dim, width));
  }
  if (state.scalar_type() != x.scalar_type()) {
    throw OpError(fmt::format("{}: {} has dtype {}, expected x's dtype {}", op, name,
                                 c10::toString(state.scalar_type()), c10::toString(x.scalar_type())));
  }
  check_same_device(state, x, op, name);
  for (int64_t d = 0; d < 3; ++d) {
    if (state.size(d) > 1 && state.stride(d) == 0) {
      throw OpError(fmt::format("{}: {} is a broadcast (stride 0) view; it is written in place", op, name));
    }
  }
}

// out [B, D, L] laid out like x: a channel-last x (a transposed [B, L, D]) gets a channel-last out.
at::Tensor empty_like_layout(const at::Tensor& x3) {
  const bool channel_last = x3.size(1) > 1 && x3.size(2) > 1 && x3.stride(1) == 1;
  if (channel_last) return at::empty({x3.size(0), x3.size(2), x3.size(1)}, x3.options()).transpose(1, 2);
  return at::empty(x3.sizes(), x3.options());
}

// Depthwise conv without padding, in fp32: [B, D, N] -> [B, D, N - W + 1]. Written as W
// multiply-adds of shifted slices (a loop over the taps, each one vectorised over B, D and time)
// rather than at::conv1d, so that it is plain fp32 on every device (no cuDNN algorithm choice, no
// TF32) and sums in the kernels' order: bias first, then tap 0 (oldest input) to tap W - 1.
at::Tensor depthwise_conv_fp32(const at::Tensor& input, const at::Tensor& weight,
                               const std::optional<at::Tensor>& bias, bool silu) {
  const int64_t batch = input.size(0), dim = input.size(1), width = weight.size(1);
  const int64_t outputs = input.size(2) - width + 1;
  const at::Tensor x = input.to(at::kFloat);
  const at::Tensor w = weight.to(at::kFloat);  // [D, W]
  at::Tensor y = bias ? bias->to(at::kFloat).reshape({1, dim, 1}).expand({batch, dim, outputs}).clone()
                      : at::zeros({batch, dim, outputs}, x.options());
  for (int64_t k = 0; k < width; ++k) {
    y.addcmul_(x.narrow(2, k, outputs), w.narrow(1, k, 1).unsqueeze(0));  // w[:, k] as [1, D, 1]
  }
  return silu ? at::silu(y) : y;
}

}  // namespace

namespace detail {

void causal_conv1d_reference(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                             bool silu, const at::Tensor& out, const at::Tensor& final_conv_state) {
  const int64_t seqlen = x.size(2);
  const int64_t width = weight.size(1);
  if (seqlen > 0) {
    // W - 1 zeros on the left make the conv causal and keep L outputs.
    out.copy_(depthwise_conv_fp32(at::constant_pad_nd(x, {width - 1, 0}), weight, bias, silu));
  }
  if (final_conv_state.defined()) {
    final_conv_state.copy_(seqlen >= width ? x.narrow(2, seqlen - width, width)
                                           : at::constant_pad_nd(x, {width - seqlen, 0}));
  }
}

void causal_conv1d_update_reference(const at::Tensor& x, const at::Tensor& conv_state, const at::Tensor& weight,
                                    const std::optional<at::Tensor>& bias, bool silu, const at::Tensor& out) {
  const int64_t tokens = x.size(2);
  const int64_t width = weight.size(1);
  if (tokens == 0) return;
  // The state then the new inputs: output t sees history[t + 1 .. t + W], the new state is the
  // last W entries. One conv over the whole history, not a loop over tokens.
  const at::Tensor history = at::cat({conv_state, x}, 2);  // [B, D, W + T]
  out.copy_(depthwise_conv_fp32(history.narrow(2, 1, width + tokens - 1), weight, bias, silu));
  conv_state.copy_(history.narrow(2, tokens, width));
}

}  // namespace detail

at::Tensor causal_conv1d(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                         bool silu, at::Tensor* final_conv_state, Backend backend) {
  RECORD_USER_SCOPE("effarch::causal_conv1d");  // names the op in profiles (effarch profile)
  constexpr const char* op = "causal_conv1d";
  check_defined(x, op, "x");
  if (x.dim() != 3) throw OpError(fmt::format("{}: x has {} dims {}, expected [B, D, L]", op, x.dim(), shape(x)));
  check_x(x, x, op);
  const int64_t batch = x.size(0);
  const int64_t dim = x.size(1);
  const at::Tensor w = checked_weight(weight, x, dim, op);  // [D, W]
  const std::optional<at::Tensor> b = checked_bias(bias, x, dim, op);
  at::Tensor state;
  if (final_conv_state != nullptr) {
    check_state(*final_conv_state, x, batch, dim, w.size(1), op, "final_conv_state");
    state = *final_conv_state;
  }
  [[maybe_unused]] const bool cuda = use_cuda_kernel(backend, OpFamily::CausalConv1d, x.device());

  at::Tensor out = empty_like_layout(x);
  if (batch == 0 || dim == 0) return out;
#ifdef EFFARCH_WITH_CUDA
  if (cuda) {
    detail::causal_conv1d_cuda(x, w, b, silu, out, state);
    return out;
  }
#endif
  detail::causal_conv1d_reference(x, w, b, silu, out, state);
  return out;
}

at::Tensor causal_conv1d_update(const at::Tensor& x, at::Tensor& conv_state, const at::Tensor& weight,
                                const std::optional<at::Tensor>& bias, bool silu, Backend backend) {
  RECORD_USER_SCOPE("effarch::causal_conv1d_update");  // names the op in profiles (effarch profile)
  constexpr const char* op = "causal_conv1d_update";
  check_defined(x, op, "x");
  if (x.dim() != 2 && x.dim() != 3) {
    throw OpError(fmt::format("{}: x has {} dims {}, expected [B, D] or [B, D, T]", op, x.dim(), shape(x)));
  }
  const at::Tensor x3 = x.dim() == 2 ? x.unsqueeze(2) : x;  // [B, D, T]
  check_x(x3, x, op);
  const int64_t batch = x3.size(0);
  const int64_t dim = x3.size(1);
  const at::Tensor w = checked_weight(weight, x, dim, op);  // [D, W]
  const std::optional<at::Tensor> b = checked_bias(bias, x, dim, op);
  check_state(conv_state, x, batch, dim, w.size(1), op, "conv_state");
  [[maybe_unused]] const bool cuda = use_cuda_kernel(backend, OpFamily::CausalConv1d, x.device());

  const at::Tensor out3 = empty_like_layout(x3);
  at::Tensor out = x.dim() == 2 ? out3.select(2, 0) : out3;
  if (batch == 0 || dim == 0 || x3.size(2) == 0) return out;
#ifdef EFFARCH_WITH_CUDA
  if (cuda) {
    detail::causal_conv1d_update_cuda(x3, conv_state, w, b, silu, out3);
    return out;
  }
#endif
  detail::causal_conv1d_update_reference(x3, conv_state, w, b, silu, out3);
  return out;
}

bool linear_conv_update_fuses(const at::Tensor& x, const Linear& in_proj, const at::Tensor& conv_state,
                              Backend backend) {
  return x.defined() && x.dim() == 2 && conv_state.defined() && conv_state.scalar_type() == x.scalar_type() &&
         conv_state.device() == x.device() && use_cuda_kernel(backend, OpFamily::CausalConv1d, x.device()) &&
         detail::dense_gemv_applies(x, in_proj, backend);
}

namespace {

// linear_conv_update; `norm`: the fused GEMV's norm prologue, x its stand-in
// (NormedInput::for_product, which gives it only where linear_conv_update_fuses holds).
ProjectedConv projected_conv(const at::Tensor& x, const Linear& in_proj, int64_t begin, at::Tensor& conv_state,
                             const at::Tensor& weight, const std::optional<at::Tensor>& bias, bool silu,
                             Backend backend, [[maybe_unused]] const kernels::AddNormParams* norm) {
  constexpr const char* op = "linear_conv_update";
  check_defined(x, op, "x");
  if (x.dim() != 2) throw OpError(fmt::format("{}: x has {} dims {}, expected [B, H]", op, x.dim(), shape(x)));
  detail::check_linear(x, in_proj, op);
  check_defined(conv_state, op, "conv_state");
  if (conv_state.dim() != 3) {
    throw OpError(fmt::format("{}: conv_state has shape {}, expected [B, D, W]", op, shape(conv_state)));
  }
  const int64_t batch = x.size(0), dim = conv_state.size(1), outputs = in_proj.out_features();
  if (begin < 0 || begin + dim > outputs) {
    throw OpError(fmt::format("{}: the conv's {} channels from output {} do not fit in_proj's {} outputs", op, dim,
                              begin, outputs));
  }
  check_x(x.unsqueeze(2), x, op);
  const at::Tensor w = checked_weight(weight, x, dim, op);  // [D, W]
  const std::optional<at::Tensor> b = checked_bias(bias, x, dim, op);
  check_state(conv_state, x, batch, dim, w.size(1), op, "conv_state");
#ifdef EFFARCH_WITH_CUDA
  if (linear_conv_update_fuses(x, in_proj, conv_state, backend)) {
    RECORD_USER_SCOPE("effarch::linear");  // one GEMV launch: the conv inside counts as the projection's
    at::Tensor conv = at::empty({batch, dim}, x.options());
    at::Tensor projection = detail::linear_conv_update_cuda(x, in_proj, begin, conv_state, w, b, silu, conv, norm);
    return {std::move(projection), std::move(conv)};
  }
#endif
  at::Tensor projection = linear(x, in_proj, backend);
  at::Tensor conv = causal_conv1d_update(projection.narrow(1, begin, dim), conv_state, w, b, silu, backend);
  return {std::move(projection), std::move(conv)};
}

}  // namespace

ProjectedConv linear_conv_update(const at::Tensor& x, const Linear& in_proj, int64_t begin, at::Tensor& conv_state,
                                 const at::Tensor& weight, const std::optional<at::Tensor>& bias, bool silu,
                                 Backend backend) {
  return projected_conv(x, in_proj, begin, conv_state, weight, bias, silu, backend, nullptr);
}

ProjectedConv linear_conv_update(const NormedInput& x, const Linear& in_proj, int64_t begin, at::Tensor& conv_state,
                                 const at::Tensor& weight, const std::optional<at::Tensor>& bias, bool silu,
                                 Backend backend) {
  const NormedInput::ProductInput in = x.for_product(
      in_proj, backend, x.is_pending() && linear_conv_update_fuses(x.stand_in(), in_proj, conv_state, backend));
  return projected_conv(in.x, in_proj, begin, conv_state, weight, bias, silu, backend, in.norm);
}

}  // namespace effarch::ops
