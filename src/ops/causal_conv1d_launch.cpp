// The causal conv's kernel operands, prepared in every build (see causal_conv1d_launch.h).

#include "causal_conv1d_launch.h"

#include <ATen/ATen.h>

namespace effarch::ops::detail {

ConvKernelWeights conv_kernel_weights(const at::Tensor& x, const at::Tensor& weight,
                                      const std::optional<at::Tensor>& bias) {
  at::ScalarType type = weight.scalar_type();
  const bool bias_matches = !bias || bias->scalar_type() == type;
  if (!bias_matches || (type != x.scalar_type() && type != at::kFloat)) type = at::kFloat;
  return {weight.to(type), bias ? bias->to(type) : at::Tensor()};
}

kernels::GemvConvUpdate gemv_conv_update_params(const ConvKernelWeights& kw, int64_t begin, bool silu,
                                                const at::Tensor& conv_state, const at::Tensor& conv_out) {
  kernels::GemvConvUpdate c;
  c.begin = static_cast<int>(begin);
  c.dim = static_cast<int>(conv_state.size(1));
  c.width = static_cast<int>(kw.weight.size(1));
  c.silu = silu;
  c.weight_fp32 = kw.weight.scalar_type() == at::kFloat;
  set_conv_weights(c, kw);
  c.state = conv_state.mutable_data_ptr();
  c.state_row_stride = conv_state.stride(0);
  c.state_dim_stride = conv_state.stride(1);
  c.state_width_stride = conv_state.stride(2);
  c.out = conv_out.mutable_data_ptr();
  c.out_row_stride = conv_out.stride(0);
  c.out_dim_stride = conv_out.stride(1);
  return c;
}

}  // namespace effarch::ops::detail
