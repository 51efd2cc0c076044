// The MoE dispatch kernels (kernels/moe) run by the CPU executor: the router, the router with its
// logits, the permute, the expert GEMV (staged, one-token, the measuring variants), the combine
// and the one-token down kernel, each through its launcher as src/ops/moe_cuda.cpp calls it,
// against references computed here with ATen in fp64, and against each other where the kernels
// promise the same bits (the one-token launches without shared experts against the staged
// kernels; the measuring variants against the defaults). Every launch runs under both schedules
// of the executor, which must give the same bytes.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "../ops/tolerance.h"
#include "cuda_sim.h"
// the kernels' per-dtype translation units, host-compiled
#include "moe/moe_bf16.cu"
#include "moe/moe_fp16.cu"
#include "moe/moe_fp32.cu"
#include "moe/moe_routing.cu"
#include "sim_test.h"

namespace effarch::sim {
namespace {

namespace k = ::effarch::kernels;
namespace km = ::effarch::kernels::moe;

km::Precision precision_of(at::ScalarType t) {
  return t == at::kFloat ? km::Precision::kFp32 : t == at::kBFloat16 ? km::Precision::kBf16 : km::Precision::kFp16;
}

// One expert: gate and up [I, H], down [H, I], in the model dtype.
struct Expert {
  at::Tensor gate, up, down;
};

struct Layer {
  int64_t experts, hidden, inter;
  at::ScalarType dtype;
  std::vector<Expert> e;
  at::Tensor router;  // [E, H]
  // the shared experts (DeepSeekMoE): gate/up [S I, H], down [H, S I]; undefined without
  at::Tensor shared_gate, shared_up, shared_down;
  // the device tables (here host pointers): gate/up columns E + S, down E + 1
  std::vector<const void*> lo, hi, down;
};

Layer make_layer(int64_t experts, int64_t hidden, int64_t inter, at::ScalarType dtype, int shared_slots,
                 uint64_t seed) {
  at::manual_seed(static_cast<int64_t>(seed));
  Layer l{experts, hidden, inter, dtype, {}, {}, {}, {}, {}, {}, {}, {}};
  const double s = 1.0 / std::sqrt(static_cast<double>(hidden));
  for (int64_t i = 0; i < experts; ++i) {
    l.e.push_back({(at::randn({inter, hidden}) * s).to(dtype), (at::randn({inter, hidden}) * s).to(dtype),
                   (at::randn({hidden, inter}) / std::sqrt(static_cast<double>(inter))).to(dtype)});
  }
  l.router = (at::randn({experts, hidden}) * s).to(dtype);
  for (const Expert& e : l.e) {
    l.lo.push_back(e.gate.const_data_ptr());
    l.hi.push_back(e.up.const_data_ptr());
    l.down.push_back(e.down.const_data_ptr());
  }
  if (shared_slots > 0) {
    l.shared_gate = (at::randn({shared_slots * inter, hidden}) * s).to(dtype);
    l.shared_up = (at::randn({shared_slots * inter, hidden}) * s).to(dtype);
    l.shared_down = (at::randn({hidden, shared_slots * inter}) / std::sqrt(static_cast<double>(inter))).to(dtype);
    for (int j = 0; j < shared_slots; ++j) {  // the table's shared columns: I rows each
      l.lo.push_back(l.shared_gate.narrow(0, j * inter, inter).const_data_ptr());
      l.hi.push_back(l.shared_up.narrow(0, j * inter, inter).const_data_ptr());
    }
    l.down.push_back(l.shared_down.const_data_ptr());
  }
  return l;
}

double silu(double v) { return v / (1.0 + std::exp(-v)); }

// The routed experts' sum (and the shared MLP's) for each token, in fp64 from the dtype's values.
at::Tensor reference_dispatch(const Layer& l, const at::Tensor& x, const at::Tensor& ids, const at::Tensor& weights) {
  const at::Tensor xd = x.to(at::kDouble);
  at::Tensor out = at::zeros({x.size(0), l.hidden}, at::kDouble);
  for (int64_t t = 0; t < x.size(0); ++t) {
    const at::Tensor xt = xd[t];
    for (int64_t j = 0; j < ids.size(1); ++j) {
      const int64_t e = ids[t][j].item<int64_t>();
      if (e < 0 || e >= l.experts) continue;
      const Expert& ex = l.e[static_cast<size_t>(e)];
      const at::Tensor a = at::silu(at::mv(ex.gate.to(at::kDouble), xt)) * at::mv(ex.up.to(at::kDouble), xt);
      out[t] += weights[t][j].to(at::kDouble) * at::mv(ex.down.to(at::kDouble), a);
    }
    if (l.shared_gate.defined()) {
      const at::Tensor a =
          at::silu(at::mv(l.shared_gate.to(at::kDouble), xt)) * at::mv(l.shared_up.to(at::kDouble), xt);
      out[t] += at::mv(l.shared_down.to(at::kDouble), a);
    }
  }
  return out;
}

// What the dtype's roundings allow: the intermediate and the output each rounded, the sum of k
// rounded products.
void expect_close(const at::Tensor& actual, const at::Tensor& ref, at::ScalarType dtype, const std::string& what) {
  const double err = max_rel_error(actual, ref);
  const double bound = dtype == at::kFloat ? 1e-5 : dtype == at::kBFloat16 ? 4e-2 : 6e-3;
  EXPECT_LE(err, bound) << what << ": max |error| / max |reference| " << err;
}

// ---- the router ----

struct Routed {
  at::Tensor probs, ids, weights;
};

Routed run_router(const at::Tensor& logits, int k_top, km::RouterMode mode) {
  const int64_t n = logits.size(0), e = logits.size(1);
  Routed r{at::empty({n, e}, at::kFloat), at::full({n, k_top}, -7, at::kLong),
           at::empty({n, k_top}, mode == km::RouterMode::kFp32Renormalized ? at::kFloat : logits.scalar_type())};
  k::MoeRouterParams p;
  p.tokens = static_cast<int>(n);
  p.experts = static_cast<int>(e);
  p.top_k = k_top;
  p.mode = mode;
  p.model = precision_of(logits.scalar_type());
  p.logits = logits.const_data_ptr();
  p.probs = r.probs.mutable_data_ptr<float>();
  p.expert_ids = r.ids.mutable_data_ptr<int64_t>();
  p.weights = r.weights.mutable_data_ptr();
  EXPECT_TRUE(k::moe_router(p, nullptr).ok());
  return r;
}

// transformers' routers on the logits (fp64 softmax, ties to the lower id by a stable sort).
Routed reference_router(const at::Tensor& logits, int k_top, km::RouterMode mode) {
  const at::Tensor probs = at::softmax(logits.to(at::kDouble), 1);
  const at::Tensor scores =
      mode == km::RouterMode::kModelDtype ? probs.to(logits.scalar_type()).to(at::kDouble) : probs;
  const auto sorted = at::sort(scores, /*stable=*/true, /*dim=*/1, /*descending=*/true);
  const at::Tensor ids = std::get<1>(sorted).narrow(1, 0, k_top).contiguous();
  at::Tensor w = std::get<0>(sorted).narrow(1, 0, k_top);
  if (mode == km::RouterMode::kFp32Renormalized) w = w / w.sum(1, true);
  return {probs, ids, w.contiguous()};
}

TEST(MoeSim, RouterMatchesTheReference) {
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    for (const km::RouterMode mode :
         {km::RouterMode::kFp32Renormalized, km::RouterMode::kFp32, km::RouterMode::kModelDtype}) {
      for (const auto& [n, e, top] :
           std::vector<std::tuple<int64_t, int64_t, int>>{{5, 8, 2}, {3, 64, 6}, {2, 200, 16}}) {
        at::manual_seed(n * 1000 + e);
        const at::Tensor logits = (at::randn({n, e}) * 2).to(dtype);
        const Routed r = run_both_orders([&] { return run_router(logits, top, mode); },
                                         [](const Routed& a, const Routed& b) {
                                           return same_bytes(a.ids, b.ids) && same_bytes(a.weights, b.weights) &&
                                                  same_bytes(a.probs, b.probs);
                                         });
        const Routed ref = reference_router(logits, top, mode);
        const std::string what =
            fmt::format("{} mode {} n {} e {} k {}", name_of(dtype), static_cast<int>(mode), n, e, top);
        EXPECT_TRUE(at::equal(r.ids, ref.ids)) << what << "\n" << r.ids << ref.ids;
        // DeepSeekMoE's router keeps its softmax in the model dtype
        const at::Tensor probs = mode == km::RouterMode::kModelDtype ? ref.probs.to(dtype).to(at::kDouble) : ref.probs;
        EXPECT_LE((r.probs.to(at::kDouble) - probs).abs().max().item<double>(), 1e-6) << what;
        const double wtol = mode == km::RouterMode::kFp32Renormalized || dtype == at::kFloat ? 1e-6 : 8e-3;
        EXPECT_LE((r.weights.to(at::kDouble) - ref.weights).abs().max().item<double>(), wtol) << what;
      }
    }
  }
}

// The router with its logits' product in the launch (moe_route_tokens_kernel) routes as the
// router kernel does on the logits rounded to the model dtype.
TEST(MoeSim, RouterWithItsLogitsMatchesTheRouterOnTheReferenceLogits) {
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    for (const auto& [n, e, top, h] : std::vector<std::tuple<int64_t, int64_t, int, int64_t>>{
             {1, 8, 2, 64}, {1, 64, 6, 2048}, {3, 16, 2, 36}, {16, 200, 16, 136}}) {
      const Layer l = make_layer(e, h, 8, dtype, 0, static_cast<uint64_t>(n * 7 + e));
      const at::Tensor x = at::randn({n, h}).to(dtype);
      const km::RouterMode mode = km::RouterMode::kFp32Renormalized;
      const auto run = [&] {
        Routed r{at::empty({n, e}, at::kFloat), at::full({n, top}, -7, at::kLong), at::empty({n, top}, at::kFloat)};
        k::MoeRouteTokensParams p;
        p.route.tokens = static_cast<int>(n);
        p.route.experts = static_cast<int>(e);
        p.route.top_k = top;
        p.route.mode = mode;
        p.route.model = precision_of(dtype);
        p.route.probs = r.probs.mutable_data_ptr<float>();
        p.route.expert_ids = r.ids.mutable_data_ptr<int64_t>();
        p.route.weights = r.weights.mutable_data_ptr();
        p.hidden = static_cast<int>(h);
        p.x = x.const_data_ptr();
        p.x_row_stride = h;
        p.weight = l.router.const_data_ptr();
        EXPECT_TRUE(k::moe_route_tokens(p, nullptr).ok());
        return r;
      };
      const Routed r = run_both_orders(run, [](const Routed& a, const Routed& b) {
        return same_bytes(a.ids, b.ids) && same_bytes(a.weights, b.weights);
      });
      const at::Tensor logits = at::mm(x.to(at::kDouble), l.router.to(at::kDouble).t()).to(dtype);
      const Routed ref = reference_router(logits, top, mode);
      const std::string what = fmt::format("{} n {} e {} k {} h {}", name_of(dtype), n, e, top, h);
      EXPECT_TRUE(at::equal(r.ids, ref.ids)) << what << "\n" << r.ids << ref.ids;
      // Relative to each probability (with 200 experts they average 0.005): both sides round the
      // logits to the model dtype, from fp32 and fp64 sums, so a logit may land one ulp apart,
      // which moves its probability and the softmax's sum by up to eps x |logit| each.
      const at::Tensor logit_max = logits.to(at::kDouble).abs().max();
      const double tol = dtype == at::kFloat ? 1e-5 : 2 * test::epsilon(dtype) * logit_max.item<double>();
      EXPECT_LE(((r.probs.to(at::kDouble) - ref.probs) / ref.probs).abs().max().item<double>(), tol) << what;
      EXPECT_LE((r.weights.to(at::kDouble) - ref.weights.to(at::kDouble)).abs().max().item<double>(), tol) << what;
    }
  }
}

// ---- the staged dispatch: permute, gate/up GEMV, down GEMV, combine ----

struct Plan {
  at::Tensor counts, offsets, active, num_active, order, row_of;
};

Plan run_permute(const at::Tensor& ids, int experts) {
  const int64_t m = ids.numel();
  Plan p{at::full({experts + 1}, -1, at::kInt), at::full({experts + 2}, -1, at::kInt),
         at::full({experts}, -1, at::kInt),     at::full({1}, -1, at::kInt),
         at::full({m}, -1, at::kInt),           at::full({m}, -1, at::kInt)};
  k::MoePermuteParams q;
  q.entries = static_cast<int>(m);
  q.experts = experts;
  q.expert_ids = ids.const_data_ptr<int64_t>();
  q.counts = p.counts.mutable_data_ptr<int>();
  q.offsets = p.offsets.mutable_data_ptr<int>();
  q.active = p.active.mutable_data_ptr<int>();
  q.num_active = p.num_active.mutable_data_ptr<int>();
  q.order = p.order.mutable_data_ptr<int>();
  q.row_of = p.row_of.mutable_data_ptr<int>();
  EXPECT_TRUE(k::moe_permute(q, nullptr).ok());
  return p;
}

k::MoeExpertGemvParams gemv_params(const Layer& l, bool gate_up, int top_k, const void* x, int64_t x_stride, void* y,
                                   int64_t y_stride) {
  k::MoeExpertGemvParams p;
  p.model = precision_of(l.dtype);
  p.swiglu = gate_up;
  p.out = static_cast<int>(gate_up ? 2 * l.inter : l.hidden);
  p.split = static_cast<int>(gate_up ? l.inter : l.hidden);
  p.in = static_cast<int>(gate_up ? l.hidden : l.inter);
  p.top_k = top_k;
  p.weights_aligned = true;  // whole allocations (and the shared slices: I H elements apart)
  p.w_lo = gate_up ? l.lo.data() : l.down.data();
  p.w_hi = gate_up ? l.hi.data() : l.down.data();
  p.x = x;
  p.x_row_stride = x_stride;
  p.y = y;
  p.y_row_stride = y_stride;
  return p;
}

// The staged kernels on N tokens; returns [N, H].
at::Tensor staged_dispatch(const Layer& l, const at::Tensor& x, const at::Tensor& ids, const at::Tensor& weights) {
  const int64_t n = x.size(0), top = ids.size(1), m = n * top;
  const int experts = static_cast<int>(l.experts);
  const Plan plan = run_permute(ids, experts);
  at::Tensor a = at::zeros({m, l.inter}, l.dtype), y = at::zeros({m, l.hidden}, l.dtype);
  for (int stage = 0; stage < 2; ++stage) {
    k::MoeExpertGemvParams p =
        stage == 0
            ? gemv_params(l, true, static_cast<int>(top), x.const_data_ptr(), l.hidden, a.mutable_data_ptr(), l.inter)
            : gemv_params(l, false, static_cast<int>(top), a.const_data_ptr(), l.inter, y.mutable_data_ptr(), l.hidden);
    p.max_slots = static_cast<int>(std::min<int64_t>(experts, m));
    p.counts = plan.counts.const_data_ptr<int>();
    p.offsets = plan.offsets.const_data_ptr<int>();
    p.active = plan.active.const_data_ptr<int>();
    p.num_active = plan.num_active.const_data_ptr<int>();
    p.order = plan.order.const_data_ptr<int>();
    p.gather = stage == 0;
    EXPECT_TRUE(k::moe_expert_gemv(p, nullptr).ok());
  }
  at::Tensor out = at::zeros({n, l.hidden}, l.dtype);
  const std::vector<uint8_t> local(static_cast<size_t>(experts), 1);
  k::MoeCombineParams c;
  c.model = precision_of(l.dtype);
  c.weight_precision = precision_of(weights.scalar_type());
  c.tokens = static_cast<int>(n);
  c.hidden = static_cast<int>(l.hidden);
  c.top_k = static_cast<int>(top);
  c.experts = experts;
  c.expert_ids = ids.const_data_ptr<int64_t>();
  c.row_of = plan.row_of.const_data_ptr<int>();
  c.weights = weights.const_data_ptr();
  c.local = local.data();
  c.y = y.const_data_ptr();
  c.y_row_stride = l.hidden;
  c.out = out.mutable_data_ptr();
  c.out_row_stride = l.hidden;
  EXPECT_TRUE(k::moe_combine(c, nullptr).ok());
  return out;
}

at::Tensor distinct_ids(int64_t n, int64_t experts, int64_t top) {
  std::vector<at::Tensor> rows;
  for (int64_t t = 0; t < n; ++t) rows.push_back(at::randperm(experts).narrow(0, 0, top));
  return at::stack(rows).contiguous();
}

struct Shape {
  int64_t experts, top, hidden, inter;
};

TEST(MoeSim, PermuteIsAStableSortByExpert) {
  at::manual_seed(3);
  for (const auto& [m, e] : std::vector<std::pair<int64_t, int>>{{1, 8}, {7, 5}, {2100, 64}, {64, 1}}) {
    at::Tensor ids = at::randint(e, {m}, at::kLong);
    if (m == 7) ids[3] = e + 2;  // outside 0..E-1: the last bucket
    const Plan p = run_both_orders([&] { return run_permute(ids, e); },
                                   [](const Plan& a, const Plan& b) {
                                     return same_bytes(a.order, b.order) && same_bytes(a.row_of, b.row_of) &&
                                            same_bytes(a.counts, b.counts);
                                   });
    const at::Tensor bucket = at::where(ids.ge(0).logical_and(ids.lt(e)), ids, at::full_like(ids, e));
    const at::Tensor order = std::get<1>(at::sort(bucket, /*stable=*/true, 0, false)).to(at::kInt);
    EXPECT_TRUE(at::equal(p.order, order)) << "m " << m;
    EXPECT_TRUE(at::equal(p.row_of.index_select(0, order.to(at::kLong)), at::arange(m, at::kInt))) << "m " << m;
    EXPECT_TRUE(at::equal(p.counts, at::bincount(bucket, {}, e + 1).to(at::kInt))) << "m " << m;
  }
}

TEST(MoeSim, StagedDispatchMatchesTheReference) {
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    for (const Shape s : {Shape{8, 2, 64, 48}, Shape{16, 6, 72, 40}, Shape{6, 1, 36, 20}}) {
      for (const int64_t n : {1, 3, 19}) {
        const Layer l = make_layer(s.experts, s.hidden, s.inter, dtype, 0, static_cast<uint64_t>(n + s.experts));
        const at::Tensor x = at::randn({n, s.hidden}).to(dtype);
        const at::Tensor ids = distinct_ids(n, s.experts, s.top);
        const at::Tensor w = at::softmax(at::randn({n, s.top}), 1).to(dtype);
        const at::Tensor out = run_both_orders([&] { return staged_dispatch(l, x, ids, w); }, same_bytes);
        expect_close(
            out, reference_dispatch(l, x, ids, w), dtype,
            fmt::format("{} E {} k {} H {} I {} n {}", name_of(dtype), s.experts, s.top, s.hidden, s.inter, n));
      }
    }
  }
}

// ---- one token: two launches ----

struct TokenRun {
  at::Tensor out, a;
};

// The one-token path: the gate/up GEMV with token_ids (shared slots after the routed ones), then
// moe_token_down. variant: 0 the default, 1 one_row, 2 one_row with eight loads (and the down
// kernel's eight).
TokenRun one_token(const Layer& l, const at::Tensor& x, const at::Tensor& ids, const at::Tensor& w, int shared_slots,
                   int variant = 0) {
  const int top = static_cast<int>(ids.size(1));
  TokenRun r{at::zeros({1, l.hidden}, l.dtype), at::zeros({top + shared_slots, l.inter}, l.dtype)};
  k::MoeExpertGemvParams p = gemv_params(l, true, top, x.const_data_ptr(), l.hidden, r.a.mutable_data_ptr(), l.inter);
  p.token_ids = ids.const_data_ptr<int64_t>();
  p.experts = static_cast<int>(l.experts);
  p.shared_slots = shared_slots;
  p.max_slots = top + shared_slots;
  p.one_row = variant > 0;
  p.loads_in_flight = variant == 2 ? km::kExpertLoadsInFlightWide : 0;
  EXPECT_TRUE(k::moe_expert_gemv(p, nullptr).ok());
  k::MoeTokenDownParams d;
  d.model = precision_of(l.dtype);
  d.weight_precision = precision_of(w.scalar_type());
  d.hidden = static_cast<int>(l.hidden);
  d.inter = static_cast<int>(l.inter);
  d.top_k = top;
  d.experts = static_cast<int>(l.experts);
  d.shared_slots = shared_slots;
  d.weights_aligned = true;
  d.w = l.down.data();
  d.expert_ids = ids.const_data_ptr<int64_t>();
  d.weights = w.const_data_ptr();
  d.a = r.a.const_data_ptr();
  d.out = r.out.mutable_data_ptr();
  d.loads_in_flight = variant == 2 ? km::kExpertLoadsInFlightWide : 0;
  EXPECT_TRUE(k::moe_token_down(d, nullptr).ok());
  return r;
}

std::vector<Shape> token_shapes() {
  return {Shape{8, 2, 64, 48},     // Mixtral's routing, small
          Shape{64, 6, 128, 88},   // DeepSeekMoE's routing
          Shape{6, 3, 36, 20},     // rows of 36 and 20: the scalar path for 16-bit dtypes
          Shape{16, 16, 64, 32}};  // the largest top-k
}

// Without shared experts the two launches give the staged kernels' bits (moe.md, "One token: two
// launches"): the same per-lane sums, the combine's order and roundings.
TEST(MoeSim, OneTokenTwoLaunchesAreTheStagedKernelsBitForBit) {
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    for (const Shape s : token_shapes()) {
      const Layer l = make_layer(s.experts, s.hidden, s.inter, dtype, 0, static_cast<uint64_t>(s.experts * 3 + s.top));
      const at::Tensor x = at::randn({1, s.hidden}).to(dtype);
      at::Tensor ids = distinct_ids(1, s.experts, s.top);
      const at::Tensor w = at::softmax(at::randn({1, s.top}), 1).to(at::kFloat);
      const std::string what =
          fmt::format("{} E {} k {} H {} I {}", name_of(dtype), s.experts, s.top, s.hidden, s.inter);
      const TokenRun two =
          run_both_orders([&] { return one_token(l, x, ids, w, 0); },
                          [](const TokenRun& a, const TokenRun& b) { return same_bytes(a.out, b.out); });
      const at::Tensor staged = staged_dispatch(l, x, ids, w);
      EXPECT_TRUE(same_bytes(two.out, staged)) << what << "\n"
                                               << (two.out.to(at::kDouble) - staged.to(at::kDouble)).abs().max();
      expect_close(two.out, reference_dispatch(l, x, ids, w), dtype, what);
      if (s.top >= 2) {  // an id repeated and one outside 0..E-1: both paths skip and order alike
        ids[0][1] = ids[0][0];
        ids[0][s.top - 1] = s.experts + 1;
        EXPECT_TRUE(same_bytes(one_token(l, x, ids, w, 0).out, staged_dispatch(l, x, ids, w))) << what << " odd ids";
      }
    }
  }
}

// With shared experts (DeepSeekMoE's, folded into the table as extra slots) the two launches give
// the routed sum plus the shared MLP, within the dtype's roundings.
TEST(MoeSim, OneTokenWithSharedExpertsMatchesTheReference) {
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    for (const int slots : {1, 2, 3}) {
      const Shape s{64, 6, 128, 88};
      const Layer l = make_layer(s.experts, s.hidden, s.inter, dtype, slots, static_cast<uint64_t>(100 + slots));
      const at::Tensor x = at::randn({1, s.hidden}).to(dtype);
      const at::Tensor ids = distinct_ids(1, s.experts, s.top);
      const at::Tensor w = at::softmax(at::randn({1, s.top}), 1).to(dtype);
      const TokenRun r = run_both_orders([&] { return one_token(l, x, ids, w, slots); },
                                         [](const TokenRun& a, const TokenRun& b) { return same_bytes(a.out, b.out); });
      expect_close(r.out, reference_dispatch(l, x, ids, w), dtype,
                   fmt::format("{} shared slots {}", name_of(dtype), slots));
    }
  }
}

// The measuring variants (one_row, eight loads in flight) sum in the default's order.
TEST(MoeSim, OneTokenMeasuringVariantsGiveTheDefaultsBits) {
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    for (const Shape s : {Shape{64, 6, 128, 88}, Shape{8, 2, 256, 512}}) {
      for (const int slots : {0, 2}) {
        const Layer l = make_layer(s.experts, s.hidden, s.inter, dtype, slots, 7);
        const at::Tensor x = at::randn({1, s.hidden}).to(dtype);
        const at::Tensor ids = distinct_ids(1, s.experts, s.top);
        const at::Tensor w = at::softmax(at::randn({1, s.top}), 1).to(at::kFloat);
        const TokenRun base = one_token(l, x, ids, w, slots, 0);
        for (const int variant : {1, 2}) {
          const TokenRun v = one_token(l, x, ids, w, slots, variant);
          const std::string what =
              fmt::format("{} E {} H {} slots {} variant {}", name_of(dtype), s.experts, s.hidden, slots, variant);
          EXPECT_TRUE(same_bytes(v.a, base.a)) << what << " (gate/up)";
          EXPECT_TRUE(same_bytes(v.out, base.out)) << what << " (down)";
        }
      }
    }
  }
}

TEST(MoeSim, OneTokenLaunchersRefuseWhatTheKernelsCannotRun) {
  const Layer l = make_layer(8, 64, 48, at::kFloat, 0, 1);
  const at::Tensor x = at::randn({1, 64}), ids = distinct_ids(1, 8, 2), w = at::ones({1, 2});
  at::Tensor a = at::zeros({2, 48});
  k::MoeExpertGemvParams p = gemv_params(l, true, 2, x.const_data_ptr(), 64, a.mutable_data_ptr(), 48);
  p.token_ids = ids.const_data_ptr<int64_t>();
  p.experts = 8;
  p.max_slots = 3;  // not top_k + shared_slots
  reset_launches();
  EXPECT_FALSE(k::moe_expert_gemv(p, nullptr).ok());
  p.max_slots = 2;
  p.loads_in_flight = 8;  // only with one_row
  EXPECT_FALSE(k::moe_expert_gemv(p, nullptr).ok());
  EXPECT_EQ(launches(), 0);
  k::MoeTokenDownParams d;
  d.top_k = 17;
  d.experts = 8;
  EXPECT_FALSE(k::moe_token_down(d, nullptr).ok());
}

}  // namespace
}  // namespace effarch::sim
