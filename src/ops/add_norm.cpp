// effarch::ops::add_norm: argument checks, the reference (the unfused add and norm: the CPU path,
// and what the kernel is tested against) and the switch to the fused CUDA kernel.

#include "effarch/ops/add_norm.h"

#include <ATen/ATen.h>
#include <ATen/record_function.h>
#include <fmt/format.h>

#include "add_norm_launch.h"
#include "arg_checks.h"
#include "effarch/common/error.h"
#include "effarch/ops/norm.h"

#include "add_norm/add_norm_math.h"

namespace effarch::ops {
namespace {

constexpr const char* kOp = "add_norm";

using detail::shape;

bool is_float(at::ScalarType t) { return t == at::kFloat || t == at::kBFloat16 || t == at::kHalf; }

}  // namespace

namespace detail {

void check_add_norm(const at::Tensor& x, const at::Tensor& y, const at::Tensor* z, const NormParams& norm) {
  if (!norm.weight.defined() || norm.weight.dim() != 1 || !is_float(norm.weight.scalar_type())) {
    throw OpError(fmt::format("{}: weight must be a 1-dim float32, bfloat16 or float16 tensor", kOp));
  }
  const at::ScalarType type = norm.weight.scalar_type();
  const int64_t h = norm.weight.size(0);
  if (!x.defined() || x.dim() < 1 || x.size(-1) != h) {
    throw OpError(fmt::format("{}: x {} must be [..., {}] (the weight's size)", kOp, x.defined() ? shape(x) : "undefined", h));
  }
  if (x.scalar_type() != type && x.scalar_type() != at::kFloat) {
    throw OpError(fmt::format("{}: x is {}, expected the weight's {} or float32 (a residual kept in fp32)", kOp,
                              c10::toString(x.scalar_type()), c10::toString(type)));
  }
  if (norm.weight.device() != x.device()) {
    throw OpError(fmt::format("{}: weight is on {}, x on {}", kOp, norm.weight.device().str(), x.device().str()));
  }
  for (const auto& [t, name] : {std::pair{&y, "y"}, {z, "z"}}) {
    if (t == nullptr) continue;
    if (!t->defined() || t->sizes() != x.sizes()) {
      throw OpError(fmt::format("{}: {} {} must have x's shape {}", kOp, name, t->defined() ? shape(*t) : "undefined",
                                shape(x)));
    }
    if (t->scalar_type() != type || t->device() != x.device()) {
      throw OpError(fmt::format("{}: {} is {} on {}, expected the weight's {} on {}", kOp, name,
                                c10::toString(t->scalar_type()), t->device().str(), c10::toString(type),
                                x.device().str()));
    }
  }
  if (norm.layer_norm) {
    const at::Tensor& b = norm.bias;
    if (!b.defined() || b.sizes() != norm.weight.sizes() || b.scalar_type() != type || b.device() != x.device()) {
      throw OpError(fmt::format("{}: a LayerNorm's bias must be [{}] {} on {}", kOp, h, c10::toString(type),
                                x.device().str()));
    }
  }
  if (!(norm.eps >= 0.0)) throw OpError(fmt::format("{}: eps = {} must be >= 0", kOp, norm.eps));
  if (norm.cuda_threads != 0 && !kernels::addnorm::valid_threads(norm.cuda_threads)) {
    throw OpError(fmt::format("{}: cuda_threads must be 0 (the launcher's choice) or a power of two from 32 to {}, got {}",
                              kOp, kernels::addnorm::kMaxThreads, norm.cuda_threads));
  }
  if (norm.cuda_shape == AddNormShape::Vector && norm.cuda_threads != 0) {
    throw OpError(fmt::format("{}: the vector shape sizes its own blocks: cuda_threads must be 0 with it, got {}", kOp,
                              norm.cuda_threads));
  }
}

}  // namespace detail

AddNormResult add_norm(const at::Tensor& x, const at::Tensor& y, const at::Tensor* z, const NormParams& norm,
                       Backend backend) {
  RECORD_USER_SCOPE("effarch::add_norm");  // names the op in profiles
  detail::check_add_norm(x, y, z, norm);
  [[maybe_unused]] const bool cuda = use_cuda_kernel(backend, OpFamily::AddNorm, x.device());
#ifdef EFFARCH_WITH_CUDA
  if (cuda) return detail::add_norm_cuda(x, y, z, norm);
#endif
  // The unfused ops, as the blocks ran them before the fusion: x + sublayer (Phi: attention + MLP, then + x),
  // then the norm of its model-dtype cast.
  at::Tensor residual = z != nullptr ? (y + *z) + x : x + y;
  const at::ScalarType type = norm.weight.scalar_type();
  const at::Tensor in = residual.scalar_type() == type ? residual : residual.to(type);
  at::Tensor normed = norm.layer_norm ? layer_norm(in, norm.weight, norm.bias, norm.eps) : rms_norm(in, norm.weight, norm.eps);
  return {std::move(residual), std::move(normed)};
}

}  // namespace effarch::ops
