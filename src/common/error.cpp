#include "effarch/common/error.h"

#include <new>

#include <c10/util/Exception.h>

namespace effarch {

std::string error_message(const std::exception& e) {
  if (const auto* c10e = dynamic_cast<const c10::Error*>(&e)) return c10e->what_without_backtrace();
  return e.what();
}

bool is_out_of_memory(const std::exception& e) {
  if (dynamic_cast<const c10::OutOfMemoryError*>(&e) != nullptr) return true;
  if (dynamic_cast<const std::bad_alloc*>(&e) != nullptr) return true;
  const std::string msg = error_message(e);
  for (const char* sign : {"out of memory", "DefaultCPUAllocator", "can't allocate memory", "Cannot allocate memory"}) {
    if (msg.find(sign) != std::string::npos) return true;
  }
  return false;
}

}  // namespace effarch
