#pragma once
// A tensor argument of a CPU kernel (internal) as a raw pointer, its dtype and its strides (in
// elements), read into fp32 without any ATen call: no .to(kFloat), no views, no temporaries.
// Building one reads only the tensor's cached sizes/strides/data pointer, so a one-token call
// pays no per-call dispatcher overhead for its inputs.

#include <cstdint>
#include <cstring>

#include <ATen/core/Tensor.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

namespace effarch::ops::cpu {

struct Operand {
  const void* data = nullptr;
  at::ScalarType type = at::kFloat;  // fp32, bf16 or fp16 (what the ops' argument checks admit)
  int64_t stride[4] = {0, 0, 0, 0};

  Operand() = default;
  // The tensor's dims as they are; `insert_at` >= 0 inserts a dim of stride 0 there (a one-token
  // tensor read as a sequence of length 1).
  explicit Operand(const at::Tensor& t, int insert_at = -1) : data(t.data_ptr()), type(t.scalar_type()) {
    const auto strides = t.strides();
    const int dims = static_cast<int>(strides.size()) + (insert_at >= 0 ? 1 : 0);
    for (int i = 0, j = 0; i < dims && i < 4; ++i) stride[i] = i == insert_at ? 0 : strides[static_cast<size_t>(j++)];
  }

  // Element at `offset` (in elements from data) as fp32.
  float at(int64_t offset) const {
    switch (type) {
      case at::kBFloat16: return static_cast<float>(static_cast<const c10::BFloat16*>(data)[offset]);
      case at::kHalf: return static_cast<float>(static_cast<const c10::Half*>(data)[offset]);
      default: return static_cast<const float*>(data)[offset];
    }
  }

  // n elements from `offset`, `step` apart, into out[0, n) as fp32.
  void gather(int64_t offset, int64_t step, int64_t n, float* out) const {
    switch (type) {
      case at::kBFloat16: gather_as(static_cast<const c10::BFloat16*>(data) + offset, step, n, out); break;
      case at::kHalf: gather_as(static_cast<const c10::Half*>(data) + offset, step, n, out); break;
      default: {
        const float* p = static_cast<const float*>(data) + offset;
        if (step == 1) {
          std::memcpy(out, p, static_cast<size_t>(n) * sizeof(float));
        } else {
          for (int64_t i = 0; i < n; ++i) out[i] = p[i * step];
        }
      }
    }
  }

 private:
  template <typename T>
  static void gather_as(const T* p, int64_t step, int64_t n, float* out) {
    if (step == 1) {
      for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(p[i]);
    } else {
      for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(p[i * step]);
    }
  }
};

}  // namespace effarch::ops::cpu
