// The fused residual add + norm's params filled from checked tensors (every build; see add_norm_launch.h).

#include "add_norm_launch.h"

#include <limits>

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "effarch/common/error.h"
#include "kernel_params.h"

namespace effarch::ops::detail {
namespace {

constexpr const char* kOp = "add_norm";

// t as [rows, H] with a contiguous last dimension (a view where the layout allows).
at::Tensor rows_of(const at::Tensor& t, int64_t h) {
  at::Tensor r = t.reshape({-1, h});
  if (h > 1 && r.stride(1) != 1) r = r.contiguous();
  return r;
}

}  // namespace

AddNormLaunch prepare_add_norm(const at::Tensor& x, const at::Tensor& y, const at::Tensor* z, const NormParams& norm,
                               bool with_normed) {
  const int64_t h = x.size(-1);
  if (h > std::numeric_limits<int>::max()) {
    throw OpError(fmt::format("{}: x has {} channels, beyond the kernel's 32-bit sizes", kOp, h));
  }
  AddNormLaunch l;
  l.x = rows_of(x, h);
  l.y = rows_of(y, h);
  if (z != nullptr) l.z = rows_of(*z, h);
  l.weight = norm.weight.contiguous();
  if (norm.layer_norm) l.bias = norm.bias.contiguous();
  const at::ScalarType type = norm.weight.scalar_type();
  l.residual = at::empty(l.x.sizes(), l.x.options());  // x's dtype: the model dtype or fp32
  if (with_normed) l.normed = at::empty(l.x.sizes(), l.x.options().dtype(type));
  kernels::AddNormParams& p = l.params;
  p.rows = l.x.size(0);
  p.dim = static_cast<int>(h);
  p.eps = static_cast<float>(norm.eps);
  p.norm = norm.layer_norm ? kernels::NormType::kLayer : kernels::NormType::kRms;
  p.type = element_type(type, kOp);
  p.residual_type = element_type(x.scalar_type(), kOp);
  p.x = l.x.const_data_ptr();
  p.x_row_stride = l.x.stride(0);
  p.y = l.y.const_data_ptr();
  p.y_row_stride = l.y.stride(0);
  if (z != nullptr) {
    p.z = l.z.const_data_ptr();
    p.z_row_stride = l.z.stride(0);
  }
  p.residual_out = l.residual.mutable_data_ptr();
  p.residual_out_row_stride = l.residual.stride(0);
  if (with_normed) {
    p.normed = l.normed.mutable_data_ptr();
    p.normed_row_stride = l.normed.stride(0);
  }
  p.weight = l.weight.const_data_ptr();
  // A copy made above is written by the kernel just before: no prefetch ahead of the wait then.
  p.prefetch_weights = l.weight.is_same(norm.weight) && (!norm.layer_norm || l.bias.is_same(norm.bias));
  if (norm.layer_norm) p.bias = l.bias.const_data_ptr();
  p.threads = norm.cuda_threads;
  switch (norm.cuda_shape) {
    case AddNormShape::Auto: p.shape = kernels::AddNormShape::kAuto; break;
    case AddNormShape::Element: p.shape = kernels::AddNormShape::kElement; break;
    case AddNormShape::Vector: p.shape = kernels::AddNormShape::kVector; break;
  }
  return l;
}

}  // namespace effarch::ops::detail
