#pragma once
// Eight consecutive (or strided) elements as floats, loaded and stored the way every kernel with
// 16-byte paths does: one 16-byte access for a 2-byte type, two for fp32, where the caller has
// checked that the row vectorises (rows_vectorise: unit stride, 16-byte aligned rows); element
// by element with the stride otherwise, and always on the host (the CPU emulations). Conversions
// round as common/host_device.h's to_float / from_float do. Used by the selective scan's staging
// (selective_scan_lanes.h), add_norm's vector shape and the prefill conv's vector variant.

#include <cstdint>

#include "common/host_device.h"

namespace effarch::kernels {

// Eight elements of a row as floats: one or two 16-byte loads on the GPU when `vector` (the
// caller checked stride 1 and alignment), else element by element with the stride.
template <typename input_t>
EFFARCH_HD void load8(const input_t* p, int64_t stride, bool vector, float (&out)[8]) {
#ifdef __CUDA_ARCH__
  if (vector) {
    if constexpr (sizeof(input_t) == 2) {
      const uint4 v = *reinterpret_cast<const uint4*>(p);
      const auto* e = reinterpret_cast<const input_t*>(&v);
EFFARCH_UNROLL
      for (int k = 0; k < 8; ++k) out[k] = to_float(e[k]);
    } else {
      const float4 lo = *reinterpret_cast<const float4*>(p), hi = *reinterpret_cast<const float4*>(p + 4);
      out[0] = lo.x, out[1] = lo.y, out[2] = lo.z, out[3] = lo.w;
      out[4] = hi.x, out[5] = hi.y, out[6] = hi.z, out[7] = hi.w;
    }
    return;
  }
#endif
EFFARCH_UNROLL
  for (int k = 0; k < 8; ++k) out[k] = to_float(p[k * stride]);
}

template <typename input_t>
EFFARCH_HD void store8(input_t* p, int64_t stride, bool vector, const float (&in)[8]) {
#ifdef __CUDA_ARCH__
  if (vector) {
    if constexpr (sizeof(input_t) == 2) {
      uint4 v;
      auto* e = reinterpret_cast<input_t*>(&v);
EFFARCH_UNROLL
      for (int k = 0; k < 8; ++k) e[k] = from_float<input_t>(in[k]);
      *reinterpret_cast<uint4*>(p) = v;
    } else {
      *reinterpret_cast<float4*>(p) = make_float4(in[0], in[1], in[2], in[3]);
      *reinterpret_cast<float4*>(p + 4) = make_float4(in[4], in[5], in[6], in[7]);
    }
    return;
  }
#endif
EFFARCH_UNROLL
  for (int k = 0; k < 8; ++k) p[k * stride] = from_float<input_t>(in[k]);
}

// Whether rows of eight elements at base + i * row_stride (i >= 0) load as vectors: contiguous,
// and every row 16-byte aligned.
template <typename input_t>
EFFARCH_HD bool rows_vectorise(const input_t* base, int64_t elem_stride, int64_t row_stride) {
  return elem_stride == 1 && reinterpret_cast<uintptr_t>(base) % 16 == 0 &&
         (row_stride * static_cast<int64_t>(sizeof(input_t))) % 16 == 0;
}

}  // namespace effarch::kernels
