// tokenizer.json (HF `tokenizers`): added tokens -> normalizer -> pre-tokenizer -> BPE model ->
// post-processor, and decode through the decoder chain.

#include <unordered_set>

#include <fmt/format.h>

#include "added_vocabulary.h"
#include "bpe.h"
#include "components.h"
#include "effarch/common/error.h"
#include "effarch/io/strict_json.h"
#include "effarch/tokenizer/tokenizer.h"
#include "unicode.h"

namespace effarch::tokenizer {
namespace {

// Ids as HF assigns them on load: the model's id for a token in its vocabulary, else the id an
// earlier entry with the same content got, else the next id after the model's vocabulary (the "id"
// in the file is only checked by HF, with a warning; real files agree with this rule).
std::vector<AddedToken> parse_added_tokens(const json& root, const std::string& origin, const BpeModel& model) {
  std::vector<AddedToken> tokens;
  if (!root.contains("added_tokens") || root["added_tokens"].is_null()) return tokens;
  const json& list = root["added_tokens"];
  if (!list.is_array()) throw FormatError(fmt::format("{}: added_tokens: expected a list", origin));
  std::unordered_map<std::string, int32_t> assigned;
  auto next_id = static_cast<int32_t>(model.vocab().size());
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string where = fmt::format("{}: added_tokens[{}]", origin, i);
    const json& t = list[i];
    AddedToken a;
    a.content = get_string(t, "content", where);
    const json& id = require_key(t, "id", where);
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX) {
      throw FormatError(fmt::format("{}.id: {} is not a token id", where, id.dump()));
    }
    a.single_word = get_bool(t, "single_word", false, where);
    a.lstrip = get_bool(t, "lstrip", false, where);
    a.rstrip = get_bool(t, "rstrip", false, where);
    a.special = get_bool(t, "special", false, where);
    a.normalized = get_bool(t, "normalized", !a.special, where);
    if (a.content.empty()) continue;
    if (const auto it = assigned.find(a.content); it != assigned.end()) {
      a.id = it->second;
    } else if (const auto in_model = model.token_to_id(a.content)) {
      a.id = *in_model;
    } else {
      a.id = next_id++;
    }
    assigned[a.content] = a.id;
    tokens.push_back(std::move(a));
  }
  return tokens;
}

const json* optional_component(const json& root, const char* key) {
  const auto it = root.find(key);
  return it == root.end() || it->is_null() ? nullptr : &*it;
}

class HfTokenizer final : public Tokenizer {
 public:
  HfTokenizer(const json& root, const std::string& origin, const json* config, const std::string& config_origin)
      : config_origin_(config_origin) {
    if (!root.is_object()) throw FormatError(fmt::format("{}: expected a JSON object", origin));
    if (root.contains("version") && root["version"] != "1.0") {
      throw FormatError(fmt::format("{}: version: unknown tokenizer.json version {}", origin, root["version"].dump()));
    }
    const json& model = require_key(root, "model", origin);
    const std::string model_where = origin + ": model";
    std::string type;
    if (model.is_object() && model.contains("type")) {
      type = get_string(model, "type", model_where);
    } else if (model.is_object() && model.contains("merges")) {
      type = "BPE";  // files from before the type tag
    } else {
      throw FormatError(fmt::format("{}: missing key 'type'", model_where));
    }
    if (type != "BPE") {
      throw FormatError(fmt::format("{}.type: model type \"{}\" is not supported (supported: BPE; sentencepiece models "
                                    "load from tokenizer.model)",
                                    model_where, type));
    }
    model_ = std::make_unique<BpeModel>(model, model_where);
    if (const json* j = optional_component(root, "normalizer")) normalizer_ = parse_normalizer(*j, origin + ": normalizer");
    if (const json* j = optional_component(root, "pre_tokenizer")) {
      pre_tokenizer_ = parse_pre_tokenizer(*j, origin + ": pre_tokenizer");
    }
    if (const json* j = optional_component(root, "post_processor")) {
      post_processor_ = parse_post_processor(*j, origin + ": post_processor");
    }
    if (const json* j = optional_component(root, "decoder")) decoder_ = parse_decoder(*j, origin + ": decoder");
    added_ = std::make_unique<AddedVocabulary>(parse_added_tokens(root, origin, *model_), normalizer_.get());

    std::unordered_set<std::string> distinct;
    for (const auto& [token, id] : model_->vocab()) distinct.insert(token);
    for (const auto& t : added_->tokens()) distinct.insert(t.content);
    vocab_size_ = static_cast<int64_t>(distinct.size());

    if (post_processor_) {
      const auto before = post_processor_->ids_before();
      const auto after = post_processor_->ids_after();
      if (!before.empty()) bos_id_ = before.front();
      if (!after.empty()) eos_id_ = after.back();
    }
    if (config != nullptr) {
      if (auto id = config_token(*config, "bos_token")) bos_id_ = id;
      if (auto id = config_token(*config, "eos_token")) eos_id_ = id;
    }
  }

  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens) const override {
    if (const size_t bad = unicode::find_invalid_utf8(text); bad != std::string_view::npos) {
      throw FormatError(fmt::format("text to encode is not valid UTF-8 (byte offset {})", bad));
    }
    std::vector<Piece> pieces = added_->extract_and_normalize(text, normalizer_.get());
    if (pre_tokenizer_) pre_tokenizer_->pre_tokenize(pieces);
    std::vector<int32_t> ids;
    ids.reserve(text.size() / 3 + 4);
    for (const auto& p : pieces) {
      if (p.token >= 0) {
        ids.push_back(p.token);
      } else {
        model_->tokenize(p.text, ids);
      }
    }
    if (post_processor_) post_processor_->process(ids, add_special_tokens);
    return ids;
  }

  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const override {
    std::vector<std::string> tokens;
    tokens.reserve(ids.size());
    for (const int32_t id : ids) {
      const std::string* token = nullptr;
      if (added_->find(id) != nullptr) {
        token = &added_->token_string(id);
      } else {
        token = model_->id_to_token(id);
      }
      if (token == nullptr) continue;  // unknown ids are dropped, as HF does
      if (skip_special_tokens && added_->is_special_string(*token)) continue;
      tokens.push_back(*token);
    }
    std::string text;
    if (decoder_) {
      decoder_->decode_chain(tokens);
      for (const auto& t : tokens) text += t;
    } else {
      for (size_t i = 0; i < tokens.size(); ++i) text += (i ? " " : "") + tokens[i];
    }
    return text;
  }

  int64_t vocab_size() const override { return vocab_size_; }
  std::optional<int32_t> bos_id() const override { return bos_id_; }
  std::optional<int32_t> eos_id() const override { return eos_id_; }
  bool is_special(int32_t id) const override {
    const AddedToken* t = added_->find(id);
    return t != nullptr && t->special;
  }
  std::optional<int32_t> token_to_id(std::string_view token) const override {
    if (auto id = added_->token_to_id(std::string(token))) return id;
    return model_->token_to_id(token);
  }
  std::string kind() const override { return "tokenizer.json (BPE)"; }

 private:
  // bos_token/eos_token of tokenizer_config.json: a string, {"content": ...} or null.
  std::optional<int32_t> config_token(const json& config, const char* key) const {
    const auto it = config.find(key);
    if (it == config.end() || it->is_null()) return std::nullopt;
    std::string content;
    if (it->is_string()) {
      content = it->get<std::string>();
    } else if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
      content = (*it)["content"].get<std::string>();
    } else {
      throw FormatError(
          fmt::format("{}: {}: expected a string or {{\"content\": ...}}, got {}", config_origin_, key, it->dump()));
    }
    const auto id = token_to_id(content);
    if (!id) throw FormatError(fmt::format("{}: {}: \"{}\" is not in the vocabulary", config_origin_, key, content));
    return id;
  }

  std::unique_ptr<BpeModel> model_;
  std::unique_ptr<Normalizer> normalizer_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  std::unique_ptr<PostProcessor> post_processor_;
  std::unique_ptr<Decoder> decoder_;
  std::unique_ptr<AddedVocabulary> added_;
  int64_t vocab_size_ = 0;
  std::optional<int32_t> bos_id_, eos_id_;
  std::string config_origin_;
};

}  // namespace

std::unique_ptr<Tokenizer> load_hf_tokenizer(std::string_view json_text, const std::string& origin,
                                             std::string_view tokenizer_config, const std::string& config_origin) {
  const json root = io::parse_strict_json(json_text, origin);
  json config;
  if (!tokenizer_config.empty()) {
    config = io::parse_strict_json(tokenizer_config, config_origin);
    if (!config.is_object()) throw FormatError(fmt::format("{}: expected a JSON object", config_origin));
  }
  return std::make_unique<HfTokenizer>(root, origin, config.is_object() ? &config : nullptr, config_origin);
}

}  // namespace effarch::tokenizer
