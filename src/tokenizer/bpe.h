#pragma once
// The BPE model of tokenizer.json: vocabulary, ranked merges, byte_fallback, unk_token/fuse_unk,
// ignore_merges, continuing_subword_prefix and end_of_word_suffix. Merging a word is
// O(n log n) with a priority queue of candidate merges (lowest rank first, then leftmost), the
// order HF applies them in; results are cached per word.

#include <array>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

namespace effarch::tokenizer {

class BpeModel {
 public:
  // `j` is the "model" object; `where` names the file and key for errors.
  BpeModel(const nlohmann::json& j, const std::string& where);

  // Appends the ids of one pre-token.
  void tokenize(std::string_view word, std::vector<int32_t>& ids) const;

  std::optional<int32_t> token_to_id(std::string_view token) const;
  // nullptr for an id outside the vocabulary.
  const std::string* id_to_token(int32_t id) const;
  const std::unordered_map<std::string, int32_t>& vocab() const { return vocab_; }

 private:
  struct Merge {
    uint32_t rank;
    int32_t new_id;
  };
  static uint64_t pair_key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  std::vector<int32_t> merge_word(std::string_view word) const;

  std::unordered_map<std::string, int32_t> vocab_;
  std::vector<const std::string*> id_to_token_;  // into vocab_'s keys; nullptr for holes
  std::unordered_map<uint64_t, Merge> merges_;
  std::optional<std::string> unk_token_;
  std::optional<int32_t> unk_id_;
  std::string where_;
  std::string continuing_subword_prefix_;
  std::string end_of_word_suffix_;
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  std::array<int32_t, 256> byte_ids_{};  // <0xAB> tokens, -1 if absent

  static constexpr size_t kCacheCapacity = 10000;  // HF's default
  static constexpr size_t kCacheMaxWordBytes = 256;
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

}  // namespace effarch::tokenizer
