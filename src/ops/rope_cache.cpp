// effarch::ops::rope_cache_write: argument checks, the reference (apply_rope_at, index_copy_; the
// CPU path) and the switch to the fused CUDA kernel (src/ops/rope_cache_cuda.cpp).

#include "effarch/ops/rope_cache.h"

#include <ATen/ATen.h>
#include <ATen/record_function.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "effarch/common/error.h"
#include "arg_checks.h"

namespace effarch::ops {
namespace {

constexpr const char* kOp = "rope_cache_write";

using detail::shape;

void check(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const RopeTables* tables,
           const at::Tensor& position, const at::Tensor& k_cache, const at::Tensor& v_cache) {
  for (const auto& [t, name] : {std::pair{&q, "q"}, {&k, "k"}, {&v, "v"}, {&k_cache, "k_cache"}, {&v_cache, "v_cache"}}) {
    if (!t->defined() || t->dim() != 4) throw OpError(fmt::format("{}: {} must be a 4-dim tensor", kOp, name));
    if (t->scalar_type() != q.scalar_type() || t->device() != q.device()) {
      throw OpError(fmt::format("{}: {} is {} on {}, q is {} on {}", kOp, name, c10::toString(t->scalar_type()),
                                t->device().str(), c10::toString(q.scalar_type()), q.device().str()));
    }
  }
  const int64_t b = q.size(0), d = q.size(3);
  if (q.size(2) != 1 || k.sizes() != v.sizes() || k.size(0) != b || k.size(2) != 1 || k.size(3) != d) {
    throw OpError(fmt::format("{}: q {}, k {}, v {}: expected [B, Hq, 1, D] and [B, Hkv, 1, D]", kOp, shape(q),
                              shape(k), shape(v)));
  }
  if (k_cache.sizes() != v_cache.sizes() || k_cache.size(0) != b || k_cache.size(1) != k.size(1) ||
      k_cache.size(3) != d) {
    throw OpError(fmt::format("{}: k_cache {} and v_cache {} must be [B, Hkv, S, D] for k {}", kOp, shape(k_cache),
                              shape(v_cache), shape(k)));
  }
  if (!position.defined() || position.scalar_type() != at::kLong || position.numel() != 1 ||
      position.device() != q.device()) {
    throw OpError(fmt::format("{}: position must be one int64 on {}", kOp, q.device().str()));
  }
  if (tables != nullptr && (tables->rotary_dim < 2 || tables->rotary_dim > d || tables->rotary_dim % 2 != 0 ||
                            tables->cos.size(1) != tables->rotary_dim || tables->cos.size(0) < k_cache.size(2) ||
                            tables->cos.device() != q.device())) {
    throw OpError(fmt::format("{}: RoPE tables of rotary_dim {} for head size {} on {}", kOp, tables->rotary_dim, d,
                              q.device().str()));
  }
}

}  // namespace

at::Tensor rope_cache_write(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const RopeTables* tables,
                            const at::Tensor& position, at::Tensor& k_cache, at::Tensor& v_cache, Backend backend) {
  RECORD_USER_SCOPE("effarch::rope_cache_write");  // names the op in profiles
  check(q, k, v, tables, position, k_cache, v_cache);
  [[maybe_unused]] const bool cuda = use_cuda_kernel(backend, OpFamily::RopeCacheWrite, q.device());
#ifdef EFFARCH_WITH_CUDA
  if (cuda) return detail::rope_cache_write_cuda(q, k, v, tables, position, k_cache, v_cache);
#endif
  const at::Tensor qr = tables != nullptr ? apply_rope_at(q, *tables, position) : q;
  const at::Tensor kr = tables != nullptr ? apply_rope_at(k, *tables, position) : k;
  k_cache.index_copy_(2, position, kr);
  v_cache.index_copy_(2, position, v);
  return qr;
}

}  // namespace effarch::ops
