#pragma once
// Device side of the Mamba-2 kernels: the element access (`Io` of ssd_math.h) on the GPU and the
// limits the launchers check. Conversions are cuda_bf16.h / cuda_fp16.h's, rounding to nearest
// even as ATen's casts do.

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "common/element_type.h"
#include "common/launch.h"
#include "ssd/ssd.h"
#include "ssd/ssd_math.h"

namespace effarch::kernels::ssd {

// Every element of the tensor read as input_t (the scan and the decode step: one input type).
template <typename input_t>
struct StaticIo {
  using Elem = input_t;  // the tensor-core path's operands in shared memory (ssd_tc_math.h)
  EFFARCH_HD static float load(const void* base, int64_t offset, ElementType) {
    return to_float(static_cast<const input_t*>(base)[offset]);
  }
  EFFARCH_HD static Elem to_elem(ElementType, float v) { return from_float<input_t>(v); }
  // Eight neighbouring 16-bit elements moved unchanged (the tensor-core path's operands are the
  // input type in shared memory too): one 16-byte load and store; both addresses 16-byte aligned
  // (tc_rows_vec8 checks the global side, the shared layout keeps the other).
  struct Vec8 {
    uint4 bits;
  };
  EFFARCH_HD static Vec8 load8(const void* base, int64_t offset, ElementType) {
    static_assert(sizeof(input_t) == 2, "8-element copies move 16-bit elements");
    return {*reinterpret_cast<const uint4*>(static_cast<const input_t*>(base) + offset)};
  }
  EFFARCH_HD static Vec8 zero8() { return {make_uint4(0, 0, 0, 0)}; }
  EFFARCH_HD static void store8(Elem* dst, const Vec8& v) { *reinterpret_cast<uint4*>(dst) = v.bits; }
  // The eight as floats, and eight floats rounded back (load's and to_elem's conversions).
  EFFARCH_HD static void unpack8(const Vec8& v, ElementType, float (&out)[8]) {
    const auto* e = reinterpret_cast<const input_t*>(&v.bits);
    for (int k = 0; k < 8; ++k) out[k] = to_float(e[k]);
  }
  EFFARCH_HD static Vec8 pack8(ElementType, const float (&in)[8]) {
    Vec8 v;
    auto* e = reinterpret_cast<input_t*>(&v.bits);
    for (int k = 0; k < 8; ++k) e[k] = from_float<input_t>(in[k]);
    return v;
  }
};

// The element type given per access (the gated RMSNorm, whose y, z, weight and out may differ).
struct DynamicIo {
  EFFARCH_HD static float load(const void* base, int64_t offset, ElementType type) {
    switch (type) {
      case ElementType::kBFloat16: return __bfloat162float(static_cast<const __nv_bfloat16*>(base)[offset]);
      case ElementType::kFloat16: return __half2float(static_cast<const __half*>(base)[offset]);
      default: return static_cast<const float*>(base)[offset];
    }
  }
  EFFARCH_HD static void store(void* base, int64_t offset, ElementType type, float v) {
    switch (type) {
      case ElementType::kBFloat16: static_cast<__nv_bfloat16*>(base)[offset] = __float2bfloat16_rn(v); break;
      case ElementType::kFloat16: static_cast<__half*>(base)[offset] = __float2half_rn(v); break;
      default: static_cast<float*>(base)[offset] = v; break;
    }
  }
  EFFARCH_HD static float round_to(ElementType type, float v) {
    switch (type) {
      case ElementType::kBFloat16: return __bfloat162float(__float2bfloat16_rn(v));
      case ElementType::kFloat16: return __half2float(__float2half_rn(v));
      default: return v;
    }
  }
};

inline constexpr int kMaxGridYZ = 65535;

}  // namespace effarch::kernels::ssd
