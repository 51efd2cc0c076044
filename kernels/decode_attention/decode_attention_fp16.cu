// __half q, K, V and output: instantiations of the decode attention kernels for every head size.
#include "decode_attention/decode_attention_split.cuh"

namespace effarch::kernels {

LaunchStatus decode_attention_fp16(const DecodeAttentionParams& params, cudaStream_t stream) {
  return decode_attention_cuda<__half>(params, stream);
}

}  // namespace effarch::kernels
