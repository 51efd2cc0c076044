#pragma once
// A channel's arithmetic that every selective-scan kernel shares (the two prefill algorithms,
// selective_scan_math.h and selective_scan_lanes.h, and the one-token update): its dt, its A in
// the base-2 form the kernels exponentiate, and the skip and gate applied to its readout. Written
// once, for the GPU and for the host emulations (common/host_device.h).

#include "common/host_device.h"
#include "selective_scan/selective_scan_params.h"

namespace effarch::kernels::scan {

inline constexpr float kLog2e = 1.4426950408889634f;

// dt = softplus(delta + bias), each step as the params ask (softplus: common/host_device.h).
EFFARCH_HD float discretize(const SelectiveScanParams& p, float delta, int channel) {
  float dt = delta;
  if (p.delta_bias != nullptr) dt += p.delta_bias[channel * p.delta_bias_stride];
  return p.delta_softplus ? softplus(dt) : dt;
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

}  // namespace effarch::kernels::scan
