#pragma once
// Host emulations of the CUDA MoE dispatch kernels (kernels/moe), in the kernels' phase order and
// with their own arithmetic (kernels/moe/moe_math.h), and the test data the MoE kernel tests share
// (tests/ops/moe_cuda_test.cpp, tests/ops/moe_token_test.cpp).

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include <fmt/format.h>

#include "effarch/ops/moe.h"
#include "common/warp_sum.h"
#include "moe/moe_math.h"
#include "tolerance.h"

namespace effarch::ops::moe_emulation {

namespace km = kernels::moe;

inline km::Precision precision_of(at::ScalarType t) {
  switch (t) {
    case at::kBFloat16: return km::Precision::kBf16;
    case at::kHalf: return km::Precision::kFp16;
    default: return km::Precision::kFp32;
  }
}
inline km::RouterMode mode_of(RouterKind kind) {
  switch (kind) {
    case RouterKind::SoftmaxFp32Renormalized: return km::RouterMode::kFp32Renormalized;
    case RouterKind::SoftmaxFp32: return km::RouterMode::kFp32;
    default: return km::RouterMode::kModelDtype;
  }
}
inline const char* kind_name(RouterKind kind) {
  switch (kind) {
    case RouterKind::SoftmaxFp32Renormalized: return "mixtral";
    case RouterKind::SoftmaxFp32: return "jamba";
    default: return "deepseek";
  }
}

inline bool have_gpu() { return kBuiltWithCuda && at::hasCUDA(); }

// ---- host emulations, in the kernels' phase order ----

// moe_router_kernel: one warp per token.
inline Routing emulate_router(const at::Tensor& logits_in, int64_t k, RouterKind kind) {
  const at::Tensor logits = logits_in.to(at::kFloat).contiguous();  // the model dtype's values, exactly
  const km::Precision model = precision_of(logits_in.scalar_type());
  const km::RouterMode mode = mode_of(kind);
  const int64_t n = logits.size(0);
  const int experts = static_cast<int>(logits.size(1));
  Routing r;
  r.probs = at::empty({n, experts}, at::kFloat);
  r.expert_ids = at::empty({n, k}, at::kLong);
  at::Tensor weights = at::empty({n, k}, at::kFloat);
  const float* lp = logits.const_data_ptr<float>();
  for (int64_t t = 0; t < n; ++t) {
    float v[km::kWarp][km::kRouterPerLane];
    for (int lane = 0; lane < km::kWarp; ++lane) {
      for (int j = 0; j < km::kRouterPerLane; ++j) {
        const int e = km::router_expert(lane, j);
        v[lane][j] = e < experts ? lp[t * experts + e] : 0.f;
      }
    }
    float max = -INFINITY;
    for (int lane = 0; lane < km::kWarp; ++lane) max = fmaxf(max, km::router_lane_max(v[lane], experts, lane));
    float sums[km::kWarp];
    for (int lane = 0; lane < km::kWarp; ++lane) sums[lane] = km::router_lane_exp(v[lane], experts, lane, max);
    const float sum = km::warp_sum_down_emulated(sums);
    for (int lane = 0; lane < km::kWarp; ++lane) km::router_lane_probs(v[lane], experts, lane, sum, mode, model);
    for (int lane = 0; lane < km::kWarp; ++lane) {
      for (int j = 0; j < km::kRouterPerLane; ++j) {
        const int e = km::router_expert(lane, j);
        if (e < experts) r.probs[t][e] = v[lane][j];
      }
    }
    uint32_t chosen[km::kWarp] = {};
    float w[km::kMaxTopK];
    for (int64_t s = 0; s < k; ++s) {
      km::Candidate best{0.f, -1};
      for (int lane = 0; lane < km::kWarp; ++lane) {
        const km::Candidate c = km::router_lane_best(v[lane], experts, lane, chosen[lane]);
        if (km::better(c, best)) best = c;
      }
      chosen[best.expert % km::kWarp] |= 1u << (best.expert / km::kWarp);
      w[s] = best.score;
      r.expert_ids[t][s] = best.expert;
    }
    km::router_weights(w, static_cast<int>(k), mode, model);
    for (int64_t s = 0; s < k; ++s) weights[t][s] = w[s];
  }
  r.weights = kind == RouterKind::SoftmaxFp32Renormalized ? weights : weights.to(logits_in.scalar_type());
  return r;
}

struct Plan {
  std::vector<int> counts, offsets, active, order, row_of;
  int num_active = 0;
};

// moe_permute_kernel: one block of kPermuteThreads threads.
inline Plan emulate_permute(const at::Tensor& ids_in, int experts) {
  const at::Tensor ids = ids_in.contiguous().cpu();
  const int64_t* id = ids.const_data_ptr<int64_t>();
  const int m = static_cast<int>(ids.numel());
  const int buckets = experts + 1;
  Plan p;
  p.counts.assign(static_cast<size_t>(buckets), 0);
  p.offsets.assign(static_cast<size_t>(buckets) + 1, 0);
  p.order.assign(static_cast<size_t>(m), -1);
  p.row_of.assign(static_cast<size_t>(m), -1);
  for (int i = 0; i < m; ++i) ++p.counts[static_cast<size_t>(km::permute_bucket(id[i], experts))];
  std::vector<int> running(static_cast<size_t>(buckets));
  int offset = 0;
  for (int b = 0; b < buckets; ++b) {
    p.offsets[static_cast<size_t>(b)] = offset;
    running[static_cast<size_t>(b)] = offset;
    if (b < experts && p.counts[static_cast<size_t>(b)] > 0) p.active.push_back(b);
    offset += p.counts[static_cast<size_t>(b)];
  }
  p.offsets[static_cast<size_t>(buckets)] = offset;
  p.num_active = static_cast<int>(p.active.size());
  std::vector<int> tile(km::kPermuteThreads);
  std::vector<std::vector<int>> warp_count(km::kPermuteWarps, std::vector<int>(static_cast<size_t>(buckets)));
  std::vector<int> rank(km::kPermuteThreads);
  for (int base = 0; base < m; base += km::kPermuteThreads) {
    for (int tid = 0; tid < km::kPermuteThreads; ++tid) {
      const int i = base + tid;
      tile[static_cast<size_t>(tid)] = i < m ? km::permute_bucket(id[i], experts) : -1;
    }
    for (auto& w : warp_count) std::fill(w.begin(), w.end(), 0);
    for (int tid = 0; tid < km::kPermuteThreads; ++tid) {  // after the barrier
      const int warp = tid / km::kWarp, lane = tid % km::kWarp;
      const int* wb = tile.data() + warp * km::kWarp;
      rank[static_cast<size_t>(tid)] = km::permute_rank_in_warp(wb, lane);
      const int bucket = tile[static_cast<size_t>(tid)];
      if (bucket >= 0 && km::permute_last_in_warp(wb, lane)) {
        warp_count[static_cast<size_t>(warp)][static_cast<size_t>(bucket)] = rank[static_cast<size_t>(tid)] + 1;
      }
    }
    for (int b = 0; b < buckets; ++b) {  // threads 0..E
      int acc = running[static_cast<size_t>(b)];
      for (int w = 0; w < km::kPermuteWarps; ++w) {
        const int c = warp_count[static_cast<size_t>(w)][static_cast<size_t>(b)];
        warp_count[static_cast<size_t>(w)][static_cast<size_t>(b)] = acc;
        acc += c;
      }
      running[static_cast<size_t>(b)] = acc;
    }
    for (int tid = 0; tid < km::kPermuteThreads; ++tid) {
      const int bucket = tile[static_cast<size_t>(tid)];
      if (bucket < 0) continue;
      const int row = warp_count[static_cast<size_t>(tid / km::kWarp)][static_cast<size_t>(bucket)] +
                      rank[static_cast<size_t>(tid)];
      p.order[static_cast<size_t>(row)] = base + tid;
      p.row_of[static_cast<size_t>(base + tid)] = row;
    }
  }
  return p;
}

// Experts laid out as the device table gives them to the GEMV: per expert the rows below `split`
// from lo, the others from hi (nullptr: another rank's expert); int8 experts with their rows'
// scales in s_lo and s_hi (empty for dense experts).
struct GemvWeights {
  std::vector<const void*> lo, hi;
  std::vector<const float*> s_lo, s_hi;
  int out = 0, in = 0, split = 0;
};

// moe_expert_gemv_kernel: blocks (feature tile, slot), warps one weight row (moe::expert_gemv_row),
// lanes partial sums. With the SwiGLU fused (swiglu: y [M, split]) each warp's rounded outputs are
// kept by warp, then the gate warps store swiglu(gate, up) (the kernel's barrier between). W: the
// weights' storage (the model dtype's, or int8_t).
template <km::Precision P, int V, typename W = typename km::StorageOf<P>::type>
void emulate_gemv_typed(const Plan& plan, const GemvWeights& w, bool gather, int top_k, const at::Tensor& x,
                        at::Tensor& y, bool swiglu) {
  using S = typename km::StorageOf<P>::type;
  constexpr bool kInt8 = std::is_same<W, int8_t>::value;
  const S* xp = static_cast<const S*>(x.const_data_ptr());
  S* yp = static_cast<S*>(y.mutable_data_ptr());
  const int64_t xs = x.stride(0), ys = y.stride(0);
  const int blocks = km::expert_gemv_blocks(w.out, w.split, swiglu);
  for (int slot = 0; slot < plan.num_active; ++slot) {
    const int e = plan.active[static_cast<size_t>(slot)];
    const W* lo = static_cast<const W*>(w.lo[static_cast<size_t>(e)]);
    if (lo == nullptr) continue;
    const int begin = plan.offsets[static_cast<size_t>(e)], count = plan.counts[static_cast<size_t>(e)];
    for (int block = 0; block < blocks; ++block) {
      for (int r0 = 0; r0 < count; r0 += km::kGemvRows) {
        const int rows = std::min(km::kGemvRows, count - r0);
        float pair_value[km::kExpertGemvWarps][km::kGemvRows];
        for (int warp = 0; warp < km::kExpertGemvWarps; ++warp) {
          const km::ExpertGemvRow row = km::expert_gemv_row(block, warp, w.out, w.split, swiglu);
          if (!row.active) continue;
          const int o = row.o;
          const W* wr = o < w.split ? lo + static_cast<int64_t>(o) * w.in
                                    : static_cast<const W*>(w.hi[static_cast<size_t>(e)]) +
                                          static_cast<int64_t>(o - w.split) * w.in;
          float scale = 1.0f;
          if constexpr (kInt8) {
            scale = o < w.split ? w.s_lo[static_cast<size_t>(e)][o] : w.s_hi[static_cast<size_t>(e)][o - w.split];
          }
          const S* xr[km::kGemvRows];
          for (int r = 0; r < km::kGemvRows; ++r) {
            const int i = begin + r0 + std::min(r, rows - 1);
            const int src = gather ? plan.order[static_cast<size_t>(i)] / top_k : i;
            xr[r] = xp + src * xs;
          }
          float lanes[km::kGemvRows][km::kWarp];
          for (int lane = 0; lane < km::kWarp; ++lane) {
            float acc[km::kGemvRows];
            km::gemv_lane<P, V>(wr, xr, rows, w.in, lane, acc);
            for (int r = 0; r < km::kGemvRows; ++r) lanes[r][lane] = acc[r];
          }
          for (int r = 0; r < rows; ++r) {
            const float sum = kernels::xor_butterfly_sum_emulated<km::kWarp>(lanes[r]) * scale;
            if (swiglu) {
              pair_value[warp][r] = km::round_to<P>(sum);
            } else {
              yp[(begin + r0 + r) * ys + o] = km::from_f<P>(sum);
            }
          }
        }
        if (!swiglu) continue;
        for (int warp = 0; warp < km::kExpertGemvWarps; ++warp) {  // after the barrier
          const km::ExpertGemvRow row = km::expert_gemv_row(block, warp, w.out, w.split, swiglu);
          if (!row.active || !row.gate) continue;
          for (int r = 0; r < rows; ++r) {
            yp[(begin + r0 + r) * ys + row.column] = km::from_f<P>(
                km::swiglu<P>(pair_value[warp][r], pair_value[warp + km::kExpertGemvWarps / 2][r]));
          }
        }
      }
    }
  }
}

inline void emulate_gemv(const Plan& plan, const GemvWeights& w, bool gather, int top_k, const at::Tensor& x, at::Tensor& y,
                  bool vectorized, bool swiglu) {
  if (!w.s_lo.empty()) {  // int8 experts: 16 weights per 16-byte load
    switch (x.scalar_type()) {
      case at::kFloat:
        vectorized ? emulate_gemv_typed<km::Precision::kFp32, 16, int8_t>(plan, w, gather, top_k, x, y, swiglu)
                   : emulate_gemv_typed<km::Precision::kFp32, 1, int8_t>(plan, w, gather, top_k, x, y, swiglu);
        return;
      case at::kBFloat16:
        vectorized ? emulate_gemv_typed<km::Precision::kBf16, 16, int8_t>(plan, w, gather, top_k, x, y, swiglu)
                   : emulate_gemv_typed<km::Precision::kBf16, 1, int8_t>(plan, w, gather, top_k, x, y, swiglu);
        return;
      default:
        vectorized ? emulate_gemv_typed<km::Precision::kFp16, 16, int8_t>(plan, w, gather, top_k, x, y, swiglu)
                   : emulate_gemv_typed<km::Precision::kFp16, 1, int8_t>(plan, w, gather, top_k, x, y, swiglu);
        return;
    }
  }
  switch (x.scalar_type()) {
    case at::kFloat:
      vectorized ? emulate_gemv_typed<km::Precision::kFp32, 4>(plan, w, gather, top_k, x, y, swiglu)
                 : emulate_gemv_typed<km::Precision::kFp32, 1>(plan, w, gather, top_k, x, y, swiglu);
      break;
    case at::kBFloat16:
      vectorized ? emulate_gemv_typed<km::Precision::kBf16, 8>(plan, w, gather, top_k, x, y, swiglu)
                 : emulate_gemv_typed<km::Precision::kBf16, 1>(plan, w, gather, top_k, x, y, swiglu);
      break;
    default:
      vectorized ? emulate_gemv_typed<km::Precision::kFp16, 8>(plan, w, gather, top_k, x, y, swiglu)
                 : emulate_gemv_typed<km::Precision::kFp16, 1>(plan, w, gather, top_k, x, y, swiglu);
      break;
  }
}

// moe_combine_kernel: per token, thread 0 orders the slots, every column sums them.
template <km::Precision P>
at::Tensor emulate_combine_typed(const at::Tensor& ids_in, const at::Tensor& weights_in, const Plan& plan,
                                 const std::vector<uint8_t>& local, const at::Tensor& y, at::ScalarType dtype) {
  using S = typename km::StorageOf<P>::type;
  const at::Tensor ids = ids_in.contiguous(), weights = weights_in.contiguous();
  const int64_t n = ids.size(0), k = ids.size(1), hidden = y.size(1);
  at::Tensor out = at::empty({n, hidden}, dtype);
  S* op = static_cast<S*>(out.mutable_data_ptr());
  const S* yp = static_cast<const S*>(y.const_data_ptr());
  const km::Precision wp = precision_of(weights.scalar_type());
  const int element = weights.scalar_type() == at::kFloat ? 4 : 2;
  for (int64_t t = 0; t < n; ++t) {
    int rows[km::kMaxTopK];
    float w[km::kMaxTopK];
    const int count = km::combine_slots(ids.const_data_ptr<int64_t>() + t * k, plan.row_of.data() + t * k,
                                        static_cast<const char*>(weights.const_data_ptr()) + t * k * element, wp,
                                        local.data(), static_cast<int>(local.size()), static_cast<int>(k), rows, w);
    for (int64_t c = 0; c < hidden; ++c) op[t * hidden + c] = km::from_f<P>(km::combine_value<P>(yp, y.stride(0), c, rows, w, count));
  }
  return out;
}
inline at::Tensor emulate_combine(const at::Tensor& ids, const at::Tensor& weights, const Plan& plan,
                           const std::vector<uint8_t>& local, const at::Tensor& y) {
  switch (y.scalar_type()) {
    case at::kFloat: return emulate_combine_typed<km::Precision::kFp32>(ids, weights, plan, local, y, y.scalar_type());
    case at::kBFloat16: return emulate_combine_typed<km::Precision::kBf16>(ids, weights, plan, local, y, y.scalar_type());
    default: return emulate_combine_typed<km::Precision::kFp16>(ids, weights, plan, local, y, y.scalar_type());
  }
}

// ---- test data ----

// Experts as Weights::gated_mlp builds them: gate and up are row views of the fused gate_up. The
// weights are drawn on `device` (N(0, 1) times `scale`).
inline std::vector<ExpertWeights> make_experts(int64_t num, int64_t hidden, int64_t inter, at::ScalarType dtype,
                                        at::Device device = at::kCPU, double scale = 0.2) {
  const auto drawn = at::TensorOptions().device(device);
  std::vector<ExpertWeights> experts;
  for (int64_t e = 0; e < num; ++e) {
    ExpertWeights w;
    const at::Tensor gate_up = (at::randn({2 * inter, hidden}, drawn) * scale).to(dtype);
    w.gate_up = Linear(gate_up);
    w.gate = Linear(gate_up.narrow(0, 0, inter));
    w.up = Linear(gate_up.narrow(0, inter, inter));
    w.down = Linear((at::randn({hidden, inter}, drawn) * scale).to(dtype));
    experts.push_back(std::move(w));
  }
  return experts;
}

// Dense experts copied to the host, in `dtype` if given (fp32 for a truth to hold results to):
// gate and up stay views of gate_up's rows, as make_experts builds them.
inline std::vector<ExpertWeights> on_host(const std::vector<ExpertWeights>& experts,
                                   std::optional<at::ScalarType> dtype = std::nullopt) {
  std::vector<ExpertWeights> host;
  for (const auto& e : experts) {
    const int64_t inter = e.inter();
    ExpertWeights h;
    h.gate_up = Linear(e.gate_up.weight.cpu().to(dtype.value_or(e.gate_up.weight.scalar_type())));
    h.gate = Linear(h.gate_up.weight.narrow(0, 0, inter));
    h.up = Linear(h.gate_up.weight.narrow(0, inter, inter));
    h.down = Linear(e.down.weight.cpu().to(dtype.value_or(e.down.weight.scalar_type())));
    host.push_back(std::move(h));
  }
  return host;
}

// int8 experts as Weights::gated_mlp builds them with --weights int8: gate_up quantised per row,
// gate and up views of its rows and scales.
inline std::vector<ExpertWeights> make_int8_experts(int64_t num, int64_t hidden, int64_t inter, at::Device device = at::kCPU,
                                             double scale = 0.2) {
  std::vector<ExpertWeights> experts = make_experts(num, hidden, inter, at::kFloat, device, scale);
  for (ExpertWeights& w : experts) {
    w.gate_up = quantize_int8(w.gate_up);
    w.gate = Linear::int8(w.gate_up.weight.narrow(0, 0, inter), w.gate_up.scale.narrow(0, 0, inter));
    w.up = Linear::int8(w.gate_up.weight.narrow(0, inter, inter), w.gate_up.scale.narrow(0, inter, inter));
    w.down = quantize_int8(w.down);
  }
  return experts;
}

inline const float* scales_of(const Linear& l) { return l.format == WeightFormat::Int8 ? l.scale.const_data_ptr<float>() : nullptr; }

inline GemvWeights gate_up_of(const std::vector<ExpertWeights>& experts, const std::vector<uint8_t>& local) {
  GemvWeights g;
  const int64_t inter = experts[0].inter(), hidden = experts[0].gate_up.in_features();
  const bool int8 = experts[0].gate_up.format == WeightFormat::Int8;
  for (size_t e = 0; e < experts.size(); ++e) {
    const bool here = local[e] != 0;
    g.lo.push_back(here ? experts[e].gate.weight.const_data_ptr() : nullptr);
    g.hi.push_back(here ? experts[e].up.weight.const_data_ptr() : nullptr);
    if (int8) {
      g.s_lo.push_back(here ? scales_of(experts[e].gate) : nullptr);
      g.s_hi.push_back(here ? scales_of(experts[e].up) : nullptr);
    }
  }
  g.out = static_cast<int>(2 * inter);
  g.in = static_cast<int>(hidden);
  g.split = static_cast<int>(inter);
  return g;
}
inline GemvWeights down_of(const std::vector<ExpertWeights>& experts, const std::vector<uint8_t>& local) {
  GemvWeights g;
  const bool int8 = experts[0].down.format == WeightFormat::Int8;
  for (size_t e = 0; e < experts.size(); ++e) {
    g.lo.push_back(local[e] != 0 ? experts[e].down.weight.const_data_ptr() : nullptr);
    g.hi.push_back(g.lo.back());
    if (int8) {
      g.s_lo.push_back(local[e] != 0 ? scales_of(experts[e].down) : nullptr);
      g.s_hi.push_back(g.s_lo.back());
    }
  }
  g.out = static_cast<int>(experts[0].down.out_features());
  g.in = static_cast<int>(experts[0].inter());
  g.split = g.out;
  return g;
}

// Routing with the given ids ([N, k], distinct per row) and random positive weights.
inline Routing fixed_routing(const at::Tensor& ids, at::ScalarType weight_dtype) {
  Routing r;
  r.expert_ids = ids;
  r.weights = (at::rand(ids.sizes()) + 0.1).to(weight_dtype);
  return r;
}
// k distinct random experts per token (random top-k of random scores).
inline at::Tensor random_ids(int64_t n, int64_t experts, int64_t k) {
  return std::get<1>(at::topk(at::rand({n, experts}), k, -1));
}

// The decode dispatch as the kernels run it, emulated: permute, GEMV with the SwiGLU, GEMV, combine.
inline at::Tensor emulate_decode_dispatch(const at::Tensor& x, const Routing& r, const std::vector<ExpertWeights>& experts,
                                   const std::vector<uint8_t>& local, bool vectorized) {
  const int64_t n = x.size(0), k = r.expert_ids.size(1), m = n * k, hidden = x.size(1);
  const int64_t inter = experts[0].inter();
  const int e = static_cast<int>(experts.size());
  const Plan plan = emulate_permute(r.expert_ids.reshape({-1}), e);
  at::Tensor a = at::zeros({m, inter}, x.options());
  at::Tensor y = at::zeros({m, hidden}, x.options());
  emulate_gemv(plan, gate_up_of(experts, local), true, static_cast<int>(k), x.contiguous(), a, vectorized, true);
  emulate_gemv(plan, down_of(experts, local), false, static_cast<int>(k), a, y, vectorized, false);
  return emulate_combine(r.expert_ids, r.weights, plan, local, y);
}

// Tie-aware comparison of two routings of the same scores: at each slot the chosen experts'
// reference scores agree within `score_tol` (equal ids, or a tie the two top-ks broke
// differently), the weights within `weight_tol`; returns how many slots chose another expert.
inline int64_t expect_same_topk(const Routing& actual, const Routing& ref, double score_tol, test::Tolerance weight_tol,
                         const std::string& what) {
  const at::Tensor ref_scores = ref.probs.cpu().to(at::kDouble);
  const at::Tensor a_ids = actual.expert_ids.cpu(), r_ids = ref.expert_ids.cpu();
  EXPECT_EQ(a_ids.sizes(), r_ids.sizes()) << what;
  const at::Tensor a_sc = ref_scores.gather(1, a_ids), r_sc = ref_scores.gather(1, r_ids);
  const double worst = (a_sc - r_sc).abs().max().item<double>();
  EXPECT_LE(worst, score_tol) << what << ": a chosen expert's score differs from the reference's choice by " << worst;
  // Every row's chosen set is distinct and the scores descend.
  EXPECT_TRUE((std::get<0>(a_ids.sort(-1)).diff(1, -1) > 0).all().item<bool>()) << what << ": repeated expert";
  EXPECT_TRUE((a_sc.diff(1, -1) <= score_tol).all().item<bool>()) << what << ": scores not descending";
  test::expect_close(actual.weights.cpu().to(at::kFloat), ref.weights.cpu().to(at::kFloat), weight_tol,
                     what + " weights");
  EXPECT_EQ(actual.weights.scalar_type(), ref.weights.scalar_type()) << what;
  return (a_ids != r_ids).sum().item<int64_t>();
}

inline std::vector<uint8_t> all_local(int64_t experts) { return std::vector<uint8_t>(static_cast<size_t>(experts), 1); }

}  // namespace effarch::ops::moe_emulation
