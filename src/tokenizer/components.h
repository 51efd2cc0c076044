#pragma once
// The stages of a tokenizer.json pipeline (HF `tokenizers`): normalizers, pre-tokenizers,
// post-processors and decoders, each parsed from its JSON object. `where` names the file and the
// JSON path of the object ("tokenizer.json: pre_tokenizer.pretokenizers[1]") for error messages.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "pieces.h"
#include "regex.h"

namespace effarch::tokenizer {

using json = nlohmann::json;

// ---- JSON access that names the key on error (FormatError) ----
const json& require_key(const json& j, const char* key, const std::string& where);
std::string get_string(const json& j, const char* key, const std::string& where);
// A missing key or null gives `fallback`.
bool get_bool(const json& j, const char* key, bool fallback, const std::string& where);
std::optional<std::string> get_optional_string(const json& j, const char* key, const std::string& where);
// The "type" of a component object.
std::string component_type(const json& j, const std::string& where);
// A single-character string field (Metaspace replacement, Strip content).
char32_t get_char(const json& j, const char* key, const std::string& where);
// A Split/Replace "pattern": {"String": "..."} (literal) or {"Regex": "..."}.
Regex parse_pattern(const json& j, const std::string& where);

// ---- Normalizers: rewrite a piece's text ----
class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void normalize(Piece& piece) const = 0;
};
std::unique_ptr<Normalizer> parse_normalizer(const json& j, const std::string& where);

// ---- Pre-tokenizers: split pieces (and rewrite them: ByteLevel, Metaspace) ----
class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Splits every piece that is not an added token; empty pieces are dropped.
  virtual void pre_tokenize(std::vector<Piece>& pieces) const = 0;
};
std::unique_ptr<PreTokenizer> parse_pre_tokenizer(const json& j, const std::string& where);

// ---- Post-processors: add the special tokens around the ids ----
class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  virtual void process(std::vector<int32_t>& ids, bool add_special_tokens) const = 0;
  // The special token ids put before and after the sequence (for bos_id/eos_id).
  virtual std::vector<int32_t> ids_before() const { return {}; }
  virtual std::vector<int32_t> ids_after() const { return {}; }
};
std::unique_ptr<PostProcessor> parse_post_processor(const json& j, const std::string& where);

// ---- Decoders: turn token strings back into text ----
class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual void decode_chain(std::vector<std::string>& tokens) const = 0;
};
std::unique_ptr<Decoder> parse_decoder(const json& j, const std::string& where);

}  // namespace effarch::tokenizer
