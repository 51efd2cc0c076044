#pragma once
// A channel's arithmetic that every selective-scan kernel shares (the two prefill algorithms,
// selective_scan_math.h and selective_scan_lanes.h, and the one-token update): its dt, its A in
// the base-2 form the kernels exponentiate, and the skip and gate applied to its readout; and the
// rows of eight elements lanes16 stages with 16-byte loads. Written once, for the GPU and for the
// host emulations (common/host_device.h).

#include <cstdint>

#include "common/host_device.h"
#include "selective_scan/selective_scan_params.h"

namespace effarch::kernels::scan {

inline constexpr float kLog2e = 1.4426950408889634f;

// The bias of a channel, 0 without one.
EFFARCH_HD float delta_bias_of(const SelectiveScanParams& p, int channel) {
  return p.delta_bias != nullptr ? p.delta_bias[channel * p.delta_bias_stride] : 0.0f;
}
// dt = softplus(delta + bias) of a step as the params ask, `bias` the channel's delta_bias_of
// (the sum is not taken without a bias: delta's -0 stays -0). softplus: common/host_device.h.
EFFARCH_HD float dt_of(const SelectiveScanParams& p, float delta, float bias) {
  const float biased = p.delta_bias != nullptr ? delta + bias : delta;
  return p.delta_softplus ? softplus(biased) : biased;
}
EFFARCH_HD float discretize(const SelectiveScanParams& p, float delta, int channel) {
  return dt_of(p, delta, delta_bias_of(p, channel));
}

// A * log2(e) of one (channel, state), 0 outside: exp(dt A) = exp2(dt A log2(e)).
EFFARCH_HD float A2_at(const SelectiveScanParams& p, int channel, int state) {
  return channel < p.dim && state < p.dstate ? p.A[channel * p.A_dim_stride + state * p.A_state_stride] * kLog2e
                                             : 0.0f;
}

// D of a channel inside the channels, 0 without a skip.
EFFARCH_HD float skip_of(const SelectiveScanParams& p, int channel) {
  return p.D != nullptr ? p.D[channel * p.D_stride] : 0.0f;
}

// The skip and gate applied to the readout: (C . h + D u) * SiLU(z). (The one-token update writes
// the same with its D read ahead of its stores: update_finish, selective_scan_math.h.)
EFFARCH_HD float finish(const SelectiveScanParams& p, float readout, float u, float z, int channel) {
  float y = readout;
  if (p.D != nullptr) y += p.D[channel * p.D_stride] * u;
  if (p.z != nullptr) y *= silu(z);
  return y;
}

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

}  // namespace effarch::kernels::scan
