// The Mamba-2 CUDA kernels (kernels/ssd/): the decode step, the chunked scan and the gated RMSNorm.
//
// 1. On the CPU, every build: a host emulation of each kernel runs the kernel's own per-thread
//    math (kernels/ssd/ssd_math.h, the functions the .cuh kernels call) on the params the binding
//    launches (src/ops/ssd_launch.cpp) over every block and thread in the kernel's phase order (barriers as phase boundaries, the decode step's warp
//    shuffle tree as the same butterfly), in fp32, against the ATen reference on awkward sizes:
//    length 1, odd, not a multiple of the chunk, several chunks; batch > 1; d_state 1/16/64/128
//    (256 for the decode step); 1 and several groups; from zeros and from a state; the final
//    state; D / dt_bias / softplus on and off, dt clamped; strided views as the mixer passes them.
//    The scan's tensor-core path (kernels/ssd/ssd_tc_math.h over common/tile_mma.h's host tiles)
//    in bf16 / fp16, every warp's tile products and every thread's elementwise phase, against
//    the reference within tc_tolerance.
// 2. On a GPU (skipped without one): the kernels through the ops' Backend::Cuda against
//    Backend::Reference on the same device, fp32 / bf16 / fp16 inputs. With the FMA products both
//    widen the inputs to fp32 exactly and compute in fp32, so y and the state are held to the fp32
//    tolerance for every input dtype; the tensor-core products (bf16 / fp16 by default) to
//    tc_tolerance, and to an eighth of it against their own emulation; the gated RMSNorm's output
//    in bf16/fp16 to one rounding of that dtype.

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "../test_util.h"
#include "effarch/common/error.h"
#include "effarch/model/catalog.h"
#include "effarch/ops/backend.h"
#include "effarch/ops/ssd.h"
#include "common/warp_sum.h"
#include "ssd/ssd_math.h"
#include "ssd/ssd_tc_math.h"
#include "ssd_launch.h"
#include "tolerance.h"

namespace effarch::ops {
namespace {

namespace k = effarch::kernels;
namespace ks = effarch::kernels::ssd;

// ---------------------------------------------------------------------------------------------
// Host emulation on the launches src/ops/ssd_launch.cpp prepares. HostIo reads fp32, bf16 and
// fp16 tensors by their element type and rounds as the device does (nearest even); the
// tensor-core path's shared operands are floats holding values rounded to the input type.

struct HostIo {
  using Elem = float;
  static float load(const void* base, int64_t offset, k::ElementType type) {
    switch (type) {
      case k::ElementType::kBFloat16: return static_cast<float>(static_cast<const c10::BFloat16*>(base)[offset]);
      case k::ElementType::kFloat16: return static_cast<float>(static_cast<const c10::Half*>(base)[offset]);
      default: return static_cast<const float*>(base)[offset];
    }
  }
  static void store(void* base, int64_t offset, k::ElementType, float v) { static_cast<float*>(base)[offset] = v; }
  static float round_to(k::ElementType type, float v) {
    switch (type) {
      case k::ElementType::kBFloat16: return static_cast<float>(c10::BFloat16(v));
      case k::ElementType::kFloat16: return static_cast<float>(c10::Half(v));
      default: return v;
    }
  }
  static Elem to_elem(k::ElementType type, float v) { return round_to(type, v); }
  // The device's 16-byte copies: eight elements, each as load and to_elem give it.
  struct Vec8 {
    float v[8];
  };
  static Vec8 load8(const void* base, int64_t offset, k::ElementType type) {
    Vec8 out{};
    for (int e = 0; e < 8; ++e) out.v[e] = to_elem(type, load(base, offset + e, type));
    return out;
  }
  static Vec8 zero8() { return Vec8{}; }
  static void store8(Elem* dst, const Vec8& v) {
    for (int e = 0; e < 8; ++e) dst[e] = v.v[e];
  }
  static void unpack8(const Vec8& v, k::ElementType, float (&out)[8]) {
    for (int e = 0; e < 8; ++e) out[e] = v.v[e];
  }
  static Vec8 pack8(k::ElementType type, const float (&in)[8]) {
    Vec8 v{};
    for (int e = 0; e < 8; ++e) v.v[e] = to_elem(type, in[e]);
    return v;
  }
};

// ssd_state_update_kernel over grid (P / warps, H, B), warps of 32 lanes.
at::Tensor emulate_update(const at::Tensor& x, const at::Tensor& dt, const at::Tensor& Bm, const at::Tensor& Cm,
                          const SsdArgs& args, at::Tensor& state) {
  const detail::SsdUpdateLaunch launch = detail::prepare_ssd_state_update(x, dt, Bm, Cm, args, state);
  const k::SsdUpdateParams& p = launch.params;
  const int blocks_x = (p.head_dim + ks::kUpdateWarps - 1) / ks::kUpdateWarps;
  for (int b = 0; b < p.batch; ++b) {
    for (int h = 0; h < p.heads; ++h) {
      for (int bx = 0; bx < blocks_x; ++bx) {
        for (int warp = 0; warp < ks::kUpdateWarps; ++warp) {
          const int pd = bx * ks::kUpdateWarps + warp;
          if (pd >= p.head_dim) continue;
          float lanes[ks::kWarpSize];
          ks::UpdateRow row[ks::kWarpSize];
          for (int lane = 0; lane < ks::kWarpSize; ++lane) {
            row[lane] = ks::update_row<HostIo>(p, b, h, pd);
            lanes[lane] = ks::update_lane<HostIo>(p, b, h, pd, lane, row[lane]);
          }
          for (int offset = ks::kWarpSize / 2; offset > 0; offset /= 2) {  // __shfl_xor_sync
            float next[ks::kWarpSize];
            for (int lane = 0; lane < ks::kWarpSize; ++lane) next[lane] = lanes[lane] + lanes[lane ^ offset];
            std::copy(next, next + ks::kWarpSize, lanes);
          }
          ks::update_write_y(p, b, h, pd, row[0], lanes[0]);
        }
      }
    }
  }
  return launch.y;
}

// Shared memory of a tensor-core block: `bytes` of floats poisoned with NaN, so a phase that reads
// what no earlier phase wrote shows.
std::vector<float> poisoned_shared(int64_t bytes) {
  return std::vector<float>(static_cast<size_t>(bytes / 4 + 1), std::nanf(""));
}

// ssd_chunk_state_tc_kernel over grid (P tiles x N tiles, H, B * nchunks), 4 warps of 32 lanes.
void emulate_chunk_state_tc(const k::SsdScanParams& p) {
  const int tiles_n = ks::tc_state_tiles(p.d_state);
  const int blocks_x = ks::tc_col_tiles(p.head_dim) * tiles_n;
  for (int bz = 0; bz < p.batch * p.nchunks; ++bz) {
    const int b = bz / p.nchunks, c = bz % p.nchunks;
    for (int h = 0; h < p.heads; ++h) {
      for (int bx = 0; bx < blocks_x; ++bx) {
        const int pd0 = bx / tiles_n * ks::kTcCols, n0 = bx % tiles_n * ks::kTcStates;
        std::vector<float> smem = poisoned_shared(ks::tc_state_offsets(p.chunk, sizeof(float)).total);
        const auto sh = ks::tc_state_shared<float>(reinterpret_cast<char*>(smem.data()), p.chunk);
        for (int t = 0; t < ks::kTcThreads; ++t) ks::tc_state_decay(p, b, h, c, t, ks::kTcThreads, sh.decay);
        k::tile::FragAcc acc[ks::kTcWarps][ks::kTcStates / k::tile::kDim];
        for (auto& a : acc) ks::tc_zero(a);
        for (int s0 = 0; s0 < ks::chunk_tokens(p, c); s0 += ks::kTcTokens) {
          for (int t = 0; t < ks::kTcThreads; ++t) ks::tc_state_load<HostIo>(p, b, c, h, pd0, n0, s0, t, ks::kTcThreads, sh);
          for (int w = 0; w < ks::kTcWarps; ++w) ks::tc_state_mma(w, sh, acc[w]);
        }
        for (int w = 0; w < ks::kTcWarps; ++w) ks::tc_state_store_warp(w, sh, acc[w]);
        for (int t = 0; t < ks::kTcThreads; ++t) ks::tc_state_write(p, b, c, h, pd0, n0, t, ks::kTcThreads, sh.out);
      }
    }
  }
}

// ssd_chunk_scan_tc_kernel over grid (P tiles x row tiles x chunks, H, B), its phases in order.
void emulate_chunk_scan_tc(const k::SsdScanParams& p) {
  const int col_tiles = ks::tc_col_tiles(p.head_dim), row_tiles = ks::tc_row_tiles(p.chunk);
  for (int b = 0; b < p.batch; ++b) {
    for (int h = 0; h < p.heads; ++h) {
      for (int bx = 0; bx < p.nchunks * row_tiles * col_tiles; ++bx) {
        const int pd0 = bx % col_tiles * ks::kTcCols, rest = bx / col_tiles;
        const int c = rest / row_tiles, row0 = rest % row_tiles * ks::kTcRows;
        if (row0 >= ks::chunk_tokens(p, c)) continue;
        std::vector<float> smem = poisoned_shared(ks::tc_scan_offsets(p.chunk, p.d_state, sizeof(float)).total);
        const auto sh = ks::tc_scan_shared<float>(reinterpret_cast<char*>(smem.data()), p.chunk, p.d_state);
        for (int t = 0; t < ks::kTcThreads; ++t) ks::tc_scan_load<HostIo>(p, b, c, h, row0, pd0, t, ks::kTcThreads, sh);
        k::tile::FragAcc acc[ks::kTcWarps][ks::kTcCols / k::tile::kDim];
        for (int w = 0; w < ks::kTcWarps; ++w) ks::tc_scan_start_mma(p.d_state, w, sh, acc[w]);
        for (int t = 0; t < ks::kTcThreads; ++t) ks::tc_scan_start_scale(p, c, row0, t, ks::kTcThreads, sh.cs, sh.acc);
        for (int w = 0; w < ks::kTcWarps; ++w) ks::tc_scan_reload(w, sh, acc[w]);
        for (int s0 = 0; s0 < ks::tc_scan_k_end(p, c, row0); s0 += ks::kTcTokens) {
          for (int t = 0; t < ks::kTcThreads; ++t) ks::tc_scan_load_b<HostIo>(p, b, c, h, s0, t, ks::kTcThreads, sh);
          for (int w = 0; w < ks::kTcWarps; ++w) ks::tc_scan_scores_mma(p.d_state, w, sh);
          for (int t = 0; t < ks::kTcThreads; ++t) {
            ks::tc_scan_load_x<HostIo>(p, b, c, h, pd0, s0, t, ks::kTcThreads, sh);
            ks::tc_scan_decay_step<HostIo>(p, c, row0, s0, t, ks::kTcThreads, sh);
          }
          for (int w = 0; w < ks::kTcWarps; ++w) ks::tc_scan_out_mma(w, sh, acc[w]);
        }
        for (int w = 0; w < ks::kTcWarps; ++w) ks::tc_scan_store_warp(w, sh, acc[w]);
        for (int t = 0; t < ks::kTcThreads; ++t) ks::tc_scan_write<HostIo>(p, b, c, h, row0, pd0, t, ks::kTcThreads, sh.acc);
      }
    }
  }
}

// The four stage kernels of ssd_chunk_scan_cuda, in launch order.
at::Tensor emulate_scan(const at::Tensor& x, const at::Tensor& dt, const at::Tensor& Bm, const at::Tensor& Cm,
                        const SsdArgs& args, at::Tensor& state, bool from_state) {
  if (x.size(1) == 0) return at::empty({x.size(0), 0, x.size(2), x.size(3)});
  detail::SsdScanLaunch launch = detail::prepare_ssd_chunk_scan(x, dt, Bm, Cm, args, state, from_state);
  k::SsdScanParams p = launch.params;
  // Poisoned workspaces: a stage that reads what no earlier stage wrote shows as NaN.
  launch.workspace.fill_(std::nanf(""));
  launch.y.fill_(std::nanf(""));

  // 1. chunk_cumsum: a thread per (b, h, c).
  for (int b = 0; b < p.batch; ++b)
    for (int h = 0; h < p.heads; ++h)
      for (int c = 0; c < p.nchunks; ++c) ks::chunk_cumsum_thread<HostIo>(p, b, h, c);
  const int entries = p.head_dim * p.d_state;
  if (p.tensor_cores) {
    emulate_chunk_state_tc(p);
  } else {
    // 2. chunk_state: blocks (entry tile, h, b * nchunks + c); thread 0's decays, barrier, entries.
    const int entry_blocks = (entries + ks::kScanThreads - 1) / ks::kScanThreads;
    std::vector<float> decay(static_cast<size_t>(p.chunk));
    for (int bz = 0; bz < p.batch * p.nchunks; ++bz) {
      const int b = bz / p.nchunks, c = bz % p.nchunks;
      for (int h = 0; h < p.heads; ++h) {
        for (int bx = 0; bx < entry_blocks; ++bx) {
          std::fill(decay.begin(), decay.end(), std::nanf(""));
          ks::chunk_decay_to_end(p, b, h, c, decay.data());
          for (int t = 0; t < ks::kScanThreads; ++t) {
            const int e = bx * ks::kScanThreads + t;
            if (e < entries) ks::chunk_state_entry<HostIo>(p, b, c, h, e, decay.data());
          }
        }
      }
    }
  }
  // 3. state_passing: a thread per (b, h, entry).
  for (int b = 0; b < p.batch; ++b)
    for (int h = 0; h < p.heads; ++h)
      for (int e = 0; e < entries; ++e) ks::state_passing_entry(p, b, h, e);
  if (p.tensor_cores) {
    emulate_chunk_scan_tc(p);
    return launch.y;
  }
  // 4. chunk_scan: blocks (chunk * tiles + tile, h, b), four phases between barriers.
  std::vector<float> shared(static_cast<size_t>(ks::scan_shared_floats(p.chunk, p.d_state)));
  const ks::ScanShared sh = ks::scan_shared(shared.data(), p.chunk, p.d_state);
  const int tiles = ks::scan_tiles_per_chunk(p.chunk);
  for (int b = 0; b < p.batch; ++b) {
    for (int h = 0; h < p.heads; ++h) {
      for (int bx = 0; bx < p.nchunks * tiles; ++bx) {
        const int c = bx / tiles, row0 = (bx % tiles) * ks::kScanRows;
        if (row0 >= ks::chunk_tokens(p, c)) continue;
        std::fill(shared.begin(), shared.end(), std::nanf(""));
        for (int t = 0; t < ks::kScanThreads; ++t) ks::scan_load<HostIo>(p, b, c, h, row0, t, ks::kScanThreads, sh);
        for (int s0 = 0; s0 < ks::scan_rows_end(p, c, row0); s0 += ks::kScanCols) {
          std::fill(sh.Bt, sh.Bt + ks::kScanCols * ks::scan_ld(p.d_state), std::nanf(""));  // the previous tile gone
          for (int t = 0; t < ks::kScanThreads; ++t) ks::scan_load_b_tile<HostIo>(p, b, c, h, s0, t, ks::kScanThreads, sh);
          for (int t = 0; t < ks::kScanThreads; ++t) ks::scan_scores_tile(p, c, row0, s0, t, ks::kScanThreads, sh);
        }
        for (int t = 0; t < ks::kScanRows; ++t) ks::scan_decay_row(p, c, row0, t, sh);
        for (int t = 0; t < ks::kScanThreads; ++t) {
          for (int i = t; i < ks::kScanRows * p.head_dim; i += ks::kScanThreads) ks::scan_output<HostIo>(p, b, c, h, row0, i, sh);
        }
      }
    }
  }
  return launch.y;
}

// gated_rms_norm_kernel: a block per (row, group), the block sum of common/warp_sum.h.
at::Tensor emulate_norm(const at::Tensor& y, const at::Tensor& z, const at::Tensor& weight, int64_t group_size,
                        double eps) {
  const detail::GatedRmsNormLaunch launch = detail::prepare_gated_rms_norm(y, z, weight, group_size, eps, std::nullopt);
  const k::GatedRmsNormParams& p = launch.params;
  const int groups = p.dim / p.group_size;
  float parts[ks::kNormThreads];
  for (int64_t blk = 0; blk < p.rows * groups; ++blk) {
    const int64_t row = blk / groups;
    const int group = static_cast<int>(blk % groups);
    for (int t = 0; t < ks::kNormThreads; ++t) parts[t] = ks::norm_partial<HostIo, HostIo>(p, row, group, t, ks::kNormThreads);
    const float sumsq = k::block_sum_emulated(parts, ks::kNormThreads);
    for (int t = 0; t < ks::kNormThreads; ++t) ks::norm_write<HostIo, HostIo>(p, row, group, t, ks::kNormThreads, sumsq);
  }
  return launch.out.view(y.sizes());
}

// ---------------------------------------------------------------------------------------------
// Problems and tolerances (as tests/ops/ssd_test.cpp states them).

const test::Tolerance kFp32 = test::rounding_tolerance(at::kFloat);
// y sums many terms of both signs: an absolute floor of 1e-6 of the largest |y| besides 1e-5 relative.
test::Tolerance y_tol(const at::Tensor& ref) {
  const double scale = ref.numel() == 0 ? 0.0 : ref.abs().max().item<double>();
  return {std::max(kFp32.atol, 1e-6 * scale), kFp32.rtol};
}

struct Case {
  int64_t batch, len, heads, p, groups, n, chunk;
};
std::string name(const Case& c) {
  return fmt::format("B{}_L{}_H{}_P{}_G{}_N{}_Q{}", c.batch, c.len, c.heads, c.p, c.groups, c.n, c.chunk);
}

struct Variant {
  bool full;   // D, dt_bias and softplus (else none of them, dt already positive)
  bool clamp;  // dt clamped to [0.3, 0.8]
};
const Variant kVariants[] = {{true, false}, {false, false}, {true, true}, {false, true}};

struct Problem {
  at::Tensor x, dt, B, C;  // [Bt, L, H, P], [Bt, L, H], [Bt, L, G, N]
  SsdArgs args;
  at::Tensor state0;  // [Bt, H, P, N]
};

Problem make_problem(const Case& c, Variant v, at::ScalarType dtype, double a_scale = 0.5) {
  Problem pr;
  pr.x = at::randn({c.batch, c.len, c.heads, c.p}).to(dtype);
  pr.B = at::randn({c.batch, c.len, c.groups, c.n}).to(dtype);
  pr.C = at::randn({c.batch, c.len, c.groups, c.n}).to(dtype);
  pr.args.A = -at::exp(at::randn({c.heads}) * a_scale);
  pr.args.chunk_size = c.chunk;
  if (v.full) {
    pr.dt = (at::randn({c.batch, c.len, c.heads}) * 0.5 - 1.0).to(dtype);
    pr.args.D = at::randn({c.heads}).to(dtype);
    pr.args.dt_bias = (at::randn({c.heads}) * 0.3).to(dtype);
  } else {
    pr.dt = (at::rand({c.batch, c.len, c.heads}) * 0.9 + 0.05).to(dtype);
    pr.args.dt_softplus = false;
  }
  if (v.clamp) {
    pr.args.dt_min = 0.3;
    pr.args.dt_max = 0.8;
  }
  pr.state0 = at::randn({c.batch, c.heads, c.p, c.n});
  return pr;
}

Problem to_device(const Problem& pr, const at::Device& device) {
  Problem out = pr;
  out.x = pr.x.to(device), out.dt = pr.dt.to(device), out.B = pr.B.to(device), out.C = pr.C.to(device);
  out.args.A = pr.args.A.to(device);
  if (pr.args.D) out.args.D = pr.args.D->to(device);
  if (pr.args.dt_bias) out.args.dt_bias = pr.args.dt_bias->to(device);
  out.state0 = pr.state0.to(device);
  return out;
}

at::Tensor token(const at::Tensor& t, int64_t i) { return t.select(1, i); }

// ---------------------------------------------------------------------------------------------
// 1. Host emulation against the reference.

class SsdKernelEmulation : public ::testing::TestWithParam<Case> {};

TEST_P(SsdKernelEmulation, ChunkScanMatchesReference) {
  const Case c = GetParam();
  for (const Variant v : kVariants) {
    for (const bool from_state : {false, true}) {
      at::manual_seed(static_cast<uint64_t>(c.len * 7 + c.p * 3 + c.n + 2 * v.full + 4 * v.clamp + from_state));
      const Problem pr = make_problem(c, v, at::kFloat);
      const std::string what = fmt::format("{} full={} clamp={} from_state={}", name(c), v.full, v.clamp, from_state);
      at::Tensor ref_state = from_state ? pr.state0.clone() : at::full({c.batch, c.heads, c.p, c.n}, 3.0f);
      at::Tensor emu_state = ref_state.clone();
      const at::Tensor ref = ssd_chunk_scan(pr.x, pr.dt, pr.B, pr.C, pr.args, ref_state, from_state, Backend::Reference);
      const at::Tensor y = emulate_scan(pr.x, pr.dt, pr.B, pr.C, pr.args, emu_state, from_state);
      ASSERT_FALSE(at::isnan(y).any().item<bool>()) << what << ": the emulation left y unwritten";
      test::expect_close(y, ref, y_tol(ref), what + " y");
      test::expect_close(emu_state, ref_state, kFp32, what + " state");
    }
  }
}

TEST_P(SsdKernelEmulation, StateUpdateMatchesReference) {
  const Case c = GetParam();
  for (const Variant v : kVariants) {
    at::manual_seed(static_cast<uint64_t>(c.p * 5 + c.n + 2 * v.full + 4 * v.clamp));
    Case one = c;
    one.len = 1;
    const Problem pr = make_problem(one, v, at::kFloat);
    const std::string what = fmt::format("{} full={} clamp={}", name(c), v.full, v.clamp);
    at::Tensor ref_state = pr.state0.clone(), emu_state = pr.state0.clone();
    const at::Tensor ref = ssd_state_update(token(pr.x, 0), token(pr.dt, 0), token(pr.B, 0), token(pr.C, 0), pr.args,
                                            ref_state, Backend::Reference);
    const at::Tensor y =
        emulate_update(token(pr.x, 0), token(pr.dt, 0), token(pr.B, 0), token(pr.C, 0), pr.args, emu_state);
    test::expect_close(y, ref, y_tol(ref), what + " y");
    test::expect_close(emu_state, ref_state, kFp32, what + " state");
  }
}

// L = 1, odd lengths, shorter than / a multiple of / not a multiple of the chunk, many chunks;
// P below, at and above the decode step's 4 warps and the scan's 16-row tile products; d_state
// 1, 16, 64, 128; groups 1, 2, 3, 4 (heads per group 1 to 8); batch 1 to 3; the chunk longer
// than the sequence, and mamba2's chunk of 256 with a ragged last chunk.
INSTANTIATE_TEST_SUITE_P(Awkward, SsdKernelEmulation,
                         ::testing::Values(Case{1, 1, 2, 4, 1, 16, 8}, Case{2, 7, 4, 3, 2, 1, 4},
                                           Case{3, 17, 6, 33, 3, 16, 8}, Case{1, 37, 4, 8, 2, 64, 16},
                                           Case{2, 64, 2, 5, 1, 128, 16}, Case{1, 45, 8, 17, 4, 13, 32},
                                           Case{2, 300, 4, 5, 2, 16, 256}, Case{1, 200, 2, 64, 1, 128, 64},
                                           Case{2, 83, 2, 4, 1, 16, 4}),  // 21 chunks: the state passing's read-ahead
                         [](const auto& info) { return name(info.param); });

TEST(SsdKernelEmulationExtra, StrongDecaySegmentSums) {
  // dt A around -3 per token: the chunk's cumulative sums reach -700 over 256 tokens, where a
  // difference of them would keep the decays near 1 only to ~5e-5; the kernels sum segments.
  const Case c{1, 260, 4, 6, 2, 16, 256};
  at::manual_seed(5);
  const Problem pr = make_problem(c, {true, false}, at::kFloat, /*a_scale=*/0.3);
  SsdArgs args = pr.args;
  args.A = args.A * 8.0;
  at::Tensor ref_state = pr.state0.clone(), emu_state = pr.state0.clone();
  const at::Tensor ref = ssd_chunk_scan(pr.x, pr.dt, pr.B, pr.C, args, ref_state, true, Backend::Reference);
  const at::Tensor y = emulate_scan(pr.x, pr.dt, pr.B, pr.C, args, emu_state, true);
  test::expect_close(y, ref, y_tol(ref), "strong decay y");
  test::expect_close(emu_state, ref_state, kFp32, "strong decay state");
}

TEST(SsdKernelEmulationExtra, StateUpdateLargeDState) {
  // d_state 256 (8 entries per lane) and P not a multiple of the 4 warps.
  at::manual_seed(6);
  const Case c{2, 1, 4, 7, 4, 256, 1};
  const Problem pr = make_problem(c, {true, true}, at::kFloat);
  at::Tensor ref_state = pr.state0.clone(), emu_state = pr.state0.clone();
  const at::Tensor ref = ssd_state_update(token(pr.x, 0), token(pr.dt, 0), token(pr.B, 0), token(pr.C, 0), pr.args,
                                          ref_state, Backend::Reference);
  const at::Tensor y = emulate_update(token(pr.x, 0), token(pr.dt, 0), token(pr.B, 0), token(pr.C, 0), pr.args, emu_state);
  test::expect_close(y, ref, y_tol(ref), "N=256 y");
  test::expect_close(emu_state, ref_state, kFp32, "N=256 state");
}

// The mixer's views (src/model/blocks/mamba2.cpp): x, B, C narrowed from the channel-last conv
// output, dt from in_proj's output; the state a view into a larger buffer. The kernels read
// through the strides; the emulation, given the same views, must not write outside the state.
TEST(SsdKernelEmulationExtra, StridedViewsAsTheMixerPassesThem) {
  const int64_t b = 2, len = 23, h = 6, p = 12, g = 2, n = 16, di = h * p, cd = di + 2 * g * n;
  at::manual_seed(21);
  const at::Tensor conv = at::randn({b, len, cd});
  const at::Tensor proj = at::randn({b, len, di + cd + h}) * 0.5 - 1.0;
  const at::Tensor dt = proj.narrow(2, di + cd, h);
  const at::Tensor x = conv.narrow(2, 0, di).view({b, len, h, p});
  const at::Tensor Bm = conv.narrow(2, di, g * n).view({b, len, g, n});
  const at::Tensor Cm = conv.narrow(2, di + g * n, g * n).view({b, len, g, n});
  ASSERT_FALSE(x.is_contiguous());
  SsdArgs args;
  args.A = -at::exp(at::randn({h}) * 0.5);
  args.D = at::randn({h});
  args.dt_bias = at::randn({h}) * 0.3;
  args.chunk_size = 8;
  const at::Tensor state0 = at::randn({b, h, p, n});
  at::Tensor ref_state = state0.clone();
  at::Tensor big = at::zeros({b, h, p, n + 5});
  at::Tensor emu_state = big.narrow(3, 2, n);
  emu_state.copy_(state0);
  const at::Tensor ref = ssd_chunk_scan(x, dt, Bm, Cm, args, ref_state, true, Backend::Reference);
  const at::Tensor y = emulate_scan(x, dt, Bm, Cm, args, emu_state, true);
  test::expect_close(y, ref, y_tol(ref), "scan y");
  test::expect_close(emu_state, ref_state, kFp32, "scan state");
  const at::Tensor ref1 = ssd_state_update(token(x, 0), token(dt, 0), token(Bm, 0), token(Cm, 0), args, ref_state,
                                           Backend::Reference);
  const at::Tensor y1 = emulate_update(token(x, 0), token(dt, 0), token(Bm, 0), token(Cm, 0), args, emu_state);
  test::expect_close(y1, ref1, y_tol(ref1), "update y");
  test::expect_close(emu_state, ref_state, kFp32, "update state");
  EXPECT_EQ(big.narrow(3, 0, 2).abs().sum().item<double>(), 0.0) << "wrote outside the state view";
  EXPECT_EQ(big.narrow(3, n + 2, 3).abs().sum().item<double>(), 0.0) << "wrote outside the state view";
}

// A prefill in pieces (prompt, decode steps, a continuation from the state) equals one prefill.
TEST(SsdKernelEmulationExtra, DecodeStepsAndContinuationEqualOneLongerPrefill) {
  const Case c{2, 19, 4, 5, 2, 13, 8};
  at::manual_seed(31);
  const Problem pr = make_problem(c, {true, false}, at::kFloat);
  const int64_t prompt = 9, steps = 4, more = c.len - prompt - steps;
  at::Tensor whole_state = at::zeros({c.batch, c.heads, c.p, c.n});
  const at::Tensor whole = emulate_scan(pr.x, pr.dt, pr.B, pr.C, pr.args, whole_state, false);
  const auto part = [&](const at::Tensor& t, int64_t from, int64_t count) { return t.narrow(1, from, count); };
  at::Tensor state = at::zeros({c.batch, c.heads, c.p, c.n});
  const at::Tensor y0 = emulate_scan(part(pr.x, 0, prompt), part(pr.dt, 0, prompt), part(pr.B, 0, prompt),
                                     part(pr.C, 0, prompt), pr.args, state, false);
  test::expect_close(y0, part(whole, 0, prompt), y_tol(whole), "prompt");
  for (int64_t t = prompt; t < prompt + steps; ++t) {
    const at::Tensor yt =
        emulate_update(token(pr.x, t), token(pr.dt, t), token(pr.B, t), token(pr.C, t), pr.args, state);
    test::expect_close(yt, whole.select(1, t), y_tol(whole), fmt::format("decode step {}", t));
  }
  const int64_t from = prompt + steps;
  const at::Tensor y2 = emulate_scan(part(pr.x, from, more), part(pr.dt, from, more), part(pr.B, from, more),
                                     part(pr.C, from, more), pr.args, state, true);
  test::expect_close(y2, part(whole, from, more), y_tol(whole), "continuation");
  test::expect_close(state, whole_state, kFp32, "final state");
}

TEST(SsdKernelEmulationExtra, GatedRmsNormMatchesReference) {
  struct NormCase {
    std::vector<int64_t> lead;
    int64_t d, group_size;
  };
  // One group over all channels, several groups, groups below and above the 256-thread block,
  // a group of one channel; rows 1 and odd.
  for (const NormCase& nc : {NormCase{{1}, 24, 24}, NormCase{{3, 5}, 24, 8}, NormCase{{2, 3}, 600, 300},
                             NormCase{{7}, 1040, 520}, NormCase{{2}, 6, 1}, NormCase{{1, 1}, 512, 256}}) {
    for (const double eps : {1e-5, 1e-6}) {
      at::manual_seed(static_cast<uint64_t>(nc.d + nc.group_size));
      std::vector<int64_t> sizes = nc.lead;
      sizes.push_back(nc.d);
      const at::Tensor y = at::randn(sizes) * 2.0, z = at::randn(sizes) * 2.0, w = at::randn({nc.d});
      const at::Tensor ref = gated_rms_norm(y, z, w, nc.group_size, eps, Backend::Reference);
      const at::Tensor out = emulate_norm(y, z, w, nc.group_size, eps);
      test::expect_close(out, ref, kFp32, fmt::format("D={} group {} eps {}", nc.d, nc.group_size, eps));
      // out_dtype on the reference: its own result cast, bit for bit.
      const at::Tensor ref16 = gated_rms_norm(y, z, w, nc.group_size, eps, Backend::Reference, at::kBFloat16);
      EXPECT_TRUE(at::equal(ref16, ref.to(at::kBFloat16))) << "out_dtype bfloat16";
    }
  }
}

TEST(SsdKernelEmulationExtra, KernelsExistInCudaBuilds) {
  for (const OpFamily op : {OpFamily::SsdScan, OpFamily::SsdStateUpdate, OpFamily::GatedRmsNorm}) {
    EXPECT_EQ(has_cuda_kernel(op), kBuiltWithCuda) << op_name(op);
  }
}

// ---------------------------------------------------------------------------------------------
// 1b. The tensor-core path (bf16 / fp16 inputs) in emulation against the reference, which computes
// in fp32 from the same rounded inputs. The path rounds to the input dtype what mamba_ssm's Triton
// kernels round (the scaled B of the chunk states, the start state, the decayed scores) before
// products that accumulate in fp32; tc_tolerance (docs/mamba2.md, "Tensor cores") bounds the result.

test::Tolerance tc_tolerance(at::ScalarType dtype, const at::Tensor& ref) {
  const double scale = ref.numel() == 0 ? 0.0 : ref.abs().max().item<double>();
  const double unit = dtype == at::kBFloat16 ? 1.0 / 256 : 1.0 / 2048;  // 2^-8, 2^-11: one rounding, relative
  return {2.0 * unit * std::max(scale, 1.0), 2.0 * unit};
}

class SsdTensorCoreEmulation : public ::testing::TestWithParam<Case> {};

TEST_P(SsdTensorCoreEmulation, ChunkScanMatchesReference) {
  const Case c = GetParam();
  for (const at::ScalarType dtype : {at::kBFloat16, at::kHalf}) {
    ASSERT_TRUE(ssd_scan_uses_tensor_cores(dtype, c.n, SsdScanProducts::Auto));
    for (const Variant v : {kVariants[0], kVariants[3]}) {
      for (const bool from_state : {false, true}) {
        at::manual_seed(static_cast<uint64_t>(c.len * 7 + c.p * 3 + c.n + 2 * v.full + 4 * v.clamp + from_state));
        const Problem pr = make_problem(c, v, dtype);
        const std::string what = fmt::format("{} {} full={} clamp={} from_state={}", c10::toString(dtype), name(c),
                                             v.full, v.clamp, from_state);
        at::Tensor ref_state = from_state ? pr.state0.clone() : at::full({c.batch, c.heads, c.p, c.n}, 3.0f);
        at::Tensor emu_state = ref_state.clone();
        const at::Tensor ref = ssd_chunk_scan(pr.x, pr.dt, pr.B, pr.C, pr.args, ref_state, from_state, Backend::Reference);
        const at::Tensor y = emulate_scan(pr.x, pr.dt, pr.B, pr.C, pr.args, emu_state, from_state);
        ASSERT_FALSE(at::isnan(y).any().item<bool>()) << what << ": the emulation left y unwritten";
        ASSERT_FALSE(at::isnan(emu_state).any().item<bool>()) << what << ": the final state";
        test::expect_close(y, ref, tc_tolerance(dtype, ref), what + " y");
        test::expect_close(emu_state, ref_state, tc_tolerance(dtype, ref_state), what + " state");
        // Not fp32-exact: the roundings happen (a path that skipped them would pass at fp32 tolerance).
        if (c.len > 1) {
          EXPECT_GT(test::max_excess(y, ref, y_tol(ref)), 0.0) << what << ": no input-dtype rounding seen";
        }
      }
    }
  }
}

// L = 1; odd; not a multiple of the chunk; chunks 64 and 256 and one longer than L; d_state 16,
// 64, 128 and 40 (not a multiple of 16); head_dim 64, 24 and 70 (two column tiles, the second
// ragged); groups 1 and 2 / 3; batch 2.
INSTANTIATE_TEST_SUITE_P(Awkward, SsdTensorCoreEmulation,
                         ::testing::Values(Case{1, 1, 2, 64, 1, 16, 64}, Case{2, 37, 4, 64, 2, 64, 64},
                                           Case{1, 300, 4, 24, 2, 128, 256}, Case{2, 130, 2, 64, 1, 40, 64},
                                           Case{1, 77, 6, 70, 3, 16, 64}, Case{1, 45, 2, 64, 1, 64, 256},
                                           Case{1, 520, 2, 64, 1, 128, 256}, Case{1, 700, 2, 64, 1, 64, 64}),
                         [](const auto& info) { return name(info.param); });

TEST(SsdTensorCoreEmulationExtra, FmaProductsOnHalfInputsStayFp32Exact) {
  // products = Fma on bf16 / fp16 inputs: the FMA loops widen the inputs exactly, so the fp32
  // tolerance holds (what `effarch kernels` times as ssd_chunk_scan_fma).
  const Case c{2, 45, 4, 24, 2, 40, 16};
  for (const at::ScalarType dtype : {at::kBFloat16, at::kHalf}) {
    at::manual_seed(9);
    Problem pr = make_problem(c, {true, false}, dtype);
    pr.args.products = SsdScanProducts::Fma;
    ASSERT_FALSE(ssd_scan_uses_tensor_cores(dtype, c.n, pr.args.products));
    at::Tensor ref_state = pr.state0.clone(), emu_state = pr.state0.clone();
    const at::Tensor ref = ssd_chunk_scan(pr.x, pr.dt, pr.B, pr.C, pr.args, ref_state, true, Backend::Reference);
    const at::Tensor y = emulate_scan(pr.x, pr.dt, pr.B, pr.C, pr.args, emu_state, true);
    test::expect_close(y, ref, y_tol(ref), std::string(c10::toString(dtype)) + " y");
    test::expect_close(emu_state, ref_state, kFp32, std::string(c10::toString(dtype)) + " state");
  }
}

TEST(SsdTensorCoreEmulationExtra, StrongDecay) {
  // dt A around -3 per token over a chunk of 256: cs reaches -700, where exp(cs[l] - cs[s]) keeps
  // the decays to ~1e-4 relative, below the bf16 / fp16 rounding of the scores.
  const Case c{1, 260, 4, 64, 2, 64, 256};
  for (const at::ScalarType dtype : {at::kBFloat16, at::kHalf}) {
    at::manual_seed(5);
    const Problem pr = make_problem(c, {true, false}, dtype, /*a_scale=*/0.3);
    SsdArgs args = pr.args;
    args.A = args.A * 8.0;
    at::Tensor ref_state = pr.state0.clone(), emu_state = pr.state0.clone();
    const at::Tensor ref = ssd_chunk_scan(pr.x, pr.dt, pr.B, pr.C, args, ref_state, true, Backend::Reference);
    const at::Tensor y = emulate_scan(pr.x, pr.dt, pr.B, pr.C, args, emu_state, true);
    test::expect_close(y, ref, tc_tolerance(dtype, ref), std::string(c10::toString(dtype)) + " strong decay y");
    test::expect_close(emu_state, ref_state, tc_tolerance(dtype, ref_state),
                       std::string(c10::toString(dtype)) + " strong decay state");
  }
}

TEST(SsdTensorCoreEmulationExtra, ProductsChoice) {
  EXPECT_TRUE(ssd_scan_uses_tensor_cores(at::kBFloat16, 128, SsdScanProducts::Auto));
  EXPECT_TRUE(ssd_scan_uses_tensor_cores(at::kHalf, 1, SsdScanProducts::TensorCores));
  EXPECT_FALSE(ssd_scan_uses_tensor_cores(at::kFloat, 64, SsdScanProducts::Auto));
  EXPECT_FALSE(ssd_scan_uses_tensor_cores(at::kBFloat16, 129, SsdScanProducts::Auto));
  EXPECT_FALSE(ssd_scan_uses_tensor_cores(at::kBFloat16, 64, SsdScanProducts::Fma));
  EXPECT_STREQ(ssd_scan_products_name(at::kHalf, 64, SsdScanProducts::Auto), "tensor_cores");
  EXPECT_STREQ(ssd_scan_products_name(at::kFloat, 64, SsdScanProducts::Auto), "fma");
  EXPECT_THROW_WITH(ssd_scan_uses_tensor_cores(at::kFloat, 64, SsdScanProducts::TensorCores), Error,
                    {"ssd_chunk_scan", "bf16 or fp16", "Float"});
  EXPECT_THROW_WITH(ssd_scan_uses_tensor_cores(at::kBFloat16, 256, SsdScanProducts::TensorCores), Error,
                    {"ssd_chunk_scan", "d_state", "256"});
}

// What an sm_120/121 block (DGX Spark's GB10) may opt into: 99 KiB of dynamic shared memory (an
// H100's 227 KiB). A kernel asking for more fails at cudaFuncSetAttribute (allow_dynamic_shared).
constexpr int64_t kSm121BlockBytes = 101376;

// The chunked scan's largest block as the launcher sizes it for x of `dtype` with products Auto:
// on tensor cores (bf16 / fp16, d_state <= 128) stage 2's or stage 4's; otherwise the FMA loops
// (fp32 under --backend cuda: auto runs the reference there), stage 2's decays or stage 4's rows.
int64_t ssd_scan_block_bytes(at::ScalarType dtype, int chunk, int d_state) {
  if (ssd_scan_uses_tensor_cores(dtype, d_state, SsdScanProducts::Auto)) {
    return std::max(ks::tc_state_offsets(chunk, 2).total, ks::tc_scan_offsets(chunk, d_state, 2).total);
  }
  return std::max<int64_t>(4 * chunk, 4 * ks::scan_shared_floats(chunk, d_state));
}

// On a DGX Spark (sm_121, 99 KiB a block) the chunked scan launches for every built-in Mamba-2
// config (Codestral and Mamba2-130M: chunk 256, d_state 128; tiny-mamba2: 16 and 16) in every
// dtype, also for prompts shorter than a chunk (the chunk is then the prompt); otherwise their
// prefill would fail there. At the limits the kernels take: the tensor-core blocks fit at chunk
// 1024 and d_state 128 (also a static_assert in ssd_chunk_scan_tc.cuh); the FMA stage 4, 72 Q +
// 128 (N + 1) bytes, fits every d_state up to 256 at chunks up to 951, and at chunk 1024 d_state
// up to 215. Past that (chunks of 952..1024 with d_state up to 256: no known checkpoint) its
// opt-in fails on sm_121 and ssd_chunk_scan throws the launcher's error ("shared memory for the
// chunk size and d_state") where an H100 runs it.
TEST(SsdKernelEmulationExtra, ChunkScanSharedMemoryFitsAnSm121Block) {
  size_t mamba2 = 0;
  for (const std::string& name : model::builtin_model_names()) {
    const model::ModelConfig config = model::resolve_model(name).config;
    if (!config.mamba || config.mamba->version != 2) continue;
    ++mamba2;
    const int chunk = static_cast<int>(config.mamba->chunk_size), n = static_cast<int>(config.mamba->d_state);
    for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
      for (const int q : {1, 15, chunk / 2 + 1, chunk}) {
        EXPECT_LE(ssd_scan_block_bytes(dtype, q, n), kSm121BlockBytes)
            << name << " " << c10::toString(dtype) << " chunk " << q;
      }
    }
  }
  EXPECT_GE(mamba2, 3u);
  // Codestral in bf16: stage 2 36 KiB, stage 4 54 KiB on tensor cores; 34 KiB for the FMA stage 4.
  EXPECT_EQ(ks::tc_state_offsets(256, 2).total, 36864);
  EXPECT_EQ(ks::tc_scan_offsets(256, 128, 2).total, 55296);
  EXPECT_EQ(4 * ks::scan_shared_floats(256, 128), 34944);
  // The limits (every size grows with the chunk and d_state, so the corners bound the rest).
  EXPECT_LE(ks::tc_state_offsets(ks::kMaxChunk, 2).total, kSm121BlockBytes);
  EXPECT_LE(ks::tc_scan_offsets(ks::kMaxChunk, ks::kTcMaxDState, 2).total, kSm121BlockBytes);
  EXPECT_LE(4 * ks::kMaxChunk, 48 * 1024);  // the FMA stage 2: no opt-in
  EXPECT_LE(4 * ks::scan_shared_floats(951, ks::kMaxDState), kSm121BlockBytes);
  EXPECT_GT(4 * ks::scan_shared_floats(952, ks::kMaxDState), kSm121BlockBytes);
  EXPECT_LE(4 * ks::scan_shared_floats(ks::kMaxChunk, 215), kSm121BlockBytes);
  EXPECT_GT(4 * ks::scan_shared_floats(ks::kMaxChunk, 216), kSm121BlockBytes);
  EXPECT_EQ(4 * ks::scan_shared_floats(ks::kMaxChunk, ks::kMaxDState), 106624);
}

// ---------------------------------------------------------------------------------------------
// 2. The kernels on a GPU against the reference on the same GPU.

#define REQUIRE_GPU()                                                        \
  if (!kBuiltWithCuda) GTEST_SKIP() << "built without CUDA: no Mamba-2 kernels"; \
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device"

class SsdCuda : public ::testing::TestWithParam<Case> {};

TEST_P(SsdCuda, ChunkScanAndDecodeMatchReference) {
  REQUIRE_GPU();
  const Case c = GetParam();
  const at::Device gpu(at::kCUDA, 0);
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    // bf16 / fp16: the FMA products (fp32-exact) and the default, tensor cores where d_state <= 128.
    const std::vector<SsdScanProducts> products_list =
        dtype == at::kFloat ? std::vector<SsdScanProducts>{SsdScanProducts::Auto}
                            : std::vector<SsdScanProducts>{SsdScanProducts::Fma, SsdScanProducts::Auto};
    for (const SsdScanProducts products : products_list) {
      const bool tc = ssd_scan_uses_tensor_cores(dtype, c.n, products);
      const auto tol = [&](const at::Tensor& ref, bool state) {
        return tc ? tc_tolerance(dtype, ref) : state ? kFp32 : y_tol(ref);
      };
      for (const Variant v : kVariants) {
        for (const bool from_state : {false, true}) {
          at::manual_seed(static_cast<uint64_t>(c.len * 7 + c.p * 3 + c.n + 2 * v.full + 4 * v.clamp + from_state));
          Problem pr = to_device(make_problem(c, v, dtype), gpu);
          pr.args.products = products;
          const std::string what = fmt::format("{} {} {} full={} clamp={} from_state={}", c10::toString(dtype),
                                               tc ? "tensor_cores" : "fma", name(c), v.full, v.clamp, from_state);
          at::Tensor ref_state = from_state ? pr.state0.clone() : at::full({c.batch, c.heads, c.p, c.n}, 3.0f, gpu);
          at::Tensor cuda_state = ref_state.clone();
          const at::Tensor ref =
              ssd_chunk_scan(pr.x, pr.dt, pr.B, pr.C, pr.args, ref_state, from_state, Backend::Reference);
          const at::Tensor y = ssd_chunk_scan(pr.x, pr.dt, pr.B, pr.C, pr.args, cuda_state, from_state, Backend::Cuda);
          EXPECT_EQ(y.scalar_type(), at::kFloat) << what;
          test::expect_close(y, ref, tol(ref, false), what + " y");
          test::expect_close(cuda_state, ref_state, tol(ref_state, true), what + " state");
          // The decode step from that state, token 0's inputs again.
          const at::Tensor ref1 = ssd_state_update(token(pr.x, 0), token(pr.dt, 0), token(pr.B, 0), token(pr.C, 0),
                                                   pr.args, ref_state, Backend::Reference);
          const at::Tensor y1 = ssd_state_update(token(pr.x, 0), token(pr.dt, 0), token(pr.B, 0), token(pr.C, 0),
                                                 pr.args, cuda_state, Backend::Cuda);
          test::expect_close(y1, ref1, tol(ref1, false), what + " update y");
          test::expect_close(cuda_state, ref_state, tol(ref_state, true), what + " update state");
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Awkward, SsdCuda,
                         ::testing::Values(Case{1, 1, 2, 4, 1, 16, 8}, Case{2, 7, 4, 3, 2, 1, 4},
                                           Case{3, 17, 6, 33, 3, 16, 8}, Case{1, 37, 4, 8, 2, 64, 16},
                                           Case{2, 64, 2, 5, 1, 128, 16}, Case{2, 300, 4, 5, 2, 16, 256},
                                           Case{1, 1000, 8, 64, 2, 128, 256}, Case{2, 513, 4, 64, 4, 256, 128},
                                           Case{2, 83, 2, 4, 1, 16, 4}),
                         [](const auto& info) { return name(info.param); });

TEST(SsdCudaExtra, StridedViewsAndContinuation) {
  REQUIRE_GPU();
  const at::Device gpu(at::kCUDA, 0);
  const int64_t b = 2, len = 41, h = 8, p = 16, g = 2, n = 64, di = h * p, cd = di + 2 * g * n;
  for (const auto& entry :
       {std::pair{at::kFloat, SsdScanProducts::Auto}, std::pair{at::kBFloat16, SsdScanProducts::Fma},
        std::pair{at::kBFloat16, SsdScanProducts::Auto}, std::pair{at::kHalf, SsdScanProducts::Fma},
        std::pair{at::kHalf, SsdScanProducts::Auto}}) {
    const at::ScalarType dtype = entry.first;
    const SsdScanProducts products = entry.second;
    const bool tc = ssd_scan_uses_tensor_cores(dtype, 64, products);
    at::manual_seed(22);
    const at::Tensor conv = at::randn({b, len, cd}, gpu).to(dtype);
    const at::Tensor proj = (at::randn({b, len, di + cd + h}, gpu) * 0.5 - 1.0).to(dtype);
    const at::Tensor dt = proj.narrow(2, di + cd, h);
    const at::Tensor x = conv.narrow(2, 0, di).view({b, len, h, p});
    const at::Tensor Bm = conv.narrow(2, di, g * n).view({b, len, g, n});
    const at::Tensor Cm = conv.narrow(2, di + g * n, g * n).view({b, len, g, n});
    SsdArgs args;
    args.A = -at::exp(at::randn({h}, gpu) * 0.5);
    args.D = at::randn({h}, gpu).to(dtype);
    args.dt_bias = (at::randn({h}, gpu) * 0.3).to(dtype);
    args.chunk_size = 16;
    args.products = products;
    const std::string what = fmt::format("{} {}", c10::toString(dtype), tc ? "tensor_cores" : "fma");
    const auto ytol = [&](const at::Tensor& ref) { return tc ? tc_tolerance(dtype, ref) : y_tol(ref); };
    at::Tensor ref_state = at::zeros({b, h, p, n}, gpu);
    at::Tensor big = at::zeros({b, h, p, n + 5}, gpu);
    at::Tensor cuda_state = big.narrow(3, 2, n);
    const auto part = [&](const at::Tensor& t, int64_t from, int64_t count) { return t.narrow(1, from, count); };
    const int64_t prompt = 20, steps = 3;
    const at::Tensor ref = ssd_chunk_scan(x, dt, Bm, Cm, args, ref_state, false, Backend::Reference);
    const at::Tensor y0 = ssd_chunk_scan(part(x, 0, prompt), part(dt, 0, prompt), part(Bm, 0, prompt),
                                         part(Cm, 0, prompt), args, cuda_state, false, Backend::Cuda);
    test::expect_close(y0, part(ref, 0, prompt), ytol(ref), what + " prompt");
    for (int64_t t = prompt; t < prompt + steps; ++t) {
      const at::Tensor yt = ssd_state_update(token(x, t), token(dt, t), token(Bm, t), token(Cm, t), args, cuda_state,
                                             Backend::Cuda);
      test::expect_close(yt, ref.select(1, t), ytol(ref), fmt::format("{} decode step {}", what, t));
    }
    const int64_t from = prompt + steps, more = len - from;
    const at::Tensor y2 = ssd_chunk_scan(part(x, from, more), part(dt, from, more), part(Bm, from, more),
                                         part(Cm, from, more), args, cuda_state, true, Backend::Cuda);
    test::expect_close(y2, part(ref, from, more), ytol(ref), what + " continuation");
    test::expect_close(cuda_state, ref_state, tc ? tc_tolerance(dtype, ref_state) : kFp32, what + " final state");
    EXPECT_EQ(big.narrow(3, 0, 2).abs().sum().item<double>(), 0.0) << what << ": wrote outside the state view";
    EXPECT_EQ(big.narrow(3, n + 2, 3).abs().sum().item<double>(), 0.0) << what << ": wrote outside the state view";
  }
}

TEST(SsdCudaExtra, GatedRmsNormMatchesReference) {
  REQUIRE_GPU();
  const at::Device gpu(at::kCUDA, 0);
  // y in fp32 with z and weight in the model dtype (the mixer's case), and all in one dtype.
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    for (const bool y_fp32 : {true, false}) {
      for (const int64_t group_size : {8, 300, 1024}) {
        at::manual_seed(static_cast<uint64_t>(group_size));
        const int64_t d = group_size * 3;
        const at::Tensor y = (at::randn({2, 5, d}, gpu) * 2.0).to(y_fp32 ? at::kFloat : dtype);
        const at::Tensor proj = (at::randn({2, 5, d + 7}, gpu) * 2.0).to(dtype);
        const at::Tensor z = proj.narrow(2, 3, d);  // a view, as the mixer's z
        const at::Tensor w = at::randn({d}, gpu).to(dtype);
        const at::Tensor ref = gated_rms_norm(y, z, w, group_size, 1e-5, Backend::Reference);
        const at::Tensor out = gated_rms_norm(y, z, w, group_size, 1e-5, Backend::Cuda);
        ASSERT_EQ(out.scalar_type(), ref.scalar_type());
        // One rounding of the output dtype apart at most (the same fp32 value rounded), plus
        // the rounding to y's dtype before the weight where y is not fp32.
        test::Tolerance tol = test::rounding_tolerance(out.scalar_type());
        if (!y_fp32 && dtype != at::kFloat) tol = {2 * tol.atol, 2 * tol.rtol};
        test::expect_close(out, ref, tol,
                           fmt::format("{} y_fp32={} group {}", c10::toString(dtype), y_fp32, group_size));
        // Written in the model dtype directly (the mixer's call): the reference's cast of its result,
        // one rounding of that dtype apart (an fp32 value a few ulps off can round the other way).
        const at::Tensor direct = gated_rms_norm(y, z, w, group_size, 1e-5, Backend::Cuda, dtype);
        ASSERT_EQ(direct.scalar_type(), dtype);
        test::Tolerance direct_tol = test::rounding_tolerance(dtype);
        if (!y_fp32 && dtype != at::kFloat) direct_tol = {2 * direct_tol.atol, 2 * direct_tol.rtol};
        test::expect_close(direct, ref.to(dtype), direct_tol,
                           fmt::format("{} y_fp32={} group {} out_dtype", c10::toString(dtype), y_fp32, group_size));
      }
    }
  }
}

// The tensor-core kernels against their own host emulation (the same roundings): apart only by
// the fp32 accumulation order and the rare input-dtype rounding that order flips, far inside the
// tolerance against the reference.
TEST(SsdCudaExtra, TensorCorePathMatchesItsEmulation) {
  REQUIRE_GPU();
  const at::Device gpu(at::kCUDA, 0);
  for (const Case c : {Case{1, 600, 4, 64, 2, 128, 256}, Case{2, 77, 3, 70, 3, 40, 64}}) {
    for (const at::ScalarType dtype : {at::kBFloat16, at::kHalf}) {
      at::manual_seed(static_cast<uint64_t>(c.len));
      const Problem pr = make_problem(c, {true, false}, dtype);
      const Problem dev = to_device(pr, gpu);
      const std::string what = fmt::format("{} {}", c10::toString(dtype), name(c));
      at::Tensor emu_state = pr.state0.clone(), cuda_state = dev.state0.clone();
      const at::Tensor emu = emulate_scan(pr.x, pr.dt, pr.B, pr.C, pr.args, emu_state, true);
      const at::Tensor y = ssd_chunk_scan(dev.x, dev.dt, dev.B, dev.C, dev.args, cuda_state, true, Backend::Cuda);
      const test::Tolerance t = tc_tolerance(dtype, emu), ts = tc_tolerance(dtype, emu_state);
      test::expect_close(y, emu, {t.atol / 8, t.rtol / 8}, what + " y");
      test::expect_close(cuda_state, emu_state, {ts.atol / 8, ts.rtol / 8}, what + " state");
    }
  }
}

TEST(SsdCudaExtra, UnsupportedScanSizesAreErrors) {
  REQUIRE_GPU();
  const at::Device gpu(at::kCUDA, 0);
  const Problem pr = to_device(make_problem(Case{1, 8, 2, 4, 1, 300, 4}, {true, false}, at::kFloat), gpu);
  at::Tensor state = pr.state0.clone();
  EXPECT_THROW_WITH(ssd_chunk_scan(pr.x, pr.dt, pr.B, pr.C, pr.args, state, false, Backend::Cuda), Error,
                    {"ssd_chunk_scan", "d_state"});
}

}  // namespace
}  // namespace effarch::ops
