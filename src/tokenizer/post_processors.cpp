// Post-processors of tokenizer.json: TemplateProcessing, RobertaProcessing, BertProcessing,
// ByteLevel (offsets only: nothing to do for ids) and Sequence. Single sequences only.

#include <fmt/format.h>

#include "components.h"
#include "effarch/common/error.h"

namespace effarch::tokenizer {
namespace {

class SequenceProcessor final : public PostProcessor {
 public:
  explicit SequenceProcessor(std::vector<std::unique_ptr<PostProcessor>> steps) : steps_(std::move(steps)) {}
  void process(std::vector<int32_t>& ids, bool add_special_tokens) const override {
    for (const auto& s : steps_) s->process(ids, add_special_tokens);
  }
  std::vector<int32_t> ids_before() const override {
    std::vector<int32_t> ids;
    for (auto it = steps_.rbegin(); it != steps_.rend(); ++it) {
      const auto more = (*it)->ids_before();
      ids.insert(ids.end(), more.begin(), more.end());
    }
    return ids;
  }
  std::vector<int32_t> ids_after() const override {
    std::vector<int32_t> ids;
    for (const auto& s : steps_) {
      const auto more = s->ids_after();
      ids.insert(ids.end(), more.begin(), more.end());
    }
    return ids;
  }

 private:
  std::vector<std::unique_ptr<PostProcessor>> steps_;
};

class NoOpProcessor final : public PostProcessor {
 public:
  void process(std::vector<int32_t>&, bool) const override {}
};

// The "single" template: special tokens before and after the sequence $A.
class TemplateProcessor final : public PostProcessor {
 public:
  TemplateProcessor(std::vector<int32_t> before, std::vector<int32_t> after)
      : before_(std::move(before)), after_(std::move(after)) {}
  void process(std::vector<int32_t>& ids, bool add_special_tokens) const override {
    if (!add_special_tokens) return;
    ids.insert(ids.begin(), before_.begin(), before_.end());
    ids.insert(ids.end(), after_.begin(), after_.end());
  }
  std::vector<int32_t> ids_before() const override { return before_; }
  std::vector<int32_t> ids_after() const override { return after_; }

 private:
  std::vector<int32_t> before_, after_;
};

std::unique_ptr<PostProcessor> parse_template(const json& j, const std::string& where) {
  const json& special = require_key(j, "special_tokens", where);
  if (!special.is_object()) throw FormatError(fmt::format("{}.special_tokens: expected an object", where));
  const json& single = require_key(j, "single", where);
  if (!single.is_array()) throw FormatError(fmt::format("{}.single: expected a list of pieces", where));
  std::vector<int32_t> before, after;
  bool seen_sequence = false;
  for (size_t i = 0; i < single.size(); ++i) {
    const std::string at = fmt::format("{}.single[{}]", where, i);
    const json& piece = single[i];
    if (piece.is_object() && piece.contains("Sequence")) {
      const std::string id = get_string(piece["Sequence"], "id", at + ".Sequence");
      if (id != "A") throw FormatError(fmt::format("{}: the single template can only hold sequence A, got {}", at, id));
      if (seen_sequence) throw FormatError(fmt::format("{}: sequence A appears twice in the single template", at));
      seen_sequence = true;
    } else if (piece.is_object() && piece.contains("SpecialToken")) {
      const std::string name = get_string(piece["SpecialToken"], "id", at + ".SpecialToken");
      if (!special.contains(name)) {
        throw FormatError(fmt::format("{}: special token \"{}\" is missing from {}.special_tokens", at, name, where));
      }
      const json& ids = require_key(special[name], "ids", fmt::format("{}.special_tokens.{}", where, name));
      if (!ids.is_array()) throw FormatError(fmt::format("{}.special_tokens.{}.ids: expected a list of ids", where, name));
      for (const auto& id : ids) {
        if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX) {
          throw FormatError(fmt::format("{}.special_tokens.{}.ids: {} is not a token id", where, name, id.dump()));
        }
        (seen_sequence ? after : before).push_back(static_cast<int32_t>(id.get<int64_t>()));
      }
    } else {
      throw FormatError(fmt::format("{}: expected {{\"Sequence\": ...}} or {{\"SpecialToken\": ...}}, got {}", at, piece.dump()));
    }
  }
  if (!seen_sequence) throw FormatError(fmt::format("{}.single: the template has no sequence $A", where));
  return std::make_unique<TemplateProcessor>(std::move(before), std::move(after));
}

// ["<s>", 0] of RobertaProcessing/BertProcessing.
int32_t token_pair_id(const json& j, const char* key, const std::string& where) {
  const json& v = require_key(j, key, where);
  if (!v.is_array() || v.size() != 2 || !v[0].is_string() || !v[1].is_number_integer() || v[1].get<int64_t>() < 0 ||
      v[1].get<int64_t>() > INT32_MAX) {
    throw FormatError(fmt::format("{}.{}: expected [token, id], got {}", where, key, v.dump()));
  }
  return static_cast<int32_t>(v[1].get<int64_t>());
}

}  // namespace

std::unique_ptr<PostProcessor> parse_post_processor(const json& j, const std::string& where) {
  const std::string type = component_type(j, where);
  if (type == "TemplateProcessing") return parse_template(j, where);
  if (type == "RobertaProcessing" || type == "BertProcessing") {
    return std::make_unique<TemplateProcessor>(std::vector<int32_t>{token_pair_id(j, "cls", where)},
                                               std::vector<int32_t>{token_pair_id(j, "sep", where)});
  }
  if (type == "ByteLevel") return std::make_unique<NoOpProcessor>();
  if (type == "Sequence") {
    const json& list = require_key(j, "processors", where);
    if (!list.is_array()) throw FormatError(fmt::format("{}.processors: expected a list", where));
    std::vector<std::unique_ptr<PostProcessor>> steps;
    for (size_t i = 0; i < list.size(); ++i) {
      steps.push_back(parse_post_processor(list[i], fmt::format("{}.processors[{}]", where, i)));
    }
    return std::make_unique<SequenceProcessor>(std::move(steps));
  }
  throw FormatError(fmt::format("{}: post-processor type \"{}\" is not supported (supported: TemplateProcessing, "
                                "RobertaProcessing, BertProcessing, ByteLevel, Sequence)",
                                where, type));
}

}  // namespace effarch::tokenizer
