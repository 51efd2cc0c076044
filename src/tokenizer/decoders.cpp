// Decoders of tokenizer.json: ByteLevel, Metaspace, ByteFallback, Fuse, Strip, Replace, BPEDecoder,
// Sequence. Each rewrites the list of token strings, as HF's decode_chain does.

#include <fmt/format.h>

#include "byte_level.h"
#include "components.h"
#include "effarch/common/error.h"
#include "regex.h"
#include "unicode.h"

namespace effarch::tokenizer {
namespace {

std::vector<char32_t> to_chars(const std::string& s) {
  std::vector<char32_t> chars;
  for (size_t i = 0; i < s.size(); i += unicode::char_len(static_cast<unsigned char>(s[i]))) chars.push_back(unicode::decode_at(s, i));
  return chars;
}

class SequenceDecoder final : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> steps) : steps_(std::move(steps)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (const auto& s : steps_) s->decode_chain(tokens);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> steps_;
};

// Characters back to bytes; a token with a character outside the alphabet (an added token such as
// <|begin_of_text|>) is kept as its UTF-8 bytes. Broken UTF-8 becomes U+FFFD.
class ByteLevelDecoder final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string bytes;
    for (const auto& t : tokens) {
      std::string mapped;
      bool all = true;
      for (size_t i = 0; i < t.size() && all; i += unicode::char_len(static_cast<unsigned char>(t[i]))) {
        const int b = byte_level_byte(unicode::decode_at(t, i));
        if (b < 0) all = false;
        else mapped += static_cast<char>(b);
      }
      bytes += all ? mapped : t;
    }
    tokens.assign(1, unicode::from_utf8_lossy(bytes));
  }
};

class MetaspaceDecoder final : public Decoder {
 public:
  MetaspaceDecoder(char32_t replacement, bool strip_first) : replacement_(replacement), strip_first_(strip_first) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::string out;
      const std::string& t = tokens[i];
      for (size_t k = 0; k < t.size();) {
        const size_t n = unicode::char_len(static_cast<unsigned char>(t[k]));
        if (unicode::decode_at(t, k) == replacement_) {
          // HF drops every replacement character of the first token, not only the leading one.
          if (!(i == 0 && strip_first_)) out += ' ';
        } else {
          out.append(t, k, n);
        }
        k += n;
      }
      tokens[i] = std::move(out);
    }
  }

 private:
  char32_t replacement_;
  bool strip_first_;
};

// Runs of <0xAB> tokens become the text of their bytes, or one U+FFFD per byte if not valid UTF-8.
class ByteFallbackDecoder final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    std::string bytes;
    size_t n_bytes = 0;
    auto flush = [&] {
      if (n_bytes == 0) return;
      if (unicode::find_invalid_utf8(bytes) == std::string::npos) {
        out.push_back(bytes);
      } else {
        for (size_t k = 0; k < n_bytes; ++k) out.emplace_back(unicode::kReplacement);
      }
      bytes.clear();
      n_bytes = 0;
    };
    for (auto& t : tokens) {
      int value = -1;
      if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>') value = parse_hex_byte(t[3], t[4]);
      if (value >= 0) {
        bytes += static_cast<char>(value);
        ++n_bytes;
      } else {
        flush();
        out.push_back(std::move(t));
      }
    }
    flush();
    tokens = std::move(out);
  }

 private:
  static int hex(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }
  static int parse_hex_byte(char hi, char lo) {
    const int h = hex(hi), l = hex(lo);
    return h < 0 || l < 0 ? -1 : h * 16 + l;
  }
};

class FuseDecoder final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string all;
    for (const auto& t : tokens) all += t;
    tokens.assign(1, std::move(all));
  }
};

// Removes up to `start` leading and `stop` trailing `content` characters of every token.
class StripDecoder final : public Decoder {
 public:
  StripDecoder(char32_t content, size_t start, size_t stop) : content_(content), start_(start), stop_(stop) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (auto& t : tokens) {
      const auto chars = to_chars(t);
      size_t begin = 0, end = chars.size();
      while (begin < start_ && begin < chars.size() && chars[begin] == content_) ++begin;
      for (size_t k = 0; k < stop_ && end > begin && chars[end - 1] == content_; ++k) --end;
      std::string out;
      for (size_t k = begin; k < end; ++k) unicode::append_utf8(out, chars[k]);
      t = std::move(out);
    }
  }

 private:
  char32_t content_;
  size_t start_, stop_;
};

class ReplaceDecoder final : public Decoder {
 public:
  ReplaceDecoder(Regex pattern, std::string content) : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (auto& t : tokens) {
      std::string out;
      size_t prev = 0;
      for (const auto& [s, e] : pattern_.find_all(t)) {
        out.append(t, prev, s - prev);
        out += content_;
        prev = e;
      }
      out.append(t, prev, std::string::npos);
      t = std::move(out);
    }
  }

 private:
  Regex pattern_;
  std::string content_;
};

// The end-of-word suffix becomes a space, except in the last token.
class BpeSuffixDecoder final : public Decoder {
 public:
  explicit BpeSuffixDecoder(std::string suffix) : suffix_(std::move(suffix)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (suffix_.empty()) continue;
      const std::string with = i + 1 == tokens.size() ? "" : " ";
      std::string out;
      size_t prev = 0, at;
      while ((at = tokens[i].find(suffix_, prev)) != std::string::npos) {
        out.append(tokens[i], prev, at - prev);
        out += with;
        prev = at + suffix_.size();
      }
      out.append(tokens[i], prev, std::string::npos);
      tokens[i] = std::move(out);
    }
  }

 private:
  std::string suffix_;
};

size_t get_count(const json& j, const char* key, const std::string& where) {
  const json& v = require_key(j, key, where);
  if (!v.is_number_unsigned()) throw FormatError(fmt::format("{}.{}: expected a count, got {}", where, key, v.dump()));
  return v.get<size_t>();
}

}  // namespace

std::unique_ptr<Decoder> parse_decoder(const json& j, const std::string& where) {
  const std::string type = component_type(j, where);
  if (type == "Sequence") {
    const json& list = require_key(j, "decoders", where);
    if (!list.is_array()) throw FormatError(fmt::format("{}.decoders: expected a list", where));
    std::vector<std::unique_ptr<Decoder>> steps;
    for (size_t i = 0; i < list.size(); ++i) steps.push_back(parse_decoder(list[i], fmt::format("{}.decoders[{}]", where, i)));
    return std::make_unique<SequenceDecoder>(std::move(steps));
  }
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "Metaspace") {
    bool strip_first = true;
    if (const auto scheme = get_optional_string(j, "prepend_scheme", where)) {
      if (*scheme != "always" && *scheme != "first" && *scheme != "never") {
        throw FormatError(fmt::format("{}.prepend_scheme: \"{}\" is not one of always, first, never", where, *scheme));
      }
      strip_first = *scheme != "never";
    } else if (j.contains("add_prefix_space") && j["add_prefix_space"] == false) {
      strip_first = false;
    }
    return std::make_unique<MetaspaceDecoder>(get_char(j, "replacement", where), strip_first);
  }
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Strip") {
    return std::make_unique<StripDecoder>(get_char(j, "content", where), get_count(j, "start", where), get_count(j, "stop", where));
  }
  if (type == "Replace") {
    return std::make_unique<ReplaceDecoder>(parse_pattern(require_key(j, "pattern", where), where + ".pattern"),
                                            get_string(j, "content", where));
  }
  if (type == "BPEDecoder") return std::make_unique<BpeSuffixDecoder>(get_optional_string(j, "suffix", where).value_or("</w>"));
  throw FormatError(fmt::format("{}: decoder type \"{}\" is not supported (supported: ByteLevel, Metaspace, ByteFallback, "
                                "Fuse, Strip, Replace, BPEDecoder, Sequence)",
                                where, type));
}

}  // namespace effarch::tokenizer
