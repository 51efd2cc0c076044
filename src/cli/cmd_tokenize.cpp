// effarch tokenize TOKENIZER: text to ids and back, one JSON value per line (JSON lines in, JSON
// lines out), with the tokenizer of a checkpoint folder, a tokenizer.json or a tokenizer.model.

#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "effarch/common/error.h"
#include "effarch/io/strict_json.h"
#include "effarch/tokenizer/tokenizer.h"

namespace effarch::cli {
namespace {

struct TokenizeOptions {
  std::string tokenizer;
  std::string input = "-";
  bool add_special_tokens = false;
  bool decode = false;
  bool skip_special_tokens = false;
  bool stream = false;
  bool info = false;
};

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

int run_tokenize(const TokenizeOptions& opt) {
  const auto tok = tokenizer::load_tokenizer(opt.tokenizer);
  if (opt.info) {
    auto optional = [](std::optional<int32_t> id) { return id ? nlohmann::json(*id) : nlohmann::json(nullptr); };
    const nlohmann::json info = {{"kind", tok->kind()},
                                 {"vocab_size", tok->vocab_size()},
                                 {"bos_id", optional(tok->bos_id())},
                                 {"eos_id", optional(tok->eos_id())}};
    fmt::print("{}\n", info.dump());
    return 0;
  }
  if (opt.stream && !opt.decode) throw UsageError("--stream works with --decode");
  if (opt.add_special_tokens && opt.decode) throw UsageError("--add-special-tokens works when encoding, not with --decode");

  std::ifstream file;
  const bool from_stdin = opt.input == "-";
  if (!from_stdin) {
    file.open(opt.input, std::ios::binary);
    if (!file) throw UsageError(fmt::format("--input {}: cannot open", opt.input));
  }
  std::istream& in = from_stdin ? std::cin : file;
  const std::string name = from_stdin ? "<stdin>" : opt.input;
  std::string line, out;
  for (size_t number = 1; std::getline(in, line); ++number) {
    const std::string where = fmt::format("{}:{}", name, number);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const nlohmann::json value = io::parse_strict_json(line, where);
    if (!opt.decode) {
      if (!value.is_string()) throw FormatError(fmt::format("{}: expected a JSON string, got {}", where, value.type_name()));
      out = dump_line(tok->encode(value.get_ref<const std::string&>(), opt.add_special_tokens), where);
    } else if (!opt.stream) {
      out = dump_line(tok->decode(parse_ids(value, where), opt.skip_special_tokens), where);
    } else {
      // The chunks a generation loop would print, one push per id, then the flush.
      tokenizer::StreamDecoder stream(*tok, opt.skip_special_tokens);
      nlohmann::json chunks = nlohmann::json::array();
      for (const int32_t id : parse_ids(value, where)) {
        if (auto text = stream.push(id); !text.empty()) chunks.push_back(std::move(text));
      }
      if (auto text = stream.flush(); !text.empty()) chunks.push_back(std::move(text));
      out = dump_line(chunks, where);
    }
    std::fwrite(out.data(), 1, out.size(), stdout);
  }
  std::fflush(stdout);
  return 0;
}

}  // namespace

void register_tokenize(CLI::App& app, int* exit_code) {
  auto opt = std::make_shared<TokenizeOptions>();
  auto* cmd = app.add_subcommand("tokenize", "Encode JSON-string lines to JSON id arrays (or decode them back) with a "
                                             "checkpoint's tokenizer");
  cmd->add_option("TOKENIZER", opt->tokenizer, "A checkpoint folder, a tokenizer.json or a tokenizer.model")->required();
  cmd->add_option("--input", opt->input, "JSON lines: strings to encode, or id arrays with --decode ('-': stdin)")
      ->capture_default_str();
  cmd->add_flag("--add-special-tokens", opt->add_special_tokens, "Add the post-processor's special tokens (BOS/EOS)");
  cmd->add_flag("--decode", opt->decode, "Decode id arrays to strings instead");
  cmd->add_flag("--skip-special-tokens", opt->skip_special_tokens, "With --decode: leave special tokens out");
  cmd->add_flag("--stream", opt->stream, "With --decode: print the chunks of the streaming decoder as a JSON array");
  cmd->add_flag("--info", opt->info, "Print the tokenizer's kind, vocab_size, bos_id and eos_id as JSON");
  cmd->callback([opt, exit_code] { *exit_code = run_tokenize(*opt); });
}

}  // namespace effarch::cli
