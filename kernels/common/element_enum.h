#pragma once
// The element types the kernels are instantiated for, with no CUDA header: params structs that host
// code and CPU tests include (a kernel's *_params.h) name them without needing the CUDA toolkit.

#include <cstdint>

namespace effarch::kernels {

enum class ElementType : uint8_t { kFloat32, kBFloat16, kFloat16 };

constexpr int element_bytes(ElementType type) { return type == ElementType::kFloat32 ? 4 : 2; }

}  // namespace effarch::kernels
