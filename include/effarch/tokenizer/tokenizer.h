#pragma once
// Tokenizers of real checkpoints: Hugging Face `tokenizer.json` (BPE model with its normalizers,
// pre-tokenizers, added tokens, post-processor and decoders) and sentencepiece `tokenizer.model`.
// Ids match the reference libraries (HF `tokenizers`, `sentencepiece`) exactly; see
// docs/tokenizers.md for what is supported.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace effarch::tokenizer {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // `text` must be valid UTF-8 (FormatError otherwise). With add_special_tokens the
  // post-processor's tokens are added (BOS/EOS of the template, or BOS for sentencepiece).
  virtual std::vector<int32_t> encode(std::string_view text, bool add_special_tokens) const = 0;
  // Ids the tokenizer does not know are dropped, as HF does (models pad their embedding past the
  // tokenizer's vocabulary). The result is valid UTF-8: broken byte sequences become U+FFFD.
  virtual std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens = false) const = 0;
  // Number of distinct tokens, added tokens included (HF `get_vocab_size(with_added_tokens=True)`).
  virtual int64_t vocab_size() const = 0;
  virtual std::optional<int32_t> bos_id() const = 0;
  virtual std::optional<int32_t> eos_id() const = 0;
  virtual bool is_special(int32_t id) const = 0;
  virtual std::optional<int32_t> token_to_id(std::string_view token) const = 0;
  // "tokenizer.json (BPE)" or "tokenizer.model (sentencepiece)": for messages and reports.
  virtual std::string kind() const = 0;
};

// `path` is a checkpoint folder (tokenizer.json preferred, else tokenizer.model), a tokenizer.json
// or a tokenizer.model. A tokenizer_config.json beside it supplies bos_token/eos_token and, for
// sentencepiece, add_bos_token/add_eos_token. Throws FormatError naming the file and key.
std::unique_ptr<Tokenizer> load_tokenizer(const std::filesystem::path& path);
// A tokenizer.json given as text; `origin` names it in errors. `tokenizer_config` is the text of a
// tokenizer_config.json (named `config_origin` in errors) or empty.
std::unique_ptr<Tokenizer> load_hf_tokenizer(std::string_view json_text, const std::string& origin,
                                             std::string_view tokenizer_config = {},
                                             const std::string& config_origin = "tokenizer_config.json");

// Streaming decode for generation: push ids one at a time, get back only text that is final
// (complete UTF-8 characters that later ids cannot change). Concatenating every push() and the
// final flush() gives decode(all ids). Works on a window of recent ids (prefix/read offsets, as in
// HF text-generation-inference), so the first-token rules of decoders (Metaspace's leading
// space) apply once, as in a full decode.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, bool skip_special_tokens = false);
  std::string push(int32_t id);
  // Emits what is held back (an incomplete character becomes U+FFFD) and starts a new window.
  std::string flush();

 private:
  std::string decode_range(size_t begin, size_t end) const;

  const Tokenizer& tokenizer_;
  bool skip_special_tokens_;
  std::vector<int32_t> ids_;
  size_t prefix_offset_ = 0;  // ids_[prefix_offset_, read_offset_) decode to text already emitted
  size_t read_offset_ = 0;
};

}  // namespace effarch::tokenizer
