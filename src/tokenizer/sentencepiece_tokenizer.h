#pragma once
// tokenizer.model: a sentencepiece model (BPE or unigram), run by the sentencepiece library.

#include <filesystem>
#include <memory>

#include <nlohmann/json.hpp>

#include "effarch/tokenizer/tokenizer.h"

namespace effarch::tokenizer {

// `config` is the tokenizer_config.json beside the model or null: add_bos_token (default true) and
// add_eos_token (default false) say what add_special_tokens adds, as transformers' LlamaTokenizer.
std::unique_ptr<Tokenizer> load_sentencepiece(const std::filesystem::path& path, const nlohmann::json* config,
                                              const std::string& config_origin);

}  // namespace effarch::tokenizer
