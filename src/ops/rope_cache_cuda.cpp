// CUDA paths of effarch::ops::rope_cache_write and rope_cache_prefill: fill the fused kernels'
// params from checked tensors and launch on the current stream. Built only with CUDA.

#include <ATen/ATen.h>

#include "cuda_binding.h"
#include "effarch/ops/rope_cache.h"
#include "rope_cache/rope_cache.h"

namespace effarch::ops::detail {
namespace {

// The params both kernels share: the shapes and dtype, the heads' strides, the caches and the
// tables (cast to fp32 rows; kept alive in `cos` and `sin`). Checks what the kernels assume.
kernels::RopeCacheParams shared_params(const char* op, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                       const RopeTables* tables, at::Tensor& k_cache, at::Tensor& v_cache,
                                       const at::Tensor& q_out, at::Tensor& cos, at::Tensor& sin) {
  for (const auto& [t, name] : {std::pair{&q, "q"}, {&k, "k"}, {&v, "v"}, {&k_cache, "k_cache"}, {&v_cache, "v_cache"}}) {
    if (t->size(3) > 1 && t->stride(3) != 1) {
      throw OpError(fmt::format("{}: {} needs a contiguous head dimension", op, name));
    }
  }
  if (q.size(3) > 1024) throw OpError(fmt::format("{}: head size {} above the kernel's 1024", op, q.size(3)));
  if (tables != nullptr) {
    cos = tables->cos.to(at::kFloat).contiguous();
    sin = tables->sin.to(at::kFloat).contiguous();
  }
  kernels::RopeCacheParams p;
  p.batch = to_int(q.size(0), op, "batch");
  p.q_heads = static_cast<int>(q.size(1));
  p.kv_heads = static_cast<int>(k.size(1));
  p.head_dim = static_cast<int>(q.size(3));
  p.rotary_dim = tables != nullptr ? static_cast<int>(tables->rotary_dim) : 0;
  p.max_keys = k_cache.size(2);
  p.type = element_type(q.scalar_type(), op);
  p.q = q.const_data_ptr();
  p.q_batch_stride = q.stride(0);
  p.q_head_stride = q.stride(1);
  p.q_token_stride = q.stride(2);
  p.k = k.const_data_ptr();
  p.k_batch_stride = k.stride(0);
  p.k_head_stride = k.stride(1);
  p.k_token_stride = k.stride(2);
  p.v = v.const_data_ptr();
  p.v_batch_stride = v.stride(0);
  p.v_head_stride = v.stride(1);
  p.v_token_stride = v.stride(2);
  p.q_out = q_out.data_ptr();
  p.q_out_batch_stride = q_out.stride(0);
  p.q_out_head_stride = q_out.stride(1);
  p.q_out_token_stride = q_out.stride(2);
  p.k_cache = k_cache.mutable_data_ptr();
  p.k_cache_batch_stride = k_cache.stride(0);
  p.k_cache_head_stride = k_cache.stride(1);
  p.k_cache_key_stride = k_cache.stride(2);
  p.v_cache = v_cache.mutable_data_ptr();
  p.v_cache_batch_stride = v_cache.stride(0);
  p.v_cache_head_stride = v_cache.stride(1);
  p.v_cache_key_stride = v_cache.stride(2);
  if (tables != nullptr) {
    p.cos = cos.const_data_ptr<float>();
    p.sin = sin.const_data_ptr<float>();
    p.table_row_stride = cos.stride(0);
  }
  return p;
}

}  // namespace

at::Tensor rope_cache_write_cuda(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                 const RopeTables* tables, const at::Tensor& position, at::Tensor& k_cache,
                                 at::Tensor& v_cache) {
  constexpr const char* op = "rope_cache_write";
  const DeviceGuard device_guard(q.device());
  at::Tensor q_out = at::empty(q.sizes(), q.options()), cos, sin;
  kernels::RopeCacheParams p = shared_params(op, q, k, v, tables, k_cache, v_cache, q_out, cos, sin);
  p.position = position.const_data_ptr<int64_t>();
  throw_if_failed(kernels::rope_cache(p, current_stream()), op);
  return q_out;
}

// q_out as the fused projection lays q out, [B, T, Hq, D] viewed [B, Hq, T, D]: the kernel's
// rows (a token's heads side by side) are then written in order.
at::Tensor rope_cache_prefill_cuda(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                   const RopeTables* tables, int64_t start_pos, at::Tensor& k_cache,
                                   at::Tensor& v_cache) {
  constexpr const char* op = "rope_cache_prefill";
  const DeviceGuard device_guard(q.device());
  at::Tensor q_out = at::empty({q.size(0), q.size(2), q.size(1), q.size(3)}, q.options()).transpose(1, 2), cos, sin;
  kernels::RopeCacheParams p = shared_params(op, q, k, v, tables, k_cache, v_cache, q_out, cos, sin);
  p.tokens = q.size(2);
  p.first_position = start_pos;
  throw_if_failed(kernels::rope_cache_rows(p, current_stream()), op);
  return q_out;
}

}  // namespace effarch::ops::detail
