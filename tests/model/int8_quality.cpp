// effarch_int8_quality MODEL... [--dtype float32|bfloat16] [--prompt N] [--steps N] [--seed S]:
// the figures of docs/int8.md, how far --weights int8 moves each model's logits from its dense
// self, and beside them how far bf16 moves the dense model from fp32 (definitions in
// int8_quality.h). A measurement, not a test: the bounds are checked by
// int8_model_test.cpp.

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "effarch/common/dtype.h"
#include "effarch/model/catalog.h"
#include "int8_quality.h"

int main(int argc, char** argv) {
  using namespace effarch;
  std::vector<std::string> models;
  std::string dtype = "float32";
  int64_t prompt = 32, steps = 32;
  uint64_t seed = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--dtype") dtype = next();
    else if (a == "--prompt") prompt = std::stoll(next());
    else if (a == "--steps") steps = std::stoll(next());
    else if (a == "--seed") seed = std::stoull(next());
    else models.push_back(a);
  }
  if (models.empty()) {
    std::fprintf(stderr, "usage: effarch_int8_quality MODEL... [--dtype D] [--prompt N] [--steps N] [--seed S]\n");
    return 2;
  }
  const at::ScalarType type = parse_float_dtype(dtype, "--dtype");
  std::printf("| model | dtype | int8: max rel. error | mean rel. error | top-1 agreement | bf16 vs fp32: max rel. "
              "error | mean rel. error | top-1 agreement |\n|---|---|---|---|---|---|---|---|\n");
  for (const std::string& m : models) {
    const model::ModelSource source = model::resolve_model(m);
    const auto f = model::int8_quality::measure(source, type, prompt, steps, seed);
    const auto y = model::int8_quality::bf16_against_fp32(source, prompt, steps, seed);
    std::printf("| %s | %s | %.2e | %.2e | %d/%d | %.2e | %.2e | %d/%d |\n", m.c_str(), dtype.c_str(), f.max_rel,
                f.mean_rel, static_cast<int>(f.top1 * f.steps + 0.5), f.steps, y.max_rel, y.mean_rel,
                static_cast<int>(y.top1 * y.steps + 0.5), y.steps);
    std::fflush(stdout);
  }
  return 0;
}
