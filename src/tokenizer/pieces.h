#pragma once
// A piece of the input on its way through normalizers, pre-tokenizers and the model: HF's
// NormalizedString reduced to what the ids depend on. Besides the text, each byte remembers the
// input offset of the character it came from, so a piece cut out of a normalized string knows
// where it starts in the input (Metaspace's prepend_scheme "first" asks exactly that).

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace effarch::tokenizer {

struct Piece {
  std::string text;
  std::vector<uint32_t> origin;  // per byte of `text`: input offset of the character it came from
  uint32_t start = 0;            // input offset where the piece starts (HF offsets_original().0)
  int32_t token = -1;            // >= 0: an added token, final (not normalized, split or tokenized)
};

// A piece of the input itself, at input offset `offset`.
Piece make_piece(std::string_view text, uint32_t offset);
// Bytes [begin, end) of `p`; the slice starts where its first byte came from.
Piece slice(const Piece& p, size_t begin, size_t end);

// Builds a rewritten text byte by byte, keeping the origins.
class PieceBuilder {
 public:
  explicit PieceBuilder(size_t reserve = 0) {
    text_.reserve(reserve);
    origin_.reserve(reserve);
  }
  void append(std::string_view bytes, uint32_t origin) {
    text_.append(bytes);
    origin_.insert(origin_.end(), bytes.size(), origin);
  }
  // Bytes [begin, end) of `p`, origins kept.
  void append_from(const Piece& p, size_t begin, size_t end) {
    text_.append(p.text, begin, end - begin);
    origin_.insert(origin_.end(), p.origin.begin() + begin, p.origin.begin() + end);
  }
  // Replaces the text of `p`, keeping its start.
  void finish(Piece& p) {
    p.text = std::move(text_);
    p.origin = std::move(origin_);
  }

 private:
  std::string text_;
  std::vector<uint32_t> origin_;
};

// A cover of a text by consecutive spans, each a match of a pattern or not.
struct Span {
  size_t begin;
  size_t end;
  bool match;
};
// From regex matches (sorted, non-overlapping) over a text of `size` bytes.
std::vector<Span> spans_from_matches(const std::vector<std::pair<size_t, size_t>>& matches, size_t size);
// Each character for which `pred` holds is a match of its own.
std::vector<Span> spans_from_predicate(std::string_view text, const std::function<bool(char32_t)>& pred);

enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };
SplitBehavior parse_split_behavior(const nlohmann::json& j, const std::string& where);

// HF NormalizedString::split: appends the non-empty pieces of `p` cut by `spans` to `out`.
void split_piece(const Piece& p, const std::vector<Span>& spans, SplitBehavior behavior, std::vector<Piece>& out);

}  // namespace effarch::tokenizer
