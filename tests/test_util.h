#pragma once
// Helpers shared by the tests: a scratch folder removed at the end of the test, and a check
// that a call throws a given effarch error whose message contains every expected fragment.

#include <atomic>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <unistd.h>

namespace effarch::testing {

class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = std::filesystem::temp_directory_path() /
            ("effarch-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

inline std::filesystem::path tests_dir() { return EFFARCH_TESTS_DIR; }
inline std::filesystem::path configs_dir() { return std::filesystem::path(EFFARCH_TESTS_DIR).parent_path() / "configs"; }

}  // namespace effarch::testing

// EXPECT_THROW_WITH(stmt, ErrorType, {"fragment", ...})
#define EXPECT_THROW_WITH(statement, ErrorType, ...)                                    \
  do {                                                                                  \
    try {                                                                               \
      statement;                                                                        \
      ADD_FAILURE() << "expected " #ErrorType " from: " #statement;                     \
    } catch (const ErrorType& e_) {                                                     \
      const std::string msg_ = e_.what();                                               \
      for (const std::string& frag_ : std::vector<std::string> __VA_ARGS__) {           \
        EXPECT_NE(msg_.find(frag_), std::string::npos) << "message: " << msg_           \
                                                       << "\nlacks: " << frag_;         \
      }                                                                                 \
    }                                                                                   \
  } while (0)
