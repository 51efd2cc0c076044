// Pre-tokenizers of tokenizer.json: ByteLevel, Split, Metaspace, Sequence, Digits, Whitespace,
// WhitespaceSplit, Punctuation, BertPreTokenizer, CharDelimiterSplit.

#include <fmt/format.h>

#include "byte_level.h"
#include "components.h"
#include "effarch/common/error.h"
#include "regex.h"
#include "unicode.h"

namespace effarch::tokenizer {
namespace {

// GPT-2's pattern, which ByteLevel applies when use_regex is set.
constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// HF PreTokenizedString::split: `fn(piece, out)` splits each piece that is not an added token;
// empty results are dropped.
template <typename Fn>
void split_each(std::vector<Piece>& pieces, Fn fn) {
  std::vector<Piece> out;
  out.reserve(pieces.size() * 2);
  std::vector<Piece> parts;
  for (auto& p : pieces) {
    if (p.token >= 0) {
      out.push_back(std::move(p));
      continue;
    }
    parts.clear();
    fn(p, parts);
    for (auto& q : parts) {
      if (!q.text.empty()) out.push_back(std::move(q));
    }
  }
  pieces = std::move(out);
}

void split_by_predicate(std::vector<Piece>& pieces, bool (*pred)(char32_t), SplitBehavior behavior) {
  split_each(pieces, [&](const Piece& p, std::vector<Piece>& out) {
    split_piece(p, spans_from_predicate(p.text, pred), behavior, out);
  });
}

class SequencePreTokenizer final : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> steps) : steps_(std::move(steps)) {}
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    for (const auto& s : steps_) s->pre_tokenize(pieces);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> steps_;
};

class ByteLevelPreTokenizer final : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, bool use_regex, const std::string& where)
      : add_prefix_space_(add_prefix_space), use_regex_(use_regex), regex_(kGpt2Pattern, false, where) {}
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    split_each(pieces, [&](Piece& p, std::vector<Piece>& out) {
      if (add_prefix_space_ && !p.text.empty() && p.text[0] != ' ') {
        PieceBuilder b(p.text.size() + 1);
        b.append(" ", p.origin[0]);
        b.append_from(p, 0, p.text.size());
        b.finish(p);
      }
      if (use_regex_) {
        split_piece(p, spans_from_matches(regex_.find_all(p.text), p.text.size()), SplitBehavior::Isolated, out);
      } else {
        out.push_back(std::move(p));
      }
    });
    for (auto& p : pieces) {
      if (p.token < 0) byte_level_encode(p);
    }
  }

 private:
  bool add_prefix_space_;
  bool use_regex_;
  Regex regex_;
};

class SplitPreTokenizer final : public PreTokenizer {
 public:
  SplitPreTokenizer(Regex regex, SplitBehavior behavior, bool invert)
      : regex_(std::move(regex)), behavior_(behavior), invert_(invert) {}
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    split_each(pieces, [&](const Piece& p, std::vector<Piece>& out) {
      auto spans = spans_from_matches(regex_.find_all(p.text), p.text.size());
      if (invert_) {
        for (auto& s : spans) s.match = !s.match;
      }
      split_piece(p, spans, behavior_, out);
    });
  }

 private:
  Regex regex_;
  SplitBehavior behavior_;
  bool invert_;
};

enum class PrependScheme { Always, First, Never };

class MetaspacePreTokenizer final : public PreTokenizer {
 public:
  MetaspacePreTokenizer(char32_t replacement, PrependScheme scheme, bool split)
      : replacement_(replacement), str_(unicode::to_utf8(replacement)), scheme_(scheme), split_(split) {}
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    split_each(pieces, [&](Piece& p, std::vector<Piece>& out) {
      PieceBuilder b(p.text.size() + 8);
      const bool starts_with_replacement = p.text.compare(0, str_.size(), str_) == 0 ||
                                           (!p.text.empty() && p.text[0] == ' ');
      const bool prepend = !p.text.empty() && !starts_with_replacement &&
                           (scheme_ == PrependScheme::Always || (scheme_ == PrependScheme::First && p.start == 0));
      if (prepend) b.append(str_, p.origin[0]);
      for (size_t i = 0; i < p.text.size(); ++i) {
        if (p.text[i] == ' ') {
          b.append(str_, p.origin[i]);
        } else {
          b.append_from(p, i, i + 1);
        }
      }
      b.finish(p);
      if (split_) {
        const char32_t r = replacement_;
        split_piece(p, spans_from_predicate(p.text, [r](char32_t c) { return c == r; }), SplitBehavior::MergedWithNext, out);
      } else {
        out.push_back(std::move(p));
      }
    });
  }

 private:
  char32_t replacement_;
  std::string str_;
  PrependScheme scheme_;
  bool split_;
};

class CharSplitPreTokenizer final : public PreTokenizer {
 public:
  CharSplitPreTokenizer(bool (*pred)(char32_t), SplitBehavior behavior) : pred_(pred), behavior_(behavior) {}
  void pre_tokenize(std::vector<Piece>& pieces) const override { split_by_predicate(pieces, pred_, behavior_); }

 private:
  bool (*pred_)(char32_t);
  SplitBehavior behavior_;
};

class CharDelimiterPreTokenizer final : public PreTokenizer {
 public:
  explicit CharDelimiterPreTokenizer(char32_t delimiter) : delimiter_(delimiter) {}
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    const char32_t d = delimiter_;
    split_each(pieces, [&](const Piece& p, std::vector<Piece>& out) {
      split_piece(p, spans_from_predicate(p.text, [d](char32_t c) { return c == d; }), SplitBehavior::Removed, out);
    });
  }

 private:
  char32_t delimiter_;
};

// HF Whitespace: keeps the matches of \w+|[^\w\s]+, i.e. runs of word characters and runs of
// other non-space characters; spaces go.
class WhitespacePreTokenizer final : public PreTokenizer {
 public:
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    split_each(pieces, [&](const Piece& p, std::vector<Piece>& out) {
      enum Kind { kWord, kSpace, kOther };
      auto kind_at = [&](size_t i) {
        const char32_t c = unicode::decode_at(p.text, i);
        return unicode::is_word(c) ? kWord : unicode::is_whitespace(c) ? kSpace : kOther;
      };
      size_t i = 0;
      while (i < p.text.size()) {
        const Kind k = kind_at(i);
        size_t j = i;
        while (j < p.text.size() && kind_at(j) == k) j += unicode::char_len(static_cast<unsigned char>(p.text[j]));
        if (k != kSpace) out.push_back(slice(p, i, j));
        i = j;
      }
    });
  }
};

class BertPreTokenizer final : public PreTokenizer {
 public:
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    split_by_predicate(pieces, unicode::is_whitespace, SplitBehavior::Removed);
    split_by_predicate(pieces, unicode::is_punctuation, SplitBehavior::Isolated);
  }
};

PrependScheme parse_prepend_scheme(const json& j, const std::string& where) {
  const auto scheme = get_optional_string(j, "prepend_scheme", where);
  const auto add_prefix_space = j.contains("add_prefix_space") && j["add_prefix_space"].is_boolean()
                                    ? std::optional<bool>(j["add_prefix_space"].get<bool>())
                                    : std::nullopt;
  if (!scheme) return add_prefix_space == std::optional<bool>(false) ? PrependScheme::Never : PrependScheme::Always;
  if (*scheme == "always") return PrependScheme::Always;
  if (*scheme == "first") return PrependScheme::First;
  if (*scheme == "never") return PrependScheme::Never;
  throw FormatError(fmt::format("{}.prepend_scheme: \"{}\" is not one of always, first, never", where, *scheme));
}

}  // namespace

std::unique_ptr<PreTokenizer> parse_pre_tokenizer(const json& j, const std::string& where) {
  const std::string type = component_type(j, where);
  if (type == "Sequence") {
    const json& list = require_key(j, "pretokenizers", where);
    if (!list.is_array()) throw FormatError(fmt::format("{}.pretokenizers: expected a list", where));
    std::vector<std::unique_ptr<PreTokenizer>> steps;
    for (size_t i = 0; i < list.size(); ++i) {
      steps.push_back(parse_pre_tokenizer(list[i], fmt::format("{}.pretokenizers[{}]", where, i)));
    }
    return std::make_unique<SequencePreTokenizer>(std::move(steps));
  }
  if (type == "ByteLevel") {
    return std::make_unique<ByteLevelPreTokenizer>(get_bool(j, "add_prefix_space", true, where),
                                                   get_bool(j, "use_regex", true, where), where);
  }
  if (type == "Split") {
    return std::make_unique<SplitPreTokenizer>(parse_pattern(require_key(j, "pattern", where), where + ".pattern"),
                                               parse_split_behavior(require_key(j, "behavior", where), where + ".behavior"),
                                               get_bool(j, "invert", false, where));
  }
  if (type == "Metaspace") {
    return std::make_unique<MetaspacePreTokenizer>(get_char(j, "replacement", where), parse_prepend_scheme(j, where),
                                                   get_bool(j, "split", true, where));
  }
  if (type == "Digits") {
    return std::make_unique<CharSplitPreTokenizer>(unicode::is_numeric, get_bool(j, "individual_digits", false, where)
                                                                            ? SplitBehavior::Isolated
                                                                            : SplitBehavior::Contiguous);
  }
  if (type == "Whitespace") return std::make_unique<WhitespacePreTokenizer>();
  if (type == "WhitespaceSplit") return std::make_unique<CharSplitPreTokenizer>(unicode::is_whitespace, SplitBehavior::Removed);
  if (type == "Punctuation") {
    const SplitBehavior behavior = j.contains("behavior") ? parse_split_behavior(j["behavior"], where + ".behavior")
                                                          : SplitBehavior::Isolated;
    return std::make_unique<CharSplitPreTokenizer>(unicode::is_punctuation, behavior);
  }
  if (type == "BertPreTokenizer") return std::make_unique<BertPreTokenizer>();
  if (type == "CharDelimiterSplit") return std::make_unique<CharDelimiterPreTokenizer>(get_char(j, "delimiter", where));
  throw FormatError(fmt::format("{}: pre-tokenizer type \"{}\" is not supported (supported: ByteLevel, Split, "
                                "Metaspace, Sequence, Digits, Whitespace, WhitespaceSplit, Punctuation, "
                                "BertPreTokenizer, CharDelimiterSplit)",
                                where, type));
}

}  // namespace effarch::tokenizer
