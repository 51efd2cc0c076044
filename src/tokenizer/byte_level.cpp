#include "byte_level.h"

#include "unicode.h"

namespace effarch::tokenizer {
namespace {

struct Tables {
  std::array<std::string, 256> chars;
  std::array<int, 512> bytes;  // indexed by code point (all are below 0x144)
};

const Tables& tables() {
  static const Tables t = [] {
    Tables t{};
    t.bytes.fill(-1);
    auto printable = [](int b) { return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF); };
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const char32_t c = printable(b) ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + n++);
      t.chars[b] = unicode::to_utf8(c);
      t.bytes[c] = b;
    }
    return t;
  }();
  return t;
}

}  // namespace

const std::array<std::string, 256>& byte_level_chars() { return tables().chars; }

int byte_level_byte(char32_t c) { return c < 512 ? tables().bytes[c] : -1; }

void byte_level_encode(Piece& p) {
  const auto& chars = tables().chars;
  PieceBuilder b(p.text.size() * 2);
  for (size_t i = 0; i < p.text.size(); ++i) b.append(chars[static_cast<unsigned char>(p.text[i])], p.origin[i]);
  b.finish(p);
}

}  // namespace effarch::tokenizer
