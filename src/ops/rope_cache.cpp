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

// The tensors of either op: q [B, Hq, T, D], k and v [B, Hkv, T, D] (T 1 for rope_cache_write),
// the caches [B, Hkv, S, D], the tables' rows covering the cache's.
void check_tensors(const char* op, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                   const RopeTables* tables, const at::Tensor& k_cache, const at::Tensor& v_cache, bool one_token) {
  for (const auto& [t, name] : {std::pair{&q, "q"}, {&k, "k"}, {&v, "v"}, {&k_cache, "k_cache"}, {&v_cache, "v_cache"}}) {
    if (!t->defined() || t->dim() != 4) throw OpError(fmt::format("{}: {} must be a 4-dim tensor", op, name));
    if (t->scalar_type() != q.scalar_type() || t->device() != q.device()) {
      throw OpError(fmt::format("{}: {} is {} on {}, q is {} on {}", op, name, c10::toString(t->scalar_type()),
                                t->device().str(), c10::toString(q.scalar_type()), q.device().str()));
    }
  }
  const int64_t b = q.size(0), d = q.size(3), t = q.size(2);
  if ((one_token && t != 1) || k.sizes() != v.sizes() || k.size(0) != b || k.size(2) != t || k.size(3) != d) {
    throw OpError(fmt::format("{}: q {}, k {}, v {}: expected [B, Hq, {}, D] and [B, Hkv, {}, D]", op, shape(q),
                              shape(k), shape(v), one_token ? "1" : "T", one_token ? "1" : "T"));
  }
  if (k_cache.sizes() != v_cache.sizes() || k_cache.size(0) != b || k_cache.size(1) != k.size(1) ||
      k_cache.size(3) != d) {
    throw OpError(fmt::format("{}: k_cache {} and v_cache {} must be [B, Hkv, S, D] for k {}", op, shape(k_cache),
                              shape(v_cache), shape(k)));
  }
  if (tables != nullptr && (tables->rotary_dim < 2 || tables->rotary_dim > d || tables->rotary_dim % 2 != 0 ||
                            tables->cos.size(1) != tables->rotary_dim || tables->cos.size(0) < k_cache.size(2) ||
                            tables->cos.device() != q.device())) {
    throw OpError(fmt::format("{}: RoPE tables of rotary_dim {} for head size {} on {}", op, tables->rotary_dim, d,
                              q.device().str()));
  }
}

void check(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const RopeTables* tables,
           const at::Tensor& position, const at::Tensor& k_cache, const at::Tensor& v_cache) {
  check_tensors(kOp, q, k, v, tables, k_cache, v_cache, /*one_token=*/true);
  if (!position.defined() || position.scalar_type() != at::kLong || position.numel() != 1 ||
      position.device() != q.device()) {
    throw OpError(fmt::format("{}: position must be one int64 on {}", kOp, q.device().str()));
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

at::Tensor rope_cache_prefill(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const RopeTables* tables,
                              int64_t start_pos, at::Tensor& k_cache, at::Tensor& v_cache, Backend backend) {
  constexpr const char* op = "rope_cache_prefill";
  RECORD_USER_SCOPE("effarch::rope_cache_prefill");  // names the op in profiles
  check_tensors(op, q, k, v, tables, k_cache, v_cache, /*one_token=*/false);
  const int64_t t = q.size(2);
  if (start_pos < 0 || start_pos + t > k_cache.size(2)) {
    throw OpError(fmt::format("{}: {} tokens from position {} do not fit a cache of {}", op, t, start_pos,
                              k_cache.size(2)));
  }
  [[maybe_unused]] const bool cuda = use_cuda_kernel(backend, OpFamily::RopeCacheWrite, q.device());
#ifdef EFFARCH_WITH_CUDA
  if (cuda) return detail::rope_cache_prefill_cuda(q, k, v, tables, start_pos, k_cache, v_cache);
#endif
  const at::Tensor qr = tables != nullptr ? apply_rope(q, *tables, start_pos) : q;
  const at::Tensor kr = tables != nullptr ? apply_rope(k, *tables, start_pos) : k;
  k_cache.narrow(2, start_pos, t).copy_(kr);
  v_cache.narrow(2, start_pos, t).copy_(v);
  return qr;
}

}  // namespace effarch::ops
