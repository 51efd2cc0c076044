#pragma once
// Human-readable figures shared by the library's reports and the CLI's tables.

#include <cstdint>
#include <string>

namespace effarch {

// Binary units with one decimal: 1536 -> "1.5 KiB"; below 1 KiB the exact count: "512 B".
std::string human_bytes(uint64_t bytes);

}  // namespace effarch
