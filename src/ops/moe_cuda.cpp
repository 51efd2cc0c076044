// CUDA path of effarch::ops::moe_route / moe_dispatch (include/effarch/ops/moe.h): fills the
// kernels/moe params from tensors the entries have checked, launches on the current stream and
// turns a failed launch into an effarch::Error. Built only with CUDA (EFFARCH_HAVE_CUDA).
//
// The dispatch: a step of one token with the table runs two kernels and no permute (the gate/up
// GEMV finds the token's experts, then down, the combine and DeepSeekMoE's shared experts in one).
// Otherwise the permute kernel groups the (token, slot) positions by expert on the device.
// A decode step (few tokens, or any step under CUDA-graph capture) then runs the expert GEMV
// kernel through the load-time pointer table (gate/up with the SwiGLU in its epilogue), the GEMV
// again for down and the combine, with no host sync (dense or int8 experts). Prefill with the load-time expert stack in bf16 on compute
// capability 9.x/10.x runs the grouped path: the permuted rows through two at::_grouped_mm calls
// (CUTLASS, group ends read on the device) and the combine kernel, with no host sync either.
// Otherwise (fp32/fp16, other GPUs, int8 experts) prefill reads the per-expert counts on the host
// once and runs one GEMM chain per expert over the permuted rows, then the same combine kernel.

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "cuda_binding.h"
#include "effarch/ops/moe.h"
#include "moe/moe.h"

namespace effarch::ops::detail {
namespace {

static_assert(kMoeKernelMaxExperts == kernels::moe::kMaxExperts, "moe.h and kernels/moe/moe_math.h disagree");
static_assert(kMoeKernelMaxTopK == kernels::moe::kMaxTopK, "moe.h and kernels/moe/moe_math.h disagree");
static_assert(kMoeKernelMaxSharedSlots == kernels::moe::kMaxSharedSlots, "moe.h and kernels/moe/moe_math.h disagree");

kernels::moe::Precision precision(at::ScalarType type, const char* op) {
  switch (type) {
    case at::kFloat: return kernels::moe::Precision::kFp32;
    case at::kBFloat16: return kernels::moe::Precision::kBf16;
    case at::kHalf: return kernels::moe::Precision::kFp16;
    default: throw OpError(fmt::format("{}: no CUDA kernel for dtype {}", op, c10::toString(type)));
  }
}

kernels::moe::RouterMode router_mode(RouterKind kind) {
  switch (kind) {
    case RouterKind::SoftmaxFp32Renormalized: return kernels::moe::RouterMode::kFp32Renormalized;
    case RouterKind::SoftmaxFp32: return kernels::moe::RouterMode::kFp32;
    case RouterKind::SoftmaxModelDtype: return kernels::moe::RouterMode::kModelDtype;
  }
  throw OpError("moe_route: unknown router kind");
}

// The permute's outputs, views of one int32 allocation on x's device.
struct Plan {
  at::Tensor storage, counts, offsets, active, num_active, order, row_of;
};

Plan permute(const at::Tensor& ids, int64_t experts, cudaStream_t stream) {
  const int64_t m = ids.numel();
  Plan plan;
  plan.storage = at::empty({(experts + 1) + (experts + 2) + experts + 1 + 2 * m}, ids.options().dtype(at::kInt));
  int64_t at_ = 0;
  const auto take = [&](int64_t n) {
    at::Tensor v = plan.storage.narrow(0, at_, n);
    at_ += n;
    return v;
  };
  plan.counts = take(experts + 1);
  plan.offsets = take(experts + 2);
  plan.active = take(experts);
  plan.num_active = take(1);
  plan.order = take(m);
  plan.row_of = take(m);
  kernels::MoePermuteParams p;
  p.entries = to_int(m, "moe_dispatch", "tokens x top_k");
  p.experts = static_cast<int>(experts);
  p.expert_ids = ids.const_data_ptr<int64_t>();
  p.counts = plan.counts.mutable_data_ptr<int>();
  p.offsets = plan.offsets.mutable_data_ptr<int>();
  p.active = plan.active.mutable_data_ptr<int>();
  p.num_active = plan.num_active.mutable_data_ptr<int>();
  p.order = plan.order.mutable_data_ptr<int>();
  p.row_of = plan.row_of.mutable_data_ptr<int>();
  throw_if_failed(kernels::moe_permute(p, stream), "moe_dispatch");
  return plan;
}

// row_of: the plan's (flat position -> grouped row), or the grouped path's rotation of it.
void combine(const at::Tensor& x, const at::Tensor& ids, const at::Tensor& weights, const at::Tensor& row_of,
             const at::Tensor& local, const at::Tensor& y, at::Tensor& out, cudaStream_t stream) {
  kernels::MoeCombineParams p;
  p.model = precision(x.scalar_type(), "moe_dispatch");
  p.weight_precision = precision(weights.scalar_type(), "moe_dispatch");
  p.tokens = to_int(x.size(0), "moe_dispatch", "tokens");
  p.hidden = static_cast<int>(x.size(1));
  p.top_k = static_cast<int>(ids.size(1));
  p.experts = static_cast<int>(local.numel());
  p.expert_ids = ids.const_data_ptr<int64_t>();
  p.row_of = row_of.const_data_ptr<int>();
  p.weights = weights.const_data_ptr();
  p.local = local.const_data_ptr<uint8_t>();
  p.y = y.const_data_ptr();
  p.y_row_stride = y.stride(0);
  p.out = out.mutable_data_ptr();
  p.out_row_stride = out.stride(0);
  throw_if_failed(kernels::moe_combine(p, stream), "moe_dispatch");
}

}  // namespace

namespace {

// dst [rows, O] (a row range of a contiguous buffer) = x W^T (+ b): cuBLAS for a dense weight,
// the layer's own product (int8) otherwise.
void product_into(at::Tensor dst, const at::Tensor& x, const Linear& layer) {
  if (layer.format != WeightFormat::Dense) {
    dst.copy_(linear(x, layer));
  } else if (layer.bias) {
    at::addmm_out(dst, *layer.bias, x, layer.weight.t());
  } else {
    at::mm_out(dst, x, layer.weight.t());
  }
}

}  // namespace

namespace {

// The routing's outputs for n tokens over `experts` (options: the logits' or x's) and the router
// params that write them.
kernels::MoeRouterParams router_params(Routing& r, const at::TensorOptions& options, at::ScalarType model, int64_t n,
                                       int64_t experts, int64_t top_k, RouterKind kind) {
  r.probs = at::empty({n, experts}, options.dtype(at::kFloat));
  r.expert_ids = at::empty({n, top_k}, options.dtype(at::kLong));
  r.weights = at::empty({n, top_k}, kind == RouterKind::SoftmaxFp32Renormalized ? options.dtype(at::kFloat)
                                                                                  : options.dtype(model));
  kernels::MoeRouterParams p;
  p.tokens = to_int(n, "moe_router", "tokens");
  p.experts = static_cast<int>(experts);
  p.top_k = static_cast<int>(top_k);
  p.mode = router_mode(kind);
  p.model = precision(model, "moe_route");
  p.probs = r.probs.mutable_data_ptr<float>();
  p.expert_ids = r.expert_ids.mutable_data_ptr<int64_t>();
  p.weights = r.weights.mutable_data_ptr();
  return p;
}

}  // namespace

Routing moe_route_cuda(const at::Tensor& logits, int64_t top_k, RouterKind kind) {
  const DeviceGuard guard(logits.device());
  Routing r;
  kernels::MoeRouterParams p =
      router_params(r, logits.options(), logits.scalar_type(), logits.size(0), logits.size(1), top_k, kind);
  p.logits = logits.const_data_ptr();
  throw_if_failed(kernels::moe_router(p, current_stream()), "moe_route");
  return r;
}

Routing moe_route_tokens_cuda(const at::Tensor& x_in, const at::Tensor& router_weight, int64_t top_k, RouterKind kind) {
  const DeviceGuard guard(x_in.device());
  const at::Tensor x = x_in.stride(-1) == 1 ? x_in : x_in.contiguous();
  Routing r;
  kernels::MoeRouteTokensParams p;
  p.route = router_params(r, x.options(), x.scalar_type(), x.size(0), router_weight.size(0), top_k, kind);
  p.hidden = static_cast<int>(x.size(1));
  p.x = x.const_data_ptr();
  p.x_row_stride = x.stride(0);
  p.weight = router_weight.const_data_ptr();
  throw_if_failed(kernels::moe_route_tokens(p, current_stream()), "moe_route");
  return r;
}

namespace {

// The gate/up GEMV over the table for x's rows (SwiGLU in its epilogue, y rows of I), k slots a
// token: what both decode paths set alike; each adds its slots' mapping and y.
kernels::MoeExpertGemvParams gate_up_params(const ExpertTable& table, const at::Tensor& x, int64_t k) {
  const int64_t columns = table.pointers.size(1);
  const auto* rows = static_cast<const void* const*>(table.pointers.const_data_ptr());
  const auto* scales = table.int8 ? static_cast<const float* const*>(table.scales.const_data_ptr()) : nullptr;
  kernels::MoeExpertGemvParams g;
  g.model = precision(x.scalar_type(), "moe_dispatch");
  g.out = static_cast<int>(2 * table.inter);
  g.in = static_cast<int>(x.size(1));
  g.split = static_cast<int>(table.inter);
  g.swiglu = true;
  g.top_k = static_cast<int>(k);
  g.weights_aligned = table.aligned;
  g.w_lo = rows;
  g.w_hi = rows + columns;
  g.s_lo = scales;
  g.s_hi = scales != nullptr ? scales + columns : nullptr;
  g.x = x.const_data_ptr();
  g.x_row_stride = x.size(1);
  g.y_row_stride = table.inter;
  return g;
}

// The one-token dispatch (ExpertTable::fused_token): the gate/up GEMV over the token's experts and
// the table's shared columns into a [k + S, I], then down, the combine and the shared experts' down
// and add in one kernel. No permute, no host sync.
at::Tensor one_token_dispatch(const at::Tensor& x, const at::Tensor& ids, const at::Tensor& weights,
                              const ExpertTable& table, int64_t shared_slots, cudaStream_t stream) {
  constexpr const char* op = "moe_dispatch";
  const int64_t hidden = x.size(1), k = ids.size(1), inter = table.inter, experts = table.experts;
  const int64_t columns = table.pointers.size(1);
  const at::Tensor a = at::empty({k + shared_slots, inter}, x.options());
  at::Tensor out = at::empty_like(x);
  const auto* rows = static_cast<const void* const*>(table.pointers.const_data_ptr());
  const auto* scales = table.int8 ? static_cast<const float* const*>(table.scales.const_data_ptr()) : nullptr;
  kernels::MoeExpertGemvParams g = gate_up_params(table, x, k);
  g.max_slots = static_cast<int>(k + shared_slots);
  g.one_row = table.one_row;
  g.loads_in_flight = table.one_row ? table.loads_in_flight : 0;
  g.y = a.mutable_data_ptr();
  g.token_ids = ids.const_data_ptr<int64_t>();
  g.experts = static_cast<int>(experts);
  g.shared_slots = static_cast<int>(shared_slots);
  throw_if_failed(kernels::moe_expert_gemv(g, stream), op);
  kernels::MoeTokenDownParams d;
  d.model = g.model;
  d.weight_precision = precision(weights.scalar_type(), op);
  d.hidden = static_cast<int>(hidden);
  d.inter = static_cast<int>(inter);
  d.top_k = static_cast<int>(k);
  d.experts = static_cast<int>(experts);
  d.shared_slots = static_cast<int>(shared_slots);
  d.weights_aligned = table.aligned;
  d.w = rows + 2 * columns;
  d.s = scales != nullptr ? scales + 2 * columns : nullptr;
  d.expert_ids = ids.const_data_ptr<int64_t>();
  d.weights = weights.const_data_ptr();
  d.a = a.const_data_ptr();
  d.out = out.mutable_data_ptr();
  d.loads_in_flight = g.loads_in_flight;
  throw_if_failed(kernels::moe_token_down(d, stream), op);
  return out;
}

}  // namespace

CudaDispatch moe_dispatch_cuda(const at::Tensor& x_in, const Routing& routing, const std::vector<ExpertWeights>& experts,
                               Activation activation, const ExpertTable* table, const ExpertStack* stack,
                               const GatedMlpWeights* shared, const std::function<void(int64_t)>& check_expert) {
  constexpr const char* op = "moe_dispatch";
  const DeviceGuard guard(x_in.device());
  const cudaStream_t stream = current_stream();
  const at::Tensor x = x_in.contiguous();
  const at::Tensor ids = routing.expert_ids.contiguous();
  const at::Tensor weights = routing.weights.contiguous();
  const int64_t n = x.size(0), hidden = x.size(1), k = ids.size(1), m = n * k;
  const int64_t num_experts = static_cast<int64_t>(experts.size());
  at::Tensor out = at::empty_like(x);
  if (n == 0) return {out, false};

  const bool table_fits = table != nullptr && table->defined() && table->experts == num_experts &&
                          table->hidden == hidden && (table->int8 || table->dtype == x.scalar_type()) &&
                          table->pointers.device() == x.device();
  if (table_fits && activation == Activation::SiLU && n == 1 && table->fused_token) {
    const bool fold = shared != nullptr && table->shared_slots > 0 && table->shared_key == shared_key(*shared);
    return {one_token_dispatch(x, ids, weights, *table, fold ? table->shared_slots : 0, stream), fold};
  }
  const Plan plan = permute(ids, num_experts, stream);
  if (table_fits && activation == Activation::SiLU && (n <= kMoeDecodeMaxTokens || stream_is_capturing(stream, op))) {
    const int64_t inter = table->inter, columns = table->pointers.size(1);
    const at::Tensor a = at::empty({m, inter}, x.options());
    const at::Tensor y = at::empty({m, hidden}, x.options());
    const auto* table_rows = static_cast<const void* const*>(table->pointers.const_data_ptr());
    const auto* table_scales = table->int8 ? static_cast<const float* const*>(table->scales.const_data_ptr()) : nullptr;
    kernels::MoeExpertGemvParams g = gate_up_params(*table, x, k);
    g.max_slots = static_cast<int>(std::min(num_experts, m));
    g.one_row = table->one_row && n == 1;  // one token: each expert has at most one of the k rows
    g.loads_in_flight = g.one_row ? table->loads_in_flight : 0;
    g.counts = plan.counts.const_data_ptr<int>();
    g.offsets = plan.offsets.const_data_ptr<int>();
    g.active = plan.active.const_data_ptr<int>();
    g.num_active = plan.num_active.const_data_ptr<int>();
    g.order = plan.order.const_data_ptr<int>();
    // gate and up: [2I] features from x's rows gathered through the order, silu(gate) * up [I]
    // stored from the GEMV's epilogue.
    g.gather = true;
    g.y = a.mutable_data_ptr();
    throw_if_failed(kernels::moe_expert_gemv(g, stream), op);
    // down: [H] features from the grouped rows of a.
    g.out = static_cast<int>(hidden);
    g.swiglu = false;
    g.in = static_cast<int>(inter);
    g.split = static_cast<int>(hidden);
    g.w_lo = table_rows + 2 * columns;
    g.w_hi = g.w_lo;
    g.s_lo = table_scales != nullptr ? table_scales + 2 * columns : nullptr;
    g.s_hi = g.s_lo;
    g.gather = false;
    g.x = a.const_data_ptr();
    g.x_row_stride = inter;
    g.y = y.mutable_data_ptr();
    g.y_row_stride = hidden;
    throw_if_failed(kernels::moe_expert_gemv(g, stream), op);
    combine(x, ids, weights, plan.row_of, table->local, y, out, stream);
    return {out, false};
  }

  // Prefill over the stack: grouped GEMMs whose group ends stay on the device; no host sync. Rows
  // of ids outside 0..E-1 are past every expert's and dropped, as on the decode path.
  if (moe_grouped_refusal(stack, x, num_experts, cuda_sm_major(x.device())).empty()) {
    const GroupedExperts g = moe_grouped_experts(x, plan.order, plan.offsets, k, *stack, activation);
    combine(x, ids, weights, moe_grouped_row_of(plan.row_of, g.start), stack->local, g.y, out, stream);
    return {out, false};
  }

  // Prefill otherwise: the counts on the host (one sync), then GEMMs per expert over the permuted rows.
  const at::Tensor counts = plan.counts.cpu();
  const int* count = counts.const_data_ptr<int>();
  if (count[num_experts] > 0) {
    throw OpError(fmt::format("{}: expert_ids holds {} id(s) outside 0..{}", op, count[num_experts], num_experts - 1));
  }
  std::vector<uint8_t> local(static_cast<size_t>(num_experts), 0);
  int64_t inter = -1, most_rows = 0;
  bool fused = true;
  for (int64_t e = 0; e < num_experts; ++e) {
    const ExpertWeights& w = experts[static_cast<size_t>(e)];
    if (count[e] == 0 || w.remote) continue;
    check_expert(e);
    if (inter >= 0 && w.inter() != inter) {
      throw OpError(fmt::format("{}: experts[{}] has {} intermediate features, the others {}", op, e, w.inter(), inter));
    }
    inter = w.inter();
    fused = fused && w.gate_up.defined();
    most_rows = std::max<int64_t>(most_rows, count[e]);
    local[static_cast<size_t>(e)] = 1;
  }
  const at::Tensor local_mask = at::from_blob(local.data(), {num_experts}, at::kByte).to(x.device());
  const at::Tensor y = at::empty({m, hidden}, x.options());
  if (inter >= 0) {
    const at::Tensor xs = x.index_select(0, at::div(plan.order, k, "floor"));  // [M, H]: row i is token order[i] / k
    at::Tensor buffer = at::empty({most_rows, 2 * inter}, x.options());
    int64_t begin = 0;
    for (int64_t e = 0; e < num_experts; ++e) {
      const int64_t rows = count[e];
      const int64_t first = begin;
      begin += rows;
      if (local[static_cast<size_t>(e)] == 0) continue;
      const ExpertWeights& w = experts[static_cast<size_t>(e)];
      const at::Tensor xa = xs.narrow(0, first, rows);
      at::Tensor hb = buffer.narrow(0, 0, rows);
      if (fused) {
        product_into(hb, xa, w.gate_up);
      } else {
        product_into(hb.narrow(1, 0, inter), xa, w.gate);
        product_into(hb.narrow(1, inter, inter), xa, w.up);
      }
      product_into(y.narrow(0, first, rows), gated_activation(activation, hb, Backend::Auto), w.down);
    }
  }
  combine(x, ids, weights, plan.row_of, local_mask, y, out, stream);
  return {out, false};
}

}  // namespace effarch::ops::detail
