#pragma once
// GPT-2's byte-level alphabet: each of the 256 bytes is shown as a printable character (printable
// ASCII and Latin-1 as themselves, the rest as U+0100 + n), so any byte string is a text.

#include <array>
#include <string>

#include "pieces.h"

namespace effarch::tokenizer {

// UTF-8 of the character standing for each byte.
const std::array<std::string, 256>& byte_level_chars();
// The byte a character stands for, or -1.
int byte_level_byte(char32_t c);
// Rewrites every byte of the piece as its character (origins kept).
void byte_level_encode(Piece& p);

}  // namespace effarch::tokenizer
