// CUDA path of effarch::ops::rope_cache_write: fills the fused kernel's params from checked
// tensors and launches on the current stream. Built only with CUDA.

#include <ATen/ATen.h>

#include "cuda_binding.h"
#include "effarch/ops/rope_cache.h"
#include "rope_cache/rope_cache.h"

namespace effarch::ops::detail {

at::Tensor rope_cache_write_cuda(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                 const RopeTables* tables, const at::Tensor& position, at::Tensor& k_cache,
                                 at::Tensor& v_cache) {
  constexpr const char* op = "rope_cache_write";
  const DeviceGuard device_guard(q.device());
  for (const auto& [t, name] : {std::pair{&q, "q"}, {&k, "k"}, {&v, "v"}, {&k_cache, "k_cache"}, {&v_cache, "v_cache"}}) {
    if (t->size(3) > 1 && t->stride(3) != 1) {
      throw OpError(fmt::format("{}: {} needs a contiguous head dimension", op, name));
    }
  }
  if (q.size(3) > 1024) throw OpError(fmt::format("{}: head size {} above the kernel's 1024", op, q.size(3)));
  at::Tensor cos, sin;
  if (tables != nullptr) {
    cos = tables->cos.to(at::kFloat).contiguous();
    sin = tables->sin.to(at::kFloat).contiguous();
  }
  at::Tensor q_out = at::empty(q.sizes(), q.options());
  kernels::RopeCacheParams p;
  p.batch = static_cast<int>(q.size(0));
  p.q_heads = static_cast<int>(q.size(1));
  p.kv_heads = static_cast<int>(k.size(1));
  p.head_dim = static_cast<int>(q.size(3));
  p.rotary_dim = tables != nullptr ? static_cast<int>(tables->rotary_dim) : 0;
  p.max_keys = k_cache.size(2);
  p.type = element_type(q.scalar_type(), op);
  p.q = q.const_data_ptr();
  p.q_batch_stride = q.stride(0);
  p.q_head_stride = q.stride(1);
  p.k = k.const_data_ptr();
  p.k_batch_stride = k.stride(0);
  p.k_head_stride = k.stride(1);
  p.v = v.const_data_ptr();
  p.v_batch_stride = v.stride(0);
  p.v_head_stride = v.stride(1);
  p.q_out = q_out.mutable_data_ptr();
  p.q_out_batch_stride = q_out.stride(0);
  p.q_out_head_stride = q_out.stride(1);
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
  p.position = position.const_data_ptr<int64_t>();
  throw_if_failed(kernels::rope_cache(p, current_stream()), op);
  return q_out;
}

}  // namespace effarch::ops::detail
