// effarch::ops::NormedInput: a block's normed input, or its add + norm left to the product's GEMV
// prologue (include/effarch/ops/normed_input.h). Every build: without CUDA nothing fuses and a
// pending input computes through add_norm.

#include "effarch/ops/normed_input.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "add_norm_launch.h"
#include "effarch/common/error.h"
#include "effarch/ops/linear.h"

#include "gemv/gemv_norm.h"

namespace effarch::ops {

bool norm_prologue_fits(int64_t hidden, at::ScalarType dtype) {
  const int64_t bytes = hidden * static_cast<int64_t>(c10::elementSize(dtype));
  return hidden > 0 && hidden <= kernels::addnorm::kRowCache * kernels::addnorm::kMaxThreads && bytes % 16 == 0;
}

struct NormedInput::State {
  // pending: the add_norm arguments (z undefined: none), and what has been computed of them.
  bool pending = false;
  at::Tensor x, y, z;
  const NormParams* norm = nullptr;
  Backend backend = Backend::Auto;
  at::Tensor residual, normed;          // x's and y's shapes; undefined until computed
  std::optional<detail::AddNormLaunch> prologue;  // handed to a GEMV (its residual is `residual`)
  void compute() {
    AddNormResult r = add_norm(x, y, z.defined() ? &z : nullptr, *norm, backend);
    residual = std::move(r.residual);
    normed = std::move(r.normed);
  }
};

NormedInput::NormedInput(at::Tensor normed) : s_(std::make_shared<State>()) {
  if (normed.defined()) sizes_ = normed.sizes().vec();
  s_->normed = std::move(normed);
}

NormedInput NormedInput::pending(const at::Tensor& x, const at::Tensor& y, const at::Tensor* z,
                                 const NormParams& norm, Backend backend) {
  // add_norm's own checks now, so that a bad argument names itself here whichever path runs later.
  detail::check_add_norm(x, y, z, norm);
  NormedInput in;
  in.s_ = std::make_shared<State>();
  in.sizes_ = y.sizes().vec();
  State& s = *in.s_;
  s.pending = true;
  s.x = x;
  s.y = y;
  if (z != nullptr) s.z = *z;
  s.norm = &norm;
  s.backend = backend;
  return in;
}

bool NormedInput::is_pending() const { return s_ != nullptr && s_->pending; }

at::Tensor NormedInput::tensor() const {
  if (s_ == nullptr) return {};
  if (s_->pending && !s_->normed.defined()) {
    // A product's prologue may have computed it already (kept no copy): the same bits again.
    const at::Tensor residual = s_->residual;
    s_->compute();
    if (residual.defined()) s_->residual = residual;
  }
  return s_->normed.defined() ? s_->normed.view(sizes_) : s_->normed;
}

at::Tensor NormedInput::residual() const {
  if (!is_pending()) throw OpError("NormedInput: an input made from a tensor has no residual");
  if (!s_->residual.defined()) s_->compute();
  return s_->residual;
}

NormedInput NormedInput::view(at::IntArrayRef sizes) const {
  if (!is_pending()) return NormedInput(tensor().reshape(sizes));
  NormedInput v = *this;
  v.sizes_ = s_->y.view(sizes).sizes().vec();  // a bad shape is at::Tensor::view's error, on y
  return v;
}

at::IntArrayRef NormedInput::sizes() const { return sizes_; }
int64_t NormedInput::size(int64_t d) const { return sizes_.at(static_cast<size_t>(d < 0 ? d + dim() : d)); }
int64_t NormedInput::dim() const { return static_cast<int64_t>(sizes_.size()); }

at::Tensor NormedInput::stand_in() const {
  if (s_ == nullptr) return {};
  return (s_->pending ? s_->y : s_->normed).view(sizes_);
}

NormedInput::ProductInput NormedInput::for_product(const Linear& layer, Backend backend, bool gemv_runs) const {
  if (gemv_runs) {
    if (const kernels::AddNormParams* norm = prologue_for(layer, backend)) return {stand_in(), norm};
  }
  return {tensor(), nullptr};
}

const kernels::AddNormParams* NormedInput::prologue_for(const Linear& layer, Backend backend) const {
  if (!is_pending() || s_->normed.defined() || s_->residual.defined()) return nullptr;
  const State& s = *s_;
  const at::Tensor in = stand_in();
  if (in.dim() < 1 || in.size(-1) != layer.in_features() || layer.cuda_gemv_unroll != 0 ||
      s.norm->cuda_shape == AddNormShape::Vector || !detail::dense_gemv_applies(in, layer, backend) ||
      !use_cuda_kernel(s.backend, OpFamily::AddNorm, in.device())) {
    return nullptr;
  }
  const int64_t rows = in.numel() / layer.in_features();
  // The launcher's 16-byte path (kernels/gemv/gemv.cuh): whole vectors, an aligned weight.
  if (rows > kernels::gemvnorm::kMaxRows || !norm_prologue_fits(layer.in_features(), in.scalar_type()) ||
      reinterpret_cast<uintptr_t>(layer.weight.const_data_ptr()) % 16 != 0) {
    return nullptr;
  }
  detail::AddNormLaunch l =
      detail::prepare_add_norm(s.x, s.y, s.z.defined() ? &s.z : nullptr, *s.norm, /*with_normed=*/false);
  if (kernels::gemvnorm::refusal(l.params, static_cast<int>(rows), static_cast<int>(layer.in_features()),
                                 l.params.type) != nullptr) {
    return nullptr;
  }
  s_->residual = l.residual.view(s.x.sizes());
  s_->prologue = std::move(l);
  return &s_->prologue->params;
}

}  // namespace effarch::ops
