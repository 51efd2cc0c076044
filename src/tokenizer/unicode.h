#pragma once
// UTF-8 and Unicode helpers for the tokenizers: decoding, Rust's from_utf8_lossy, the character
// classes HF `tokenizers` uses (Rust's char::is_whitespace, is_numeric, regex \w), and
// normalization through ICU.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace effarch::tokenizer::unicode {

// Byte length of the UTF-8 character whose lead byte is `lead` (1 for a stray byte).
inline size_t char_len(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead >> 5) == 0x6) return 2;
  if ((lead >> 4) == 0xE) return 3;
  if ((lead >> 3) == 0x1E) return 4;
  return 1;
}

// The code point at s[i] of valid UTF-8.
char32_t decode_at(std::string_view s, size_t i);
void append_utf8(std::string& out, char32_t cp);
std::string to_utf8(char32_t cp);

// Offset of the first byte that is not part of valid UTF-8, or npos.
size_t find_invalid_utf8(std::string_view s);
// Rust's String::from_utf8_lossy: each maximal invalid subsequence becomes one U+FFFD.
std::string from_utf8_lossy(std::string_view bytes);
inline constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

bool is_whitespace(char32_t c);   // White_Space (Rust char::is_whitespace, regex \s)
bool is_numeric(char32_t c);      // Nd, Nl, No (Rust char::is_numeric)
bool is_punctuation(char32_t c);  // ASCII punctuation or P* (HF Punctuation pre-tokenizer)
bool is_word(char32_t c);         // Rust regex \w: Alphabetic, M*, Nd, Pc, Join_Control
bool is_combining_mark(char32_t c);  // General_Category M* (HF StripAccents)

// Lowercase of one character (full mapping, no context: HF Lowercase maps char by char).
std::string lowercase(char32_t c);

enum class NormalForm { NFC, NFD, NFKC, NFKD };
// Normalizes `text`; `source_of[i]` is set to the byte offset in `text` that output byte i came
// from (the start of the changed span for changed text).
std::string normalize(std::string_view text, NormalForm form, std::vector<uint32_t>* source_of);

}  // namespace effarch::tokenizer::unicode
