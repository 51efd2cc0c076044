#pragma once
// Device helpers of the decode attention kernels: asynchronous 16-byte copies into shared memory
// (cp.async, sm_80 and later), a lane's slice of a K or V row widened to fp32, the butterfly sum
// over the lanes of one row group, and the compile-time dispatch over head size and rows per
// block (a default branch that returns an error). The math itself: decode_attention_math.h.

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "common/convert.cuh"
#include "decode_attention/decode_attention.h"

namespace effarch::kernels::decode_attn {

using kernels::check_launch;
using kernels::from_float;
using kernels::to_float;

// 16 bytes from global to shared memory without passing through registers; valid == false
// writes zeros and reads nothing.
// (In the CPU executor, tests/sim/cuda_sim.h, the copies land when the thread waits for them.)
__device__ __forceinline__ void cp_async_16(void* smem, const void* gmem, bool valid) {
#ifdef EFFARCH_CUDA_SIM
  ::effarch::sim::async_copy(smem, gmem, 16, valid ? 16 : 0);
#else
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  const int src_bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem), "r"(src_bytes));
#endif
}
__device__ __forceinline__ void cp_async_commit() {
#ifdef EFFARCH_CUDA_SIM
  ::effarch::sim::async_commit();
#else
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
#ifdef EFFARCH_CUDA_SIM
  ::effarch::sim::async_wait(kPending);
#else
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
#endif
}

// kVec consecutive elements at src (aligned to their size in bytes, at most 16) widened to fp32,
// read with the widest load the alignment allows.
template <typename Word, typename T, int kVec>
__device__ __forceinline__ void load_words(const T* src, float (&out)[kVec]) {
  constexpr int kPer = static_cast<int>(sizeof(Word) / sizeof(T));
#pragma unroll
  for (int c = 0; c < kVec / kPer; ++c) {
    alignas(sizeof(Word)) T e[kPer];
    *reinterpret_cast<Word*>(e) = reinterpret_cast<const Word*>(src)[c];
#pragma unroll
    for (int i = 0; i < kPer; ++i) out[c * kPer + i] = to_float(e[i]);
  }
}
template <typename T, int kVec>
__device__ __forceinline__ void load_slice(const T* src, float (&out)[kVec]) {
  constexpr size_t kBytes = kVec * sizeof(T);
  if constexpr (kBytes % 16 == 0) {
    load_words<uint4>(src, out);
  } else if constexpr (kBytes % 8 == 0) {
    load_words<uint2>(src, out);
  } else if constexpr (kBytes % 4 == 0 && sizeof(T) <= 4) {
    load_words<uint32_t>(src, out);
  } else {
#pragma unroll
    for (int i = 0; i < kVec; ++i) out[i] = to_float(src[i]);
  }
}

// The sum over the kLanes lanes of a row group (`mask`: their bits), a butterfly: at each step a
// lane adds its partner's value to its own, so every lane ends with the same sum (the host
// emulation adds in the same order).
template <int kLanes>
__device__ __forceinline__ float group_sum(float v, unsigned mask) {
#pragma unroll
  for (int offset = kLanes / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(mask, v, offset);
  return v;
}

// fn(std::integral_constant<int, D>{}) for the head sizes with a kernel; others are an error.
template <typename Fn>
LaunchStatus dispatch_head_dim(int head_dim, Fn&& fn) {
  switch (head_dim) {
    case 16: return fn(std::integral_constant<int, 16>{});
    case 32: return fn(std::integral_constant<int, 32>{});
    case 40: return fn(std::integral_constant<int, 40>{});
    case 64: return fn(std::integral_constant<int, 64>{});
    case 80: return fn(std::integral_constant<int, 80>{});
    case 128: return fn(std::integral_constant<int, 128>{});
    default:
      return {cudaErrorInvalidValue, "decode_attention: head size must be 16, 32, 40, 64, 80 or 128"};
  }
}

// fn(std::integral_constant<int, R>{}) for R = rows per block (1, 2, 4 or 8).
template <typename Fn>
LaunchStatus dispatch_rows(int rows, Fn&& fn) {
  switch (rows) {
    case 1: return fn(std::integral_constant<int, 1>{});
    case 2: return fn(std::integral_constant<int, 2>{});
    case 4: return fn(std::integral_constant<int, 4>{});
    case 8: return fn(std::integral_constant<int, 8>{});
    default: return {cudaErrorInvalidValue, "decode_attention: rows per block must be 1, 2, 4 or 8"};
  }
}

inline constexpr int kMaxGridYZ = 65535;

}  // namespace effarch::kernels::decode_attn
