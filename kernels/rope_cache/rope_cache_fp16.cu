// __half activations: the fused RoPE + KV-cache write, one token and a prefill's.
#include "rope_cache/rope_cache_rows.cuh"
#include "rope_cache/rope_cache_update.cuh"

namespace effarch::kernels {

LaunchStatus rope_cache_fp16(const RopeCacheParams& params, cudaStream_t stream) { return rope_cache_cuda<__half>(params, stream); }

LaunchStatus rope_cache_rows_fp16(const RopeCacheParams& params, cudaStream_t stream) {
  return rope_cache_rows_cuda<__half>(params, stream);
}

}  // namespace effarch::kernels
