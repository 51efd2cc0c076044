#include "effarch/tokenizer/jsonl.h"

#include <cstdint>
#include <vector>

#include <fmt/format.h>

#include "effarch/common/error.h"
#include "effarch/io/strict_json.h"

namespace effarch::tokenizer {
namespace {

std::string dump_line(const nlohmann::json& j, const std::string& where) {
  try {
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::strict) + "\n";
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("{}: output is not valid UTF-8: {}", where, e.what()));
  }
}

std::vector<int32_t> parse_ids(const nlohmann::json& j, const std::string& where) {
  if (!j.is_array()) throw FormatError(fmt::format("{}: expected a JSON array of token ids, got {}", where, j.type_name()));
  std::vector<int32_t> ids;
  ids.reserve(j.size());
  for (const auto& v : j) {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > INT32_MAX) {
      throw FormatError(fmt::format("{}: {} is not a token id (an integer in [0, 2^31))", where, v.dump()));
    }
    ids.push_back(static_cast<int32_t>(v.get<int64_t>()));
  }
  return ids;
}

}  // namespace

void check_jsonl_options(const JsonlOptions& options) {
  if (options.stream && !options.decode) throw UsageError("--stream works with --decode");
  if (options.skip_special_tokens && !options.decode) throw UsageError("--skip-special-tokens works with --decode");
  if (options.add_special_tokens && options.decode) {
    throw UsageError("--add-special-tokens works when encoding, not with --decode");
  }
}

void tokenize_jsonl(const Tokenizer& tokenizer, const JsonlOptions& options, std::istream& in,
                    const std::string& name, std::FILE* out) {
  check_jsonl_options(options);
  std::string line, text;
  for (size_t number = 1; std::getline(in, line); ++number) {
    const std::string where = fmt::format("{}:{}", name, number);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const nlohmann::json value = io::parse_strict_json(line, where);
    if (!options.decode) {
      if (!value.is_string()) throw FormatError(fmt::format("{}: expected a JSON string, got {}", where, value.type_name()));
      text = dump_line(tokenizer.encode(value.get_ref<const std::string&>(), options.add_special_tokens), where);
    } else if (!options.stream) {
      text = dump_line(tokenizer.decode(parse_ids(value, where), options.skip_special_tokens), where);
    } else {
      // The chunks a generation loop would print, one push per id, then the flush.
      StreamDecoder stream(tokenizer, options.skip_special_tokens);
      nlohmann::json chunks = nlohmann::json::array();
      for (const int32_t id : parse_ids(value, where)) {
        if (auto piece = stream.push(id); !piece.empty()) chunks.push_back(std::move(piece));
      }
      if (auto piece = stream.flush(); !piece.empty()) chunks.push_back(std::move(piece));
      text = dump_line(chunks, where);
    }
    std::fwrite(text.data(), 1, text.size(), out);
  }
  std::fflush(out);
}

nlohmann::json tokenizer_info(const Tokenizer& tokenizer) {
  auto optional = [](std::optional<int32_t> id) { return id ? nlohmann::json(*id) : nlohmann::json(nullptr); };
  return {{"kind", tokenizer.kind()},
          {"vocab_size", tokenizer.vocab_size()},
          {"bos_id", optional(tokenizer.bos_id())},
          {"eos_id", optional(tokenizer.eos_id())}};
}

}  // namespace effarch::tokenizer
