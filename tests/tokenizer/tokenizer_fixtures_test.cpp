// The first half of the tokenizer parity check, run by tests/cli/cli_tokenize.sh (never by the
// unit-test listing): tools/make_tokenizer_fixtures.py has trained or copied the tokenizers and
// written what HF tokenizers and sentencepiece give (EFFARCH_TOKENIZER_FIXTURES names that
// folder); this test writes, for every fixture, the outputs `effarch tokenize` prints, through the
// same library call (effarch/tokenizer/jsonl.h), into <fixture>/out/. The script then compares
// them with the references (make_tokenizer_fixtures.py compare) and checks that the command
// itself prints the same files for two fixtures.
//
// One process for every fixture: the command, started seven times a fixture, spent nearly all of
// the test's time starting libtorch (0.6 s a run, about 2 s under the sanitizers).
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "effarch/tokenizer/jsonl.h"
#include "effarch/tokenizer/tokenizer.h"

namespace fs = std::filesystem;
using effarch::tokenizer::JsonlOptions;

namespace {

// Runs one `effarch tokenize` mode of `tok` on `input` into `output`, as the command does with
// `--input input > output`.
void run(const effarch::tokenizer::Tokenizer& tok, const JsonlOptions& options, const fs::path& input,
         const fs::path& output) {
  std::ifstream in(input, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + input.string());
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> out(std::fopen(output.c_str(), "wb"), std::fclose);
  if (!out) throw std::runtime_error("cannot write " + output.string());
  effarch::tokenizer::tokenize_jsonl(tok, options, in, input.string(), out.get());
}

}  // namespace

TEST(TokenizerFixtures, WriteWhatEffarchTokenizePrints) {
  const char* env = std::getenv("EFFARCH_TOKENIZER_FIXTURES");
  if (env == nullptr) GTEST_SKIP() << "EFFARCH_TOKENIZER_FIXTURES not set (run through ctest -R cli_tokenize)";
  const fs::path root(env);
  std::vector<fs::path> fixtures;
  for (const auto& entry : fs::directory_iterator(root)) {
    if (fs::exists(entry.path() / "info.json")) fixtures.push_back(entry.path());
  }
  std::sort(fixtures.begin(), fixtures.end());
  ASSERT_FALSE(fixtures.empty()) << "no fixture folders (with an info.json) in " << root;

  const fs::path strings = root / "strings.jsonl";
  for (const fs::path& dir : fixtures) {
    SCOPED_TRACE(dir.filename().string());
    try {
      const fs::path out = dir / "out";
      fs::create_directories(out);
      const auto tok = effarch::tokenizer::load_tokenizer(dir);
      const fs::path ids_special = dir / "expected_ids_special.jsonl";  // the reference's ids
      // JsonlOptions{decode, add_special_tokens, skip_special_tokens, stream}
      run(*tok, JsonlOptions{false, false, false, false}, strings, out / "ids.jsonl");
      run(*tok, JsonlOptions{false, true, false, false}, strings, out / "ids_special.jsonl");
      run(*tok, JsonlOptions{true, false, false, false}, ids_special, out / "decoded.jsonl");
      run(*tok, JsonlOptions{true, false, true, false}, ids_special, out / "decoded_skip.jsonl");
      run(*tok, JsonlOptions{true, false, false, true}, ids_special, out / "stream.jsonl");
      run(*tok, JsonlOptions{true, false, false, false}, out / "ids.jsonl", out / "roundtrip.jsonl");
      std::ofstream(out / "info.json", std::ios::binary) << effarch::tokenizer::tokenizer_info(*tok).dump() << "\n";
    } catch (const std::exception& e) {
      ADD_FAILURE() << dir << ": " << e.what();
    }
  }
}
