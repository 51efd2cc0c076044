#include "pieces.h"

#include <algorithm>

#include <fmt/format.h>

#include "effarch/common/error.h"
#include "unicode.h"

namespace effarch::tokenizer {

Piece make_piece(std::string_view text, uint32_t offset) {
  Piece p;
  p.text = std::string(text);
  p.origin.resize(text.size());
  // Every byte of a character carries the offset of the character's first byte.
  for (size_t i = 0; i < text.size();) {
    const size_t n = unicode::char_len(static_cast<unsigned char>(text[i]));
    for (size_t k = 0; k < n && i + k < text.size(); ++k) p.origin[i + k] = offset + static_cast<uint32_t>(i);
    i += n;
  }
  p.start = offset;
  return p;
}

Piece slice(const Piece& p, size_t begin, size_t end) {
  Piece s;
  s.text = p.text.substr(begin, end - begin);
  s.origin.assign(p.origin.begin() + begin, p.origin.begin() + end);
  s.start = begin < end ? p.origin[begin] : p.start;
  return s;
}

std::vector<Span> spans_from_matches(const std::vector<std::pair<size_t, size_t>>& matches, size_t size) {
  std::vector<Span> spans;
  if (size == 0) return {{0, 0, false}};
  size_t prev = 0;
  for (const auto& [s, e] : matches) {
    if (prev != s) spans.push_back({prev, s, false});
    spans.push_back({s, e, true});
    prev = e;
  }
  if (prev != size) spans.push_back({prev, size, false});
  return spans;
}

std::vector<Span> spans_from_predicate(std::string_view text, const std::function<bool(char32_t)>& pred) {
  std::vector<Span> spans;
  if (text.empty()) return {{0, 0, false}};
  size_t last = 0;
  for (size_t i = 0; i < text.size();) {
    const size_t n = unicode::char_len(static_cast<unsigned char>(text[i]));
    if (pred(unicode::decode_at(text, i))) {
      if (last < i) spans.push_back({last, i, false});
      spans.push_back({i, i + n, true});
      last = i + n;
    }
    i += n;
  }
  if (last < text.size()) spans.push_back({last, text.size(), false});
  return spans;
}

SplitBehavior parse_split_behavior(const nlohmann::json& j, const std::string& where) {
  if (j.is_string()) {
    const auto& s = j.get_ref<const std::string&>();
    if (s == "Removed") return SplitBehavior::Removed;
    if (s == "Isolated") return SplitBehavior::Isolated;
    if (s == "MergedWithPrevious") return SplitBehavior::MergedWithPrevious;
    if (s == "MergedWithNext") return SplitBehavior::MergedWithNext;
    if (s == "Contiguous") return SplitBehavior::Contiguous;
  }
  throw FormatError(fmt::format("{}: behavior {} is not one of Removed, Isolated, MergedWithPrevious, "
                                "MergedWithNext, Contiguous",
                                where, j.dump()));
}

void split_piece(const Piece& p, const std::vector<Span>& spans, SplitBehavior behavior, std::vector<Piece>& out) {
  // (begin, end, remove)
  struct Cut {
    size_t begin, end;
    bool remove;
  };
  std::vector<Cut> cuts;
  cuts.reserve(spans.size());
  bool previous_match = false;
  switch (behavior) {
    case SplitBehavior::Isolated:
      for (const auto& s : spans) cuts.push_back({s.begin, s.end, false});
      break;
    case SplitBehavior::Removed:
      for (const auto& s : spans) cuts.push_back({s.begin, s.end, s.match});
      break;
    case SplitBehavior::Contiguous:
      for (const auto& s : spans) {
        if (s.match == previous_match && !cuts.empty()) {
          cuts.back().end = s.end;
        } else {
          cuts.push_back({s.begin, s.end, false});
        }
        previous_match = s.match;
      }
      break;
    case SplitBehavior::MergedWithPrevious:
      for (const auto& s : spans) {
        if (s.match && !previous_match && !cuts.empty()) {
          cuts.back().end = s.end;
        } else {
          cuts.push_back({s.begin, s.end, false});
        }
        previous_match = s.match;
      }
      break;
    case SplitBehavior::MergedWithNext:
      for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
        if (it->match && !previous_match && !cuts.empty()) {
          cuts.back().begin = it->begin;
        } else {
          cuts.push_back({it->begin, it->end, false});
        }
        previous_match = it->match;
      }
      std::reverse(cuts.begin(), cuts.end());
      break;
  }
  for (const auto& c : cuts) {
    if (c.remove || c.begin >= c.end) continue;
    out.push_back(slice(p, c.begin, c.end));
  }
}

}  // namespace effarch::tokenizer
