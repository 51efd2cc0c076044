#pragma once
// Shared libraries that define one global variable twice, at different sizes. The dynamic linker
// binds every reference to a global to the first definition in load order, whatever its size: if
// that one is smaller than what another library's code expects, that code writes past it, over its
// owner's neighbouring variables. It happened here: Debian's libsentencepiece.so.0 defines
// `FLAGS_minloglevel` as a 32-byte absl::Flag<int>, libtorch's libc10.so as a 4-byte int; with
// libc10 first, sentencepiece's static constructor wrote its flag over c10's
// `FLAGS_caffe2_use_fatal_for_enforce` (so a failed allocation aborted the process instead of
// throwing) and the first bytes of a mutex. src/CMakeLists.txt links sentencepiece first; this
// is the check that it stays so (docs/building.md, "Link order").

#include <cstddef>
#include <string>
#include <vector>

namespace effarch {

// One object a library defines: the library's file name and the object's size in bytes.
struct SymbolDefinition {
  std::string library;
  std::size_t size = 0;
};

// A variable defined by several loaded libraries at different sizes whose winning (first in load
// order) definition is smaller than the largest: its definitions, the winner first.
struct SymbolClash {
  std::string name;
  std::vector<SymbolDefinition> definitions;
};

// Every such clash among the libraries loaded now (the program, its shared libraries and those
// dlopen()ed so far), read from their dynamic symbol tables in memory; empty when none.
std::vector<SymbolClash> undersized_symbol_clashes();

// "FLAGS_minloglevel: libc10.so (4 bytes) wins over libsentencepiece.so.0 (32 bytes)".
std::string describe(const SymbolClash& clash);

}  // namespace effarch
