#pragma once
// How the op tests compare a result with its reference: |actual - expected| <= atol + rtol |expected|
// elementwise, in float64 on the CPU, with the worst excess and difference in the failure message.
// One helper for every op and kernel test, so tolerances are stated, not re-derived per file.

#include <string>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

namespace effarch::test {

struct Tolerance {
  double atol;
  double rtol;
};

// Both sides compute in fp32 (or better) and round once to `dtype`: about one ulp of it.
inline Tolerance rounding_tolerance(at::ScalarType dtype) {
  switch (dtype) {
    case at::kBFloat16: return {2e-2, 1e-2};
    case at::kHalf: return {2e-3, 2e-3};
    default: return {1e-5, 1e-5};
  }
}

// max(|a - e| - (atol + rtol |e|)): <= 0 when every element is within the tolerance.
inline double max_excess(const at::Tensor& actual, const at::Tensor& expected, Tolerance tol) {
  const at::Tensor a = actual.cpu().to(at::kDouble), e = expected.cpu().to(at::kDouble);
  return ((a - e).abs() - (tol.atol + tol.rtol * e.abs())).max().item<double>();
}

inline void expect_close(const at::Tensor& actual, const at::Tensor& expected, Tolerance tol,
                         const std::string& what) {
  ASSERT_EQ(actual.sizes(), expected.sizes()) << what;
  if (actual.numel() == 0) return;
  const double excess = max_excess(actual, expected, tol);
  EXPECT_LE(excess, 0.0) << what << ": max |actual - expected| = "
                         << (actual.cpu().to(at::kDouble) - expected.cpu().to(at::kDouble)).abs().max().item<double>()
                         << " (atol " << tol.atol << ", rtol " << tol.rtol << ")";
}

}  // namespace effarch::test
