#pragma once
// The fused residual add + norm's params (kernels/add_norm/add_norm.h launches them), with no CUDA
// header: src/ops/add_norm_launch.cpp fills them in every build, so the CPU tests run the kernel's
// host emulation (add_norm_math.h) on exactly what the CUDA binding launches.

#include <cstdint>

#include "common/element_enum.h"

namespace effarch::kernels {

enum class NormType : uint8_t { kRms, kLayer };

// Which kernel shape runs (add_norm_math.h): the element shape (one block of `threads` a row,
// element accesses) or the vector shape (16-byte accesses, a block sized to the row). kAuto: the
// vector shape for a prefill's many rows (addnorm::kVectorMinRows) where the row allows it.
enum class AddNormShape : uint8_t { kAuto, kElement, kVector };

// Per row r (one block each):
//   residual_out[r] = round_R(round_T(y + z) + x)   with z, else round_R(x + y)
//   n               = round_T(residual_out[r])      (the norm's input in the model dtype)
//   RMSNorm:   normed[r] = round_T(w * round_T(n * rsqrt(mean(n^2) + eps)))      (src/ops/norm.cpp)
//   LayerNorm: normed[r] = round_T((n - mean) * rstd * w + b), rstd = rsqrt(var + eps)  (at::layer_norm)
// Sums in fp32. T is `type`; R is `residual_type`: T, or fp32 (Mamba's residual_in_fp32).
struct AddNormParams {
  int64_t rows = 0;
  int dim = 0;
  float eps = 0.0f;
  NormType norm = NormType::kRms;
  ElementType type = ElementType::kFloat32;           // y, z, weight, bias, normed
  ElementType residual_type = ElementType::kFloat32;  // x and residual_out: `type` or fp32

  // Row strides in elements; the last dimension contiguous.
  const void* x = nullptr;  // the residual stream in
  int64_t x_row_stride = 0;
  const void* y = nullptr;  // the sublayer's output
  int64_t y_row_stride = 0;
  const void* z = nullptr;  // optional second addend (Phi's parallel block: attention + MLP + x)
  int64_t z_row_stride = 0;
  void* residual_out = nullptr;  // may be x itself (each element is read before it is written, by the same thread)
  int64_t residual_out_row_stride = 0;
  void* normed = nullptr;
  int64_t normed_row_stride = 0;
  const void* weight = nullptr;  // [dim]
  const void* bias = nullptr;    // [dim], LayerNorm only
  // Prefetch weight and bias into L1 before the grid-dependency wait: only when no kernel of this
  // step writes them (the model's own tensors, not a copy the launcher just made).
  bool prefetch_weights = false;
  // Threads a row (the block): 0 for addnorm::threads_for(dim), else a power of two, 32..512.
  int threads = 0;
  // The shape (addnorm::runs_vector decides); `threads` is the element shape's, and a nonzero
  // one keeps kAuto on the element shape.
  AddNormShape shape = AddNormShape::kAuto;
};

}  // namespace effarch::kernels
