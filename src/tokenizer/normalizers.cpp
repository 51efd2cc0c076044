// Normalizers of tokenizer.json: Sequence, Prepend, Replace, NFC/NFD/NFKC/NFKD (ICU), Lowercase,
// Strip, StripAccents, ByteLevel.

#include <fmt/format.h>

#include "byte_level.h"
#include "components.h"
#include "effarch/common/error.h"
#include "regex.h"
#include "unicode.h"

namespace effarch::tokenizer {
namespace {

class SequenceNormalizer final : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> steps) : steps_(std::move(steps)) {}
  void normalize(Piece& p) const override {
    for (const auto& s : steps_) s->normalize(p);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> steps_;
};

class PrependNormalizer final : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prefix) : prefix_(std::move(prefix)) {}
  void normalize(Piece& p) const override {
    if (p.text.empty()) return;
    PieceBuilder b(p.text.size() + prefix_.size());
    b.append(prefix_, p.origin[0]);
    b.append_from(p, 0, p.text.size());
    b.finish(p);
  }

 private:
  std::string prefix_;
};

class ReplaceNormalizer final : public Normalizer {
 public:
  ReplaceNormalizer(Regex pattern, std::string content) : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void normalize(Piece& p) const override {
    const auto matches = pattern_.find_all(p.text);
    if (matches.empty()) return;
    PieceBuilder b(p.text.size());
    size_t prev = 0;
    for (const auto& [s, e] : matches) {
      b.append_from(p, prev, s);
      if (!content_.empty()) b.append(content_, s < p.origin.size() ? p.origin[s] : p.start);
      prev = e;
    }
    b.append_from(p, prev, p.text.size());
    b.finish(p);
  }

 private:
  Regex pattern_;
  std::string content_;
};

class UnicodeNormalizer final : public Normalizer {
 public:
  explicit UnicodeNormalizer(unicode::NormalForm form) : form_(form) {}
  void normalize(Piece& p) const override {
    std::vector<uint32_t> source_of;
    std::string text = unicode::normalize(p.text, form_, &source_of);
    if (text == p.text) return;
    std::vector<uint32_t> origin(text.size());
    for (size_t i = 0; i < text.size(); ++i) origin[i] = source_of[i] < p.origin.size() ? p.origin[source_of[i]] : p.start;
    p.text = std::move(text);
    p.origin = std::move(origin);
  }

 private:
  unicode::NormalForm form_;
};

// Maps every character through `fn` (which returns its replacement, possibly empty).
template <typename Fn>
void map_chars(Piece& p, Fn fn) {
  PieceBuilder b(p.text.size());
  for (size_t i = 0; i < p.text.size();) {
    const size_t n = unicode::char_len(static_cast<unsigned char>(p.text[i]));
    b.append(fn(unicode::decode_at(p.text, i), std::string_view(p.text).substr(i, n)), p.origin[i]);
    i += n;
  }
  b.finish(p);
}

class LowercaseNormalizer final : public Normalizer {
 public:
  void normalize(Piece& p) const override {
    map_chars(p, [](char32_t c, std::string_view) { return unicode::lowercase(c); });
  }
};

class StripAccentsNormalizer final : public Normalizer {
 public:
  void normalize(Piece& p) const override {
    map_chars(p, [](char32_t c, std::string_view bytes) {
      return unicode::is_combining_mark(c) ? std::string() : std::string(bytes);
    });
  }
};

class StripNormalizer final : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  void normalize(Piece& p) const override {
    size_t begin = 0, end = p.text.size();
    if (left_) {
      while (begin < end && unicode::is_whitespace(unicode::decode_at(p.text, begin))) {
        begin += unicode::char_len(static_cast<unsigned char>(p.text[begin]));
      }
    }
    if (right_) {
      while (end > begin) {
        size_t k = end - 1;
        while (k > begin && (static_cast<unsigned char>(p.text[k]) & 0xC0) == 0x80) --k;
        if (!unicode::is_whitespace(unicode::decode_at(p.text, k))) break;
        end = k;
      }
    }
    if (begin == 0 && end == p.text.size()) return;
    PieceBuilder b(end - begin);
    b.append_from(p, begin, end);
    b.finish(p);
  }

 private:
  bool left_, right_;
};

class ByteLevelNormalizer final : public Normalizer {
 public:
  void normalize(Piece& p) const override { byte_level_encode(p); }
};

unicode::NormalForm normal_form(const std::string& type) {
  if (type == "NFC") return unicode::NormalForm::NFC;
  if (type == "NFD") return unicode::NormalForm::NFD;
  if (type == "NFKC") return unicode::NormalForm::NFKC;
  return unicode::NormalForm::NFKD;
}

}  // namespace

std::unique_ptr<Normalizer> parse_normalizer(const json& j, const std::string& where) {
  const std::string type = component_type(j, where);
  if (type == "Sequence") {
    const json& list = require_key(j, "normalizers", where);
    if (!list.is_array()) throw FormatError(fmt::format("{}.normalizers: expected a list", where));
    std::vector<std::unique_ptr<Normalizer>> steps;
    for (size_t i = 0; i < list.size(); ++i) steps.push_back(parse_normalizer(list[i], fmt::format("{}.normalizers[{}]", where, i)));
    return std::make_unique<SequenceNormalizer>(std::move(steps));
  }
  if (type == "Prepend") return std::make_unique<PrependNormalizer>(get_string(j, "prepend", where));
  if (type == "Replace") {
    return std::make_unique<ReplaceNormalizer>(parse_pattern(require_key(j, "pattern", where), where + ".pattern"),
                                               get_string(j, "content", where));
  }
  if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD") {
    return std::make_unique<UnicodeNormalizer>(normal_form(type));
  }
  if (type == "Lowercase") return std::make_unique<LowercaseNormalizer>();
  if (type == "Strip") {
    return std::make_unique<StripNormalizer>(get_bool(j, "strip_left", true, where), get_bool(j, "strip_right", true, where));
  }
  if (type == "StripAccents") return std::make_unique<StripAccentsNormalizer>();
  if (type == "ByteLevel") return std::make_unique<ByteLevelNormalizer>();
  throw FormatError(fmt::format("{}: normalizer type \"{}\" is not supported (supported: Sequence, Prepend, Replace, "
                                "NFC, NFD, NFKC, NFKD, Lowercase, Strip, StripAccents, ByteLevel)",
                                where, type));
}

}  // namespace effarch::tokenizer
