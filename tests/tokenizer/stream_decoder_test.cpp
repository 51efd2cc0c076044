// StreamDecoder on tiny tokenizers written here: a byte-level one where é and 🤗 are split across
// tokens, and a Llama-style one (byte fallback, Metaspace-like leading space of the first token).

#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "effarch/tokenizer/tokenizer.h"

namespace effarch::tokenizer {
namespace {

// GPT-2 byte-level alphabet: "é" is the bytes C3 A9, shown as "Ã©"; "🤗" is F0 9F A4 97, shown as
// "ðŁ¤Ĺ"; a space is "Ġ".
constexpr const char* kByteLevelJson = R"({
  "version": "1.0",
  "added_tokens": [{"id": 12, "content": "<|end|>", "single_word": false, "lstrip": false, "rstrip": false,
                    "normalized": false, "special": true}],
  "normalizer": null,
  "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
  "post_processor": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
  "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
  "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": {"c": 0, "a": 1, "f": 2, "Ã": 3, "©": 4, "Ġ": 5, "ð": 6, "Ł": 7, "¤": 8, "Ĺ": 9, "ca": 10, "caf": 11},
            "merges": [["c", "a"], ["ca", "f"]]}
})";

constexpr const char* kLlamaJson = R"({
  "version": "1.0",
  "added_tokens": [
    {"id": 0, "content": "<unk>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
    {"id": 1, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}],
  "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"},
                                                      {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
  "pre_tokenizer": null,
  "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                                              {"Sequence": {"id": "A", "type_id": 0}}],
                     "pair": [], "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
  "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
                                               {"type": "ByteFallback"}, {"type": "Fuse"},
                                               {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
  "model": {"type": "BPE", "unk_token": "<unk>", "fuse_unk": true, "byte_fallback": true,
            "vocab": {"<unk>": 0, "<s>": 1, "<0xE4>": 2, "<0xBD>": 3, "<0xA0>": 4, "▁": 5, "H": 6, "i": 7, "▁H": 8, "▁Hi": 9},
            "merges": ["▁ H", "▁H i"]}
})";

std::vector<std::string> stream_all(const Tokenizer& tok, const std::vector<int32_t>& ids, bool skip_special = false) {
  StreamDecoder stream(tok, skip_special);
  std::vector<std::string> chunks;
  for (const int32_t id : ids) chunks.push_back(stream.push(id));
  chunks.push_back(stream.flush());
  return chunks;
}

std::string join(const std::vector<std::string>& chunks) {
  std::string s;
  for (const auto& c : chunks) s += c;
  return s;
}

TEST(StreamDecoder, MultiByteCharacterSplitAcrossByteLevelTokens) {
  const auto tok = load_hf_tokenizer(kByteLevelJson, "byte_level.json");
  const std::vector<int32_t> ids = tok->encode("café 🤗", false);
  ASSERT_EQ(ids, (std::vector<int32_t>{11, 3, 4, 5, 6, 7, 8, 9}));
  ASSERT_EQ(tok->decode(ids), "café 🤗");
  // é is emitted once, whole, with its second byte; 🤗 with its fourth.
  EXPECT_EQ(stream_all(*tok, ids), (std::vector<std::string>{"caf", "", "é", " ", "", "", "", "🤗", ""}));
}

TEST(StreamDecoder, SpecialTokensKeptOrSkipped) {
  const auto tok = load_hf_tokenizer(kByteLevelJson, "byte_level.json");
  const std::vector<int32_t> ids = {11, 12, 3, 4, 12};
  EXPECT_EQ(join(stream_all(*tok, ids)), "caf<|end|>é<|end|>");
  EXPECT_EQ(join(stream_all(*tok, ids, true)), "café");
  EXPECT_EQ(tok->decode(ids, true), "café");
}

TEST(StreamDecoder, FlushEmitsAnIncompleteCharacterAsReplacement) {
  const auto tok = load_hf_tokenizer(kByteLevelJson, "byte_level.json");
  StreamDecoder stream(*tok);
  EXPECT_EQ(stream.push(11), "caf");
  EXPECT_EQ(stream.push(3), "");  // first byte of é
  EXPECT_EQ(stream.flush(), "\xEF\xBF\xBD");
}

TEST(StreamDecoder, ConcatenationEqualsFullDecodeForRandomIds) {
  const auto tok = load_hf_tokenizer(kByteLevelJson, "byte_level.json");
  std::mt19937 rng(7);
  std::uniform_int_distribution<int32_t> pick(0, 12);
  for (int round = 0; round < 200; ++round) {
    std::vector<int32_t> ids(1 + round % 23);
    for (auto& id : ids) id = pick(rng);
    const auto chunks = stream_all(*tok, ids);
    EXPECT_EQ(join(chunks), tok->decode(ids)) << "round " << round;
    // push() never ends a chunk with U+FFFD: a character still missing bytes is held back.
    for (size_t k = 0; k + 1 < chunks.size(); ++k) {
      const std::string& c = chunks[k];
      EXPECT_FALSE(c.size() >= 3 && c.compare(c.size() - 3, 3, "\xEF\xBF\xBD") == 0) << "round " << round;
    }
  }
}

TEST(StreamDecoder, LeadingSpaceOfTheFirstTokenOnlyAndByteFallback) {
  const auto tok = load_hf_tokenizer(kLlamaJson, "llama.json");
  const std::vector<int32_t> hi = tok->encode("Hi Hi", true);
  ASSERT_EQ(hi, (std::vector<int32_t>{1, 9, 9}));
  ASSERT_EQ(tok->decode(hi), "<s> Hi Hi");
  EXPECT_EQ(stream_all(*tok, hi), (std::vector<std::string>{"<s>", " Hi", " Hi", ""}));
  // Without <s>, the first token loses its leading space as in a full decode; later ones keep it.
  EXPECT_EQ(stream_all(*tok, hi, true), (std::vector<std::string>{"", "Hi", " Hi", ""}));
  EXPECT_EQ(stream_all(*tok, {9, 9}), (std::vector<std::string>{"Hi", " Hi", ""}));
  // 你 = E4 BD A0 as three byte-fallback tokens: nothing until the third.
  const std::vector<int32_t> ni = tok->encode("你", false);
  ASSERT_EQ(ni, (std::vector<int32_t>{5, 2, 3, 4}));
  EXPECT_EQ(tok->decode(ni), "你");
  EXPECT_EQ(stream_all(*tok, ni), (std::vector<std::string>{"", "", "", "你", ""}));
}

}  // namespace
}  // namespace effarch::tokenizer
