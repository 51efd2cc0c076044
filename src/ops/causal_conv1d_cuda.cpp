// CUDA path of effarch::ops::causal_conv1d{,_update} (and the conv params of linear_conv_update's
// fused GEMV, kernels/gemv): fills the kernel params from tensors that
// the entries have already checked, launches on the current stream, turns a failed launch into an
// effarch::Error. Built only with CUDA (EFFARCH_HAVE_CUDA).

#include <ATen/ATen.h>

#include "causal_conv1d/causal_conv1d.h"
#include "causal_conv1d_launch.h"
#include "cuda_binding.h"
#include "effarch/ops/causal_conv1d.h"

namespace effarch::ops::detail {
namespace {

kernels::CausalConv1dParams make_params(const at::Tensor& x, const ConvKernelWeights& kw, bool silu, const at::Tensor& out,
                                        const char* op) {
  kernels::CausalConv1dParams p;
  p.batch = to_int(x.size(0), op, "batch");
  p.dim = to_int(x.size(1), op, "channels");
  p.seqlen = to_int(x.size(2), op, "length");
  p.width = static_cast<int>(kw.weight.size(1));
  p.silu = silu;
  p.x_type = element_type(x.scalar_type(), op);
  p.weight_type = element_type(kw.weight.scalar_type(), op);

  p.x = x.const_data_ptr();
  p.x_batch_stride = x.stride(0);
  p.x_dim_stride = x.stride(1);
  p.x_time_stride = x.stride(2);

  set_conv_weights(p, kw);

  p.out = out.mutable_data_ptr();
  p.out_batch_stride = out.stride(0);
  p.out_dim_stride = out.stride(1);
  p.out_time_stride = out.stride(2);
  return p;
}

void set_state(kernels::CausalConv1dParams& p, const at::Tensor& state) {
  p.conv_state = state.mutable_data_ptr();
  p.state_batch_stride = state.stride(0);
  p.state_dim_stride = state.stride(1);
  p.state_width_stride = state.stride(2);
}

}  // namespace

void causal_conv1d_cuda(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                        bool silu, const at::Tensor& out, const at::Tensor& final_conv_state, bool vector) {
  constexpr const char* op = "causal_conv1d";
  const DeviceGuard device_guard(x.device());
  const ConvKernelWeights kw = conv_kernel_weights(x, weight, bias);
  kernels::CausalConv1dParams p = make_params(x, kw, silu, out, op);
  p.vector = vector;
  if (final_conv_state.defined()) set_state(p, final_conv_state);
  throw_if_failed(kernels::causal_conv1d_fwd(p, current_stream()), op);
}

void causal_conv1d_update_cuda(const at::Tensor& x, const at::Tensor& conv_state, const at::Tensor& weight,
                               const std::optional<at::Tensor>& bias, bool silu, const at::Tensor& out) {
  constexpr const char* op = "causal_conv1d_update";
  const DeviceGuard device_guard(x.device());
  const ConvKernelWeights kw = conv_kernel_weights(x, weight, bias);
  kernels::CausalConv1dParams p = make_params(x, kw, silu, out, op);
  set_state(p, conv_state);
  throw_if_failed(kernels::causal_conv1d_update(p, current_stream()), op);
}

at::Tensor linear_conv_update_cuda(const at::Tensor& x, const Linear& in_proj, int64_t begin,
                                   const at::Tensor& conv_state, const at::Tensor& weight,
                                   const std::optional<at::Tensor>& bias, bool silu, const at::Tensor& conv_out,
                                   const kernels::AddNormParams* norm) {
  const ConvKernelWeights kw = conv_kernel_weights(x, weight, bias);  // alive until the launch: c points into it
  const kernels::GemvConvUpdate c = gemv_conv_update_params(kw, begin, silu, conv_state, conv_out);
  return dense_gemv_cuda(x, in_proj, &c, nullptr, nullptr, norm);
}

}  // namespace effarch::ops::detail
