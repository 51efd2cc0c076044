#pragma once
// A block boundary's residual add and the next norm as one op: residual = x + y (or (y + z) + x,
// Phi's attention + MLP + residual), normed = RMSNorm or LayerNorm of the residual in the model
// dtype. The reference is the unfused ATen ops (the add, then ops::rms_norm / ops::layer_norm);
// the CUDA kernel (kernels/add_norm/) does both in one launch, one block per row, the add rounded
// as ATen rounds it and the norm within about one ulp of its reference (kernels/add_norm/add_norm_math.h).

#include <ATen/core/Tensor.h>

#include "effarch/ops/backend.h"

namespace effarch::ops {

// The CUDA kernel's shape (kernels/add_norm/add_norm_math.h): Auto the launcher's choice (the
// vector shape for a prefill's rows, 128 or more, the element shape for decode's), Element one
// block of cuda_threads a row with element accesses, Vector 16-byte accesses and a block sized to
// the row (160 threads for 2560, 256 for 4096) where the row allows it (a multiple of 8 elements up
// to 8192, 16-byte aligned; elsewhere the element shape runs). `effarch kernels` times each
// (add_norm, add_norm_element, add_norm_vec). Results agree with the reference as closely in any.
enum class AddNormShape { Auto, Element, Vector };

// A norm layer as add_norm takes it.
struct NormParams {
  at::Tensor weight;          // [H], the model dtype
  at::Tensor bias;            // [H], LayerNorm only (undefined for RMSNorm)
  double eps = 0.0;
  bool layer_norm = false;    // false: RMSNorm (ops::rms_norm), true: LayerNorm (ops::layer_norm)
  // The CUDA kernel's threads a row (a block each): 0 the launcher's choice (the smallest power of
  // two covering the row, 32 to 512), or a power of two from 32 to 512. A measuring knob: at 4096
  // rows one 512-thread block a row ran Phi-2's LayerNorm at twice ATen's time on an H100
  // (docs/perf/pending.md entry 46), and fewer threads a row hold more rows an SM. Results agree
  // with the reference as closely for any value (the row sums' order changes with it). `effarch
  // kernels` times 32 and 128 (add_norm_t32, add_norm_t128). Other values are an OpError.
  int cuda_threads = 0;
  // The CUDA kernel's shape; a nonzero cuda_threads keeps Auto on the element shape, and Vector
  // takes none (an OpError: it sizes its own block).
  AddNormShape cuda_shape = AddNormShape::Auto;
};

struct AddNormResult {
  at::Tensor residual;  // x + y (+ z), x's shape, ATen's promoted dtype of x and y
  at::Tensor normed;    // the norm of residual cast to the weight's dtype
};

// x [..., H]: the residual stream, in the model dtype (the weight's) or fp32 (residual_in_fp32:
// the residual stays fp32 and the norm reads its model-dtype cast, as HF's Mamba blocks do);
// y, z (optional) [..., H] the sublayer outputs in the model dtype. OpError naming the argument
// for a shape, dtype or device mismatch.
AddNormResult add_norm(const at::Tensor& x, const at::Tensor& y, const at::Tensor* z, const NormParams& norm,
                       Backend backend = Backend::Auto);

#ifdef EFFARCH_WITH_CUDA
namespace detail {
AddNormResult add_norm_cuda(const at::Tensor& x, const at::Tensor& y, const at::Tensor* z, const NormParams& norm);
}  // namespace detail
#endif

}  // namespace effarch::ops
