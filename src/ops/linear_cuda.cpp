// CUDA paths of effarch::ops::linear with a few rows (decode): fill the int8 GEMV kernel's params
// (kernels/int8_gemv) or the dense GEMV's (kernels/gemv) from tensors linear() has checked, launch
// on the current stream. Built only with CUDA (EFFARCH_HAVE_CUDA).

#include <vector>

#include <ATen/ATen.h>

#include "arg_checks.h"
#include "cuda_binding.h"
#include "effarch/ops/linear.h"
#include "gemv/gemv.h"
#include "int8_gemv/int8_gemv.h"
#include "rows_gemm/rows_gemm.h"
#include "rows_gemm/rows_gemm_math.h"

namespace effarch::ops::detail {

static_assert(kCudaDenseGemvMaxRows == kernels::kGemvMaxRows, "the dense GEMV's rows: the op and the kernel agree");
static_assert(kCudaGatedGemvMaxRows == kernels::kGemvGatedMaxRows, "the gated GEMV's rows: the op and the kernel agree");

namespace {

// What both GEMV kernels read and write: x [..., K] as R = numel / K rows (contiguous within a
// row), the bias in x's dtype, y [R, C] with C the layer's O outputs (a gated activation's: O / 2);
// the caller gets y in x's leading shape, [..., C].
struct GemvOperands {
  at::Tensor x, bias, y;
  std::vector<int64_t> out_shape;
  at::Tensor result() const { return y.view(out_shape); }
};

// `out`: the caller's [R, columns] view to write (its columns contiguous), else a new tensor.
GemvOperands gemv_operands(const at::Tensor& x_in, const Linear& layer, int64_t columns,
                           const at::Tensor* out = nullptr) {
  GemvOperands o;
  const at::Tensor rows = x_in.reshape({-1, layer.in_features()});
  o.x = rows.stride(1) == 1 ? rows : rows.contiguous();
  if (layer.bias) o.bias = layer.bias->to(o.x.scalar_type()).contiguous();
  o.out_shape = x_in.sizes().vec();
  o.out_shape.back() = columns;
  if (out == nullptr) {
    o.y = at::empty({o.x.size(0), columns}, o.x.options());
    return o;
  }
  if (out->dim() != 2 || out->size(0) != o.x.size(0) || out->size(1) != columns || (columns > 1 && out->stride(1) != 1) ||
      out->scalar_type() != o.x.scalar_type() || out->device() != o.x.device()) {
    throw OpError(fmt::format("linear (dense GEMV): out {} must be a [{}, {}] view of x's dtype and device with "
                              "contiguous columns",
                              shape(*out), o.x.size(0), columns));
  }
  o.y = *out;
  o.out_shape = {o.x.size(0), columns};  // result(): a view of the caller's tensor in its own shape
  return o;
}

// The fields the two kernels' params share (rows, sizes, x, bias, y).
template <class Params>
void set_operands(Params& p, const GemvOperands& o, const Linear& layer, const char* op) {
  p.rows = static_cast<int>(o.x.size(0));
  p.in = static_cast<int>(layer.in_features());
  p.out = static_cast<int>(layer.out_features());
  p.x_type = element_type(o.x.scalar_type(), op);
  p.x = o.x.const_data_ptr();
  p.x_row_stride = o.x.stride(0);
  p.bias = o.bias.defined() ? o.bias.const_data_ptr() : nullptr;
  p.y = o.y.mutable_data_ptr();
  p.y_row_stride = o.y.stride(0);
}

}  // namespace

at::Tensor int8_gemv_cuda(const at::Tensor& x_in, const Linear& layer) {
  constexpr const char* op = "linear (int8 GEMV)";
  const DeviceGuard device_guard(x_in.device());
  const GemvOperands o = gemv_operands(x_in, layer, layer.out_features());
  const at::Tensor q = layer.weight.contiguous(), scale = layer.scale.contiguous();
  kernels::Int8GemvParams p;
  set_operands(p, o, layer, op);
  p.q = q.const_data_ptr<int8_t>();
  p.scale = scale.const_data_ptr<float>();
  throw_if_failed(kernels::int8_gemv(p, current_stream()), op);
  return o.result();
}

at::Tensor dense_gemv_cuda(const at::Tensor& x_in, const Linear& layer, const kernels::GemvConvUpdate* conv,
                           const kernels::GemvActivation* activation, const at::Tensor* out,
                           const kernels::AddNormParams* norm) {
  constexpr const char* op = "linear (dense GEMV)";
  const DeviceGuard device_guard(x_in.device());
  const bool gated = activation != nullptr && activation->gated;  // act(gate) * up: [R, 2I] -> [R, I]
  const GemvOperands o = gemv_operands(x_in, layer, gated ? layer.out_features() / 2 : layer.out_features(), out);
  // The kernel streams its first weights before its grid-dependency wait (--pdl): a copy made here
  // would be written by the kernel just before it. dense_gemv_applies admits contiguous weights only.
  const at::Tensor& w = layer.weight;
  if (!w.is_contiguous()) throw OpError(fmt::format("{}: the weight {} is not contiguous", op, shape(w)));
  kernels::GemvParams p;
  set_operands(p, o, layer, op);
  p.w = w.const_data_ptr();
  const cudaDeviceProp& device = device_properties();
  p.sm_count = device.multiProcessorCount;
  p.l2_bytes = device.l2CacheSize;
  if (conv != nullptr) p.conv = *conv;
  if (activation != nullptr) p.activation = *activation;
  p.unroll = layer.cuda_gemv_unroll;
  p.split = layer.cuda_gemv_split;
  if (norm != nullptr) p.norm = *norm;
  throw_if_failed(kernels::gemv(p, current_stream()), op);
  return o.result();
}

at::Tensor rows_gemm_cuda(const at::Tensor& x_in, const Linear& layer) {
  constexpr const char* op = "linear (rows GEMM)";
  const DeviceGuard device_guard(x_in.device());
  GemvOperands o = gemv_operands(x_in, layer, layer.out_features());
  // The staging copies x in 16-byte pieces: a view that starts or steps off them is copied first.
  if (!kernels::rows_gemm_x_aligned(o.x.const_data_ptr(), o.x.stride(0))) o.x = o.x.clone(at::MemoryFormat::Contiguous);
  kernels::RowsGemmParams p;
  set_operands(p, o, layer, op);
  p.w = layer.weight.const_data_ptr();
  p.sm_count = device_properties().multiProcessorCount;
  const kernels::RowsGemmPlan plan = kernels::rows_gemm_plan(p.out, p.in, p.rows, p.sm_count);
  const at::Tensor partial =
      at::empty({static_cast<int64_t>(plan.splits) * plan.rows_pad * p.out}, o.x.options().dtype(at::kFloat));
  p.partial = partial.mutable_data_ptr<float>();
  throw_if_failed(kernels::rows_gemm(p, current_stream()), op);
  return o.result();
}

}  // namespace effarch::ops::detail
