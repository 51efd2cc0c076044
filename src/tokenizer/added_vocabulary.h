#pragma once
// Added tokens of tokenizer.json (special tokens such as <|begin_of_text|>, and added words): found
// in the text before pre-tokenization, leftmost then longest, honouring single_word, lstrip,
// rstrip and normalized, as HF's AddedVocabulary does. Tokens with normalized=false are matched in
// the raw text; the rest in the normalized text, by their normalized form.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "components.h"
#include "pieces.h"

namespace effarch::tokenizer {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = true;
  bool special = false;
};

class AddedVocabulary {
 public:
  // `normalizer` (may be null) gives the normalized form of tokens with normalized=true.
  AddedVocabulary(std::vector<AddedToken> tokens, const Normalizer* normalizer);

  // The input cut into added-token pieces and normalized text pieces (HF extract_and_normalize).
  std::vector<Piece> extract_and_normalize(std::string_view text, const Normalizer* normalizer) const;

  const AddedToken* find(int32_t id) const;
  std::optional<int32_t> token_to_id(const std::string& content) const;
  // The string decode() uses for an added token: its normalized form if it has one.
  const std::string& token_string(int32_t id) const;
  bool is_special_string(const std::string& s) const { return special_contents_.count(s) != 0; }
  const std::vector<AddedToken>& tokens() const { return tokens_; }

 private:
  // A byte trie of the token strings, for leftmost-longest matching.
  struct Trie {
    struct Node {
      std::vector<std::pair<unsigned char, int32_t>> children;  // sorted by byte
      int32_t token = -1;                                       // index into tokens_
    };
    std::vector<Node> nodes{Node{}};
    void insert(std::string_view s, int32_t token);
    // The longest token starting at text[pos], as (index, end), or index -1.
    std::pair<int32_t, size_t> longest_at(std::string_view text, size_t pos) const;
    bool empty() const { return nodes.size() == 1; }
  };
  struct Match {
    int32_t id;  // -1 for plain text
    size_t begin, end;
  };
  std::vector<Match> find_matches(std::string_view text, const Trie& trie) const;
  void split_piece(const Piece& p, const Trie& trie, std::vector<Piece>& out) const;

  std::vector<AddedToken> tokens_;
  std::unordered_map<int32_t, size_t> by_id_;
  std::unordered_map<std::string, int32_t> by_content_;
  std::unordered_map<int32_t, std::string> normalized_form_;
  std::unordered_set<std::string> special_contents_;
  Trie raw_trie_, normalized_trie_;
};

}  // namespace effarch::tokenizer
