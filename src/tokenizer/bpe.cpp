#include "bpe.h"

#include <queue>

#include <fmt/format.h>

#include "components.h"
#include "effarch/common/error.h"
#include "unicode.h"

namespace effarch::tokenizer {
namespace {

// One merge rule as a pair of token strings, from "a b" or ["a", "b"].
std::pair<std::string, std::string> parse_merge(const json& m, const std::string& where) {
  if (m.is_string()) {
    const auto& s = m.get_ref<const std::string&>();
    const size_t space = s.find(' ');
    if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
      throw FormatError(fmt::format("{}: merge \"{}\" is not two tokens separated by one space", where, s));
    }
    return {s.substr(0, space), s.substr(space + 1)};
  }
  if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
    return {m[0].get<std::string>(), m[1].get<std::string>()};
  }
  throw FormatError(fmt::format("{}: a merge is \"a b\" or [\"a\", \"b\"], got {}", where, m.dump()));
}

}  // namespace

BpeModel::BpeModel(const json& j, const std::string& where) {
  const json& vocab = require_key(j, "vocab", where);
  if (!vocab.is_object()) throw FormatError(fmt::format("{}.vocab: expected an object of token: id", where));
  int32_t max_id = -1;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 || it.value().get<int64_t>() > INT32_MAX) {
      throw FormatError(fmt::format("{}.vocab: token \"{}\" has id {}, expected an integer in [0, 2^31)", where, it.key(),
                                    it.value().dump()));
    }
    const auto id = static_cast<int32_t>(it.value().get<int64_t>());
    vocab_.emplace(it.key(), id);
    max_id = std::max(max_id, id);
  }
  id_to_token_.assign(static_cast<size_t>(max_id + 1), nullptr);
  for (const auto& [token, id] : vocab_) id_to_token_[id] = &token;

  continuing_subword_prefix_ = get_optional_string(j, "continuing_subword_prefix", where).value_or("");
  end_of_word_suffix_ = get_optional_string(j, "end_of_word_suffix", where).value_or("");
  fuse_unk_ = get_bool(j, "fuse_unk", false, where);
  byte_fallback_ = get_bool(j, "byte_fallback", false, where);
  ignore_merges_ = get_bool(j, "ignore_merges", false, where);
  // An unk_token missing from the vocabulary is an error only when a character needs it (as in HF).
  unk_token_ = get_optional_string(j, "unk_token", where);
  if (unk_token_) {
    const auto it = vocab_.find(*unk_token_);
    if (it != vocab_.end()) unk_id_ = it->second;
  }
  where_ = where;
  for (int b = 0; b < 256; ++b) {
    const auto it = vocab_.find(fmt::format("<0x{:02X}>", b));
    byte_ids_[b] = it == vocab_.end() ? -1 : it->second;
  }

  const json& merges = require_key(j, "merges", where);
  if (!merges.is_array()) throw FormatError(fmt::format("{}.merges: expected a list", where));
  merges_.reserve(merges.size());
  uint32_t rank = 0;
  for (size_t i = 0; i < merges.size(); ++i) {
    const std::string at = fmt::format("{}.merges[{}]", where, i);
    if (merges[i].is_string() && merges[i].get_ref<const std::string&>().rfind("#version", 0) == 0) continue;
    const auto [a, b] = parse_merge(merges[i], at);
    auto id_of = [&](const std::string& token) {
      const auto it = vocab_.find(token);
      if (it == vocab_.end()) throw FormatError(fmt::format("{}: token \"{}\" is not in the vocabulary", at, token));
      return it->second;
    };
    const int32_t a_id = id_of(a), b_id = id_of(b);
    // HF drops prefix-length bytes of b without looking at them.
    if (b.size() < continuing_subword_prefix_.size()) {
      throw FormatError(fmt::format("{}: token \"{}\" is shorter than continuing_subword_prefix", at, b));
    }
    const int32_t new_id = id_of(a + b.substr(continuing_subword_prefix_.size()));
    merges_[pair_key(a_id, b_id)] = Merge{rank++, new_id};  // a repeated pair: the later rank wins, as in HF
  }
}

std::optional<int32_t> BpeModel::token_to_id(std::string_view token) const {
  const auto it = vocab_.find(std::string(token));
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::id_to_token(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size()) return nullptr;
  return id_to_token_[id];
}

std::vector<int32_t> BpeModel::merge_word(std::string_view word) const {
  struct Symbol {
    int32_t id;
    int32_t prev;
    int32_t next;
    size_t len;  // bytes of the word; 0 once merged into its left neighbour
  };
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  auto add = [&](int32_t id, size_t len) {
    const auto n = static_cast<int32_t>(symbols.size());
    if (n > 0) symbols.back().next = n;
    symbols.push_back({id, n - 1, -1, len});
  };

  // Characters to symbols: vocabulary entries, else <0xAB> byte tokens, else unk (fused or not).
  // A pending unk is added when the next known character comes, or at the end (HF's order).
  bool unk_pending = false;
  size_t unk_len = 0;
  std::string s;
  for (size_t i = 0; i < word.size();) {
    const size_t n = std::min(unicode::char_len(static_cast<unsigned char>(word[i])), word.size() - i);
    const bool is_first = i == 0, is_last = i + n == word.size();
    s.clear();
    if (!is_first) s += continuing_subword_prefix_;
    s.append(word.substr(i, n));
    if (is_last) s += end_of_word_suffix_;
    i += n;
    if (const auto it = vocab_.find(s); it != vocab_.end()) {
      if (unk_pending) add(*unk_id_, unk_len);
      unk_pending = false;
      add(it->second, n);
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (const char c : s) all = all && byte_ids_[static_cast<unsigned char>(c)] >= 0;
      if (all) {
        for (const char c : s) add(byte_ids_[static_cast<unsigned char>(c)], 1);
        continue;
      }
    }
    if (unk_token_) {
      if (!unk_id_) throw FormatError(fmt::format("{}.unk_token: \"{}\" is not in the vocabulary", where_, *unk_token_));
      if (unk_pending && fuse_unk_) {
        unk_len += n;
      } else {
        if (unk_pending) add(*unk_id_, unk_len);
        unk_pending = true;
        unk_len = n;
      }
    }
  }
  if (unk_pending) add(*unk_id_, unk_len);

  // Merges, lowest rank first, leftmost among equals; stale entries are skipped when popped.
  struct Candidate {
    uint32_t rank;
    int32_t pos;
    int32_t new_id;
  };
  auto later = [](const Candidate& a, const Candidate& b) { return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos; };
  std::priority_queue<Candidate, std::vector<Candidate>, decltype(later)> queue(later);
  auto push_pair = [&](int32_t pos, int32_t next) {
    const auto it = merges_.find(pair_key(symbols[pos].id, symbols[next].id));
    if (it != merges_.end()) queue.push({it->second.rank, pos, it->second.new_id});
  };
  for (int32_t k = 0; k + 1 < static_cast<int32_t>(symbols.size()); ++k) push_pair(k, k + 1);
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.pos];
    if (left.len == 0 || left.next == -1) continue;
    const int32_t right_pos = left.next;
    const Symbol right = symbols[right_pos];
    const auto it = merges_.find(pair_key(left.id, right.id));
    if (it == merges_.end() || it->second.new_id != top.new_id) continue;
    left.id = top.new_id;
    left.len += right.len;
    left.next = right.next;
    symbols[right_pos].len = 0;
    if (right.next >= 0) symbols[right.next].prev = top.pos;
    if (left.prev >= 0) push_pair(left.prev, top.pos);
    if (left.next >= 0) push_pair(top.pos, left.next);
  }
  std::vector<int32_t> ids;
  for (const auto& sym : symbols) {
    if (sym.len != 0) ids.push_back(sym.id);
  }
  return ids;
}

void BpeModel::tokenize(std::string_view word, std::vector<int32_t>& ids) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    if (const auto it = vocab_.find(std::string(word)); it != vocab_.end()) {
      ids.push_back(it->second);
      return;
    }
  }
  const bool cacheable = word.size() < kCacheMaxWordBytes;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (const auto it = cache_.find(std::string(word)); it != cache_.end()) {
      ids.insert(ids.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> merged = merge_word(word);
  ids.insert(ids.end(), merged.begin(), merged.end());
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.size() < kCacheCapacity) cache_.emplace(std::string(word), std::move(merged));
  }
}

}  // namespace effarch::tokenizer
