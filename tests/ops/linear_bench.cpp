// effarch_linear_bench: the decode GEMV (ops::linear with one row) against at::linear on the
// projections of a Llama-100M-shaped model (hidden 768, MLP 2048, 12 layers, vocab 32000), in
// fp32 and bf16, one product at a time and as a whole decode step over distinct weights (so they
// stream from memory as in a real step); then the real models' decode products in bf16 (Phi-2's,
// its parallel block's two, Mamba-2.8B's, Llama-3-8B's down). Prints medians and the bandwidth
// reached as a fraction of a large copy's (read + write bytes / s, as bench's "decode BW" does).
// Not a test: timings only.
//
//   effarch_linear_bench [threads] [repeats]

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "timing.h"

#include "effarch/ops/linear.h"

using effarch::test::median_seconds;

int main(int argc, char** argv) {
  if (argc > 1) at::set_num_threads(std::atoi(argv[1]));
  const int repeats = argc > 2 ? std::atoi(argv[2]) : 20;
  std::printf("threads %d, repeats %d\n", at::get_num_threads(), repeats);

  const int64_t copy_bytes = int64_t{1} << 28;
  at::Tensor src = at::ones({copy_bytes}, at::kByte), dst = at::empty({copy_bytes}, at::kByte);
  const double copy_bw = 2.0 * static_cast<double>(copy_bytes) / median_seconds(5, [&] { dst.copy_(src); });
  std::printf("copy bandwidth %.1f GB/s\n\n", copy_bw / 1e9);

  const int64_t hidden = 768, inter = 2048, layers = 12, vocab = 32000;
  struct Shape {
    const char* name;
    int64_t out, in;
  };
  const std::vector<Shape> shapes{{"q/k/v/o", hidden, hidden}, {"gate/up", inter, hidden}, {"down", hidden, inter},
                                  {"lm_head", vocab, hidden}};
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    std::printf("%s, one row:\n", c10::toString(dtype));
    for (const Shape& s : shapes) {
      const effarch::ops::Linear layer(at::randn({s.out, s.in}).to(dtype));
      const at::Tensor x = at::randn({1, 1, s.in}).to(dtype);
      const double ta = median_seconds(repeats, [&] { at::linear(x, layer.weight); });
      const double tg = median_seconds(repeats, [&] { effarch::ops::linear(x, layer); });
      std::printf("  %-8s [%5lld x %4lld]  at::linear %8.1f us  ops::linear %8.1f us  speed-up %.2fx\n", s.name,
                  static_cast<long long>(s.out), static_cast<long long>(s.in), ta * 1e6, tg * 1e6, ta / tg);
    }
    // A whole step: every layer's seven projections and the head, distinct weights.
    std::vector<effarch::ops::Linear> step;
    uint64_t bytes = 0;
    for (int64_t l = 0; l < layers; ++l) {
      for (const Shape& s : {shapes[0], shapes[0], shapes[0], shapes[0], shapes[1], shapes[1], shapes[2]}) {
        step.emplace_back(at::randn({s.out, s.in}).to(dtype));
      }
    }
    step.emplace_back(at::randn({vocab, hidden}).to(dtype));
    for (const auto& l : step) bytes += l.bytes();
    const at::Tensor xh = at::randn({1, 1, hidden}).to(dtype), xi = at::randn({1, 1, inter}).to(dtype);
    auto run = [&](bool ours) {
      for (const auto& l : step) {
        const at::Tensor& x = l.in_features() == hidden ? xh : xi;
        if (ours) {
          effarch::ops::linear(x, l);
        } else {
          at::linear(x, l.weight);
        }
      }
    };
    const double ta = median_seconds(repeats, [&] { run(false); });
    const double tg = median_seconds(repeats, [&] { run(true); });
    const double bw_a = static_cast<double>(bytes) / ta, bw_g = static_cast<double>(bytes) / tg;
    std::printf("  whole step (%.0f MB of weights): at::linear %.2f ms (%.1f GB/s, %.0f%% of copy)  ops::linear "
                "%.2f ms (%.1f GB/s, %.0f%% of copy)  speed-up %.2fx\n\n",
                static_cast<double>(bytes) / 1e6, ta * 1e3, bw_a / 1e9, 100 * bw_a / copy_bw, tg * 1e3, bw_g / 1e9,
                100 * bw_g / copy_bw, ta / tg);
  }

  // The real models' decode products in bf16, one row, each over distinct copies of its weight
  // (about 200 MB in all, so they stream from memory as a decode step's do): where the GEMV's row
  // of x stays in L1 and where it runs two output rows a pass (src/ops/cpu/gemv.cpp), and Phi-2's
  // parallel block in two products against its four (docs/engine.md).
  const std::vector<Shape> decode{{"Phi-2 q/k/v", 7680, 2560},         {"Phi-2 fc1", 10240, 2560},
                                  {"Phi-2 o", 2560, 2560},             {"Phi-2 fc2", 2560, 10240},
                                  {"Phi-2 q/k/v+fc1", 17920, 2560},    {"Phi-2 fc2|o", 2560, 12800},
                                  {"Mamba-2.8B out_proj", 2560, 5120}, {"Mamba-2.8B x_proj", 192, 5120},
                                  {"Llama-3-8B down", 4096, 14336}};
  std::printf("bfloat16, one row, weights streamed from memory (ops::linear):\n");
  for (const Shape& s : decode) {
    const int64_t copies = std::max<int64_t>(2, (int64_t{200} << 20) / (s.out * s.in * 2));
    std::vector<effarch::ops::Linear> ws;
    for (int64_t c = 0; c < copies; ++c) ws.emplace_back(at::randn({s.out, s.in}).to(at::kBFloat16));
    const at::Tensor x = at::randn({1, 1, s.in}).to(at::kBFloat16);
    const double t = median_seconds(repeats, [&] {
      for (const auto& w : ws) effarch::ops::linear(x, w);
    }) / static_cast<double>(copies);
    const double bw = static_cast<double>(s.out * s.in * 2) / t;
    std::printf("  %-20s [%5lld x %5lld]  %7.3f ms  %5.1f GB/s  %3.0f%% of copy\n", s.name,
                static_cast<long long>(s.out), static_cast<long long>(s.in), t * 1e3, bw / 1e9, 100 * bw / copy_bw);
  }
  return 0;
}
