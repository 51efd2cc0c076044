// tokenizer.json parsing and the BPE/added-token rules on small hand-written files; the bulk of the
// comparison with HF `tokenizers` is tests/cli/cli_tokenize.sh.

#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "../test_util.h"
#include "effarch/common/error.h"
#include "effarch/tokenizer/tokenizer.h"

namespace effarch::tokenizer {
namespace {

using effarch::testing::TempDir;
using json = nlohmann::json;
using Ids = std::vector<int32_t>;

// Characters as tokens, no pre-tokenizer: "ab" merges, then "abc".
json base() {
  return json::parse(R"({
    "version": "1.0", "added_tokens": [], "normalizer": null, "pre_tokenizer": null, "post_processor": null,
    "decoder": {"type": "Fuse"},
    "model": {"type": "BPE", "unk_token": "<unk>", "fuse_unk": false, "byte_fallback": false,
              "vocab": {"<unk>": 0, "a": 1, "b": 2, "c": 3, "ab": 4, "abc": 5, "bc": 6, " ": 7},
              "merges": [["a", "b"], ["ab", "c"], ["b", "c"]]}
  })");
}

std::unique_ptr<Tokenizer> load(const json& j) { return load_hf_tokenizer(j.dump(), "test.json"); }

json added(const std::string& content, int id, bool special, json flags = json::object()) {
  json t = {{"id", id}, {"content", content}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
            {"normalized", !special}, {"special", special}};
  for (auto& [k, v] : flags.items()) t[k] = v;
  return t;
}

TEST(TokenizerJson, MergesInBothFormatsAgree) {
  json legacy = base();
  legacy["model"]["merges"] = {"a b", "ab c", "b c"};
  EXPECT_EQ(load(base())->encode("abcab", false), (Ids{5, 4}));
  EXPECT_EQ(load(legacy)->encode("abcab", false), (Ids{5, 4}));
}

TEST(TokenizerJson, MergeRankDecidesNotPosition) {
  json j = base();
  j["model"]["merges"] = json::parse(R"([["b", "c"], ["a", "b"], ["ab", "c"]])");  // "bc" first: abc -> a bc
  EXPECT_EQ(load(j)->encode("abc", false), (Ids{1, 6}));
}

TEST(TokenizerJson, IgnoreMergesTakesWholeWordsFromTheVocabulary) {
  json j = base();
  j["model"]["merges"] = json::parse(R"([["b", "c"], ["a", "b"]])");
  EXPECT_EQ(load(j)->encode("abc", false), (Ids{1, 6}));
  j["model"]["ignore_merges"] = true;
  EXPECT_EQ(load(j)->encode("abc", false), (Ids{5}));
}

TEST(TokenizerJson, UnknownCharactersFuseOrNot) {
  json j = base();
  EXPECT_EQ(load(j)->encode("axyb", false), (Ids{1, 0, 0, 2}));
  j["model"]["fuse_unk"] = true;
  EXPECT_EQ(load(j)->encode("axyb", false), (Ids{1, 0, 2}));
  j["model"]["unk_token"] = nullptr;  // no unk: unknown characters vanish (and "ab" merges), as in HF
  EXPECT_EQ(load(j)->encode("axyb", false), (Ids{4}));
}

TEST(TokenizerJson, ByteFallbackUsesByteTokens) {
  json j = base();
  j["model"]["byte_fallback"] = true;
  j["model"]["vocab"]["<0xC3>"] = 8;
  j["model"]["vocab"]["<0xA9>"] = 9;
  j["decoder"] = {{"type", "Sequence"}, {"decoders", {{{"type", "ByteFallback"}}, {{"type", "Fuse"}}}}};
  const auto tok = load(j);
  EXPECT_EQ(tok->encode("aé", false), (Ids{1, 8, 9}));
  EXPECT_EQ(tok->decode({1, 8, 9}), "aé");
  EXPECT_EQ(tok->decode({1, 8}), "a\xEF\xBF\xBD");
  EXPECT_EQ(tok->encode("a€", false), (Ids{1, 0}));  // € has no byte tokens: unk
}

TEST(TokenizerJson, AddedTokensLongestFirstWithStripAndSingleWord) {
  json j = base();
  j["added_tokens"] = {added("<s>", 8, true), added("<s><s>", 9, true), added("[M]", 10, true, {{"lstrip", true}, {"rstrip", true}}),
                       added("cab", 11, false, {{"single_word", true}}), added("abc", 99, true)};
  const auto tok = load(j);
  EXPECT_EQ(tok->encode("a<s><s><s>b", false), (Ids{1, 9, 8, 2}));
  EXPECT_EQ(tok->encode("a  [M]  b", false), (Ids{1, 10, 2}));
  EXPECT_EQ(tok->encode("a cab c", false), (Ids{1, 7, 11, 7, 3}));
  EXPECT_EQ(tok->encode("acab", false), (Ids{1, 3, 4}));  // not a whole word: BPE
  EXPECT_TRUE(tok->is_special(8));
  EXPECT_FALSE(tok->is_special(11));
  EXPECT_TRUE(tok->is_special(5));  // "abc" is in the model's vocabulary: the added token keeps the model's id
  EXPECT_EQ(tok->vocab_size(), 12);
  EXPECT_EQ(tok->token_to_id("<s><s>"), 9);
  EXPECT_EQ(tok->decode({1, 8, 2, 5}, true), "ab");
  EXPECT_EQ(tok->decode({1, 8, 2, 999}, false), "a<s>b");  // unknown ids are dropped
}

TEST(TokenizerJson, TemplateGivesBosAndTokenizerConfigOverrides) {
  json j = base();
  j["added_tokens"] = {added("<s>", 8, true), added("</s>", 9, true)};
  j["post_processor"] = json::parse(R"({"type": "TemplateProcessing",
    "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
               {"SpecialToken": {"id": "</s>", "type_id": 0}}],
    "pair": [], "special_tokens": {"<s>": {"id": "<s>", "ids": [8], "tokens": ["<s>"]},
                                    "</s>": {"id": "</s>", "ids": [9], "tokens": ["</s>"]}}})");
  const auto tok = load(j);
  EXPECT_EQ(tok->encode("ab", true), (Ids{8, 4, 9}));
  EXPECT_EQ(tok->encode("ab", false), (Ids{4}));
  EXPECT_EQ(tok->bos_id(), 8);
  EXPECT_EQ(tok->eos_id(), 9);
  const auto configured = load_hf_tokenizer(j.dump(), "test.json", R"({"bos_token": null, "eos_token": {"content": "<s>"}})");
  EXPECT_EQ(configured->bos_id(), 8);
  EXPECT_EQ(configured->eos_id(), 8);
  EXPECT_THROW_WITH(load_hf_tokenizer(j.dump(), "test.json", R"({"eos_token": "<none>"})", "cfg.json"), FormatError,
                    {"cfg.json", "eos_token", "<none>"});
}

TEST(TokenizerJson, BadFilesNameTheKey) {
  json j = base();
  j["model"]["type"] = "WordPiece";
  EXPECT_THROW_WITH(load(j), FormatError, {"test.json", "model.type", "WordPiece", "not supported"});
  j = base();
  j["model"]["merges"].push_back(json::array({"a", "zz"}));
  EXPECT_THROW_WITH(load(j), FormatError, {"model.merges[3]", "\"zz\""});
  j = base();
  j["model"]["merges"] = {"a b c"};
  EXPECT_THROW_WITH(load(j), FormatError, {"model.merges[0]", "two tokens"});
  j = base();
  j["normalizer"] = {{"type", "Sequence"}, {"normalizers", {{{"type", "Precompiled"}}}}};
  EXPECT_THROW_WITH(load(j), FormatError, {"normalizer.normalizers[0]", "Precompiled", "not supported"});
  j = base();
  j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "ab"}};
  EXPECT_THROW_WITH(load(j), FormatError, {"pre_tokenizer.replacement", "single character"});
  j = base();
  j["model"].erase("vocab");
  EXPECT_THROW_WITH(load(j), FormatError, {"model", "missing key 'vocab'"});
  EXPECT_THROW_WITH(load_hf_tokenizer("{\"model\": ", "x.json"), FormatError, {"x.json", "invalid JSON"});
  EXPECT_THROW_WITH(load(base())->encode("a\xC3", false), FormatError, {"not valid UTF-8"});
}

TEST(TokenizerJson, FolderPrefersTokenizerJson) {
  TempDir dir;
  std::ofstream(dir / "tokenizer.json") << base().dump();
  std::ofstream(dir / "tokenizer.model") << "not a sentencepiece model";
  EXPECT_EQ(load_tokenizer(dir.path())->kind(), "tokenizer.json (BPE)");
  EXPECT_THROW_WITH(load_tokenizer(dir / "tokenizer.model"), FormatError, {"tokenizer.model", "not a sentencepiece model"});
  EXPECT_THROW_WITH(load_tokenizer(dir / "missing"), UsageError, {"missing", "no such file"});
  TempDir empty;
  EXPECT_THROW_WITH(load_tokenizer(empty.path()), FormatError, {"no tokenizer.json or tokenizer.model"});
}

}  // namespace
}  // namespace effarch::tokenizer
