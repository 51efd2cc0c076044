#include "effarch/common/files.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>

namespace effarch {

std::string unreadable_reason(const std::filesystem::path& path) {
  std::error_code ec;
  const std::filesystem::file_status st = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(st)) return "does not exist";
  if (std::filesystem::is_directory(st)) return "is a folder";
  if (access(path.c_str(), R_OK) != 0) return "cannot be read";
  return "";
}

std::string unrunnable_reason(const std::string& program) {
  namespace fs = std::filesystem;
  const auto runnable = [](const fs::path& p) {
    std::error_code ec;
    return fs::is_regular_file(p, ec) && access(p.c_str(), X_OK) == 0;
  };
  if (program.find('/') != std::string::npos) {
    std::error_code ec;
    if (!fs::exists(program, ec)) return "does not exist";
    if (fs::is_directory(program, ec)) return "is a folder";
    return runnable(program) ? "" : "is not executable";
  }
  if (program.empty()) return "does not exist";
  const char* path = std::getenv("PATH");
  const std::string dirs = path != nullptr ? path : "";
  size_t begin = 0;
  while (begin <= dirs.size()) {
    const size_t end = std::min(dirs.find(':', begin), dirs.size());
    const std::string dir = dirs.substr(begin, end - begin);
    if (runnable(fs::path(dir.empty() ? "." : dir) / program)) return "";  // an empty entry is the working folder
    begin = end + 1;
  }
  return "is not on PATH";
}

}  // namespace effarch
