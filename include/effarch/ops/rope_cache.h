#pragma once
// The static decode step's RoPE and KV-cache write as one op: q and k rotated at the position
// held on the device, the rotated k and v written into the cache row of that position, the
// rotated q returned. The CUDA kernel (kernels/rope_cache/) does it in one launch, bitwise equal
// to the reference: ops::apply_rope_at on q and k, then index_copy_ into the caches.

#include <ATen/core/Tensor.h>

#include "effarch/ops/backend.h"
#include "effarch/ops/rope.h"

namespace effarch::ops {

// q [B, Hq, 1, D]; k, v [B, Hkv, 1, D]; k_cache, v_cache [B, Hkv, S, D], written in place at
// `position` ([1] int64 on q's device); tables: the model's RoPE tables (rotary_dim <= D), or
// nullptr for a model without RoPE (q returned as it is, k and v written). Returns q rotated.
at::Tensor rope_cache_write(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const RopeTables* tables,
                            const at::Tensor& position, at::Tensor& k_cache, at::Tensor& v_cache,
                            Backend backend = Backend::Auto);

// A prefill's (or an eager step's) RoPE and KV-cache write: q [B, Hq, T, D]; k, v [B, Hkv, T, D]
// at positions start_pos .. start_pos + T - 1 (inside the caches, else an OpError); the rotated k
// and v written into those cache rows, the rotated q returned. The reference is ops::apply_rope on
// q and k and two copies into the caches; the CUDA kernel (kernels/rope_cache/rope_cache_rows.cuh)
// does it in one launch, bitwise equal. Same family as rope_cache_write (OpFamily::RopeCacheWrite).
at::Tensor rope_cache_prefill(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const RopeTables* tables,
                              int64_t start_pos, at::Tensor& k_cache, at::Tensor& v_cache,
                              Backend backend = Backend::Auto);

#ifdef EFFARCH_WITH_CUDA
namespace detail {
at::Tensor rope_cache_prefill_cuda(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                   const RopeTables* tables, int64_t start_pos, at::Tensor& k_cache,
                                   at::Tensor& v_cache);
at::Tensor rope_cache_write_cuda(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                 const RopeTables* tables, const at::Tensor& position, at::Tensor& k_cache,
                                 at::Tensor& v_cache);
}  // namespace detail
#endif

}  // namespace effarch::ops
