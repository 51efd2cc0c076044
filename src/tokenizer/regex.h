#pragma once
// The pre-tokenizer regexes (GPT-2's, Llama-3's, any Split/Replace pattern) through PCRE2 with UTF
// and Unicode properties; HF `tokenizers` runs them with Oniguruma, whose syntax these patterns
// share (\p{L}, \p{N}, look-ahead, (?i:...)).

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace effarch::tokenizer {

class Regex {
 public:
  // A regex, or with `literal` a plain string to find. Throws FormatError("<where>: ...") when
  // PCRE2 rejects the pattern.
  Regex(std::string_view pattern, bool literal, const std::string& where);

  // Non-overlapping matches as byte ranges in valid UTF-8 `text`, left to right. An empty match
  // right after the previous match is skipped (the onig crate's find_iter rule).
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view text) const;

 private:
  struct Code;
  std::shared_ptr<const Code> code_;
};

}  // namespace effarch::tokenizer
