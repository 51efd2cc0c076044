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

// The dtype's machine epsilon (its ulp at 1.0): an ulp of any normal value v is at most epsilon |v|.
inline double epsilon(at::ScalarType dtype) {
  switch (dtype) {
    case at::kBFloat16: return 0x1p-7;
    case at::kHalf: return 0x1p-10;
    default: return 0x1p-23;
  }
}

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

// For a result that sums many rounded terms, which cancel: its error follows the terms' size,
// not its own, so no elementwise tolerance against another low-precision result holds. Both
// `actual` and `reference` are compared with `truth` (the same inputs, computed in fp32 or
// better) instead: actual's worst error may be at most `factor` times the reference's.
inline void expect_as_accurate(const at::Tensor& actual, const at::Tensor& reference, const at::Tensor& truth,
                               const std::string& what, double factor = 2.0) {
  ASSERT_EQ(actual.sizes(), truth.sizes()) << what;
  ASSERT_EQ(reference.sizes(), truth.sizes()) << what;
  if (actual.numel() == 0) return;
  const at::Tensor t = truth.cpu().to(at::kDouble);
  const double mine = (actual.cpu().to(at::kDouble) - t).abs().max().item<double>();
  const double theirs = (reference.cpu().to(at::kDouble) - t).abs().max().item<double>();
  EXPECT_LE(mine, factor * theirs) << what << ": max error against the fp32 truth " << mine << ", the reference's "
                                   << theirs << " (at most " << factor << "x allowed)";
}

// Distance in units in the last place between same-dtype tensors (fp32, bf16 or fp16): their bit
// patterns mapped onto an ordered integer line (sign-magnitude to two's complement), elementwise.
inline at::Tensor ulp_distance(const at::Tensor& a, const at::Tensor& b) {
  const auto ordered = [](const at::Tensor& t) {
    at::Tensor bits = t.scalar_type() == at::kFloat ? t.contiguous().view(at::kInt).to(at::kLong)
                                                    : t.contiguous().view(at::kShort).to(at::kLong);
    const int64_t sign = t.scalar_type() == at::kFloat ? (int64_t{1} << 31) : (int64_t{1} << 15);
    bits = at::where(bits < 0, bits + 2 * sign, bits);  // the unsigned pattern
    return at::where(bits >= sign, sign - bits, bits);  // negative values below zero, -0 == +0
  };
  return (ordered(a.cpu()) - ordered(b.cpu())).abs();
}

// max |a - e| / (1 + |e|), in double: the error on the scale of values about 1. An ulp count
// overstates it where an output is near zero by cancellation (LayerNorm's + bias, gelu_new's
// 1 + tanh): there a tiny absolute difference is many ulps of a tiny number.
inline double scaled_error(const at::Tensor& a, const at::Tensor& e) {
  const at::Tensor ad = a.cpu().to(at::kDouble), ed = e.cpu().to(at::kDouble);
  return ((ad - ed).abs() / (1.0 + ed.abs())).max().item<double>();
}

}  // namespace effarch::test
