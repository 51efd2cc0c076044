#pragma once
// Argument checks shared by the ops' entry points (internal): each failure is an OpError that
// names the op, the argument and what was expected.

#include <string>

#include <ATen/core/Tensor.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "effarch/common/error.h"

namespace effarch::ops::detail {

inline std::string shape(const at::Tensor& t) { return fmt::format("[{}]", fmt::join(t.sizes(), ", ")); }

// `t` is defined, has exactly `expected` sizes, a float dtype (fp32, bf16, fp16), and lives on
// `like`'s device (`like_name` in the message).
inline void check_float_tensor(const at::Tensor& t, const char* op, const char* name, at::IntArrayRef expected,
                               const at::Tensor& like, const char* like_name) {
  if (!t.defined()) throw OpError(fmt::format("{}: {} is an undefined tensor", op, name));
  if (t.sizes() != expected) {
    throw OpError(fmt::format("{}: {} has shape {}, expected [{}]", op, name, shape(t), fmt::join(expected, ", ")));
  }
  const at::ScalarType type = t.scalar_type();
  if (type != at::kFloat && type != at::kBFloat16 && type != at::kHalf) {
    throw OpError(fmt::format("{}: {} has dtype {}, expected float32, bfloat16 or float16", op, name,
                                 c10::toString(type)));
  }
  if (t.device() != like.device()) {
    throw OpError(fmt::format("{}: {} is on {} but {} is on {}", op, name, t.device().str(), like_name,
                                 like.device().str()));
  }
}

}  // namespace effarch::ops::detail
