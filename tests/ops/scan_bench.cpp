// effarch_scan_bench: the Mamba-1 selective scan and its one-token update, the ATen reference
// (--backend reference) against the fused CPU kernel (auto on the CPU), in one process, on a
// mamba-130m-shaped mixer (d_inner 1536, d_state 16) with the mixer's channel-last views; then
// the same for the Mamba-2 SSD scan and its update on a mamba2-130m-shaped mixer (d_model 768,
// d_inner 1536 = 24 heads of 64, d_state 128, 1 group, chunk 256). Not a test: timings only.
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
#include "effarch/ops/ssd.h"

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

  // Mamba-2: x, B, C as views of the channel-last conv output [B, L, conv_dim], dt a narrow of
  // the in_proj output, as src/model/blocks/mamba2.cpp passes them.
  const int64_t heads = 24, head_dim = 64, d_inner = heads * head_dim, n2 = 128, groups = 1;
  const int64_t conv_dim = d_inner + 2 * groups * n2;
  std::printf("mamba2: B=%lld H=%lld P=%lld N=%lld G=%lld L=%lld chunk 256\n", static_cast<long long>(batch),
              static_cast<long long>(heads), static_cast<long long>(head_dim), static_cast<long long>(n2),
              static_cast<long long>(groups), static_cast<long long>(len));
  const at::Tensor conv = at::randn({batch, len, conv_dim});
  const at::Tensor in_proj = at::randn({batch, len, d_inner + conv_dim + heads}) * 0.5 - 1.0;
  const at::Tensor xs = conv.narrow(2, 0, d_inner).view({batch, len, heads, head_dim});
  const at::Tensor B2 = conv.narrow(2, d_inner, groups * n2).view({batch, len, groups, n2});
  const at::Tensor C2 = conv.narrow(2, d_inner + groups * n2, groups * n2).view({batch, len, groups, n2});
  const at::Tensor dt2 = in_proj.narrow(2, d_inner + conv_dim, heads);
  SsdArgs sargs;
  sargs.A = -at::exp(at::rand({heads}) * 2.0);
  sargs.D = at::ones({heads});
  sargs.dt_bias = at::randn({heads}) * 0.1;
  sargs.chunk_size = 256;
  at::Tensor state2 = at::zeros({batch, heads, head_dim, n2});
  for (const Backend b : {Backend::Reference, Backend::Auto}) {
    const double tp = median_seconds(repeats, [&] { ssd_chunk_scan(xs, dt2, B2, C2, sargs, state2, false, b); });
    const double td = median_seconds(repeats * 20, [&] {
      ssd_state_update(xs.select(1, 0), dt2.select(1, 0), B2.select(1, 0), C2.select(1, 0), sargs, state2, b);
    });
    std::printf("  %-9s (%s): prefill scan %9.2f ms (%.0f tok/s)   state update %8.1f us\n",
                std::string(backend_name(b)).c_str(),
                std::string(backend_name(resolve_backend(b, OpFamily::SsdScan, at::kCPU))).c_str(), tp * 1e3,
                static_cast<double>(batch * len) / tp, td * 1e6);
  }
  return 0;
}
