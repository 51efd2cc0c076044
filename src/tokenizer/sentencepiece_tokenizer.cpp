#include "sentencepiece_tokenizer.h"

#include <sentencepiece_processor.h>

#include <fmt/format.h>

#include "components.h"
#include "effarch/common/error.h"
#include "unicode.h"

namespace effarch::tokenizer {
namespace {

class SentencePieceTokenizer final : public Tokenizer {
 public:
  SentencePieceTokenizer(const std::filesystem::path& path, const json* config, const std::string& config_origin) {
    const auto status = sp_.Load(path.string());
    if (!status.ok()) {
      throw FormatError(fmt::format("{}: not a sentencepiece model: {}", path.string(), status.ToString()));
    }
    if (config != nullptr) {
      add_bos_ = get_bool(*config, "add_bos_token", true, config_origin);
      add_eos_ = get_bool(*config, "add_eos_token", false, config_origin);
    }
  }

  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens) const override {
    if (const size_t bad = unicode::find_invalid_utf8(text); bad != std::string_view::npos) {
      throw FormatError(fmt::format("text to encode is not valid UTF-8 (byte offset {})", bad));
    }
    std::vector<int> pieces;
    const auto status = sp_.Encode(text, &pieces);
    if (!status.ok()) throw Error(fmt::format("sentencepiece encode failed: {}", status.ToString()));
    std::vector<int32_t> ids;
    ids.reserve(pieces.size() + 2);
    if (add_special_tokens && add_bos_ && sp_.bos_id() >= 0) ids.push_back(sp_.bos_id());
    ids.insert(ids.end(), pieces.begin(), pieces.end());
    if (add_special_tokens && add_eos_ && sp_.eos_id() >= 0) ids.push_back(sp_.eos_id());
    return ids;
  }

  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const override {
    std::vector<int> kept;
    kept.reserve(ids.size());
    for (const int32_t id : ids) {
      if (id < 0 || id >= sp_.GetPieceSize()) continue;  // unknown ids are dropped
      if (skip_special_tokens && is_special(id)) continue;
      kept.push_back(id);
    }
    std::string text;
    const auto status = sp_.Decode(kept, &text);
    if (!status.ok()) throw Error(fmt::format("sentencepiece decode failed: {}", status.ToString()));
    return unicode::from_utf8_lossy(text);
  }

  int64_t vocab_size() const override { return sp_.GetPieceSize(); }
  std::optional<int32_t> bos_id() const override { return optional_id(sp_.bos_id()); }
  std::optional<int32_t> eos_id() const override { return optional_id(sp_.eos_id()); }
  bool is_special(int32_t id) const override {
    return id >= 0 && id < sp_.GetPieceSize() && (sp_.IsControl(id) || sp_.IsUnknown(id));
  }
  std::optional<int32_t> token_to_id(std::string_view token) const override {
    const int id = sp_.PieceToId(token);
    if (id < 0 || sp_.IdToPiece(id) != token) return std::nullopt;
    return id;
  }
  std::string kind() const override { return "tokenizer.model (sentencepiece)"; }

 private:
  static std::optional<int32_t> optional_id(int id) { return id >= 0 ? std::optional<int32_t>(id) : std::nullopt; }

  sentencepiece::SentencePieceProcessor sp_;
  bool add_bos_ = true;
  bool add_eos_ = false;
};

}  // namespace

std::unique_ptr<Tokenizer> load_sentencepiece(const std::filesystem::path& path, const json* config,
                                              const std::string& config_origin) {
  return std::make_unique<SentencePieceTokenizer>(path, config, config_origin);
}

}  // namespace effarch::tokenizer
