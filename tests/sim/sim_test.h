#pragma once
// What the CPU executor's kernel tests share: a dtype's element type, name and unit roundoff, and a
// launch run under both of the executor's schedules, whose results must be the same bytes: a kernel
// whose output depends on the order its threads run in has a race (cuda_sim.h).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "common/element_enum.h"
#include "cuda_sim.h"

namespace effarch::sim {

// The kernels' element type of a torch dtype, and its short name for messages.
inline kernels::ElementType element_of(at::ScalarType t) {
  return t == at::kFloat      ? kernels::ElementType::kFloat32
         : t == at::kBFloat16 ? kernels::ElementType::kBFloat16
                              : kernels::ElementType::kFloat16;
}
inline const char* name_of(at::ScalarType t) { return t == at::kFloat ? "fp32" : t == at::kBFloat16 ? "bf16" : "fp16"; }

// The dtype's unit roundoff (half an ulp of 1).
inline double unit_roundoff(at::ScalarType t) {
  return t == at::kFloat ? std::ldexp(1.0, -24) : t == at::kBFloat16 ? std::ldexp(1.0, -8) : std::ldexp(1.0, -11);
}

// max |actual - ref| / max |ref|, ref in fp64: a product's or a recurrence's error against its
// largest value.
inline double max_rel_error(const at::Tensor& actual, const at::Tensor& ref) {
  return (actual.to(at::kDouble) - ref).abs().max().item<double>() / (ref.abs().max().item<double>() + 1e-30);
}

inline bool same_bytes(const at::Tensor& a, const at::Tensor& b) {
  if (a.scalar_type() != b.scalar_type() || !a.sizes().equals(b.sizes())) return false;
  const at::Tensor ac = a.contiguous(), bc = b.contiguous();
  if (ac.nbytes() == 0) return true;  // (an empty tensor's data pointer may be null)
  return std::memcmp(ac.const_data_ptr(), bc.const_data_ptr(), static_cast<size_t>(ac.nbytes())) == 0;
}

// run() under Schedule::Forward and under Schedule::Reverse; `same` compares the two results (a
// test failure when they differ); returns the forward one.
template <typename Run, typename Same>
auto run_both_orders(Run run, Same same) {
  set_schedule(Schedule::Forward);
  auto forward = run();
  set_schedule(Schedule::Reverse);
  auto reverse = run();
  set_schedule(Schedule::Forward);
  EXPECT_TRUE(same(forward, reverse)) << "the kernel's result depends on the order its threads or blocks run (a race)";
  return forward;
}

}  // namespace effarch::sim
