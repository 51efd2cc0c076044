#include "effarch/ops/linear.h"

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/record_function.h>
#include <fmt/format.h>

#include "arg_checks.h"
#include "cpu/cpu_kernels.h"
#include "effarch/common/dtype.h"
#include "effarch/common/error.h"

#include "rows_gemm/rows_gemm_math.h"

namespace effarch::ops {

std::string weight_format_option(WeightFormat format) {
  switch (format) {
    case WeightFormat::Dense: return "dense";
    case WeightFormat::Int8: return "int8";
  }
  return "?";
}

WeightFormat parse_weight_format(const std::string& value, const std::string& option) {
  if (value == "dense") return WeightFormat::Dense;
  if (value == "int8") return WeightFormat::Int8;
  throw UsageError(fmt::format("{} '{}': expected dense (the model's dtype) or int8", option, value));
}

Linear Linear::int8(at::Tensor q, at::Tensor scale, std::optional<at::Tensor> b) {
  Linear layer(std::move(q), std::move(b));
  layer.scale = std::move(scale);
  layer.format = WeightFormat::Int8;
  return layer;
}

uint64_t Linear::bytes() const {
  uint64_t n = weight.defined() ? static_cast<uint64_t>(weight.nbytes()) : 0;
  if (scale.defined()) n += static_cast<uint64_t>(scale.nbytes());
  if (bias) n += static_cast<uint64_t>(bias->nbytes());
  return n;
}

std::string format_name(const Linear& layer) {
  switch (layer.format) {
    case WeightFormat::Dense: return layer.weight.defined() ? float_dtype_name(layer.weight.scalar_type()) : "undefined";
    case WeightFormat::Int8: return "int8";
  }
  return "?";
}

std::pair<at::Tensor, at::Tensor> quantize_int8(const at::Tensor& w) {
  if (!w.defined() || w.dim() != 2 || !at::isFloatingType(w.scalar_type())) {
    throw OpError(fmt::format("quantize_int8: the weight must be a float [out, in] tensor, got {}",
                              w.defined() ? detail::shape(w) + " " + std::string(c10::toString(w.scalar_type()))
                                          : "undefined"));
  }
  const at::Tensor wf = w.to(at::kFloat);
  at::Tensor scale = wf.abs().amax(1) / 127.0f;
  scale = at::where(scale > 0, scale, at::ones_like(scale));  // an all-zero row: q = 0 whatever the step
  const at::Tensor q = at::round(wf / scale.unsqueeze(1)).clamp_(-127, 127).to(at::kChar);
  return {q, scale};
}

Linear quantize_int8(const Linear& layer) {
  if (layer.format == WeightFormat::Int8) return layer;
  auto [q, scale] = quantize_int8(layer.weight);
  return Linear::int8(std::move(q), std::move(scale), layer.bias);
}

at::Tensor dense_weight(const Linear& layer, at::ScalarType dtype) {
  switch (layer.format) {
    case WeightFormat::Dense: return layer.weight.to(dtype);
    case WeightFormat::Int8: {
      // q * scale in fp32, rounded once to dtype, in one elementwise pass: on CUDA one kernel that
      // widens q and rounds the product as it goes (3 bytes an element moved for bf16, where
      // .to(float) * scale then .to(dtype) made two fp32 temporaries in three passes, 19 bytes).
      // The same arithmetic, so the same bits (Int8.QuantiserStepsAndRoundTrip).
      at::Tensor w = at::empty(layer.weight.sizes(), layer.weight.options().dtype(dtype));
      at::mul_out(w, layer.weight, layer.scale.unsqueeze(1));
      return w;
    }
  }
  return {};
}

namespace detail {

static_assert(kCudaDenseGemvMaxRows + 1 == kernels::kRowsGemmMinRows && kCudaRowsGemmMaxRows == kernels::kRowsGemmMaxRows,
              "the rows GEMM's rows: the op and the kernel agree, from where the GEMV's end");

namespace {

// What the GEMV kernels read besides x sits on x's device: the weight, the int8 scales, and the
// bias with one value per output. Elsewhere the reference runs, whose at::linear names what is wrong.
bool operands_on_x_device(const at::Tensor& x, const Linear& layer) {
  if (layer.weight.device() != x.device()) return false;
  if (layer.scale.defined() && layer.scale.device() != x.device()) return false;
  return !layer.bias || (layer.bias->device() == x.device() && layer.bias->numel() == layer.out_features());
}

// What both CUDA kernels of a dense layer need of x and the layer: a dense contiguous weight in x's
// dtype (one of `dtypes`) on x's CUDA device, sizes that fit an int; the rows of x, else 0.
int64_t dense_cuda_rows(const at::Tensor& x, const Linear& layer, std::initializer_list<at::ScalarType> dtypes) {
  if (layer.format != WeightFormat::Dense || !runs_cuda_kernels(x.device()) || !operands_on_x_device(x, layer)) {
    return 0;
  }
  const at::ScalarType t = x.scalar_type();
  if (std::find(dtypes.begin(), dtypes.end(), t) == dtypes.end() || layer.weight.scalar_type() != t ||
      !layer.weight.is_contiguous()) {
    return 0;
  }
  const int64_t in = layer.in_features(), out = layer.out_features();
  if (in <= 0 || out <= 0 || in > INT32_MAX || out > INT32_MAX) return 0;
  return x.numel() / in;
}

}  // namespace

bool dense_gemv_applies(const at::Tensor& x, const Linear& layer, Backend backend) {
  const int64_t rows = dense_cuda_rows(x, layer, {at::kFloat, at::kBFloat16, at::kHalf});
  if (rows < 1 || rows > (backend == Backend::Cuda ? kCudaDenseGemvMaxRows : kCudaDenseGemvAutoMaxRows)) return false;
  return use_cuda_kernel(backend, OpFamily::DenseGemv, x.device());
}

bool rows_gemm_applies(const at::Tensor& x, const Linear& layer, Backend backend) {
  if (backend != Backend::Cuda) return false;
  const int64_t rows = dense_cuda_rows(x, layer, {at::kBFloat16, at::kHalf});
  if (!kernels::rows_gemm_shape_ok(rows, layer.out_features(), layer.in_features()) ||
      !kernels::rows_gemm_weight_aligned(layer.weight.const_data_ptr())) {
    return false;
  }
  return use_cuda_kernel(backend, OpFamily::DenseGemv, x.device());
}

void check_linear(const at::Tensor& x, const Linear& layer, const char* op) {
  if (!layer.weight.defined() || layer.weight.dim() != 2) {
    throw OpError(fmt::format("{}: the weight must be a [out, in] tensor, got {}", op,
                              layer.weight.defined() ? detail::shape(layer.weight) : "undefined"));
  }
  if (!x.defined() || x.dim() < 1 || x.size(-1) != layer.in_features()) {
    throw OpError(fmt::format("{}: x {} does not end in the weight's {} input features", op,
                              x.defined() ? detail::shape(x) : "undefined", layer.in_features()));
  }
}

}  // namespace detail

namespace {

// at::linear with x's leading dimensions folded into one [M, K] matrix (a view) wherever x is
// contiguous, so that cuBLAS runs one GEMM of M rows. at::matmul folds a 3-D x only when its
// strides are the canonical ones; a [B, 1, K] view with strides (K, 1, 1), which is contiguous
// (the transpose of a [B, K, 1] column, as Mamba's decode step hands x_proj and out_proj), went
// to a strided-batched GEMM of B single rows, each reading the whole weight: at batch 32
// Mamba-2.8B's out_proj took 126 us a call where the same product as one GEMM took 14 (the H100,
// 2026-11-27, cuBLAS's own logs: docs/perf/README.md, "sixth run").
at::Tensor rows_linear(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias) {
  if (x.dim() <= 2 || !x.is_contiguous()) return at::linear(x, weight, bias);
  std::vector<int64_t> sizes = x.sizes().vec();
  sizes.back() = weight.size(0);
  return at::linear(x.view({-1, x.size(-1)}), weight, bias).view(sizes);
}

}  // namespace

at::Tensor linear(const at::Tensor& x, const Linear& layer, Backend backend) {
  RECORD_USER_SCOPE("effarch::linear");  // names the op in profiles (effarch profile)
  constexpr const char* op = "linear";
  detail::check_linear(x, layer, op);
  if (layer.format == WeightFormat::Int8 &&
      (layer.weight.scalar_type() != at::kChar || !layer.scale.defined() || layer.scale.dim() != 1 ||
       layer.scale.size(0) != layer.out_features() || layer.scale.scalar_type() != at::kFloat)) {
    throw OpError(fmt::format("{}: an int8 layer needs an int8 weight and fp32 scales [{}], got {} and {}", op,
                              layer.out_features(), c10::toString(layer.weight.scalar_type()),
                              layer.scale.defined() ? detail::shape(layer.scale) : "no scales"));
  }
  // --backend cuda asks for the dense GEMV kernel: an error where there is none (CPU tensors, a
  // build without CUDA), as for every op family; the kernel where its conditions hold, else at::linear.
  if (layer.format == WeightFormat::Dense && backend == Backend::Cuda) {
    (void)resolve_backend(backend, OpFamily::DenseGemv, x.device());
  }
  // A decode step's few rows: every thread streams its share of the weight (MKL's GEMV uses one).
  if (!runs_cuda_kernels(x.device()) && cpu::gemv_applies(x, layer)) return cpu::gemv(x, layer);
  if (layer.format == WeightFormat::Int8) {
#ifdef EFFARCH_WITH_CUDA
    const int64_t rows = x.numel() / layer.in_features();
    if (runs_cuda_kernels(x.device()) && rows >= 1 && rows <= detail::kCudaInt8GemvMaxRows &&
        detail::operands_on_x_device(x, layer)) {
      return detail::int8_gemv_cuda(x, layer);
    }
#endif
    // The reference: the weight dequantised to x's dtype for this call, then the dense product.
    return rows_linear(x, dense_weight(layer, x.scalar_type()), layer.bias);
  }
#ifdef EFFARCH_WITH_CUDA
  if (detail::dense_gemv_applies(x, layer, backend)) return detail::dense_gemv_cuda(x, layer);
  if (detail::rows_gemm_applies(x, layer, backend)) return detail::rows_gemm_cuda(x, layer);
#endif
  return rows_linear(x, layer.weight, layer.bias);
}

at::Tensor linear(const NormedInput& x, const Linear& layer, Backend backend) {
  // prologue_for asks dense_gemv_applies itself: the dense GEMV runs wherever it gives params.
  const NormedInput::ProductInput in = x.for_product(layer, backend, x.is_pending());
#ifdef EFFARCH_WITH_CUDA
  if (in.norm != nullptr) {
    detail::check_linear(in.x, layer, "linear");
    RECORD_USER_SCOPE("effarch::linear");  // one GEMV launch: the add + norm inside counts as the projection's
    return detail::dense_gemv_cuda(in.x, layer, nullptr, nullptr, nullptr, in.norm);
  }
#endif
  return linear(in.x, layer, backend);
}

}  // namespace effarch::ops
