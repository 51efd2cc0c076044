#pragma once
// Text shared by the library's reports and parsers and the CLI: human-readable figures, lists.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace effarch {

// Binary units with one decimal: 1536 -> "1.5 KiB"; below 1 KiB the exact count: "512 B".
std::string human_bytes(uint64_t bytes);

// The items of a comma-separated list in order, empty ones kept ("a,,b" -> a, "", b; "" -> one
// empty item): what an empty item means is the caller's to say.
std::vector<std::string> split_commas(const std::string& text);

// The first item of `items` that an earlier one equals (the list's order), if any: for options
// whose items must be distinct (bench's MODELs, kernels' --ops).
std::optional<std::string> first_repeat(const std::vector<std::string>& items);

}  // namespace effarch
