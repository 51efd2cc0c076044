#pragma once
// The causal conv's kernel operands prepared on the host (every build): its weights as the
// kernels read them, and the params of the conv update fused into in_proj's GEMV
// (kernels/gemv/gemv_params.h, ops::linear_conv_update). src/ops/causal_conv1d_cuda.cpp launches
// them; tests/ops/gemv_test.cpp runs the GEMV's host emulation on the same params.

#include <optional>

#include <ATen/core/Tensor.h>

#include "gemv/gemv_params.h"

namespace effarch::ops::detail {

// The kernels read weight and bias in x's dtype or in float32. Any other mix is cast to float32:
// D * W + D elements, nothing next to x.
struct ConvKernelWeights {
  at::Tensor weight;  // [D, W]
  at::Tensor bias;    // [D] or undefined
};
ConvKernelWeights conv_kernel_weights(const at::Tensor& x, const at::Tensor& weight,
                                      const std::optional<at::Tensor>& bias);

// The weight and bias fields both conv kernels' params share (kernels::CausalConv1dParams,
// kernels::GemvConvUpdate): pointers and strides, the bias left null without one.
template <class Params>
void set_conv_weights(Params& p, const ConvKernelWeights& kw) {
  p.weight = kw.weight.const_data_ptr();
  p.weight_dim_stride = kw.weight.stride(0);
  p.weight_width_stride = kw.weight.stride(1);
  if (kw.bias.defined()) {
    p.bias = kw.bias.const_data_ptr();
    p.bias_stride = kw.bias.stride(0);
  }
}

// The fused conv update over checked tensors: the conv's channels are in_proj's outputs begin ..
// begin + D - 1; conv_state [B, D, W] in x's dtype, rolled in place; conv_out [B, D] written.
kernels::GemvConvUpdate gemv_conv_update_params(const ConvKernelWeights& kw, int64_t begin, bool silu,
                                                const at::Tensor& conv_state, const at::Tensor& conv_out);

}  // namespace effarch::ops::detail
