// Validation of a safetensors header. Every rule the format has is checked here, before any
// tensor data is used; each violation names the file, the tensor and the rule.

#include <algorithm>
#include <cstring>
#include <limits>
#include <set>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "effarch/common/error.h"
#include "effarch/io/safetensors.h"
#include "effarch/io/strict_json.h"

namespace effarch::io {
namespace {

using json = nlohmann::json;

[[noreturn]] void fail(const std::string& origin, const std::string& what) {
  throw FormatError(fmt::format("{}: {}", origin, what));
}

[[noreturn]] void fail_tensor(const std::string& origin, const std::string& name, const std::string& what) {
  throw FormatError(fmt::format("{}: tensor '{}': {}", origin, name, what));
}

// Returns the byte offset of the first invalid UTF-8 sequence, or npos.
size_t find_invalid_utf8(const uint8_t* s, size_t n) {
  size_t i = 0;
  while (i < n) {
    const uint8_t c = s[i];
    size_t len = 0;
    uint32_t cp = 0;
    if (c < 0x80) { ++i; continue; }
    if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; }
    else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; }
    else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; }
    else return i;
    if (i + len > n) return i;
    for (size_t k = 1; k < len; ++k) {
      if ((s[i + k] & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    // Overlong forms, surrogates and values past U+10FFFF are not UTF-8.
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) {
      return i;
    }
    i += len;
  }
  return std::string::npos;
}

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int k = 7; k >= 0; --k) v = (v << 8) | p[k];
  return v;
}

TensorInfo parse_entry(const std::string& origin, const std::string& name, const json& entry) {
  if (name.empty()) fail(origin, "a tensor has an empty name");
  if (!entry.is_object()) fail_tensor(origin, name, fmt::format("entry must be an object, got {}", entry.type_name()));
  for (const auto& [key, value] : entry.items()) {
    if (key != "dtype" && key != "shape" && key != "data_offsets") {
      fail_tensor(origin, name, fmt::format("unexpected key '{}' (allowed: dtype, shape, data_offsets)", key));
    }
  }
  TensorInfo info;
  info.name = name;

  auto dtype_it = entry.find("dtype");
  if (dtype_it == entry.end()) fail_tensor(origin, name, "missing 'dtype'");
  if (!dtype_it->is_string()) fail_tensor(origin, name, "'dtype' must be a string");
  auto dtype = dtype_from_safetensors(dtype_it->get_ref<const std::string&>());
  if (!dtype) {
    fail_tensor(origin, name, fmt::format("unknown dtype '{}' (supported: F64, F32, F16, BF16, I64, I32, I16, I8, "
                                          "U8, BOOL, F8_E4M3, F8_E5M2)", dtype_it->get_ref<const std::string&>()));
  }
  info.dtype = *dtype;

  auto shape_it = entry.find("shape");
  if (shape_it == entry.end()) fail_tensor(origin, name, "missing 'shape'");
  if (!shape_it->is_array()) fail_tensor(origin, name, "'shape' must be an array of non-negative integers");
  // Element count, and the product of the non-zero dimensions: torch computes strides from the
  // latter even for an empty tensor ([0, 2^32, 2^32, 16] has no elements but strides past 2^63),
  // so both must fit in int64.
  constexpr uint64_t kMaxExtent = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  uint64_t extent = 1;
  bool overflow = false;
  bool has_zero = false;
  for (const auto& dim : *shape_it) {
    if (dim.is_number_integer() && !dim.is_number_unsigned() && dim.get<int64_t>() < 0) {
      fail_tensor(origin, name, fmt::format("negative dimension {} in shape {}", dim.get<int64_t>(), shape_it->dump()));
    }
    if (!dim.is_number_unsigned()) {
      fail_tensor(origin, name, fmt::format("shape {} has a dimension that is not a non-negative integer", shape_it->dump()));
    }
    const uint64_t d = dim.get<uint64_t>();
    if (d > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      fail_tensor(origin, name, fmt::format("dimension {} is too large", d));
    }
    info.shape.push_back(static_cast<int64_t>(d));
    if (d == 0) {
      has_zero = true;
    } else if (extent > kMaxExtent / d) {
      overflow = true;
    } else {
      extent *= d;
    }
  }
  if (overflow) {
    fail_tensor(origin, name,
                has_zero ? fmt::format("shape {} is too large: its non-zero dimensions multiply past 2^63-1",
                                       shape_it->dump())
                         : fmt::format("element count of shape {} overflows", shape_it->dump()));
  }
  const uint64_t numel = has_zero ? 0 : extent;
  const uint64_t elem = dtype_size(info.dtype);
  if (numel > std::numeric_limits<uint64_t>::max() / elem) {
    fail_tensor(origin, name, fmt::format("byte size of shape {} overflows", shape_it->dump()));
  }
  info.numel = numel;

  auto off_it = entry.find("data_offsets");
  if (off_it == entry.end()) fail_tensor(origin, name, "missing 'data_offsets'");
  if (!off_it->is_array() || off_it->size() != 2 || !(*off_it)[0].is_number_unsigned() ||
      !(*off_it)[1].is_number_unsigned()) {
    fail_tensor(origin, name, fmt::format("'data_offsets' must be [begin, end] with non-negative integers, got {}",
                                          off_it->dump()));
  }
  info.data_begin = (*off_it)[0].get<uint64_t>();
  info.data_end = (*off_it)[1].get<uint64_t>();
  if (info.data_end < info.data_begin) {
    fail_tensor(origin, name, fmt::format("data_offsets [{}, {}] end before they begin", info.data_begin, info.data_end));
  }
  if (info.nbytes() != numel * elem) {
    fail_tensor(origin, name, fmt::format("data_offsets span {} bytes but shape {} of {} needs {} bytes", info.nbytes(),
                                          shape_it->dump(), safetensors_name(info.dtype), numel * elem));
  }
  return info;
}

}  // namespace

SafetensorsHeader parse_safetensors(const uint8_t* bytes, uint64_t size, const std::string& origin) {
  if (size < 8) fail(origin, fmt::format("file is {} bytes, too short for the 8-byte header length", size));
  SafetensorsHeader header;
  header.header_bytes = read_u64_le(bytes);
  if (header.header_bytes > kMaxHeaderBytes) {
    fail(origin, fmt::format("header length {} exceeds the {} byte limit", header.header_bytes, kMaxHeaderBytes));
  }
  if (header.header_bytes > size - 8) {
    fail(origin, fmt::format("header length {} runs past the end of the file ({} bytes): truncated file?",
                             header.header_bytes, size));
  }
  if (header.header_bytes < 2) fail(origin, fmt::format("header length {} is too short for a JSON object", header.header_bytes));
  header.data_offset = 8 + header.header_bytes;
  const uint8_t* text = bytes + 8;
  const size_t n = static_cast<size_t>(header.header_bytes);
  if (size_t bad = find_invalid_utf8(text, n); bad != std::string::npos) {
    fail(origin, fmt::format("header is not valid UTF-8 (byte {} of the header)", bad));
  }
  if (text[0] != '{') fail(origin, "header must be a JSON object starting with '{'");

  json doc = parse_strict_json(std::string_view(reinterpret_cast<const char*>(text), n), origin + ": header");
  if (!doc.is_object()) fail(origin, "header is not a JSON object");

  for (const auto& [key, value] : doc.items()) {
    if (key == "__metadata__") {
      if (!value.is_object()) fail(origin, "__metadata__ must be an object mapping strings to strings");
      for (const auto& [mk, mv] : value.items()) {
        if (!mv.is_string()) {
          fail(origin, fmt::format("__metadata__ value of '{}' must be a string, got {}", mk, mv.type_name()));
        }
        header.metadata.emplace(mk, mv.get<std::string>());
      }
      continue;
    }
    header.tensors.push_back(parse_entry(origin, key, value));
  }

  // Layout: every tensor inside the data section, none overlapping, no holes (HF's own loader
  // rejects holes and trailing bytes too).
  const uint64_t data_size = size - header.data_offset;
  std::sort(header.tensors.begin(), header.tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.data_begin != b.data_begin ? a.data_begin < b.data_begin : a.data_end < b.data_end;
  });
  uint64_t expected_begin = 0;
  const TensorInfo* previous = nullptr;
  for (const auto& t : header.tensors) {
    if (t.data_end > data_size) {
      fail_tensor(origin, t.name, fmt::format("data_offsets [{}, {}] lie outside the data section ({} bytes): "
                                              "truncated file?", t.data_begin, t.data_end, data_size));
    }
    if (t.data_begin < expected_begin) {
      fail_tensor(origin, t.name, fmt::format("data_offsets [{}, {}] overlap tensor '{}' [{}, {}]", t.data_begin,
                                              t.data_end, previous->name, previous->data_begin, previous->data_end));
    }
    if (t.data_begin > expected_begin) {
      fail_tensor(origin, t.name, fmt::format("data_offsets begin at {} leaving a gap of {} unused bytes after {}",
                                              t.data_begin, t.data_begin - expected_begin,
                                              previous ? "tensor '" + previous->name + "'" : "the header"));
    }
    expected_begin = t.data_end;
    previous = &t;
  }
  if (expected_begin != data_size) {
    fail(origin, fmt::format("data section has {} bytes but the tensors cover {}: {} trailing bytes", data_size,
                             expected_begin, data_size - expected_begin));
  }
  return header;
}

}  // namespace effarch::io
