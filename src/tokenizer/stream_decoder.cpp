// Streaming decode with the prefix/read offsets of HF text-generation-inference: decode the ids
// since prefix_offset_ twice, without and with the new ones, and emit what the new ids appended,
// unless it ends in U+FFFD (a character whose remaining bytes are still to come).

#include <fmt/format.h>

#include "effarch/tokenizer/tokenizer.h"
#include "unicode.h"

namespace effarch::tokenizer {

namespace {

bool ends_with_replacement(const std::string& s) {
  return s.size() >= unicode::kReplacement.size() &&
         s.compare(s.size() - unicode::kReplacement.size(), unicode::kReplacement.size(), unicode::kReplacement) == 0;
}

// The text `full` adds after `prefix`. Decoders are prefix-stable in practice; if one is not, cut
// at the first difference (on a character boundary) rather than emit broken UTF-8.
std::string added_text(const std::string& prefix, const std::string& full) {
  if (full.compare(0, prefix.size(), prefix) == 0) return full.substr(prefix.size());
  size_t common = 0;
  while (common < prefix.size() && common < full.size() && prefix[common] == full[common]) ++common;
  while (common > 0 && (static_cast<unsigned char>(full[common]) & 0xC0) == 0x80) --common;
  return full.substr(common);
}

}  // namespace

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, bool skip_special_tokens)
    : tokenizer_(tokenizer), skip_special_tokens_(skip_special_tokens) {}

std::string StreamDecoder::decode_range(size_t begin, size_t end) const {
  if (begin >= end) return {};
  return tokenizer_.decode(std::vector<int32_t>(ids_.begin() + begin, ids_.begin() + end), skip_special_tokens_);
}

std::string StreamDecoder::push(int32_t id) {
  ids_.push_back(id);
  const std::string prefix = decode_range(prefix_offset_, read_offset_);
  const std::string full = decode_range(prefix_offset_, ids_.size());
  if (full.size() <= prefix.size() || ends_with_replacement(full)) return {};
  std::string out = added_text(prefix, full);
  // The ids before the new prefix are no longer needed.
  ids_.erase(ids_.begin(), ids_.begin() + read_offset_);
  prefix_offset_ = 0;
  read_offset_ = ids_.size();
  return out;
}

std::string StreamDecoder::flush() {
  const std::string prefix = decode_range(prefix_offset_, read_offset_);
  const std::string full = decode_range(prefix_offset_, ids_.size());
  std::string out = full.size() > prefix.size() ? added_text(prefix, full) : std::string();
  ids_.erase(ids_.begin(), ids_.begin() + read_offset_);
  prefix_offset_ = 0;
  read_offset_ = ids_.size();
  return out;
}

}  // namespace effarch::tokenizer
