#pragma once
// Files the user names as input (a text file to tokenize, a results file to compare, a config):
// why one cannot be read, checked before it is opened, since an std::ifstream opens a folder as
// if it were an empty file.

#include <filesystem>
#include <string>

namespace effarch {

// "" when `path` is a regular file (or a device, a pipe) that can be read; otherwise why not:
// "does not exist", "is a folder", "cannot be read". Callers put it in their own error.
std::string unreadable_reason(const std::filesystem::path& path);

// Programs the user names (report's --python): "" when `program` can be run, a path (with a '/')
// as it is, a bare name as the shell would find it on $PATH; otherwise why not: "does not exist",
// "is a folder", "is not executable", "is not on PATH".
std::string unrunnable_reason(const std::string& program);

}  // namespace effarch
