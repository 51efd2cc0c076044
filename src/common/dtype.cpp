#include "effarch/common/dtype.h"

#include <array>

#include <fmt/format.h>

#include "effarch/common/error.h"

namespace effarch {
namespace {

struct DTypeRow {
  DType dtype;
  std::string_view st_name;
  size_t size;
  at::ScalarType scalar;
};

constexpr std::array<DTypeRow, 12> kRows{{
    {DType::F64, "F64", 8, at::kDouble},
    {DType::F32, "F32", 4, at::kFloat},
    {DType::F16, "F16", 2, at::kHalf},
    {DType::BF16, "BF16", 2, at::kBFloat16},
    {DType::I64, "I64", 8, at::kLong},
    {DType::I32, "I32", 4, at::kInt},
    {DType::I16, "I16", 2, at::kShort},
    {DType::I8, "I8", 1, at::kChar},
    {DType::U8, "U8", 1, at::kByte},
    {DType::BOOL, "BOOL", 1, at::kBool},
    {DType::F8_E4M3, "F8_E4M3", 1, at::kFloat8_e4m3fn},
    {DType::F8_E5M2, "F8_E5M2", 1, at::kFloat8_e5m2},
}};

const DTypeRow& row(DType dtype) { return kRows[static_cast<size_t>(dtype)]; }

}  // namespace

size_t dtype_size(DType dtype) { return row(dtype).size; }
std::string_view safetensors_name(DType dtype) { return row(dtype).st_name; }
at::ScalarType to_scalar_type(DType dtype) { return row(dtype).scalar; }

std::optional<DType> dtype_from_safetensors(std::string_view name) {
  for (const auto& r : kRows) {
    if (r.st_name == name) return r.dtype;
  }
  return std::nullopt;
}

std::optional<DType> dtype_from_scalar_type(at::ScalarType type) {
  for (const auto& r : kRows) {
    if (r.scalar == type && r.dtype != DType::F8_E4M3 && r.dtype != DType::F8_E5M2) return r.dtype;
  }
  return std::nullopt;
}

at::ScalarType parse_float_dtype(std::string_view name, std::string_view option) {
  if (name == "float32" || name == "fp32" || name == "f32" || name == "float") return at::kFloat;
  if (name == "bfloat16" || name == "bf16") return at::kBFloat16;
  if (name == "float16" || name == "fp16" || name == "f16" || name == "half") return at::kHalf;
  throw UsageError(fmt::format("{}: unknown dtype '{}' (use float32, bfloat16 or float16)", option, name));
}

std::string float_dtype_name(at::ScalarType type) {
  switch (type) {
    case at::kFloat: return "float32";
    case at::kBFloat16: return "bfloat16";
    case at::kHalf: return "float16";
    case at::kDouble: return "float64";
    default: return std::string(c10::toString(type));
  }
}

}  // namespace effarch
