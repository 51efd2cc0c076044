// Round trips through the writer and the memory-mapped reader, dtype conversion and layout
// rules that need a real file (the broken-file corpus lives in bad_input_test.cpp).

#include <cstring>
#include <fstream>
#include <map>

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "../test_util.h"
#include "effarch/common/error.h"
#include "effarch/io/safetensors.h"

namespace effarch::io {
namespace {

using effarch::testing::TempDir;

std::string read_all(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

void write_all(const std::filesystem::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A hand-built file: header JSON + raw data.
std::string make_file(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  const uint64_t n = header.size();
  for (int k = 0; k < 8; ++k) out[k] = static_cast<char>((n >> (8 * k)) & 0xFF);
  return out + header + data;
}

TEST(Safetensors, RoundTripEveryDtype) {
  TempDir dir;
  std::map<std::string, at::Tensor> tensors = {
      {"f64", at::randn({3, 5}, at::kDouble)},
      {"f32", at::randn({2, 3, 4})},
      {"f16", at::randn({7}).to(at::kHalf)},
      {"bf16", at::randn({4, 4}).to(at::kBFloat16)},
      {"i64", at::arange(10, at::kLong)},
      {"i32", at::arange(6, at::kInt).reshape({2, 3})},
      {"i16", at::arange(5, at::kShort)},
      {"i8", at::arange(-3, 3, at::kChar)},
      {"u8", at::arange(9, at::kByte)},
      {"bool", at::arange(6).remainder(2).to(at::kBool)},
      {"scalar", at::tensor(3.5f).reshape({})},
      {"empty", at::zeros({0, 4})},
  };
  save_safetensors(dir / "t.safetensors", tensors, {{"format", "pt"}, {"note", "héllo"}});
  const auto file = SafetensorsFile::open(dir / "t.safetensors");
  EXPECT_EQ(file.tensors().size(), tensors.size());
  EXPECT_EQ(file.metadata().at("note"), "héllo");
  for (const auto& [name, expected] : tensors) {
    SCOPED_TRACE(name);
    at::Tensor got = file.view(name);
    EXPECT_EQ(got.scalar_type(), expected.scalar_type());
    EXPECT_EQ(got.sizes(), expected.sizes());
    EXPECT_TRUE(at::equal(got, expected));
  }
  // The writer aligns every tensor to its element size, so views are zero-copy.
  for (const auto& t : file.tensors()) EXPECT_EQ(t.data_begin % dtype_size(t.dtype), 0u) << t.name;
  // The header's dtype names, read as plain JSON (the reader shares the writer's table, so a pair
  // swapped in it, BF16 for F16, would round-trip): the safetensors format's names.
  const std::string bytes = read_all(dir / "t.safetensors");
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  const nlohmann::json header = nlohmann::json::parse(bytes.substr(8, n));
  const std::map<std::string, std::string> names = {
      {"f64", "F64"}, {"f32", "F32"}, {"f16", "F16"}, {"bf16", "BF16"}, {"i64", "I64"}, {"i32", "I32"},
      {"i16", "I16"}, {"i8", "I8"},   {"u8", "U8"},   {"bool", "BOOL"}, {"scalar", "F32"}, {"empty", "F32"}};
  for (const auto& [name, dtype] : names) EXPECT_EQ(header.at(name).at("dtype"), dtype) << name;
}

TEST(Safetensors, PythonCompatibleLayout) {
  // The header is padded with spaces to 8 bytes, and the data section holds nothing else.
  TempDir dir;
  save_safetensors(dir / "a.safetensors", {{"x", at::ones({3}, at::kHalf)}});
  const std::string bytes = read_all(dir / "a.safetensors");
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_EQ(bytes.size(), 8 + n + 6);
  EXPECT_NE(bytes.find("\"dtype\":\"F16\""), std::string::npos);
}

TEST(Safetensors, LoadConvertsDtype) {
  TempDir dir;
  const at::Tensor x = at::randn({4, 8});
  save_safetensors(dir / "a.safetensors", {{"x", x}});
  const auto file = SafetensorsFile::open(dir / "a.safetensors");
  const at::Tensor bf = file.load("x", at::kBFloat16, at::kCPU);
  EXPECT_EQ(bf.scalar_type(), at::kBFloat16);
  EXPECT_TRUE(at::equal(bf, x.to(at::kBFloat16)));
  // Same dtype on the CPU: a view on the mapping, no copy.
  const at::Tensor same = file.load("x", at::kFloat, at::kCPU);
  EXPECT_EQ(same.data_ptr(), file.view("x").data_ptr());
}

TEST(Safetensors, ViewsOutliveTheFileObject) {
  TempDir dir;
  const at::Tensor x = at::arange(100, at::kFloat);
  save_safetensors(dir / "a.safetensors", {{"x", x}});
  at::Tensor view;
  {
    const auto file = SafetensorsFile::open(dir / "a.safetensors");
    view = file.view("x");
  }
  EXPECT_TRUE(at::equal(view, x));  // the mapping lives as long as the tensor
}

TEST(Safetensors, UnalignedDataIsCopied) {
  // A legal file whose F32 tensor starts at an odd offset.
  TempDir dir;
  float values[2] = {1.5f, -2.0f};
  std::string data(1, 'x');
  data.append(reinterpret_cast<const char*>(values), sizeof(values));
  const std::string header =
      R"({"pad":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"v":{"dtype":"F32","shape":[2],"data_offsets":[1,9]}})";
  write_all(dir / "u.safetensors", make_file(header, data));
  const auto file = SafetensorsFile::open(dir / "u.safetensors");
  const at::Tensor v = file.view("v");
  EXPECT_FLOAT_EQ(v[0].item<float>(), 1.5f);
  EXPECT_FLOAT_EQ(v[1].item<float>(), -2.0f);
}

// F8 tensors come out as ATen's float8 types, so loading converts their values (once they were
// bytes, and a loaded weight held 56 for 1.0).
TEST(Safetensors, F8IsReadAsFloat8) {
  TempDir dir;
  const std::string header = R"({"q":{"dtype":"F8_E4M3","shape":[3],"data_offsets":[0,3]},)"
                             R"("r":{"dtype":"F8_E5M2","shape":[3],"data_offsets":[3,6]}})";
  write_all(dir / "f8.safetensors", make_file(header, std::string("\x38\x40\xc0\x3c\x40\xc0", 6)));
  const auto file = SafetensorsFile::open(dir / "f8.safetensors");
  EXPECT_EQ(file.info("q").dtype, DType::F8_E4M3);
  EXPECT_EQ(file.view("q").scalar_type(), at::kFloat8_e4m3fn);
  EXPECT_EQ(file.view("r").scalar_type(), at::kFloat8_e5m2);
  const at::Tensor want = at::tensor({1.0f, 2.0f, -2.0f});
  EXPECT_TRUE(at::equal(file.load("q", at::kFloat, at::kCPU), want));
  EXPECT_TRUE(at::equal(file.load("r", at::kFloat, at::kCPU), want));
  EXPECT_TRUE(at::equal(file.load("q", at::kBFloat16, at::kCPU), want.to(at::kBFloat16)));
}

TEST(Safetensors, ErrorsNameFileAndTensor) {
  TempDir dir;
  const std::string header = R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}})";
  write_all(dir / "bad.safetensors", make_file(header, std::string(12, '\0')));
  EXPECT_THROW_WITH(SafetensorsFile::open(dir / "bad.safetensors"), FormatError,
                    {"bad.safetensors", "tensor 'w'", "span 12 bytes", "needs 16 bytes"});
  const auto missing = dir / "nope.safetensors";
  EXPECT_THROW_WITH(SafetensorsFile::open(missing), FormatError, {"nope.safetensors", "cannot open"});
}

TEST(Safetensors, UnknownTensorNameIsCheckpointError) {
  TempDir dir;
  save_safetensors(dir / "a.safetensors", {{"x", at::ones({1})}});
  const auto file = SafetensorsFile::open(dir / "a.safetensors");
  EXPECT_THROW_WITH(file.view("y"), CheckpointError, {"a.safetensors", "'y'"});
}

TEST(SafetensorsWriter, RejectsMismatchAndIncompleteWrites) {
  TempDir dir;
  {
    SafetensorsWriter w(dir / "a.safetensors", {{"a", DType::F32, {2}}, {"b", DType::F32, {3}}});
    EXPECT_THROW_WITH(w.write("a", at::ones({3})), UsageError, {"'a'", "declared F32 [2]"});
    w.write("a", at::ones({2}));
    EXPECT_THROW_WITH(w.finish(), UsageError, {"'b'"});
  }
  // An unfinished writer leaves no file under the final name.
  EXPECT_FALSE(std::filesystem::exists(dir / "a.safetensors"));
  EXPECT_FALSE(std::filesystem::exists(dir / "a.safetensors.partial"));
}

TEST(SafetensorsWriter, SizeMatchesWrittenFile) {
  TempDir dir;
  std::vector<SafetensorsWriter::Entry> entries = {{"a", DType::BF16, {3, 5}}, {"b", DType::F32, {7}}};
  SafetensorsWriter w(dir / "s.safetensors", entries, {{"format", "pt"}});
  w.write("b", at::ones({7}));  // declaration order after sorting by element size: F32 first
  w.write("a", at::ones({3, 5}, at::kBFloat16));
  w.finish();
  EXPECT_EQ(std::filesystem::file_size(dir / "s.safetensors"), safetensors_file_size(entries, {{"format", "pt"}}));
}

}  // namespace
}  // namespace effarch::io
