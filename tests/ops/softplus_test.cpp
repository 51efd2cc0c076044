// The kernels' softplus (kernels/common/host_device.h: the Mamba scans' dt, once per step and
// channel) against at::softplus's definition, log1p(exp(v)) below the threshold 20 and v above it,
// computed in double: within two ulp of the fp32 result over the range a dt takes, at the
// threshold, and at the specials. The host runs the same code as the device, each with its own
// expf and log1pf (CUDA's are within 2 ulp; the scan kernels' GPU tests hold the device's dt to
// the reference's through y and the state, selective_scan_kernel_test.cpp).

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "common/host_device.h"

namespace effarch::kernels {
namespace {

double softplus_truth(double v) { return v > 20.0 ? v : std::log1p(std::exp(v)); }

// |got - want| in units of the last place of want rounded to float.
double ulps(float got, double want) {
  const float w = static_cast<float>(want);
  const double ulp = std::nextafter(std::fabs(w), std::numeric_limits<float>::infinity()) - std::fabs(w);
  return std::fabs(static_cast<double>(got) - want) / ulp;
}

TEST(KernelSoftplus, WithinTwoUlpOfLog1pExpOverEveryDt) {
  double worst = 0.0, at = 0.0;
  for (double v = -40.0; v <= 40.0; v += 1.0 / 1024.0) {
    const float f = static_cast<float>(v);
    const double e = ulps(softplus(f), softplus_truth(static_cast<double>(f)));
    if (e > worst) worst = e, at = f;
  }
  EXPECT_LE(worst, 2.0) << "worst at v = " << at;
  // Around the threshold, near 0, and where exp(v) leaves the normal floats.
  for (float v : {20.0f, std::nextafter(20.0f, 0.0f), std::nextafter(20.0f, 30.0f), 0.0f, -0.0f, 1e-30f, -1e-30f,
                  1e-7f, -1e-7f, 87.0f, -87.0f, -103.0f}) {
    EXPECT_LE(ulps(softplus(v), softplus_truth(v)), 2.0) << "v = " << v;
  }
}

TEST(KernelSoftplus, KeepsTheThresholdAndTheSpecials) {
  EXPECT_EQ(softplus(20.5f), 20.5f);  // at::softplus returns v itself past the threshold
  EXPECT_EQ(softplus(1e30f), 1e30f);
  EXPECT_EQ(softplus(std::numeric_limits<float>::infinity()), std::numeric_limits<float>::infinity());
  EXPECT_EQ(softplus(-std::numeric_limits<float>::infinity()), 0.0f);
  EXPECT_TRUE(std::isnan(softplus(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_GT(softplus(-80.0f), 0.0f);  // exp(-80) is a normal float: no flush to zero here
}

}  // namespace
}  // namespace effarch::kernels
