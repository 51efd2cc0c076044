// effarch_scan_bench: the Mamba-1 selective scan and its one-token update, the ATen reference
// (--backend reference) against the fused CPU kernel (auto on the CPU), in one process, on a
// mamba-130m-shaped mixer (d_inner 1536, d_state 16) with the mixer's channel-last views. Not a
// test: timings only.
//
//   effarch_scan_bench [threads] [seqlen] [repeats]

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "timing.h"

#include "effarch/ops/selective_scan.h"

using effarch::test::median_seconds;

int main(int argc, char** argv) {
  using namespace effarch::ops;
  if (argc > 1) at::set_num_threads(std::atoi(argv[1]));
  const int64_t len = argc > 2 ? std::atoll(argv[2]) : 1024;
  const int repeats = argc > 3 ? std::atoi(argv[3]) : 5;
  const int64_t batch = 1, dim = 1536, dstate = 16, rank = 48;
  std::printf("threads %d, B=%lld D=%lld N=%lld L=%lld, repeats %d\n", at::get_num_threads(),
              static_cast<long long>(batch), static_cast<long long>(dim), static_cast<long long>(dstate),
              static_cast<long long>(len), repeats);
  // As the mixer passes them: transposes of [B, L, X] projections.
  const at::Tensor xz = at::randn({batch, len, 2 * dim});
  const at::Tensor u = xz.narrow(2, 0, dim).transpose(1, 2), z = xz.narrow(2, dim, dim).transpose(1, 2);
  const at::Tensor delta = (at::randn({batch, len, dim}) * 0.5 - 1.0).transpose(1, 2);
  const at::Tensor proj = at::randn({batch, len, rank + 2 * dstate});
  const at::Tensor Bm = proj.narrow(2, rank, dstate).transpose(1, 2), Cm = proj.narrow(2, rank + dstate, dstate).transpose(1, 2);
  SelectiveScanArgs args;
  args.A = -at::exp(at::log(at::arange(1, dstate + 1, at::kFloat)).expand({dim, dstate}).contiguous());
  args.D = at::ones({dim});
  args.delta_bias = at::randn({dim}) * 0.1;
  at::Tensor state = at::zeros({batch, dim, dstate});
  for (const Backend b : {Backend::Reference, Backend::Auto}) {
    const double tp = median_seconds(repeats, [&] { selective_scan(u, delta, Bm, Cm, z, args, state, false, b); });
    const double td = median_seconds(repeats * 20, [&] {
      selective_state_update(u.select(2, 0), delta.select(2, 0), Bm.select(2, 0), Cm.select(2, 0), z.select(2, 0),
                             args, state, b);
    });
    std::printf("  %-9s (%s): prefill scan %9.2f ms (%.0f tok/s)   state update %8.1f us\n",
                std::string(backend_name(b)).c_str(),
                std::string(backend_name(resolve_backend(b, OpFamily::SelectiveScan, at::kCPU))).c_str(), tp * 1e3,
                static_cast<double>(batch * len) / tp, td * 1e6);
  }
  return 0;
}
