// CUDA paths of effarch::ops::linear with a few rows (decode): fill the int8 GEMV kernel's params
// (kernels/int8_gemv) or the dense GEMV's (kernels/gemv) from tensors linear() has checked, launch
// on the current stream. Built only with CUDA (EFFARCH_HAVE_CUDA).

#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>

#include "cuda_binding.h"
#include "effarch/ops/linear.h"
#include "gemv/gemv.h"
#include "int8_gemv/int8_gemv.h"

namespace effarch::ops::detail {

at::Tensor int8_gemv_cuda(const at::Tensor& x_in, const Linear& layer) {
  constexpr const char* op = "linear (int8 GEMV)";
  const c10::cuda::CUDAGuard device_guard(x_in.device());
  const at::Tensor x = x_in.stride(1) == 1 ? x_in : x_in.contiguous();
  const at::Tensor q = layer.weight.contiguous(), scale = layer.scale.contiguous();
  const at::Tensor bias = layer.bias ? layer.bias->to(x.scalar_type()).contiguous() : at::Tensor();
  at::Tensor y = at::empty({x.size(0), layer.out_features()}, x.options());
  kernels::Int8GemvParams p;
  p.rows = static_cast<int>(x.size(0));
  p.in = static_cast<int>(layer.in_features());
  p.out = static_cast<int>(layer.out_features());
  p.x_type = element_type(x.scalar_type(), op);
  p.x = x.const_data_ptr();
  p.x_row_stride = x.stride(0);
  p.q = q.const_data_ptr<int8_t>();
  p.scale = scale.const_data_ptr<float>();
  p.bias = bias.defined() ? bias.const_data_ptr() : nullptr;
  p.y = y.mutable_data_ptr();
  p.y_row_stride = y.stride(0);
  throw_if_failed(kernels::int8_gemv(p, current_stream()), op);
  return y;
}

at::Tensor dense_gemv_cuda(const at::Tensor& x_in, const Linear& layer) {
  constexpr const char* op = "linear (dense GEMV)";
  const c10::cuda::CUDAGuard device_guard(x_in.device());
  const at::Tensor x = x_in.stride(1) == 1 ? x_in : x_in.contiguous();
  const at::Tensor w = layer.weight.contiguous();
  const at::Tensor bias = layer.bias ? layer.bias->to(x.scalar_type()).contiguous() : at::Tensor();
  at::Tensor y = at::empty({x.size(0), layer.out_features()}, x.options());
  kernels::GemvParams p;
  p.rows = static_cast<int>(x.size(0));
  p.in = static_cast<int>(layer.in_features());
  p.out = static_cast<int>(layer.out_features());
  p.x_type = element_type(x.scalar_type(), op);
  p.x = x.const_data_ptr();
  p.x_row_stride = x.stride(0);
  p.w = w.const_data_ptr();
  p.bias = bias.defined() ? bias.const_data_ptr() : nullptr;
  p.y = y.mutable_data_ptr();
  p.y_row_stride = y.stride(0);
  p.sm_count = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  throw_if_failed(kernels::gemv(p, current_stream()), op);
  return y;
}

}  // namespace effarch::ops::detail
