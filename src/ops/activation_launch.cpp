// The fused activation's params filled from checked tensors (every build; see activation_launch.h).

#include "activation_launch.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "effarch/common/error.h"
#include "kernel_params.h"

namespace effarch::ops::detail {

std::optional<kernels::ActKind> kernel_activation(Activation act) {
  switch (act) {
    case Activation::SiLU: return kernels::ActKind::kSilu;
    case Activation::GeluNew: return kernels::ActKind::kGeluNew;
    default: return std::nullopt;
  }
}

ActivationLaunch prepare_activation(Activation act, const at::Tensor& x, bool gated) {
  constexpr const char* op = "activation";
  const auto kind = kernel_activation(act);
  if (!kind) throw OpError(fmt::format("{}: no kernel for this activation (only silu and gelu_new)", op));
  const int64_t c = x.size(-1);
  ActivationLaunch l;
  l.in = x.reshape({-1, c});
  if (c > 1 && l.in.stride(1) != 1) l.in = l.in.contiguous();
  const int64_t cols = gated ? c / 2 : c;
  l.out = at::empty({l.in.size(0), cols}, x.options());
  kernels::ActivationParams& p = l.params;
  p.rows = l.in.size(0);
  p.cols = cols;
  p.act = *kind;
  p.gated = gated;
  p.type = element_type(x.scalar_type(), op);
  p.in = l.in.const_data_ptr();
  p.in_row_stride = l.in.stride(0);
  p.up_offset = gated ? cols : 0;
  p.out = l.out.mutable_data_ptr();
  p.out_row_stride = l.out.stride(0);
  return l;
}

}  // namespace effarch::ops::detail
