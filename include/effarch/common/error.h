#pragma once
// Typed errors. The library throws these with a message that says what was wrong and where
// (file, tensor, key, option); only the CLI's main() turns them into a message and an exit code.

#include <stdexcept>
#include <string>

namespace effarch {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A file that breaks its format: safetensors header, index JSON, config.json syntax.
class FormatError : public Error {
 public:
  using Error::Error;
};

// A config that parses but is not a model we can build: unknown architecture, missing or
// ill-typed key, impossible value.
class ConfigError : public Error {
 public:
  using Error::Error;
};

// A checkpoint whose tensors do not match its config (missing, unexpected, mis-shaped).
class CheckpointError : public Error {
 public:
  using Error::Error;
};

// A bad command-line argument or option value.
class UsageError : public Error {
 public:
  using Error::Error;
};

// An op (effarch::ops) called with arguments it cannot take: a shape, dtype or device that does
// not fit, or an implementation this build or device lacks. A caller's bug, not the user's
// command line, so the CLI reports it with exit code 1, not the usage error's 2.
class OpError : public Error {
 public:
  using Error::Error;
};

// What an exception says, without the C++ backtrace that c10 (ATen) errors carry in what().
std::string error_message(const std::exception& e);
// Whether it is an allocation that failed: CUDA's OutOfMemoryError, the CPU allocator's refusal
// (a c10::Error saying so), std::bad_alloc. bench records such a point as oom, the CLI says
// "out of memory".
bool is_out_of_memory(const std::exception& e);

}  // namespace effarch
