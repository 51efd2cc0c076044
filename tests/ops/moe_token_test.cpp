// The one-token MoE dispatch (kernels/moe: MoeExpertGemvParams::token_ids and
// moe_token_down_kernel; src/ops/moe_cuda.cpp's one_token_dispatch): a decode step of one token in
// two launches, no permute, DeepSeekMoE's shared experts inside them; and the router with its
// logits' product in one launch (moe_route_tokens_kernel) for a decode step's tokens.
//
// On the CPU (every build): the kernels' slot order (moe::token_slot) is the combine's; host
// emulations of the two kernels give the staged kernels' emulation bit for bit (permute, GEMV,
// GEMV, combine) without shared experts, and with them that plus the shared MLP emulated as one
// expert of their width, added in the model dtype; the whole against the reference within the
// decode dispatch's tolerance; moe_dispatch's `shared` is the routed sum plus the shared MLP.
// The router's logits in its launch: emulated against the reference.
// On a GPU (skipped without one): the two launches against the staged kernels (bit for bit
// without shared experts), the emulation and the reference; the table's shared columns; the
// router against its emulation, the separate router and the reference. (The graph replay of both
// is MoeCuda.DispatchReplaysInACudaGraph's, tests/ops/moe_cuda_test.cpp.)

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "effarch/ops/moe.h"
#include "moe_emulation.h"
#include "tolerance.h"

namespace effarch::ops {
namespace {

using namespace moe_emulation;

// ---- emulations of the two kernels ----

// The gate/up GEMV with token_ids is the staged GEMV over this plan: slot s < k the token's s-th
// expert by id (moe::token_slot; none past its valid ones) with its row of y at s, slot k + j the
// table's column E + j with its row at k + j; every slot reads x's row 0 (gathered through an order
// of zeros with top_k k).
Plan token_plan(const at::Tensor& ids, int experts, int shared_slots) {
  const int k = static_cast<int>(ids.numel());
  const int columns = experts + shared_slots;
  Plan p;
  p.counts.assign(static_cast<size_t>(columns + 1), 0);
  p.offsets.assign(static_cast<size_t>(columns + 2), 0);
  p.order.assign(static_cast<size_t>(k + shared_slots), 0);
  for (int s = 0; s < k + shared_slots; ++s) {
    const int column = s < k ? km::token_slot(ids.const_data_ptr<int64_t>(), k, experts, s, nullptr) : experts + s - k;
    if (column < 0) continue;
    p.active.push_back(column);
    p.counts[static_cast<size_t>(column)] = 1;
    p.offsets[static_cast<size_t>(column)] = s;
  }
  p.num_active = static_cast<int>(p.active.size());
  return p;
}

// moe_token_down_kernel: warp o sums output o over the token's slots in the combine's order, then
// the shared experts' down over a's rows k .. k + S - 1 as one row. down.lo: [E] the experts' down
// rows (null: remote), then the shared down [H, S I] at E when S > 0.
template <km::Precision P, int V, typename W = typename km::StorageOf<P>::type>
at::Tensor emulate_token_down_typed(const at::Tensor& a, const at::Tensor& ids, const at::Tensor& weights,
                                    const GemvWeights& down, int experts, int shared_slots, int hidden) {
  using S = typename km::StorageOf<P>::type;
  const int k = static_cast<int>(ids.numel()), inter = static_cast<int>(a.size(1));
  const S* ap = static_cast<const S*>(a.const_data_ptr());
  at::Tensor out = at::empty({1, hidden}, a.options());
  S* op = static_cast<S*>(out.mutable_data_ptr());
  const km::Precision wp = precision_of(weights.scalar_type());
  // thread 0's slot list
  std::vector<int> expert_of;
  std::vector<float> weight_of;
  for (int i = 0; i < k; ++i) {
    int j = 0;
    const int e = km::token_slot(ids.const_data_ptr<int64_t>(), k, experts, i, &j);
    if (e < 0) break;
    expert_of.push_back(e);
    weight_of.push_back(km::load_f(weights.const_data_ptr(), j, wp));
  }
  const auto lane_dot = [](const W* w, const S* x, int length) {
    float lanes[km::kWarp];
    for (int lane = 0; lane < km::kWarp; ++lane) {
      const S* xr[1] = {x};
      float acc[1];
      km::gemv_lane<P, V, W, km::kExpertLoadsInFlight, 1>(w, xr, 1, length, lane, acc);
      lanes[lane] = acc[0];
    }
    return kernels::xor_butterfly_sum_emulated<km::kWarp>(lanes);
  };
  for (int o = 0; o < hidden; ++o) {
    float value = 0.f;
    for (size_t i = 0; i < expert_of.size(); ++i) {
      const int e = expert_of[i];
      const W* w = static_cast<const W*>(down.lo[static_cast<size_t>(e)]);
      if (w == nullptr) continue;
      float scale = 1.0f;
      if constexpr (std::is_same<W, int8_t>::value) scale = down.s_lo[static_cast<size_t>(e)][o];
      const float sum = lane_dot(w + static_cast<int64_t>(o) * inter, ap + static_cast<int64_t>(i) * inter, inter);
      value = km::combine_add<P>(value, km::round_to<P>(sum * scale), weight_of[i]);
    }
    if (shared_slots > 0) {
      const int width = shared_slots * inter;
      const W* w = static_cast<const W*>(down.lo[static_cast<size_t>(experts)]) + static_cast<int64_t>(o) * width;
      value = km::add_shared<P>(value, lane_dot(w, ap + static_cast<int64_t>(k) * inter, width));
    }
    op[o] = km::from_f<P>(value);
  }
  return out;
}

at::Tensor emulate_token_down(const at::Tensor& a, const at::Tensor& ids, const at::Tensor& weights,
                              const GemvWeights& down, int experts, int shared_slots, int hidden, bool vectorized) {
  if (!down.s_lo.empty()) {
    switch (a.scalar_type()) {
      case at::kFloat:
        return vectorized ? emulate_token_down_typed<km::Precision::kFp32, 16, int8_t>(a, ids, weights, down, experts, shared_slots, hidden)
                          : emulate_token_down_typed<km::Precision::kFp32, 1, int8_t>(a, ids, weights, down, experts, shared_slots, hidden);
      case at::kBFloat16:
        return vectorized ? emulate_token_down_typed<km::Precision::kBf16, 16, int8_t>(a, ids, weights, down, experts, shared_slots, hidden)
                          : emulate_token_down_typed<km::Precision::kBf16, 1, int8_t>(a, ids, weights, down, experts, shared_slots, hidden);
      default:
        return vectorized ? emulate_token_down_typed<km::Precision::kFp16, 16, int8_t>(a, ids, weights, down, experts, shared_slots, hidden)
                          : emulate_token_down_typed<km::Precision::kFp16, 1, int8_t>(a, ids, weights, down, experts, shared_slots, hidden);
    }
  }
  switch (a.scalar_type()) {
    case at::kFloat:
      return vectorized ? emulate_token_down_typed<km::Precision::kFp32, 4>(a, ids, weights, down, experts, shared_slots, hidden)
                        : emulate_token_down_typed<km::Precision::kFp32, 1>(a, ids, weights, down, experts, shared_slots, hidden);
    case at::kBFloat16:
      return vectorized ? emulate_token_down_typed<km::Precision::kBf16, 8>(a, ids, weights, down, experts, shared_slots, hidden)
                        : emulate_token_down_typed<km::Precision::kBf16, 1>(a, ids, weights, down, experts, shared_slots, hidden);
    default:
      return vectorized ? emulate_token_down_typed<km::Precision::kFp16, 8>(a, ids, weights, down, experts, shared_slots, hidden)
                        : emulate_token_down_typed<km::Precision::kFp16, 1>(a, ids, weights, down, experts, shared_slots, hidden);
  }
}

// The one-token dispatch as its two kernels run it, emulated: x [1, H]; `shared` (dense, a whole
// number of experts' width) folded as the table folds it (make_expert_table), or none.
at::Tensor emulate_one_token_dispatch(const at::Tensor& x, const Routing& r, const std::vector<ExpertWeights>& experts,
                                      const std::vector<uint8_t>& local, const GatedMlpWeights* shared,
                                      bool vectorized) {
  const int experts_n = static_cast<int>(experts.size());
  int64_t inter = 0;
  for (const auto& e : experts) inter = e.remote ? inter : e.inter();
  const int64_t hidden = x.size(1), k = r.expert_ids.size(1);
  const int slots = shared != nullptr ? static_cast<int>(shared->inter() / inter) : 0;
  GemvWeights gate_up = gate_up_of(experts, local), down = down_of(experts, local);
  for (int j = 0; j < slots; ++j) {  // the table's shared columns
    gate_up.lo.push_back(shared->gate.weight.narrow(0, j * inter, inter).const_data_ptr());
    gate_up.hi.push_back(shared->up.weight.narrow(0, j * inter, inter).const_data_ptr());
  }
  if (slots > 0) down.lo.push_back(shared->down.weight.const_data_ptr());
  const at::Tensor ids = r.expert_ids.contiguous();
  const Plan plan = token_plan(ids, experts_n, slots);
  at::Tensor a = at::zeros({k + slots, inter}, x.options());
  emulate_gemv(plan, gate_up, true, static_cast<int>(k), x.contiguous(), a, vectorized, true);
  return emulate_token_down(a, ids, r.weights.contiguous(), down, experts_n, slots, static_cast<int>(hidden),
                            vectorized);
}

// A shared MLP of `slots` experts' width, as Weights::gated_mlp builds one (gate and up views of
// gate_up's rows).
GatedMlpWeights make_shared(int64_t slots, int64_t hidden, int64_t inter, at::ScalarType dtype,
                            at::Device device = at::kCPU, double scale = 0.2) {
  return make_experts(1, hidden, slots * inter, dtype, device, scale)[0];
}

ExpertWeights as_expert(const GatedMlpWeights& mlp) {
  ExpertWeights e;
  static_cast<GatedMlpWeights&>(e) = mlp;
  return e;
}

// The shared MLP alone, emulated as the staged kernels would run it as one expert of its width
// with weight 1 (the combine's round(y * 1) and 0 + y are exact): its own products' rounding.
at::Tensor emulate_shared_alone(const at::Tensor& x, const GatedMlpWeights& shared, bool vectorized) {
  Routing r;
  r.expert_ids = at::zeros({1, 1}, at::kLong);
  r.weights = at::ones({1, 1}, at::kFloat);
  return emulate_decode_dispatch(x, r, {as_expert(shared)}, all_local(1), vectorized);
}

// moe_route_tokens_kernel's logits: per token and expert the one-row lane's partial sums of
// W[e] . x over 32 lanes (V elements a load), added in the xor butterfly's order, rounded to the
// model dtype. Returns [N, E] in x's dtype; the routing on them is emulate_router's.
template <km::Precision P, int V>
at::Tensor emulate_router_logits_typed(const at::Tensor& x, const at::Tensor& w) {
  using S = typename km::StorageOf<P>::type;
  const int64_t n = x.size(0), experts = w.size(0), hidden = x.size(1);
  at::Tensor logits = at::empty({n, experts}, x.options());
  S* lp = static_cast<S*>(logits.mutable_data_ptr());
  for (int64_t t = 0; t < n; ++t) {
    const S* xr[1] = {static_cast<const S*>(x.const_data_ptr()) + t * hidden};
    for (int64_t e = 0; e < experts; ++e) {
      float lanes[km::kWarp];
      for (int lane = 0; lane < km::kWarp; ++lane) {
        float acc[1];
        km::gemv_lane<P, V, S, km::kExpertLoadsInFlight, 1>(static_cast<const S*>(w.const_data_ptr()) + e * hidden, xr, 1,
                                                            static_cast<int>(hidden), lane, acc);
        lanes[lane] = acc[0];
      }
      lp[t * experts + e] = km::from_f<P>(kernels::xor_butterfly_sum_emulated<km::kWarp>(lanes));
    }
  }
  return logits;
}
at::Tensor emulate_router_logits(const at::Tensor& x_in, const at::Tensor& w_in) {
  const at::Tensor x = x_in.contiguous(), w = w_in.contiguous();
  const bool vec = x.size(1) % (16 / x.element_size()) == 0;  // the launcher's 16-byte path (x and W from allocations' starts)
  switch (x.scalar_type()) {
    case at::kFloat:
      return vec ? emulate_router_logits_typed<km::Precision::kFp32, 4>(x, w) : emulate_router_logits_typed<km::Precision::kFp32, 1>(x, w);
    case at::kBFloat16:
      return vec ? emulate_router_logits_typed<km::Precision::kBf16, 8>(x, w) : emulate_router_logits_typed<km::Precision::kBf16, 1>(x, w);
    default:
      return vec ? emulate_router_logits_typed<km::Precision::kFp16, 8>(x, w) : emulate_router_logits_typed<km::Precision::kFp16, 1>(x, w);
  }
}

struct RouteCase {
  int64_t tokens, experts, top_k, hidden;
  RouterKind kind;
};
std::vector<RouteCase> route_cases() {
  std::vector<RouteCase> cases;
  for (const RouterKind kind : {RouterKind::SoftmaxFp32Renormalized, RouterKind::SoftmaxFp32, RouterKind::SoftmaxModelDtype}) {
    cases.push_back({1, 8, 2, 64, kind});      // Mixtral's router shape, small
    cases.push_back({1, 64, 6, 2048, kind});   // DeepSeekMoE's
    cases.push_back({3, 16, 2, 36, kind});     // Jamba's experts; a row of 36: the scalar path in bf16 and fp16
    cases.push_back({16, 200, 16, 136, kind});  // several logits a lane, the largest top-k, 16 tokens
  }
  return cases;
}

// The reference scores' resolution (as moe_cuda_test.cpp's router tests).
double route_score_tolerance(RouterKind kind, at::ScalarType dtype) {
  return kind == RouterKind::SoftmaxModelDtype && dtype != at::kFloat ? 1e-2 : 1e-5;
}

struct TokenCase {
  int64_t experts, top_k;
};

test::Tolerance dispatch_tolerance(at::ScalarType dtype) {  // as DecodeDispatchMatchesTheReference's
  const test::Tolerance tol = test::rounding_tolerance(dtype);
  return dtype == at::kFloat ? test::Tolerance{1e-4, 1e-5} : test::Tolerance{2 * tol.atol, 2 * tol.rtol};
}

// ---- on the CPU ----

// token_slot lists the token's valid experts in the order the combine adds them (combine_slots
// over the permute's rows: ascending id, equal ids by slot), with each one's own slot; ids outside
// 0..E-1 are left out.
TEST(MoeTokenMath, SlotsAreTheCombinesOrder) {
  const std::vector<std::vector<int64_t>> cases = {
      {3}, {5, 1}, {7, 0, 3, 6, 2, 1}, {2, -1, 9, 0}, {4, 4, 1}, {-3, 8}, {1, 2, 3, 4, 5, 6, 7, 0}};
  for (const auto& c : cases) {
    const int k = static_cast<int>(c.size()), experts = 8;
    const at::Tensor ids = at::tensor(c, at::kLong);
    const Plan plan = emulate_permute(ids, experts);
    const std::vector<uint8_t> local = all_local(experts);
    const std::vector<float> ones(static_cast<size_t>(k), 1.0f);
    int rows[km::kMaxTopK];
    float w[km::kMaxTopK];
    const int n = km::combine_slots(c.data(), plan.row_of.data(), ones.data(), km::Precision::kFp32, local.data(),
                                    experts, k, rows, w);
    const std::string what = fmt::format("ids {}", fmt::join(c, ","));
    for (int i = 0; i < n; ++i) {
      int slot = -1;
      const int e = km::token_slot(c.data(), k, experts, i, &slot);
      EXPECT_EQ(slot, plan.order[static_cast<size_t>(rows[i])]) << what << " i " << i;
      EXPECT_EQ(e, c[static_cast<size_t>(plan.order[static_cast<size_t>(rows[i])])]) << what << " i " << i;
    }
    EXPECT_EQ(km::token_slot(c.data(), k, experts, n, nullptr), -1) << what << ": more slots than the combine's";
  }
}

// Without shared experts the two kernels give the staged kernels' output bit for bit: the same
// lanes' sums (one row of x), the same rounding of each expert's output, the same combine order.
// Every dtype, both load paths, int8 experts, rows of several rounds a lane, remote experts, an
// id outside the experts (dropped by both).
TEST(MoeTokenEmulation, TwoKernelsAreTheStagedKernels) {
  int runs = 0;
  for (const TokenCase c : {TokenCase{8, 2}, TokenCase{64, 6}, TokenCase{4, 4}, TokenCase{8, 1}}) {
    for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
      for (const int64_t hidden : {40, 64, 608}) {
        for (const bool int8 : {false, true}) {
          const int64_t inter = hidden == 40 ? 24 : hidden == 64 ? 48 : 272;
          at::manual_seed(static_cast<uint64_t>(c.experts + c.top_k + hidden + int8));
          auto experts = int8 ? make_int8_experts(c.experts, hidden, inter) : make_experts(c.experts, hidden, inter, dtype);
          std::vector<uint8_t> local = all_local(c.experts);
          if (c.experts == 8 && c.top_k == 2) {  // two experts on another rank
            for (const int e : {1, 5}) {
              local[static_cast<size_t>(e)] = 0;
              experts[static_cast<size_t>(e)] = ExpertWeights{};
              experts[static_cast<size_t>(e)].remote = true;
            }
          }
          const at::Tensor x = at::randn({1, hidden}).to(dtype);
          Routing r = fixed_routing(random_ids(1, c.experts, c.top_k), dtype);
          if (c.top_k == 4) r.expert_ids[0][2] = c.experts;  // outside 0..E-1
          for (const bool vectorized : {false, true}) {
            if (vectorized && (hidden % (int8 ? 16 : 8) != 0 || inter % (int8 ? 16 : 8) != 0)) continue;
            const std::string what = fmt::format("E{} k{} {} H{} int8 {} vec {}", c.experts, c.top_k,
                                                 c10::toString(dtype), hidden, int8, vectorized);
            const at::Tensor staged = emulate_decode_dispatch(x, r, experts, local, vectorized);
            const at::Tensor fused = emulate_one_token_dispatch(x, r, experts, local, nullptr, vectorized);
            EXPECT_TRUE(at::equal(fused, staged)) << what << ": max diff "
                                                  << (fused.to(at::kDouble) - staged.to(at::kDouble)).abs().max().item<double>();
            ++runs;
          }
        }
      }
    }
  }
  // cases x dtypes x (H40: both paths dense, int8's scalar one; H64 and H608: both paths, both formats)
  EXPECT_EQ(runs, 4 * 3 * (3 + 4 + 4));
}

// With shared experts of 1, 2 and 3 experts' width: the staged routed sum plus the shared MLP
// alone (its gate/up rows read in slices of the experts' width give the same rows; its down one
// row of S I), added in the model dtype, bit for bit; and within the decode dispatch's tolerance
// of the reference with `shared`.
TEST(MoeTokenEmulation, SharedExpertsFoldIntoTheTwoKernels) {
  for (const int64_t slots : {1, 2, 3}) {
    for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
      for (const int64_t hidden : {40, 64, 608}) {
        const int64_t inter = hidden == 40 ? 24 : hidden == 64 ? 48 : 272;
        at::manual_seed(static_cast<uint64_t>(slots * 11 + hidden));
        const auto experts = make_experts(16, hidden, inter, dtype);
        const GatedMlpWeights shared = make_shared(slots, hidden, inter, dtype);
        const at::Tensor x = at::randn({1, hidden}).to(dtype);
        const Routing r = fixed_routing(random_ids(1, 16, 4), dtype);
        const at::Tensor ref = moe_dispatch(x, r, experts, Activation::SiLU, Backend::Reference, nullptr, nullptr, &shared);
        for (const bool vectorized : {false, true}) {
          if (vectorized && hidden % 8 != 0) continue;
          const std::string what =
              fmt::format("S{} {} H{} vec {}", slots, c10::toString(dtype), hidden, vectorized);
          const at::Tensor fused = emulate_one_token_dispatch(x, r, experts, all_local(16), &shared, vectorized);
          const at::Tensor apart = emulate_decode_dispatch(x, r, experts, all_local(16), vectorized) +
                                   emulate_shared_alone(x, shared, vectorized);
          EXPECT_TRUE(at::equal(fused, apart)) << what << ": max diff "
                                               << (fused.to(at::kDouble) - apart.to(at::kDouble)).abs().max().item<double>();
          if (dtype == at::kFloat) {
            test::expect_close(fused, ref, dispatch_tolerance(dtype), what + " vs reference");
          } else {  // outputs near 100 at H608: each held to the fp32 truth from the same rounded inputs
            const Routing rf{r.expert_ids, r.weights.to(at::kFloat), {}};
            const GatedMlpWeights shared_f32 = on_host({as_expert(shared)}, at::kFloat)[0];
            const at::Tensor truth = moe_dispatch(x.to(at::kFloat), rf, on_host(experts, at::kFloat), Activation::SiLU,
                                                  Backend::Reference, nullptr, nullptr, &shared_f32);
            test::expect_as_accurate(fused, ref, truth, what + " vs reference");
          }
        }
      }
    }
  }
}

// moe_dispatch with `shared` is the routed sum plus the shared MLP on the model's backend, rounded
// to x's dtype: the reference and the CPU dispatch (auto on the CPU), fp32 and bf16, one token and
// several.
TEST(MoeTokenDispatch, SharedExpertsAreAddedAfterTheRoutedSum) {
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    for (const int64_t tokens : {1, 5}) {
      for (const Backend backend : {Backend::Reference, Backend::Auto}) {  // auto: the CPU dispatch
        at::manual_seed(static_cast<uint64_t>(tokens));
        const auto experts = make_experts(8, 32, 16, dtype);
        const GatedMlpWeights shared = make_shared(2, 32, 16, dtype);
        const at::Tensor x = at::randn({tokens, 32}).to(dtype);
        const Routing r = fixed_routing(random_ids(tokens, 8, 2), dtype);
        const at::Tensor with = moe_dispatch(x, r, experts, Activation::SiLU, backend, nullptr, nullptr, &shared);
        const at::Tensor apart =
            moe_dispatch(x, r, experts, Activation::SiLU, backend) + gated_mlp(x, shared, Activation::SiLU, backend);
        EXPECT_TRUE(at::equal(with, apart)) << c10::toString(dtype) << " N" << tokens;
      }
    }
  }
}

// The router with its logits in the same launch, emulated (its logits' lane order, then the
// router kernel's routing) against the reference (at::linear's logits, ATen's softmax and top-k):
// the chosen experts' scores agree up to a tie, the weights within the scores' resolution. The
// emulated logits are at::linear's within a rounding.
TEST(MoeTokenEmulation, RouterWithItsLogitsMatchesTheReference) {
  int64_t flips = 0, slots = 0;
  for (const RouteCase c : route_cases()) {
    for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
      at::manual_seed(static_cast<uint64_t>(c.tokens * 7 + c.experts + c.hidden));
      const at::Tensor x = at::randn({c.tokens, c.hidden}).to(dtype);
      const at::Tensor w = (at::randn({c.experts, c.hidden}) * (1.0 / std::sqrt(static_cast<double>(c.hidden)))).to(dtype);
      const std::string what = fmt::format("N{} E{} k{} H{} {} {}", c.tokens, c.experts, c.top_k, c.hidden,
                                           static_cast<int>(c.kind), c10::toString(dtype));
      const at::Tensor logits = emulate_router_logits(x, w);
      test::expect_close(logits, at::linear(x, w), test::rounding_tolerance(dtype), what + " logits");
      const Routing emu = emulate_router(logits, c.top_k, c.kind);
      const Routing ref = moe_route(x, w, c.top_k, c.kind, Backend::Reference);
      const double tol = route_score_tolerance(c.kind, dtype);
      flips += expect_same_topk(emu, ref, tol, {1e-6, tol}, what);
      slots += c.tokens * c.top_k;
    }
  }
  EXPECT_LE(flips * 20, slots) << flips << " of " << slots << " slots chose another expert";
}

// ---- on a GPU ----

// The router with its logits in one launch (a decode step's tokens, RouterLogits::Auto) against
// its emulation (the same logits bit for bit in fp32 up to the device's expf; the routing of them)
// and against the separate product (RouterLogits::Separate: cuBLAS, then the router kernel) and
// the reference, tie-aware.
TEST(MoeTokenCuda, RouterWithItsLogitsMatchesTheSeparateRouter) {
  if (!have_gpu()) GTEST_SKIP() << "needs a CUDA build and a GPU";
  const at::Device cuda(at::kCUDA, 0);
  int64_t flips = 0, slots = 0;
  for (const RouteCase c : route_cases()) {
    for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
      at::manual_seed(static_cast<uint64_t>(c.tokens * 7 + c.experts + c.hidden));
      const at::Tensor x = at::randn({c.tokens, c.hidden}).to(dtype).to(cuda);
      const at::Tensor w =
          (at::randn({c.experts, c.hidden}) * (1.0 / std::sqrt(static_cast<double>(c.hidden)))).to(dtype).to(cuda);
      const std::string what = fmt::format("N{} E{} k{} H{} {} {}", c.tokens, c.experts, c.top_k, c.hidden,
                                           static_cast<int>(c.kind), c10::toString(dtype));
      const Routing fused = moe_route(x, w, c.top_k, c.kind, Backend::Cuda);
      const Routing apart = moe_route(x, w, c.top_k, c.kind, Backend::Cuda, RouterLogits::Separate);
      const Routing ref = moe_route(x, w, c.top_k, c.kind, Backend::Reference);
      const Routing emu = emulate_router(emulate_router_logits(x.cpu(), w.cpu()), c.top_k, c.kind);
      const double tol = route_score_tolerance(c.kind, dtype);
      test::expect_close(fused.probs, emu.probs, {1e-7, tol}, what + " probs vs emulation");
      flips += expect_same_topk(fused, apart, tol, {1e-6, tol}, what + " vs separate");
      flips += expect_same_topk(fused, ref, tol, {1e-6, tol}, what + " vs reference");
      slots += 2 * c.tokens * c.top_k;
      EXPECT_EQ(fused.weights.scalar_type(), apart.weights.scalar_type()) << what;
    }
  }
  EXPECT_LE(flips * 20, slots) << flips << " of " << slots << " slots chose another expert";
}

// The two launches against the staged kernels (ExpertTable::fused_token false) on the device: bit
// for bit without shared experts (every dtype, both load paths, int8 experts, remote experts,
// DeepSeekMoE's and Mixtral's real shapes); with DeepSeekMoE's two shared experts against the
// emulation and the reference, and deterministic.
TEST(MoeTokenCuda, TwoKernelsAreTheStagedKernels) {
  if (!have_gpu()) GTEST_SKIP() << "needs a CUDA build and a GPU";
  const at::Device cuda(at::kCUDA, 0);
  struct Shape {
    int64_t hidden, inter, experts, top_k;
    bool int8;
    double scale;
  };
  const Shape shapes[] = {{40, 24, 8, 2, false, 0.2},  {64, 48, 64, 6, false, 0.2},     {608, 272, 8, 2, true, 0.2},
                          {2048, 1408, 64, 6, false, 0.02}, {4096, 14336, 8, 2, false, 0.02}};
  for (const Shape sh : shapes) {
    for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
      if (sh.hidden == 4096 && dtype != at::kBFloat16) continue;  // Mixtral's experts: one dtype (7 GB in fp32)
      at::manual_seed(static_cast<uint64_t>(sh.hidden + sh.experts));
      auto experts = sh.int8 ? make_int8_experts(sh.experts, sh.hidden, sh.inter, cuda, sh.scale)
                             : make_experts(sh.experts, sh.hidden, sh.inter, dtype, cuda, sh.scale);
      if (sh.hidden == 40) {
        experts[3] = ExpertWeights{};
        experts[3].remote = true;
      }
      const ExpertTable table = make_expert_table(experts);
      ASSERT_TRUE(table.defined()) << table.why;
      ExpertTable staged = table;
      staged.fused_token = false;
      const at::Tensor x = at::randn({1, sh.hidden}, at::TensorOptions().device(cuda)).to(dtype);
      Routing r = fixed_routing(random_ids(1, sh.experts, sh.top_k), dtype);
      if (sh.hidden == 40) r.expert_ids[0][0] = 3;  // the remote expert
      r.expert_ids = r.expert_ids.to(cuda);
      r.weights = r.weights.to(cuda);
      const std::string what = fmt::format("H{} I{} E{} k{} {}{}", sh.hidden, sh.inter, sh.experts, sh.top_k,
                                           c10::toString(dtype), sh.int8 ? " int8" : "");
      const at::Tensor fused = moe_dispatch(x, r, experts, Activation::SiLU, Backend::Cuda, &table);
      const at::Tensor apart = moe_dispatch(x, r, experts, Activation::SiLU, Backend::Cuda, &staged);
      EXPECT_TRUE(at::equal(fused, apart)) << what << ": max diff "
                                           << (fused.to(at::kDouble) - apart.to(at::kDouble)).abs().max().item<double>();
      EXPECT_TRUE(at::equal(fused, moe_dispatch(x, r, experts, Activation::SiLU, Backend::Cuda, &table)))
          << what << ": not deterministic";
      // The measuring variants under the same two launches: the one-row gate/up kernel
      // (moe_decode_r1), and eight weight loads in flight a lane in both (moe_decode_r1l8).
      for (const int loads : {0, km::kExpertLoadsInFlightWide}) {
        ExpertTable variant = table;
        variant.one_row = true;
        variant.loads_in_flight = loads;
        EXPECT_TRUE(at::equal(fused, moe_dispatch(x, r, experts, Activation::SiLU, Backend::Cuda, &variant)))
            << what << ": loads_in_flight " << loads;
      }
    }
  }
  // DeepSeekMoE's layer with its shared experts (two experts' width).
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    at::manual_seed(7);
    const auto experts = make_experts(64, 2048, 1408, dtype, cuda, 0.02);
    const GatedMlpWeights shared = make_shared(2, 2048, 1408, dtype, cuda, 0.02);
    const ExpertTable table = make_expert_table(experts, &shared);
    ASSERT_EQ(table.shared_slots, 2) << table.shared_why;
    const at::Tensor x = at::randn({1, 2048}, at::TensorOptions().device(cuda)).to(dtype);
    Routing r = fixed_routing(random_ids(1, 64, 6), dtype);
    r.expert_ids = r.expert_ids.to(cuda);
    r.weights = r.weights.to(cuda);
    const std::string what = fmt::format("DeepSeekMoE with shared experts, {}", c10::toString(dtype));
    const at::Tensor fused = moe_dispatch(x, r, experts, Activation::SiLU, Backend::Cuda, &table, nullptr, &shared);
    const at::Tensor ref = moe_dispatch(x, r, experts, Activation::SiLU, Backend::Reference, nullptr, nullptr, &shared);
    test::Tolerance tol = test::rounding_tolerance(dtype);
    tol = dtype == at::kFloat ? test::Tolerance{1e-4, 1e-5} : test::Tolerance{4 * tol.atol, 4 * tol.rtol};
    test::expect_close(fused, ref, tol, what);
    Routing rh{r.expert_ids.cpu(), r.weights.cpu(), {}};
    const GatedMlpWeights shared_host = on_host({as_expert(shared)})[0];
    test::expect_close(fused, emulate_one_token_dispatch(x.cpu(), rh, on_host(experts), all_local(64), &shared_host, true),
                       tol, what + " vs emulation");
    EXPECT_TRUE(at::equal(fused, moe_dispatch(x, r, experts, Activation::SiLU, Backend::Cuda, &table, nullptr, &shared)))
        << what << ": not deterministic";
    // The staged kernels and the shared MLP apart (the dense GEMV's order for the shared down).
    ExpertTable staged = table;
    staged.fused_token = false;
    test::expect_close(moe_dispatch(x, r, experts, Activation::SiLU, Backend::Cuda, &staged, nullptr, &shared), fused,
                       tol, what + " vs staged");
  }
}

// make_expert_table folds shared experts of a whole number of experts' width as columns E ..
// E + S - 1 and says why where it does not; the dispatch folds only the shared experts the table
// holds (another MLP given is added apart, after the same routed sum).
TEST(MoeTokenCuda, TableFoldsTheSharedExperts) {
  if (!have_gpu()) GTEST_SKIP() << "needs a CUDA build and a GPU";
  const at::Device cuda(at::kCUDA, 0);
  at::manual_seed(5);
  const auto experts = make_experts(8, 64, 32, at::kBFloat16, cuda);
  const GatedMlpWeights shared = make_shared(3, 64, 32, at::kBFloat16, cuda);
  const ExpertTable table = make_expert_table(experts, &shared);
  ASSERT_EQ(table.shared_slots, 3) << table.shared_why;
  EXPECT_EQ(table.pointers.sizes(), (std::vector<int64_t>{3, 11}));
  const at::Tensor columns = table.pointers.cpu();
  const auto base = reinterpret_cast<int64_t>(shared.gate_up.weight.const_data_ptr());
  for (int64_t j = 0; j < 3; ++j) {
    EXPECT_EQ(columns[0][8 + j].item<int64_t>(), base + j * 32 * 64 * 2) << j;
    EXPECT_EQ(columns[1][8 + j].item<int64_t>(), base + (96 + j * 32) * 64 * 2) << j;
    EXPECT_EQ(columns[2][8 + j].item<int64_t>(), reinterpret_cast<int64_t>(shared.down.weight.const_data_ptr())) << j;
  }
  EXPECT_EQ(make_expert_table(experts).shared_slots, 0);
  const GatedMlpWeights odd = make_experts(1, 64, 40, at::kBFloat16, cuda)[0];  // not a whole number of 32s
  const ExpertTable odd_table = make_expert_table(experts, &odd);
  EXPECT_EQ(odd_table.shared_slots, 0);
  EXPECT_NE(odd_table.shared_why.find("width of 40"), std::string::npos) << odd_table.shared_why;
  EXPECT_NE(make_expert_table(make_int8_experts(8, 64, 32, cuda), &shared).shared_why.find("int8"), std::string::npos);
  GatedMlpWeights biased = shared;
  biased.down.bias = at::zeros({64}, biased.down.weight.options());
  EXPECT_NE(make_expert_table(experts, &biased).shared_why.find("bias"), std::string::npos);

  const at::Tensor x = at::randn({1, 64}, at::TensorOptions().device(cuda)).to(at::kBFloat16);
  Routing r = fixed_routing(random_ids(1, 8, 2).to(cuda), at::kBFloat16);
  r.weights = r.weights.to(cuda);
  const at::Tensor routed = moe_dispatch(x, r, experts, Activation::SiLU, Backend::Cuda, &table);
  const GatedMlpWeights other = make_shared(3, 64, 32, at::kBFloat16, cuda);
  EXPECT_TRUE(at::equal(moe_dispatch(x, r, experts, Activation::SiLU, Backend::Cuda, &table, nullptr, &other),
                        routed + gated_mlp(x, other, Activation::SiLU, Backend::Cuda)));
}

}  // namespace
}  // namespace effarch::ops
