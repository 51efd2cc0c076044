// CUDA paths of effarch::ops::ssd_state_update / ssd_chunk_scan / gated_rms_norm: fill the kernel
// params (kernels/ssd/ssd_params.h) from tensors the entries have already checked, launch on the
// current stream, turn a failed launch into an effarch::Error. x, dt, B, C are passed by their
// strides (the mixer's views, no copies); A, D, dt_bias ([H]) are read in fp32. Built only with
// CUDA (EFFARCH_HAVE_CUDA).

#include "ssd_cuda.h"

#include <cmath>
#include <limits>

#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <fmt/format.h>

#include "cuda_binding.h"
#include "effarch/common/error.h"
#include "ssd/ssd.h"

namespace effarch::ops::detail {
namespace {

int to_int(int64_t v, const char* op, const char* what) {
  if (v < 0 || v > std::numeric_limits<int>::max()) {
    throw OpError(fmt::format("{}: {} = {} is beyond the CUDA kernel's 32-bit sizes", op, what, v));
  }
  return static_cast<int>(v);
}

// dt, B, C in x's dtype (the kernels read one input type); a copy only where they differ.
at::Tensor like_x(const at::Tensor& t, const at::Tensor& x) {
  return t.scalar_type() == x.scalar_type() ? t : t.to(x.scalar_type());
}

// The [H] scalars in contiguous fp32, kept alive by the caller until the launch is queued.
struct HeadTensors {
  at::Tensor A, D, dt_bias;
};

HeadTensors head_tensors(const SsdArgs& args) {
  HeadTensors t;
  t.A = args.A.to(at::kFloat).contiguous();
  if (args.D) t.D = args.D->to(at::kFloat).contiguous();
  if (args.dt_bias) t.dt_bias = args.dt_bias->to(at::kFloat).contiguous();
  return t;
}

kernels::SsdHeadParams head_params(const SsdArgs& args, const HeadTensors& t) {
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

void ssd_state_update_cuda(const at::Tensor& x, const at::Tensor& dt_in, const at::Tensor& B_in,
                           const at::Tensor& C_in, const SsdArgs& args, const at::Tensor& state, const at::Tensor& y) {
  constexpr const char* op = "ssd_state_update";
  const c10::cuda::CUDAGuard device_guard(x.device());
  const at::Tensor dt = like_x(dt_in, x), Bm = like_x(B_in, x), Cm = like_x(C_in, x);
  const HeadTensors heads = head_tensors(args);
  kernels::SsdUpdateParams p;
  p.batch = to_int(x.size(0), op, "batch");
  p.heads = to_int(x.size(1), op, "heads");
  p.head_dim = to_int(x.size(2), op, "head_dim");
  p.groups = to_int(Bm.size(1), op, "groups");
  p.d_state = to_int(Bm.size(2), op, "d_state");
  p.x_type = element_type(x.scalar_type(), op);
  p.head = head_params(args, heads);
  p.x = x.const_data_ptr();
  p.x_batch_stride = x.stride(0), p.x_head_stride = x.stride(1), p.x_dim_stride = x.stride(2);
  p.dt = dt.const_data_ptr();
  p.dt_batch_stride = dt.stride(0), p.dt_head_stride = dt.stride(1);
  p.B = Bm.const_data_ptr();
  p.B_batch_stride = Bm.stride(0), p.B_group_stride = Bm.stride(1), p.B_state_stride = Bm.stride(2);
  p.C = Cm.const_data_ptr();
  p.C_batch_stride = Cm.stride(0), p.C_group_stride = Cm.stride(1), p.C_state_stride = Cm.stride(2);
  p.state = state.mutable_data_ptr<float>();
  p.state_batch_stride = state.stride(0), p.state_head_stride = state.stride(1);
  p.state_dim_stride = state.stride(2), p.state_state_stride = state.stride(3);
  p.y = y.mutable_data_ptr<float>();
  p.y_batch_stride = y.stride(0), p.y_head_stride = y.stride(1), p.y_dim_stride = y.stride(2);
  throw_if_failed(kernels::ssd_state_update(p, current_stream()), op);
}

void ssd_chunk_scan_cuda(const at::Tensor& x, const at::Tensor& dt_in, const at::Tensor& B_in, const at::Tensor& C_in,
                         const SsdArgs& args, const at::Tensor& state, bool from_state, const at::Tensor& y) {
  constexpr const char* op = "ssd_chunk_scan";
  const c10::cuda::CUDAGuard device_guard(x.device());
  const at::Tensor dt = like_x(dt_in, x), Bm = like_x(B_in, x), Cm = like_x(C_in, x);
  const HeadTensors heads = head_tensors(args);
  kernels::SsdScanParams p;
  p.batch = to_int(x.size(0), op, "batch");
  p.seqlen = to_int(x.size(1), op, "length");
  p.heads = to_int(x.size(2), op, "heads");
  p.head_dim = to_int(x.size(3), op, "head_dim");
  p.groups = to_int(Bm.size(2), op, "groups");
  p.d_state = to_int(Bm.size(3), op, "d_state");
  // A chunk longer than the sequence is one chunk of L, as the reference makes it.
  p.chunk = to_int(std::min<int64_t>(args.chunk_size, x.size(1)), op, "chunk_size");
  p.nchunks = (p.seqlen + p.chunk - 1) / p.chunk;
  p.from_state = from_state;
  p.x_type = element_type(x.scalar_type(), op);
  p.head = head_params(args, heads);
  p.x = x.const_data_ptr();
  p.x_batch_stride = x.stride(0), p.x_time_stride = x.stride(1), p.x_head_stride = x.stride(2);
  p.x_dim_stride = x.stride(3);
  p.dt = dt.const_data_ptr();
  p.dt_batch_stride = dt.stride(0), p.dt_time_stride = dt.stride(1), p.dt_head_stride = dt.stride(2);
  p.B = Bm.const_data_ptr();
  p.B_batch_stride = Bm.stride(0), p.B_time_stride = Bm.stride(1), p.B_group_stride = Bm.stride(2);
  p.B_state_stride = Bm.stride(3);
  p.C = Cm.const_data_ptr();
  p.C_batch_stride = Cm.stride(0), p.C_time_stride = Cm.stride(1), p.C_group_stride = Cm.stride(2);
  p.C_state_stride = Cm.stride(3);
  p.state = state.mutable_data_ptr<float>();
  p.state_batch_stride = state.stride(0), p.state_head_stride = state.stride(1);
  p.state_dim_stride = state.stride(2), p.state_state_stride = state.stride(3);
  p.y = y.mutable_data_ptr<float>();
  p.y_batch_stride = y.stride(0), p.y_time_stride = y.stride(1), p.y_head_stride = y.stride(2);
  p.y_dim_stride = y.stride(3);
  // Workspaces: linear in L (3 floats per token and head, P N per chunk and head); freed to the
  // caching allocator on return, stream-ordered after the kernels that use them.
  const at::Tensor ws = at::empty({kernels::ssd_scan_workspace_floats(p)}, x.options().dtype(at::kFloat));
  const int64_t per = static_cast<int64_t>(p.batch) * p.heads * p.nchunks * p.chunk;
  float* base = ws.mutable_data_ptr<float>();
  p.dt_ws = base;
  p.a_ws = base + per;
  p.cs_ws = base + 2 * per;
  p.states_ws = base + 3 * per;
  throw_if_failed(kernels::ssd_chunk_scan(p, current_stream()), op);
}

at::Tensor gated_rms_norm_cuda(const at::Tensor& y, const at::Tensor& z, const at::Tensor& weight, int64_t group_size,
                               double eps, std::optional<at::ScalarType> out_dtype) {
  constexpr const char* op = "gated_rms_norm";
  const c10::cuda::CUDAGuard device_guard(y.device());
  const int64_t d = y.size(-1);
  const at::Tensor y2 = y.reshape({-1, d}), z2 = z.reshape({-1, d});  // views for the mixer's layouts
  // The fp32 product rounded once to out_dtype: what the reference's .to(out_dtype) gives.
  const at::ScalarType type = out_dtype.value_or(at::promote_types(weight.scalar_type(), y.scalar_type()));
  at::Tensor out = at::empty(y2.sizes(), y.options().dtype(type));
  kernels::GatedRmsNormParams p;
  p.rows = y2.size(0);
  p.dim = to_int(d, op, "channels");
  p.group_size = to_int(group_size, op, "group_size");
  p.eps = static_cast<float>(eps);
  p.y_type = element_type(y.scalar_type(), op);
  p.z_type = element_type(z.scalar_type(), op);
  p.weight_type = element_type(weight.scalar_type(), op);
  p.out_type = element_type(out.scalar_type(), op);
  p.y = y2.const_data_ptr();
  p.y_row_stride = y2.stride(0), p.y_dim_stride = y2.stride(1);
  p.z = z2.const_data_ptr();
  p.z_row_stride = z2.stride(0), p.z_dim_stride = z2.stride(1);
  p.weight = weight.const_data_ptr();
  p.weight_stride = weight.stride(0);
  p.out = out.mutable_data_ptr();
  p.out_row_stride = out.stride(0), p.out_dim_stride = out.stride(1);
  throw_if_failed(kernels::gated_rms_norm(p, current_stream()), op);
  return out.view(y.sizes());
}

}  // namespace effarch::ops::detail
