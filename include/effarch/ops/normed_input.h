#pragma once
// The input of a block's first product: the normed residual stream, or the block boundary's
// residual add + norm still to compute (a decode step's, docs/engine.md "The norm in the GEMV's
// prologue"), which the product's dense GEMV computes in its prologue where it can
// (kernels/gemv/gemv_norm.h: one launch instead of the add_norm kernel and the GEMV, the same
// bits), else ops::add_norm computes first. The ops that take one (linear, linear_activation_tail,
// linear_gated_activation, linear_conv_update) ask for_product; everything else reads tensor().

#include <memory>
#include <optional>
#include <vector>

#include <ATen/core/Tensor.h>

#include "effarch/ops/add_norm.h"
#include "effarch/ops/backend.h"

namespace effarch::kernels {
struct AddNormParams;
}

namespace effarch::ops {

struct Linear;

// Whether the dense GEMV's norm prologue takes a row of `hidden` elements of `dtype`: at most 4096
// (the add_norm kernel's element shape keeps it in registers: kernels/gemv/gemv_norm.h) in whole
// 16-byte vectors (the GEMV's 16-byte path). A model whose hidden size does not fit never fuses.
bool norm_prologue_fits(int64_t hidden, at::ScalarType dtype);

class NormedInput {
 public:
  NormedInput() = default;
  // An input already computed (implicit: every op taking a NormedInput takes a tensor).
  NormedInput(at::Tensor normed);  // NOLINT(google-explicit-constructor)
  // norm(x + y (+ z)) with the residual x + y (+ z), as ops::add_norm(x, y, z, norm, backend)
  // computes them (z null: none), left to the first product that reads it. `norm` must outlive
  // the input.
  static NormedInput pending(const at::Tensor& x, const at::Tensor& y, const at::Tensor* z, const NormParams& norm,
                             Backend backend);

  bool defined() const { return s_ != nullptr; }
  // Made by pending(), whether or not computed since.
  bool is_pending() const;
  // The normed tensor in this input's shape; a pending input computes it now (add_norm) unless
  // it already has (also after a product's prologue, which keeps no copy: the add_norm again, the
  // same bits).
  at::Tensor tensor() const;
  // A pending input's residual x + y (+ z): the product's prologue wrote it, or add_norm now.
  // An input made from a tensor has none (an OpError).
  at::Tensor residual() const;
  // The same input seen as `sizes` (the normed tensor's view; the residual keeps its own shape).
  NormedInput view(at::IntArrayRef sizes) const;
  at::IntArrayRef sizes() const;
  int64_t size(int64_t d) const;
  int64_t dim() const;

  // What an op taking a NormedInput runs its product on: `gemv_runs`, whether the op's own dense
  // GEMV path runs for stand_in() (its *_fuses predicate). Where it does and prologue_for gives
  // params: the stand-in and those params, for the GEMV's prologue; else the normed tensor and null.
  struct ProductInput {
    at::Tensor x;
    const kernels::AddNormParams* norm = nullptr;
  };
  ProductInput for_product(const Linear& layer, Backend backend, bool gemv_runs) const;

  // The add + norm params the dense GEMV of `layer` runs in its prologue for this pending input
  // under `backend` (its residual then this input's), or null where it cannot: not pending or already computed, more than kernels::gemvnorm::kMaxRows rows,
  // the add_norm or dense GEMV family not on its CUDA kernel, the layer's measuring unroll, a row
  // norm_prologue_fits refuses or a weight off 16 bytes (the launcher's 16-byte path), or a norm
  // the prologue refuses (gemvnorm::refusal). Whoever gets params must run that GEMV with
  // stand_in() as x (for_product's contract).
  const kernels::AddNormParams* prologue_for(const Linear& layer, Backend backend) const;
  // y in this input's shape: the shape, dtype and device of the normed tensor, what an op checks
  // and sizes its outputs by when the GEMV's prologue computes the real input.
  at::Tensor stand_in() const;

 private:
  struct State;
  std::shared_ptr<State> s_;
  std::vector<int64_t> sizes_;
};

}  // namespace effarch::ops
