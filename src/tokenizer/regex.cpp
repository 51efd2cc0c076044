#include "regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <fmt/format.h>

#include "effarch/common/error.h"
#include "unicode.h"

namespace effarch::tokenizer {

struct Regex::Code {
  pcre2_code* code = nullptr;
  ~Code() { pcre2_code_free(code); }
};

namespace {

std::string pcre2_message(int error) {
  PCRE2_UCHAR buf[256];
  const int n = pcre2_get_error_message(error, buf, sizeof(buf));
  return n < 0 ? fmt::format("PCRE2 error {}", error) : std::string(reinterpret_cast<const char*>(buf), n);
}

// Oniguruma's classes, as HF `tokenizers` sees them, written out for PCRE2 (whose UCP \s also
// takes U+180E and whose \w is L|N|_). Onig's \w is Alphabetic|M|Nd|Pc plus the Latin-1 number
// signs ² ³ ¹ ¼ ½ ¾ of its legacy table; \h is a hex digit.
constexpr std::string_view kSpaceItems = R"(\t-\r\x{20}\x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000})";
constexpr std::string_view kWordItems = R"(\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\x{B2}\x{B3}\x{B9}\x{BC}-\x{BE})";
constexpr std::string_view kHexItems = "0-9a-fA-F";

// Rewrites \s \S \w \W \h \H of an Oniguruma pattern. Inside a character class the positive
// forms are spliced in; a negated form inside a class (rare) is left to PCRE2.
std::string translate_onig(std::string_view p) {
  std::string out;
  out.reserve(p.size() + 64);
  bool in_class = false;
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char d = p[i + 1];
      std::string_view items;
      if (d == 's' || d == 'S') items = kSpaceItems;
      if (d == 'w' || d == 'W') items = kWordItems;
      if (d == 'h' || d == 'H') items = kHexItems;
      const bool negated = d == 'S' || d == 'W' || d == 'H';
      if (!items.empty() && !(in_class && negated)) {
        if (in_class) {
          out += items;
        } else {
          out += negated ? "[^" : "[";
          out += items;
          out += ']';
        }
      } else {
        out += c;
        out += d;
      }
      ++i;
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out += c;
      if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
      if (i + 1 < p.size() && p[i + 1] == ']') out += p[++i];  // a leading ] is a literal
      continue;
    }
    if (in_class && c == '[' && i + 1 < p.size() && p[i + 1] == ':') {  // POSIX [:alpha:]
      const size_t end = p.find(":]", i + 2);
      if (end != std::string_view::npos) {
        out.append(p.substr(i, end + 2 - i));
        i = end + 1;
        continue;
      }
    }
    if (in_class && c == ']') in_class = false;
    out += c;
  }
  return out;
}

}  // namespace

Regex::Regex(std::string_view pattern, bool literal, const std::string& where) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  // PCRE2_LITERAL admits UTF but not UCP (which only matters to classes anyway).
  const uint32_t options = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
  const std::string translated = literal ? std::string(pattern) : translate_onig(pattern);
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(), options, &error,
                                   &offset, nullptr);
  if (code == nullptr) {
    throw FormatError(fmt::format("{}: invalid regex '{}': {} at offset {}", where, pattern, pcre2_message(error), offset));
  }
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // the interpreter runs it if JIT is unavailable
  auto c = std::make_shared<Code>();
  c->code = code;
  code_ = std::move(c);
}

std::vector<std::pair<size_t, size_t>> Regex::find_all(std::string_view text) const {
  std::vector<std::pair<size_t, size_t>> matches;
  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> data(
      pcre2_match_data_create_from_pattern(code_->code, nullptr), &pcre2_match_data_free);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t last_end = 0;
  bool have_last = false;
  size_t last_match_end = 0;
  while (last_end <= text.size()) {
    const int rc = pcre2_match(code_->code, subject, text.size(), last_end, PCRE2_NO_UTF_CHECK, data.get(), nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) throw Error(fmt::format("regex match failed: {}", pcre2_message(rc)));
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(data.get());
    const size_t s = ov[0], e = ov[1];
    if (s == e && have_last && last_match_end == e) {
      last_end += last_end < text.size() ? unicode::char_len(static_cast<unsigned char>(text[last_end])) : 1;
      continue;
    }
    last_end = e;
    have_last = true;
    last_match_end = e;
    matches.emplace_back(s, e);
  }
  return matches;
}

}  // namespace effarch::tokenizer
