// libFuzzer target for the safetensors header validator. Any input must either parse into a
// header that satisfies the format's invariants or throw effarch::Error; another exception, a
// sanitizer report or a broken invariant is a finding.
//
//   build-fuzz/tests/fuzz/safetensors_header_fuzz -dict=tests/fuzz/safetensors.dict CORPUS_COPY/

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <set>
#include <string>

#include "effarch/common/dtype.h"
#include "effarch/common/error.h"
#include "effarch/io/safetensors.h"

namespace {

[[noreturn]] void broken(const char* what, const std::string& detail) {
  std::fprintf(stderr, "invariant broken after a successful parse: %s (%s)\n", what, detail.c_str());
  std::abort();
}

// What a successful parse promises: tensors sorted, back to back, exactly covering the data section.
void check(const effarch::io::SafetensorsHeader& h, uint64_t size) {
  if (h.header_bytes > effarch::io::kMaxHeaderBytes) broken("header too long", std::to_string(h.header_bytes));
  if (h.data_offset != 8 + h.header_bytes || h.data_offset > size) broken("data offset", std::to_string(h.data_offset));
  std::set<std::string> names;
  uint64_t at = 0;
  for (const auto& t : h.tensors) {
    if (t.name.empty() || !names.insert(t.name).second) broken("empty or repeated name", t.name);
    if (t.data_begin != at || t.data_end < t.data_begin) broken("layout", t.name);
    uint64_t numel = 1;
    for (int64_t d : t.shape) {
      if (d < 0) broken("negative dimension", t.name);
      numel *= static_cast<uint64_t>(d);
    }
    if (numel != t.numel || t.numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      broken("element count", t.name);
    }
    if (t.nbytes() != t.numel * effarch::dtype_size(t.dtype)) broken("byte size", t.name);
    at = t.data_end;
  }
  if (at != size - h.data_offset) broken("data section not covered exactly", std::to_string(at));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto header = effarch::io::parse_safetensors(data, size, "fuzz.safetensors");
    check(header, size);
  } catch (const effarch::Error&) {
    // A rejected input: the expected outcome for almost everything.
  }
  return 0;
}
