// effarch tokenize TOKENIZER: text to ids and back, one JSON value per line (JSON lines in, JSON
// lines out), with the tokenizer of a checkpoint folder, a tokenizer.json or a tokenizer.model.

#include <fstream>
#include <iostream>
#include <memory>

#include <fmt/format.h>

#include "commands.h"
#include "effarch/common/error.h"
#include "effarch/common/files.h"
#include "effarch/tokenizer/jsonl.h"
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

int run_tokenize(const TokenizeOptions& opt) {
  const auto tok = tokenizer::load_tokenizer(opt.tokenizer);
  if (opt.info) {
    fmt::print("{}\n", tokenizer::tokenizer_info(*tok).dump());
    return 0;
  }
  const tokenizer::JsonlOptions options{opt.decode, opt.add_special_tokens, opt.skip_special_tokens, opt.stream};
  tokenizer::check_jsonl_options(options);
  std::ifstream file;
  const bool from_stdin = opt.input == "-";
  if (!from_stdin) {
    if (const std::string why = unreadable_reason(opt.input); !why.empty()) {
      throw UsageError(fmt::format("--input {}: {}", opt.input, why));
    }
    file.open(opt.input, std::ios::binary);
    if (!file) throw UsageError(fmt::format("--input {}: cannot open", opt.input));
  }
  tokenizer::tokenize_jsonl(*tok, options, from_stdin ? std::cin : file, from_stdin ? "<stdin>" : opt.input, stdout);
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
