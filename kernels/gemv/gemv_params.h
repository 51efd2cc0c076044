#pragma once
// The dense GEMV's parameters (gemv.h has the contract): plain C++, no CUDA headers, so the host
// emulation of the kernel's math (gemv_math.h, tests/ops/gemv_test.cpp) reads the same structs.

#include <cstdint>

#include "activation/activation_params.h"
#include "add_norm/add_norm_params.h"
#include "common/element_enum.h"

namespace effarch::kernels {

inline constexpr int kGemvMaxRows = 8;
inline constexpr int kGemvGatedMaxRows = 2;  // rows of x a gated activation takes (a decode step's 1-2)

// A Mamba mixer's causal conv update fused into its in_proj for a decode step (one token per row
// of x; docs/mamba.md, "The conv update inside in_proj"): output rows begin .. begin + dim - 1 feed
// the conv's channels 0 .. dim - 1. For each such row o and each row r of x, after y[r, o] is
// rounded, the kernel does what causal_conv1d_update does for (r, channel o - begin) and one
// token: the window conv_state[r, c, :] shifted left with y[r, o] appended, out[r, c] =
// act(bias[c] + sum_k w[c, k] window[k]) in fp32 (kernels/causal_conv1d/causal_conv1d_math.h, the
// same order), the window written back. dim 0: no conv (the plain GEMV).
struct GemvConvUpdate {
  int begin = 0;
  int dim = 0;
  int width = 0;              // W, 2..4
  bool silu = false;          // act: SiLU, else the identity
  bool weight_fp32 = false;   // weight and bias in fp32, else in x's type
  const void* weight = nullptr;  // [dim, width]
  int64_t weight_dim_stride = 0, weight_width_stride = 0;
  const void* bias = nullptr;  // [dim] or nullptr
  int64_t bias_stride = 0;
  void* state = nullptr;  // [rows, dim, width] in x's type, rolled in place
  int64_t state_row_stride = 0, state_dim_stride = 0, state_width_stride = 0;
  void* out = nullptr;  // [rows, dim] in x's type
  int64_t out_row_stride = 0, out_dim_stride = 0;
};

// An activation applied to every output before it is stored (a non-gated MLP's fc1 and its
// GELU: Phi's bias + gelu_new), with the fused activation kernel's arithmetic
// (kernels/activation/activation_math.h): y[r, o] = act(the output rounded to x's type), each step
// rounded as the ATen ops round, so the fused step equals the GEMV then the activation kernel.
//
// Gated (a gated MLP's fused gate/up product and its activation: Llama's SwiGLU): W is the
// [2I, K] gate_up weight, gate rows 0 .. I-1 then up rows I .. 2I-1 (out = 2I, even), and y is
// [R, I]: y[r, j] = act(gate[r, j]) * up[r, j] on the two rounded projections, the gated
// activation kernel's steps and roundings (activation_element), so the fused step equals the GEMV
// then that kernel. A block computes gate rows j .. j + h - 1 and up rows I + j .. I + j + h - 1
// (h = half its rows, the split at most kGemvWarps / 2) and pairs them in shared memory. At most
// kGemvGatedMaxRows rows of x.
//
// `from` (non-gated only): the activation applies to output rows from .. out - 1, rows before it
// store the plain projection. A parallel block's fused input product (q, k, v, then fc1: Phi's
// decode step, docs/engine.md "The parallel block's two products") activates only fc1's rows.
struct GemvActivation {
  bool on = false;
  ActKind act = ActKind::kSilu;
  bool gated = false;
  int from = 0;
};

struct GemvParams {
  int rows = 0;  // R rows of x, 1..kGemvMaxRows
  int in = 0;    // K
  int out = 0;   // O
  ElementType x_type = ElementType::kFloat32;  // x, w, bias, y

  const void* x = nullptr;  // [R, K], rows x_row_stride elements apart, k contiguous
  int64_t x_row_stride = 0;
  const void* w = nullptr;     // [O, K] contiguous
  const void* bias = nullptr;  // [O] or nullptr
  void* y = nullptr;           // [R, O] (a gated activation: [R, O / 2]), rows y_row_stride elements apart
  int64_t y_row_stride = 0;
  int sm_count = 0;  // the device's multiprocessors (the split-K plan fills them); 0: assume 132
  int64_t l2_bytes = 0;  // the device's L2 size: bounds the weights asked into L2 under --pdl (0: none asked)
  GemvConvUpdate conv;  // dim 0: none
  GemvActivation activation;  // not with a conv; gated: y is [R, out / 2]
  // Weight loads in flight a lane: 0 for kGemvUnroll, or kGemvUnrollWide (a measuring variant, one
  // row of x on the 16-byte path without a gated activation; elsewhere the default). Same sums.
  int unroll = 0;
  // Warps a row (a measuring knob): 0 for the plan's (gemv_plan), or 1, 2, 4 or 8 (at most 4 with a
  // gated activation) forced. Another split sums in another order: the same values to rounding,
  // not the same bits.
  int split = 0;
  // The norm prologue (gemv_norm.h): dim 0 none; else x is not read: every block computes
  // norm(norm.x + norm.y (+ norm.z)) for the GEMV's rows as the add_norm kernel would (its element
  // shape, bit for bit) into shared memory and multiplies that, and the first block writes
  // norm.residual_out (which must not be an input). norm.normed is not read (the shared copy is
  // the output). The default unroll only, 1..gemvnorm::kMaxRows rows, the 16-byte path.
  AddNormParams norm;
};

}  // namespace effarch::kernels
