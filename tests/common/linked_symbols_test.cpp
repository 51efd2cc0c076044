// undersized_symbol_clashes (src/common/linked_symbols.cpp): a variable defined by two loaded
// libraries at different sizes, where the smaller definition wins, is reported; the test binary
// itself, linked like the effarch command (src/CMakeLists.txt), has none.

#include <dlfcn.h>

#include <gtest/gtest.h>

#include "effarch/common/linked_symbols.h"

namespace {

using effarch::describe;
using effarch::undersized_symbol_clashes;

std::vector<std::string> described() {
  std::vector<std::string> out;
  for (const auto& c : undersized_symbol_clashes()) out.push_back(describe(c));
  return out;
}

// Debian's libsentencepiece.so.0 and libtorch's libc10.so both define FLAGS_minloglevel (32 and
// 4 bytes): linked with libc10 first, sentencepiece's constructor wrote over c10's variables.
TEST(LinkedSymbols, NoLoadedLibraryWritesPastAnothersVariable) {
  ASSERT_NE(dlsym(RTLD_DEFAULT, "FLAGS_minloglevel"), nullptr) << "libc10 or sentencepiece no longer defines it";
  EXPECT_EQ(described(), std::vector<std::string>{});
}

// The same check on a clash made on purpose: two probe libraries, the 4-byte one loaded first.
TEST(LinkedSymbols, ReportsASmallerDefinitionThatWins) {
  void* small = dlopen(EFFARCH_CLASH_PROBE_SMALL, RTLD_NOW | RTLD_GLOBAL);
  ASSERT_NE(small, nullptr) << dlerror();
  EXPECT_EQ(described(), std::vector<std::string>{}) << "one definition alone is no clash";
  void* large = dlopen(EFFARCH_CLASH_PROBE_LARGE, RTLD_NOW | RTLD_GLOBAL);
  ASSERT_NE(large, nullptr) << dlerror();
  const auto clashes = undersized_symbol_clashes();
  ASSERT_EQ(clashes.size(), 1u) << ::testing::PrintToString(described());
  EXPECT_EQ(describe(clashes[0]),
            "effarch_clash_probe: libeffarch_clash_probe_small.so (4 bytes) wins over libeffarch_clash_probe_large.so (32 bytes)");
  dlclose(large);
  dlclose(small);
}

}  // namespace
