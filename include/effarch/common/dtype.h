#pragma once
// The element types effarch reads and writes, with their safetensors and HF names.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <c10/core/ScalarType.h>

namespace effarch {

enum class DType : uint8_t {
  F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL,
  F8_E4M3, F8_E5M2,  // read as ATen's float8 types (e4m3fn, e5m2)
};

// Bytes per element.
size_t dtype_size(DType dtype);
// The safetensors spelling ("F32", "BF16", ...).
std::string_view safetensors_name(DType dtype);
std::optional<DType> dtype_from_safetensors(std::string_view name);
// The ATen type a tensor of this dtype is materialised as (F8: kFloat8_e4m3fn, kFloat8_e5m2).
at::ScalarType to_scalar_type(DType dtype);
std::optional<DType> dtype_from_scalar_type(at::ScalarType type);

// User-facing dtype names for --dtype and HF's torch_dtype: "float32"/"fp32"/"f32",
// "bfloat16"/"bf16", "float16"/"fp16"/"half". Throws UsageError naming `option` otherwise.
at::ScalarType parse_float_dtype(std::string_view name, std::string_view option);
std::string float_dtype_name(at::ScalarType type);  // "float32", "bfloat16", "float16"

}  // namespace effarch
