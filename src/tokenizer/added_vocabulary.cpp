#include "added_vocabulary.h"

#include <algorithm>

#include "unicode.h"

namespace effarch::tokenizer {
namespace {

// The Rust regexes of HF's single_word/lstrip/rstrip checks: \w$, ^\w, \s*$, ^\s*.
bool ends_with_word(std::string_view s) {
  if (s.empty()) return false;
  size_t k = s.size() - 1;
  while (k > 0 && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
  return unicode::is_word(unicode::decode_at(s, k));
}
bool starts_with_word(std::string_view s) { return !s.empty() && unicode::is_word(unicode::decode_at(s, 0)); }
size_t trailing_space_start(std::string_view s) {
  size_t end = s.size();
  while (end > 0) {
    size_t k = end - 1;
    while (k > 0 && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
    if (!unicode::is_whitespace(unicode::decode_at(s, k))) break;
    end = k;
  }
  return end;
}
size_t leading_space_length(std::string_view s) {
  size_t i = 0;
  while (i < s.size() && unicode::is_whitespace(unicode::decode_at(s, i))) i += unicode::char_len(static_cast<unsigned char>(s[i]));
  return i;
}

}  // namespace

void AddedVocabulary::Trie::insert(std::string_view s, int32_t token) {
  int32_t node = 0;
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    auto& children = nodes[node].children;
    auto it = std::lower_bound(children.begin(), children.end(), std::make_pair(c, INT32_MIN));
    if (it != children.end() && it->first == c) {
      node = it->second;
    } else {
      const auto next = static_cast<int32_t>(nodes.size());
      children.insert(it, {c, next});
      nodes.emplace_back();
      node = next;
    }
  }
  nodes[node].token = token;
}

std::pair<int32_t, size_t> AddedVocabulary::Trie::longest_at(std::string_view text, size_t pos) const {
  std::pair<int32_t, size_t> best{-1, pos};
  int32_t node = 0;
  for (size_t i = pos; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    const auto& children = nodes[node].children;
    auto it = std::lower_bound(children.begin(), children.end(), std::make_pair(c, INT32_MIN));
    if (it == children.end() || it->first != c) break;
    node = it->second;
    if (nodes[node].token >= 0) best = {nodes[node].token, i + 1};
  }
  return best;
}

AddedVocabulary::AddedVocabulary(std::vector<AddedToken> tokens, const Normalizer* normalizer) {
  for (auto& t : tokens) {
    if (t.content.empty()) continue;
    const auto existing = by_content_.find(t.content);
    if (existing != by_content_.end()) {
      // HF keeps one entry per content: the later one wins.
      tokens_[by_id_[existing->second]] = t;
    } else {
      by_id_[t.id] = tokens_.size();
      by_content_[t.content] = t.id;
      tokens_.push_back(t);
    }
    if (t.special) special_contents_.insert(t.content);
  }
  for (size_t i = 0; i < tokens_.size(); ++i) {
    const auto& t = tokens_[i];
    if (t.normalized) {
      std::string form = t.content;
      if (normalizer != nullptr) {
        Piece p = make_piece(t.content, 0);
        normalizer->normalize(p);
        form = p.text;
      }
      if (form != t.content) normalized_form_[t.id] = form;
      if (!form.empty()) normalized_trie_.insert(form, static_cast<int32_t>(i));
    } else {
      raw_trie_.insert(t.content, static_cast<int32_t>(i));
    }
  }
}

const AddedToken* AddedVocabulary::find(int32_t id) const {
  const auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &tokens_[it->second];
}

std::optional<int32_t> AddedVocabulary::token_to_id(const std::string& content) const {
  const auto it = by_content_.find(content);
  if (it == by_content_.end()) return std::nullopt;
  return it->second;
}

const std::string& AddedVocabulary::token_string(int32_t id) const {
  const auto it = normalized_form_.find(id);
  return it != normalized_form_.end() ? it->second : tokens_[by_id_.at(id)].content;
}

std::vector<AddedVocabulary::Match> AddedVocabulary::find_matches(std::string_view text, const Trie& trie) const {
  std::vector<Match> out;
  if (trie.empty()) {
    out.push_back({-1, 0, text.size()});
    return out;
  }
  size_t start_offset = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    // Leftmost match from pos, then longest there; the search resumes after the match, even one
    // that single_word rejects.
    auto [index, end] = trie.longest_at(text, pos);
    if (index < 0) {
      ++pos;
      continue;
    }
    size_t start = pos;
    size_t stop = end;
    pos = end;
    const AddedToken& t = tokens_[index];
    if (t.single_word) {
      const bool start_space = start == 0 || !ends_with_word(text.substr(0, start));
      const bool stop_space = stop == text.size() || !starts_with_word(text.substr(stop));
      if (!start_space || !stop_space) continue;
    }
    if (t.lstrip) start = std::max(trailing_space_start(text.substr(0, start)), start_offset);
    if (t.rstrip) stop += leading_space_length(text.substr(stop));
    if (start_offset < start) out.push_back({-1, start_offset, start});
    out.push_back({t.id, start, stop});
    start_offset = stop;
  }
  if (start_offset != text.size()) out.push_back({-1, start_offset, text.size()});
  return out;
}

void AddedVocabulary::split_piece(const Piece& p, const Trie& trie, std::vector<Piece>& out) const {
  for (const auto& m : find_matches(p.text, trie)) {
    if (m.begin >= m.end) continue;
    Piece s = slice(p, m.begin, m.end);
    s.token = m.id;
    out.push_back(std::move(s));
  }
}

std::vector<Piece> AddedVocabulary::extract_and_normalize(std::string_view text, const Normalizer* normalizer) const {
  std::vector<Piece> raw;
  split_piece(make_piece(text, 0), raw_trie_, raw);
  std::vector<Piece> pieces;
  pieces.reserve(raw.size());
  for (auto& p : raw) {
    if (p.token >= 0) {
      pieces.push_back(std::move(p));
      continue;
    }
    if (normalizer != nullptr) normalizer->normalize(p);
    split_piece(p, normalized_trie_, pieces);
  }
  return pieces;
}

}  // namespace effarch::tokenizer
