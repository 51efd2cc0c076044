#include "effarch/common/files.h"

#include <unistd.h>

namespace effarch {

std::string unreadable_reason(const std::filesystem::path& path) {
  std::error_code ec;
  const std::filesystem::file_status st = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(st)) return "does not exist";
  if (std::filesystem::is_directory(st)) return "is a folder";
  if (access(path.c_str(), R_OK) != 0) return "cannot be read";
  return "";
}

}  // namespace effarch
