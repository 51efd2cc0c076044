#pragma once
// `effarch tokenize` as a library call: JSON lines in (strings, or id arrays to decode), one JSON
// line out per line in. The CLI (src/cli/cmd_tokenize.cpp) and the tokenizer parity test
// (tests/tokenizer/tokenizer_fixtures_test.cpp) both run it, so the parity test checks what the
// command prints.

#include <cstdio>
#include <istream>
#include <string>

#include <nlohmann/json.hpp>

#include "effarch/tokenizer/tokenizer.h"

namespace effarch::tokenizer {

struct JsonlOptions {
  bool decode = false;               // id arrays to text; otherwise strings to id arrays
  bool add_special_tokens = false;   // encoding: the post-processor's tokens (BOS/EOS)
  bool skip_special_tokens = false;  // decoding: leave special tokens out
  bool stream = false;               // decoding: the StreamDecoder's chunks, as a JSON array
};

// Throws UsageError for options that do not go together (--stream without --decode,
// --add-special-tokens with --decode), naming the CLI flags.
void check_jsonl_options(const JsonlOptions& options);

// Reads `in` line by line (errors name `name` and the line number: "in.jsonl:2: ...") and writes
// one compact JSON line per input line to `out`; output that is not valid UTF-8 is an error.
void tokenize_jsonl(const Tokenizer& tokenizer, const JsonlOptions& options, std::istream& in,
                    const std::string& name, std::FILE* out);

// {"kind", "vocab_size", "bos_id", "eos_id"} (null ids where there are none): `effarch tokenize --info`.
nlohmann::json tokenizer_info(const Tokenizer& tokenizer);

}  // namespace effarch::tokenizer
