#pragma once
// The fused activation's params (kernels/activation/activation.h launches them), with no CUDA
// header: src/ops/activation_launch.cpp fills them in every build, so the CPU tests run the
// kernel's host emulation (activation_math.h) on exactly what the CUDA binding launches.

#include <cstdint>

#include "common/element_enum.h"

namespace effarch::kernels {

// The activations with a fused kernel (ops::Activation's SiLU and GeluNew); the others run their
// ATen reference.
enum class ActKind : uint8_t { kSilu, kGeluNew };

// out[r, c] = act(in[r, c]) (plain), or act(in[r, c]) * in[r, c + up_offset] (gated: the fused
// gate/up product's [.., 2I] output, gate columns first), each step rounded as the ATen ops round.
struct ActivationParams {
  int64_t rows = 0;
  int64_t cols = 0;  // columns of out
  ActKind act = ActKind::kSilu;
  bool gated = false;
  ElementType type = ElementType::kFloat32;  // in and out
  const void* in = nullptr;
  int64_t in_row_stride = 0;  // in elements; columns contiguous
  int64_t up_offset = 0;      // gated: the up half's first column
  void* out = nullptr;
  int64_t out_row_stride = 0;
};

}  // namespace effarch::kernels
