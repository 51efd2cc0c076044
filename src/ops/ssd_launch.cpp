// The Mamba-2 kernels' params filled from checked tensors (every build; see ssd_launch.h).

#include "ssd_launch.h"

#include <algorithm>
#include <cmath>

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "effarch/common/error.h"
#include "kernel_params.h"
#include "ssd/ssd_tc_math.h"

namespace effarch::ops::detail {
namespace {

// dt, B, C in x's dtype (the kernels read one input type); a copy only where they differ.
at::Tensor like_x(const at::Tensor& t, const at::Tensor& x) {
  return t.scalar_type() == x.scalar_type() ? t : t.to(x.scalar_type());
}

SsdHeadTensors head_tensors(const SsdArgs& args) {
  SsdHeadTensors t;
  t.A = args.A.to(at::kFloat).contiguous();
  if (args.D) t.D = args.D->to(at::kFloat).contiguous();
  if (args.dt_bias) t.dt_bias = args.dt_bias->to(at::kFloat).contiguous();
  return t;
}

kernels::SsdHeadParams head_params(const SsdArgs& args, const SsdHeadTensors& t) {
  kernels::SsdHeadParams hp;
  hp.A = t.A.const_data_ptr<float>();
  hp.D = t.D.defined() ? t.D.const_data_ptr<float>() : nullptr;
  hp.dt_bias = t.dt_bias.defined() ? t.dt_bias.const_data_ptr<float>() : nullptr;
  hp.dt_softplus = args.dt_softplus;
  // The reference clamps exactly when a limit is set (src/ops/ssd.cpp's discretize).
  hp.dt_clamp = args.dt_min > 0.0 || std::isfinite(args.dt_max);
  hp.dt_min = static_cast<float>(args.dt_min);
  hp.dt_max = static_cast<float>(args.dt_max);
  return hp;
}

}  // namespace
}  // namespace effarch::ops::detail

namespace effarch::ops {

bool ssd_scan_uses_tensor_cores(at::ScalarType x_dtype, int64_t d_state, SsdScanProducts products) {
  const bool half = x_dtype == at::kBFloat16 || x_dtype == at::kHalf;
  const bool fits = d_state <= kernels::ssd::kTcMaxDState;
  switch (products) {
    case SsdScanProducts::Fma: return false;
    case SsdScanProducts::TensorCores:
      if (!half) {
        throw OpError(fmt::format("ssd_chunk_scan: products on tensor cores take bf16 or fp16 x, not {}",
                                  c10::toString(x_dtype)));
      }
      if (!fits) {
        throw OpError(fmt::format("ssd_chunk_scan: products on tensor cores take d_state up to {}, not {}",
                                  kernels::ssd::kTcMaxDState, d_state));
      }
      return true;
    case SsdScanProducts::Auto: break;
  }
  return half && fits;
}

const char* ssd_scan_products_name(at::ScalarType x_dtype, int64_t d_state, SsdScanProducts products) {
  return ssd_scan_uses_tensor_cores(x_dtype, d_state, products) ? "tensor_cores" : "fma";
}

Backend ssd_scan_backend(Backend requested, at::ScalarType x_dtype, SsdScanProducts products,
                         const c10::Device& device) {
  const Backend impl = resolve_backend(requested, OpFamily::SsdScan, device);
  if (requested == Backend::Auto && impl == Backend::Cuda && products == SsdScanProducts::Auto &&
      x_dtype == at::kFloat) {
    return Backend::Reference;
  }
  return impl;
}

}  // namespace effarch::ops

namespace effarch::ops::detail {

SsdUpdateLaunch prepare_ssd_state_update(const at::Tensor& x, const at::Tensor& dt, const at::Tensor& Bmat,
                                         const at::Tensor& Cmat, const SsdArgs& args, const at::Tensor& state) {
  constexpr const char* op = "ssd_state_update";
  SsdUpdateLaunch l;
  l.x = x;
  l.dt = like_x(dt, x), l.B = like_x(Bmat, x), l.C = like_x(Cmat, x);
  l.head = head_tensors(args);
  l.y = at::empty({x.size(0), x.size(1), x.size(2)}, x.options().dtype(at::kFloat));
  kernels::SsdUpdateParams& p = l.params;
  p.batch = to_int(x.size(0), op, "batch");
  p.heads = to_int(x.size(1), op, "heads");
  p.head_dim = to_int(x.size(2), op, "head_dim");
  p.groups = to_int(l.B.size(1), op, "groups");
  p.d_state = to_int(l.B.size(2), op, "d_state");
  p.x_type = element_type(x.scalar_type(), op);
  p.head = head_params(args, l.head);
  p.x = x.const_data_ptr();
  p.x_batch_stride = x.stride(0), p.x_head_stride = x.stride(1), p.x_dim_stride = x.stride(2);
  p.dt = l.dt.const_data_ptr();
  p.dt_batch_stride = l.dt.stride(0), p.dt_head_stride = l.dt.stride(1);
  p.B = l.B.const_data_ptr();
  p.B_batch_stride = l.B.stride(0), p.B_group_stride = l.B.stride(1), p.B_state_stride = l.B.stride(2);
  p.C = l.C.const_data_ptr();
  p.C_batch_stride = l.C.stride(0), p.C_group_stride = l.C.stride(1), p.C_state_stride = l.C.stride(2);
  p.state = state.mutable_data_ptr<float>();
  p.state_batch_stride = state.stride(0), p.state_head_stride = state.stride(1);
  p.state_dim_stride = state.stride(2), p.state_state_stride = state.stride(3);
  p.y = l.y.mutable_data_ptr<float>();
  p.y_batch_stride = l.y.stride(0), p.y_head_stride = l.y.stride(1), p.y_dim_stride = l.y.stride(2);
  return l;
}

SsdScanLaunch prepare_ssd_chunk_scan(const at::Tensor& x, const at::Tensor& dt, const at::Tensor& Bmat,
                                     const at::Tensor& Cmat, const SsdArgs& args, const at::Tensor& state,
                                     bool from_state) {
  constexpr const char* op = "ssd_chunk_scan";
  SsdScanLaunch l;
  l.x = x;
  l.dt = like_x(dt, x), l.B = like_x(Bmat, x), l.C = like_x(Cmat, x);
  l.head = head_tensors(args);
  l.y = at::empty({x.size(0), x.size(1), x.size(2), x.size(3)}, x.options().dtype(at::kFloat));
  kernels::SsdScanParams& p = l.params;
  p.batch = to_int(x.size(0), op, "batch");
  p.seqlen = to_int(x.size(1), op, "length");
  p.heads = to_int(x.size(2), op, "heads");
  p.head_dim = to_int(x.size(3), op, "head_dim");
  p.groups = to_int(l.B.size(2), op, "groups");
  p.d_state = to_int(l.B.size(3), op, "d_state");
  // A chunk longer than the sequence is one chunk of L, as the reference makes it.
  p.chunk = to_int(std::min<int64_t>(args.chunk_size, x.size(1)), op, "chunk_size");
  p.nchunks = p.chunk > 0 ? (p.seqlen + p.chunk - 1) / p.chunk : 0;
  p.from_state = from_state;
  p.x_type = element_type(x.scalar_type(), op);
  p.tensor_cores = ssd_scan_uses_tensor_cores(x.scalar_type(), p.d_state, args.products);
  p.head = head_params(args, l.head);
  p.x = x.const_data_ptr();
  p.x_batch_stride = x.stride(0), p.x_time_stride = x.stride(1), p.x_head_stride = x.stride(2);
  p.x_dim_stride = x.stride(3);
  p.dt = l.dt.const_data_ptr();
  p.dt_batch_stride = l.dt.stride(0), p.dt_time_stride = l.dt.stride(1), p.dt_head_stride = l.dt.stride(2);
  p.B = l.B.const_data_ptr();
  p.B_batch_stride = l.B.stride(0), p.B_time_stride = l.B.stride(1), p.B_group_stride = l.B.stride(2);
  p.B_state_stride = l.B.stride(3);
  p.C = l.C.const_data_ptr();
  p.C_batch_stride = l.C.stride(0), p.C_time_stride = l.C.stride(1), p.C_group_stride = l.C.stride(2);
  p.C_state_stride = l.C.stride(3);
  p.state = state.mutable_data_ptr<float>();
  p.state_batch_stride = state.stride(0), p.state_head_stride = state.stride(1);
  p.state_dim_stride = state.stride(2), p.state_state_stride = state.stride(3);
  p.y = l.y.mutable_data_ptr<float>();
  p.y_batch_stride = l.y.stride(0), p.y_time_stride = l.y.stride(1), p.y_head_stride = l.y.stride(2);
  p.y_dim_stride = l.y.stride(3);
  // Workspaces: 3 floats per token and head, P N per chunk and head; on a GPU freed to the caching
  // allocator when the launch goes out of scope, stream-ordered after the kernels that use them.
  l.workspace = at::empty({kernels::ssd_scan_workspace_floats(p)}, x.options().dtype(at::kFloat));
  const int64_t per = static_cast<int64_t>(p.batch) * p.heads * p.nchunks * p.chunk;
  float* base = l.workspace.mutable_data_ptr<float>();
  p.dt_ws = base;
  p.a_ws = base + per;
  p.cs_ws = base + 2 * per;
  p.states_ws = base + 3 * per;
  return l;
}

GatedRmsNormLaunch prepare_gated_rms_norm(const at::Tensor& y, const at::Tensor& z, const at::Tensor& weight,
                                          int64_t group_size, double eps, std::optional<at::ScalarType> out_dtype) {
  constexpr const char* op = "gated_rms_norm";
  const int64_t d = y.size(-1);
  GatedRmsNormLaunch l;
  l.y = y.reshape({-1, d});  // views for the mixer's layouts
  l.z = z.reshape({-1, d});
  l.weight = weight;
  // The fp32 product rounded once to out_dtype: what the reference's cast of its result gives.
  const at::ScalarType type = out_dtype.value_or(at::promote_types(weight.scalar_type(), y.scalar_type()));
  l.out = at::empty(l.y.sizes(), y.options().dtype(type));
  kernels::GatedRmsNormParams& p = l.params;
  p.rows = l.y.size(0);
  p.dim = to_int(d, op, "channels");
  p.group_size = to_int(group_size, op, "group_size");
  p.eps = static_cast<float>(eps);
  p.y_type = element_type(y.scalar_type(), op);
  p.z_type = element_type(z.scalar_type(), op);
  p.weight_type = element_type(weight.scalar_type(), op);
  p.out_type = element_type(type, op);
  p.y = l.y.const_data_ptr();
  p.y_row_stride = l.y.stride(0), p.y_dim_stride = l.y.stride(1);
  p.z = l.z.const_data_ptr();
  p.z_row_stride = l.z.stride(0), p.z_dim_stride = l.z.stride(1);
  p.weight = weight.const_data_ptr();
  p.weight_stride = weight.stride(0);
  p.out = l.out.mutable_data_ptr();
  p.out_row_stride = l.out.stride(0), p.out_dim_stride = l.out.stride(1);
  return l;
}

}  // namespace effarch::ops::detail
