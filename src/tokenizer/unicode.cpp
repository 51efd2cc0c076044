#include "unicode.h"

#include <unicode/bytestream.h>
#include <unicode/casemap.h>
#include <unicode/edits.h>
#include <unicode/normalizer2.h>
#include <unicode/uchar.h>

#include <fmt/format.h>

#include "effarch/common/error.h"

namespace effarch::tokenizer::unicode {

char32_t decode_at(std::string_view s, size_t i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  const size_t n = char_len(b0);
  if (n == 1 || i + n > s.size()) return b0;
  char32_t cp = b0 & (0x7F >> n);
  for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  return cp;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

std::string to_utf8(char32_t cp) {
  std::string s;
  append_utf8(s, cp);
  return s;
}

namespace {

// Length of the valid UTF-8 character at s[i], or 0 with *bad set to the length of the maximal
// invalid subpart (at least 1), following the Unicode "maximal subpart" rule Rust and Python use.
size_t valid_char_at(std::string_view s, size_t i, size_t* bad) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) return 1;
  size_t need;
  unsigned char lo = 0x80, hi = 0xBF;  // range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 1;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 2;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 3;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    *bad = 1;
    return 0;
  }
  for (size_t k = 1; k <= need; ++k) {
    if (i + k >= s.size()) {
      *bad = k;
      return 0;
    }
    const auto b = static_cast<unsigned char>(s[i + k]);
    const bool ok = k == 1 ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF);
    if (!ok) {
      *bad = k;
      return 0;
    }
  }
  return need + 1;
}

}  // namespace

size_t find_invalid_utf8(std::string_view s) {
  size_t i = 0, bad = 0;
  while (i < s.size()) {
    const size_t n = valid_char_at(s, i, &bad);
    if (n == 0) return i;
    i += n;
  }
  return std::string_view::npos;
}

std::string from_utf8_lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  size_t i = 0, bad = 0;
  while (i < bytes.size()) {
    const size_t n = valid_char_at(bytes, i, &bad);
    if (n > 0) {
      out.append(bytes.substr(i, n));
      i += n;
    } else {
      out.append(kReplacement);
      i += bad;
    }
  }
  return out;
}

bool is_whitespace(char32_t c) { return u_hasBinaryProperty(static_cast<UChar32>(c), UCHAR_WHITE_SPACE); }

bool is_numeric(char32_t c) {
  const auto t = u_charType(static_cast<UChar32>(c));
  return t == U_DECIMAL_DIGIT_NUMBER || t == U_LETTER_NUMBER || t == U_OTHER_NUMBER;
}

bool is_punctuation(char32_t c) {
  if (c < 0x80) return c > 0x20 && c < 0x7F && !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'));
  const int mask = U_MASK(u_charType(static_cast<UChar32>(c)));
  return (mask & U_GC_P_MASK) != 0;
}

bool is_word(char32_t c) {
  const auto cp = static_cast<UChar32>(c);
  if (u_hasBinaryProperty(cp, UCHAR_ALPHABETIC) || u_hasBinaryProperty(cp, UCHAR_JOIN_CONTROL)) return true;
  const int mask = U_MASK(u_charType(cp));
  return (mask & (U_GC_M_MASK | U_GC_ND_MASK | U_GC_PC_MASK)) != 0;
}

bool is_combining_mark(char32_t c) { return (U_MASK(u_charType(static_cast<UChar32>(c))) & U_GC_M_MASK) != 0; }

std::string lowercase(char32_t c) {
  if (c < 0x80) return std::string(1, static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c));
  const std::string in = to_utf8(c);
  std::string out;
  icu::StringByteSink<std::string> sink(&out);
  UErrorCode status = U_ZERO_ERROR;
  icu::CaseMap::utf8ToLower("", 0, icu::StringPiece(in.data(), static_cast<int32_t>(in.size())), sink, nullptr, status);
  if (U_FAILURE(status)) return in;
  return out;
}

std::string normalize(std::string_view text, NormalForm form, std::vector<uint32_t>* source_of) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* norm = nullptr;
  switch (form) {
    case NormalForm::NFC: norm = icu::Normalizer2::getNFCInstance(status); break;
    case NormalForm::NFD: norm = icu::Normalizer2::getNFDInstance(status); break;
    case NormalForm::NFKC: norm = icu::Normalizer2::getNFKCInstance(status); break;
    case NormalForm::NFKD: norm = icu::Normalizer2::getNFKDInstance(status); break;
  }
  if (U_FAILURE(status) || norm == nullptr) throw Error(fmt::format("ICU normalizer unavailable: {}", u_errorName(status)));
  std::string out;
  icu::StringByteSink<std::string> sink(&out);
  icu::Edits edits;
  norm->normalizeUTF8(0, icu::StringPiece(text.data(), static_cast<int32_t>(text.size())), sink, &edits, status);
  if (U_FAILURE(status)) throw Error(fmt::format("ICU normalization failed: {}", u_errorName(status)));
  if (source_of != nullptr) {
    source_of->assign(out.size(), 0);
    auto it = edits.getFineIterator();
    while (it.next(status)) {
      const auto src = static_cast<uint32_t>(it.sourceIndex());
      const auto dst = static_cast<size_t>(it.destinationIndex());
      for (int32_t k = 0; k < it.newLength(); ++k) {
        (*source_of)[dst + k] = it.hasChange() ? src : src + static_cast<uint32_t>(k);
      }
    }
  }
  return out;
}

}  // namespace effarch::tokenizer::unicode
