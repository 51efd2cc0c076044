#pragma once
// A channel's arithmetic that every selective-scan kernel shares (the two prefill algorithms,
// selective_scan_math.h and selective_scan_lanes.h, and the one-token update): its dt, its A in
// the base-2 form the kernels exponentiate, and the skip and gate applied to its readout. Written
// once, for the GPU and for the host emulations (common/host_device.h). lanes16 stages its rows
// of eight elements with common/row8.h.

#include <cstdint>

#include "common/host_device.h"
#include "common/row8.h"
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

}  // namespace effarch::kernels::scan
