// Broken inputs: the corpus written by tools/make_bad_corpus.py (tests/corpus/expected_errors.json
// says what each case must fail with), plus every truncation and single-byte corruption of a valid
// file. Every failure must be an effarch::Error naming the file; nothing may crash.

#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "../test_util.h"
#include "effarch/common/error.h"
#include "effarch/io/checkpoint.h"
#include "effarch/io/safetensors.h"

namespace effarch::io {
namespace {

namespace fs = std::filesystem;
using effarch::testing::TempDir;

struct CorpusCase {
  std::string path;   // relative to tests/corpus
  std::string kind;   // file, folder, file_ok, folder_ok
  std::string error;  // substring the message must contain (failing kinds)
  std::string type;   // FormatError or CheckpointError (failing kinds)
};

fs::path corpus_dir() { return effarch::testing::tests_dir() / "corpus"; }

// The cases in tests/corpus/expected_errors.json (none when it is missing).
std::vector<CorpusCase> load_cases() {
  std::vector<CorpusCase> out;
  std::ifstream in(corpus_dir() / "expected_errors.json");
  if (!in) return out;
  for (const auto& c : nlohmann::json::parse(in)) {
    out.push_back({c.at("path").get<std::string>(), c.at("kind").get<std::string>(), c.value("error", ""),
                   c.value("type", "")});
  }
  return out;
}

const std::vector<CorpusCase>& cases() {
  static const std::vector<CorpusCase> all = load_cases();
  return all;
}

std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

void write_all(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Sum of a tensor's bytes: reads every byte the view covers.
uint64_t byte_sum(const at::Tensor& t) {
  if (t.numel() == 0) return 0;
  const at::Tensor c = t.contiguous();
  const auto* p = static_cast<const uint8_t*>(c.data_ptr());
  uint64_t sum = 0;
  for (size_t i = 0; i < c.nbytes(); ++i) sum += p[i];
  return sum;
}

// Opens a file and reads every tensor; checks each view against the raw bytes of the file.
void check_file_readable(const fs::path& path) {
  const auto file = SafetensorsFile::open(path);
  const std::string raw = read_all(path);
  ASSERT_GE(raw.size(), 8u);
  uint64_t header_bytes = 0;
  for (int k = 7; k >= 0; --k) header_bytes = (header_bytes << 8) | static_cast<uint8_t>(raw[k]);
  for (const auto& t : file.tensors()) {
    SCOPED_TRACE("tensor " + t.name);
    const at::Tensor v = file.view(t.name);
    EXPECT_EQ(v.sizes().vec(), t.shape);
    EXPECT_EQ(static_cast<uint64_t>(v.numel()), t.numel);
    ASSERT_EQ(v.nbytes(), t.nbytes());
    uint64_t expected = 0;
    for (uint64_t i = 0; i < t.nbytes(); ++i) expected += static_cast<uint8_t>(raw[8 + header_bytes + t.data_begin + i]);
    EXPECT_EQ(byte_sum(v), expected);
  }
}

void check_folder_readable(const fs::path& dir) {
  const auto store = TensorStore::open_folder(dir);
  EXPECT_GT(store.size(), 0u);
  for (const auto& name : store.names()) {
    SCOPED_TRACE("tensor " + name);
    const at::Tensor v = store.view(name);
    EXPECT_EQ(static_cast<uint64_t>(v.numel()), store.find(name)->numel);
    (void)byte_sum(v);
  }
}

// Runs `open`; it must throw an effarch::Error of `type` whose message contains `fragment` and `path`.
template <typename Open>
void expect_error(Open&& open, const std::string& type, const std::string& fragment, const std::string& path) {
  try {
    open();
    ADD_FAILURE() << "opened without error; expected " << type << " containing: " << fragment;
  } catch (const Error& e) {
    const std::string msg = e.what();
    if (type == "FormatError") {
      EXPECT_NE(dynamic_cast<const FormatError*>(&e), nullptr) << "not a FormatError: " << msg;
    } else if (type == "CheckpointError") {
      EXPECT_NE(dynamic_cast<const CheckpointError*>(&e), nullptr) << "not a CheckpointError: " << msg;
    } else {
      ADD_FAILURE() << "unknown error type '" << type << "' in expected_errors.json";
    }
    EXPECT_NE(msg.find(fragment), std::string::npos) << "message: " << msg << "\nlacks: " << fragment;
    EXPECT_NE(msg.find(path), std::string::npos) << "message: " << msg << "\ndoes not name: " << path;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "non-effarch exception: " << e.what();
  }
}

void run_case(const CorpusCase& c) {
  const fs::path path = corpus_dir() / c.path;
  ASSERT_TRUE(fs::exists(path)) << path;
  if (c.kind == "file") {
    expect_error([&] { SafetensorsFile::open(path); }, c.type, c.error, path.string());
  } else if (c.kind == "folder") {
    expect_error([&] { TensorStore::open_folder(path); }, c.type, c.error, path.string());
  } else if (c.kind == "file_ok") {
    try {
      check_file_readable(path);
    } catch (const std::exception& e) {
      ADD_FAILURE() << "valid file failed: " << e.what();
    }
  } else if (c.kind == "folder_ok") {
    try {
      check_folder_readable(path);
    } catch (const std::exception& e) {
      ADD_FAILURE() << "valid folder failed: " << e.what();
    }
  } else {
    ADD_FAILURE() << "unknown kind '" << c.kind << "'";
  }
}

// One test for the whole corpus (each ctest entry starts a process that loads libtorch, ~1 s);
// a failure names its case through the trace.
TEST(BadInput, Corpus) {
  const auto& all = cases();
  ASSERT_FALSE(all.empty()) << "cannot read " << corpus_dir() / "expected_errors.json"
                            << " (run python3 tools/make_bad_corpus.py)";
  std::map<std::string, int> kinds;
  for (const auto& c : all) {
    SCOPED_TRACE(c.kind + " " + c.path);
    ++kinds[c.kind];
    if (c.kind == "file" || c.kind == "folder") {
      EXPECT_FALSE(c.error.empty());
      EXPECT_FALSE(c.type.empty());
    }
    run_case(c);
  }
  EXPECT_GE(kinds["file"], 50);
  EXPECT_GE(kinds["folder"], 10);
  EXPECT_GE(kinds["file_ok"], 5);
  EXPECT_GE(kinds["folder_ok"], 1);
}

// Git cannot track an empty folder, so this case is made here.
TEST(BadInput, EmptyFolder) {
  TempDir dir;
  expect_error([&] { TensorStore::open_folder(dir.path()); }, "CheckpointError", "no model.safetensors",
               dir.path().string());
  fs::create_directories(dir / "model.safetensors");  // a folder with the shard's name is not a shard
  expect_error([&] { TensorStore::open_folder(dir.path()); }, "FormatError", "not a regular file",
               (dir / "model.safetensors").string());
  // TempDir's remove_all crashes on nested folders when libtorch.so is loaded (it exports its own
  // std::filesystem::remove_all), so remove the inner folder here.
  fs::remove(dir / "model.safetensors");
}

TEST(BadInput, MissingFile) {
  TempDir dir;
  expect_error([&] { SafetensorsFile::open(dir / "absent.safetensors"); }, "FormatError", "cannot open",
               (dir / "absent.safetensors").string());
  expect_error([&] { TensorStore::open_folder(dir / "absent"); }, "CheckpointError", "not a checkpoint folder",
               (dir / "absent").string());
}

// A small valid file: three tensors of different dtypes and some metadata.
std::string small_valid_file(const TempDir& dir) {
  const fs::path path = dir / "valid.safetensors";
  save_safetensors(path,
                   {{"a", at::arange(3, at::kFloat)},
                    {"b", at::ones({2, 2}, at::kHalf)},
                    {"c", at::tensor({7}, at::kLong)}},
                   {{"format", "pt"}});
  return read_all(path);
}

TEST(BadInput, TruncatedAtEveryLength) {
  TempDir dir;
  const std::string bytes = small_valid_file(dir);
  ASSERT_GT(bytes.size(), 100u);
  check_file_readable(dir / "valid.safetensors");
  const fs::path path = dir / "cut.safetensors";
  for (size_t len = 0; len < bytes.size(); ++len) {
    SCOPED_TRACE("length " + std::to_string(len));
    write_all(path, bytes.substr(0, len));
    try {
      SafetensorsFile::open(path);
      ADD_FAILURE() << "a file cut to " << len << " of " << bytes.size() << " bytes opened";
    } catch (const FormatError& e) {
      EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos) << e.what();
    } catch (const std::exception& e) {
      ADD_FAILURE() << "not a FormatError: " << e.what();
    }
  }
}

TEST(BadInput, CorruptedHeaderBytes) {
  TempDir dir;
  const std::string bytes = small_valid_file(dir);
  uint64_t header_bytes = 0;
  std::memcpy(&header_bytes, bytes.data(), 8);  // little-endian host
  ASSERT_LT(8 + header_bytes, bytes.size());
  const fs::path path = dir / "flipped.safetensors";
  int opened = 0, rejected = 0;
  for (size_t pos = 0; pos < 8 + header_bytes; ++pos) {
    for (const uint8_t mask : {0x01, 0x02, 0x20, 0x80, 0xFF}) {
      SCOPED_TRACE("byte " + std::to_string(pos) + " ^ " + std::to_string(mask));
      std::string corrupt = bytes;
      corrupt[pos] = static_cast<char>(static_cast<uint8_t>(corrupt[pos]) ^ mask);
      write_all(path, corrupt);
      try {
        const auto file = SafetensorsFile::open(path);
        for (const auto& t : file.tensors()) (void)byte_sum(file.view(t.name));
        ++opened;
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos) << e.what();
        ++rejected;
      } catch (const std::exception& e) {
        ADD_FAILURE() << "non-effarch exception: " << e.what();
      }
    }
  }
  EXPECT_GT(rejected, 0);
  // Some flips keep the file valid (a letter of a metadata value, a padding space to a tab).
  EXPECT_GT(opened, 0);
}

}  // namespace
}  // namespace effarch::io
