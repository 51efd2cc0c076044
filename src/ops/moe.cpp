// effarch::ops::moe_route / moe_dispatch: argument checks and the ATen reference.
//
// The reference dispatch groups the N*k (token, slot) assignments by expert with one stable sort
// of the flat expert ids; per-expert counts come from a bincount (one device-to-host copy of E integers), and
// each expert with tokens runs one gather -> gated MLP -> scale -> index_add_ over exactly its rows.

#include "effarch/ops/moe.h"

#include <algorithm>
#include <optional>

#include <ATen/ATen.h>
#include <ATen/record_function.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "arg_checks.h"
#include "cpu/cpu_kernels.h"
#include "effarch/common/error.h"

namespace effarch::ops {
namespace {

using detail::shape;

void check_float(const at::Tensor& t, const char* op, const std::string& name) {
  if (!t.defined()) throw OpError(fmt::format("{}: {} is an undefined tensor", op, name));
  const at::ScalarType type = t.scalar_type();
  if (type != at::kFloat && type != at::kBFloat16 && type != at::kHalf) {
    throw OpError(fmt::format("{}: {} has dtype {}, expected float32, bfloat16 or float16", op, name,
                                 c10::toString(type)));
  }
}

// One of an expert's layers: its shape, its device, and its dtype (x's for a dense weight; int8
// with fp32 scales per output for an int8 one).
void check_layer(const Linear& layer, const std::string& name, std::vector<int64_t> expected, const at::Tensor& x) {
  constexpr const char* op = "moe_dispatch";
  if (layer.format == WeightFormat::Int8) {
    if (!layer.weight.defined() || layer.weight.sizes() != at::IntArrayRef(expected) ||
        layer.weight.scalar_type() != at::kChar || layer.weight.device() != x.device()) {
      throw OpError(fmt::format("{}: {} (int8) must be an int8 [{}] tensor on {}, got {}", op, name,
                                fmt::join(expected, ", "), x.device().str(),
                                layer.weight.defined() ? shape(layer.weight) : "an undefined tensor"));
    }
    return;  // its scales: ops::linear checks them
  }
  detail::check_float_tensor(layer.weight, op, name.c_str(), expected, x, "x");
  if (layer.weight.scalar_type() != x.scalar_type()) {
    throw OpError(fmt::format("{}: {} has dtype {} but x has {}", op, name, c10::toString(layer.weight.scalar_type()),
                              c10::toString(x.scalar_type())));
  }
}

// Only the experts that run are checked: the others may be absent (never read).
void check_expert(const ExpertWeights& w, int64_t e, const at::Tensor& x) {
  const std::string name = fmt::format("experts[{}]", e);
  const int64_t hidden = x.size(1);
  if (!w.gate.weight.defined() || w.gate.weight.dim() != 2) {
    throw OpError(fmt::format("moe_dispatch: {}.gate must be [I, {}], got {}", name, hidden,
                              w.gate.weight.defined() ? shape(w.gate.weight) : "an undefined tensor"));
  }
  const int64_t inter = w.gate.out_features();
  check_layer(w.gate, name + ".gate", {inter, hidden}, x);
  check_layer(w.up, name + ".up", {inter, hidden}, x);
  check_layer(w.down, name + ".down", {hidden, inter}, x);
  if (w.gate_up.defined()) check_layer(w.gate_up, name + ".gate_up", {2 * inter, hidden}, x);
}

}  // namespace

Routing moe_route(const at::Tensor& x, const at::Tensor& router_weight, int64_t top_k, RouterKind kind,
                  Backend backend, RouterLogits logits_path) {
  constexpr const char* op = "moe_route";
  check_float(x, op, "x");
  check_float(router_weight, op, "router_weight");
  if (x.dim() != 2 || router_weight.dim() != 2 || router_weight.size(1) != x.size(1)) {
    throw OpError(fmt::format("{}: x {} and router_weight {} must be [N, H] and [E, H]", op, shape(x),
                                 shape(router_weight)));
  }
  if (router_weight.device() != x.device()) {
    throw OpError(fmt::format("{}: router_weight is on {} but x is on {}", op, router_weight.device().str(),
                                 x.device().str()));
  }
  const int64_t experts = router_weight.size(0);
  if (top_k < 1 || top_k > experts) {
    throw OpError(fmt::format("{}: top_k {} is not in 1..{} (the number of experts)", op, top_k, experts));
  }
  const bool cuda = use_cuda_kernel(backend, OpFamily::MoeDispatch, x.device()) && experts <= kMoeKernelMaxExperts &&
                    top_k <= kMoeKernelMaxTopK;
  static_cast<void>(logits_path);  // read by the CUDA path only
#ifdef EFFARCH_WITH_CUDA
  // One block reads a token's whole router weight: taken for routers of up to 1M elements (2 MB in
  // bf16; every MoE model effarch knows has 64 x 2048 or 16 x 4096 or less), cuBLAS beyond.
  if (cuda && logits_path == RouterLogits::Auto && x.size(0) <= kMoeDecodeMaxTokens && router_weight.is_contiguous() &&
      router_weight.scalar_type() == x.scalar_type() && router_weight.numel() <= (int64_t{1} << 20)) {
    return detail::moe_route_tokens_cuda(x, router_weight, top_k, kind);
  }
#endif
  const at::Tensor logits = at::linear(x, router_weight);  // [N, E], model dtype
  if (cuda) {
#ifdef EFFARCH_WITH_CUDA
    return detail::moe_route_cuda(logits.contiguous(), top_k, kind);
#endif
  }
  Routing r;
  switch (kind) {
    case RouterKind::SoftmaxFp32Renormalized: {
      r.probs = at::softmax(logits.to(at::kFloat), -1);
      auto [w, idx] = at::topk(r.probs, top_k, -1);
      r.weights = w / w.sum(-1, /*keepdim=*/true);
      r.expert_ids = idx;
      break;
    }
    case RouterKind::SoftmaxFp32: {
      r.probs = at::softmax(logits, -1, at::kFloat);
      auto [w, idx] = at::topk(r.probs, top_k, -1);
      r.weights = w.to(x.scalar_type());
      r.expert_ids = idx;
      break;
    }
    case RouterKind::SoftmaxModelDtype: {
      const at::Tensor scores = at::softmax(logits, -1);  // rounded to the model dtype, ties and all
      auto [w, idx] = at::topk(scores, top_k, -1);
      r.weights = w;
      r.expert_ids = idx;
      r.probs = scores.to(at::kFloat);
      break;
    }
  }
  return r;
}

namespace {

// Folds the shared experts into the table's columns E .. E + S - 1 (ExpertTable): their gate, up
// and down pointers appended to lo, hi and dn. Returns why not ("" when folded).
std::string fold_shared(ExpertTable& t, const GatedMlpWeights& shared, std::vector<int64_t>& lo,
                        std::vector<int64_t>& hi, std::vector<int64_t>& dn, const c10::Device& device) {
  if (t.int8) return "int8 experts: the shared experts run apart";
  const bool fused = shared.gate_up.defined();
  for (const Linear* l : {fused ? &shared.gate_up : &shared.gate, fused ? &shared.gate_up : &shared.up, &shared.down}) {
    if (!l->defined() || l->weight.dim() != 2) return "an undefined or non-matrix weight";
    if (l->format != WeightFormat::Dense) return "int8 weights";
    if (l->bias) return "a bias";
    if (!l->weight.is_contiguous()) return "a non-contiguous weight";
    if (l->weight.device() != device || l->weight.scalar_type() != t.dtype) {
      return "another device or dtype than the experts'";
    }
  }
  const int64_t width = shared.down.weight.size(1), hidden = t.hidden, inter = t.inter;
  const at::Tensor& first = fused ? shared.gate_up.weight : shared.gate.weight;
  const at::Tensor& second = fused ? shared.gate_up.weight : shared.up.weight;
  if (shared.down.weight.size(0) != hidden || first.size(1) != hidden || second.size(1) != hidden ||
      first.size(0) != (fused ? 2 * width : width) || second.size(0) != (fused ? 2 * width : width)) {
    return fmt::format("shapes gate {}, up {}, down {} against hidden {}", shape(first), shape(second),
                       shape(shared.down.weight), hidden);
  }
  const int64_t slots = width / inter;
  if (width % inter != 0 || slots < 1 || slots > kMoeKernelMaxSharedSlots) {
    return fmt::format("a width of {}, not 1..{} experts' {}", width, kMoeKernelMaxSharedSlots, inter);
  }
  const int64_t elem = static_cast<int64_t>(first.element_size());
  const auto gate = reinterpret_cast<int64_t>(first.const_data_ptr());
  const auto up = reinterpret_cast<int64_t>(second.const_data_ptr()) + (fused ? width * hidden * elem : 0);
  const auto down = reinterpret_cast<int64_t>(shared.down.weight.const_data_ptr());
  // Folded only where the routed experts' 16-byte path stays: a misaligned shared weight would
  // turn it off for every expert.
  if (gate % 16 != 0 || up % 16 != 0 || down % 16 != 0 || (width * elem) % 16 != 0) {
    return "weights not 16-byte aligned";
  }
  for (int64_t j = 0; j < slots; ++j) {
    lo.push_back(gate + j * inter * hidden * elem);
    hi.push_back(up + j * inter * hidden * elem);
    dn.push_back(down);
  }
  t.shared_slots = slots;
  t.shared_key = gate;
  return "";
}

}  // namespace

int64_t detail::shared_key(const GatedMlpWeights& shared) {
  const Linear& gate = shared.gate_up.defined() ? shared.gate_up : shared.gate;
  return gate.defined() ? reinterpret_cast<int64_t>(gate.weight.const_data_ptr()) : 0;
}

ExpertTable make_expert_table(const std::vector<ExpertWeights>& experts, const GatedMlpWeights* shared) {
  ExpertTable t;
  const auto refuse = [&](std::string why) {
    ExpertTable none;
    none.why = std::move(why);
    return none;
  };
  const int64_t n = static_cast<int64_t>(experts.size());
  if (n == 0 || n > kMoeKernelMaxExperts) return refuse(fmt::format("{} experts (the kernel takes 1..{})", n, kMoeKernelMaxExperts));
  std::vector<int64_t> lo(static_cast<size_t>(n), 0), hi(static_cast<size_t>(n), 0), dn(static_cast<size_t>(n), 0);
  std::vector<int64_t> scales(static_cast<size_t>(3 * n), 0);
  std::vector<uint8_t> local(static_cast<size_t>(n), 0);
  std::optional<c10::Device> device;
  std::optional<WeightFormat> format;
  t.experts = n;
  t.aligned = true;
  for (int64_t e = 0; e < n; ++e) {
    const ExpertWeights& w = experts[static_cast<size_t>(e)];
    if (w.remote) continue;
    const std::string name = fmt::format("experts[{}]", e);
    const bool fused = w.gate_up.defined();
    for (const Linear* l : {fused ? &w.gate_up : &w.gate, fused ? &w.gate_up : &w.up, &w.down}) {
      if (!l->defined() || l->weight.dim() != 2) return refuse(name + " has an undefined or non-matrix weight");
      if (!format) format = l->format;
      if (l->format != *format) return refuse(name + " mixes int8 and dense weights");
      if (l->format == WeightFormat::Int8 && (!l->scale.is_contiguous() || l->scale.device() != l->weight.device())) {
        return refuse(name + " has int8 scales that are not contiguous on the weights' device");
      }
      if (l->bias) return refuse(name + " has a bias");
      if (!l->weight.is_contiguous()) return refuse(name + " has a non-contiguous weight");
    }
    const at::Tensor& down = w.down.weight;
    const int64_t inter = down.size(1), hidden = down.size(0);
    if (!device) {
      device = down.device();
      t.dtype = down.scalar_type();
      t.inter = inter;
      t.hidden = hidden;
    }
    const at::Tensor& first = fused ? w.gate_up.weight : w.gate.weight;
    const at::Tensor& second = fused ? w.gate_up.weight : w.up.weight;
    for (const at::Tensor* m : {&first, &second, &down}) {
      if (m->device() != *device || m->scalar_type() != t.dtype) return refuse(name + " differs in device or dtype");
    }
    if (inter != t.inter || hidden != t.hidden || first.size(1) != hidden || second.size(1) != hidden ||
        first.size(0) != (fused ? 2 * inter : inter) || second.size(0) != (fused ? 2 * inter : inter)) {
      return refuse(name + " differs in shape from the other experts");
    }
    const int64_t elem = static_cast<int64_t>(down.element_size());
    const auto gate_rows = reinterpret_cast<int64_t>(first.const_data_ptr());
    const auto up_rows = reinterpret_cast<int64_t>(second.const_data_ptr()) + (fused ? inter * hidden * elem : 0);
    const auto down_rows = reinterpret_cast<int64_t>(down.const_data_ptr());
    lo[static_cast<size_t>(e)] = gate_rows;
    hi[static_cast<size_t>(e)] = up_rows;
    dn[static_cast<size_t>(e)] = down_rows;
    if (*format == WeightFormat::Int8) {  // fp32 scales per row, beside the rows they scale
      const Linear& gate = fused ? w.gate_up : w.gate;
      const Linear& up = fused ? w.gate_up : w.up;
      const auto fp32 = static_cast<int64_t>(sizeof(float));
      scales[static_cast<size_t>(e)] = reinterpret_cast<int64_t>(gate.scale.const_data_ptr());
      scales[static_cast<size_t>(n + e)] = reinterpret_cast<int64_t>(up.scale.const_data_ptr()) + (fused ? inter * fp32 : 0);
      scales[static_cast<size_t>(2 * n + e)] = reinterpret_cast<int64_t>(w.down.scale.const_data_ptr());
    }
    local[static_cast<size_t>(e)] = 1;
    t.aligned = t.aligned && gate_rows % 16 == 0 && up_rows % 16 == 0 && down_rows % 16 == 0 &&
                (hidden * elem) % 16 == 0 && (inter * elem) % 16 == 0;
  }
  if (!device) return refuse("no expert runs on this rank");
  t.int8 = *format == WeightFormat::Int8;
  if (shared != nullptr) t.shared_why = fold_shared(t, *shared, lo, hi, dn, *device);
  std::vector<int64_t> pointers = lo;
  pointers.insert(pointers.end(), hi.begin(), hi.end());
  pointers.insert(pointers.end(), dn.begin(), dn.end());
  // Copied (copy=true): on the CPU a plain .to() would return the view of the vectors freed here.
  const auto on_device = [&](void* data, at::IntArrayRef sizes, at::ScalarType type) {
    return at::from_blob(data, sizes, type).to(*device, type, /*non_blocking=*/false, /*copy=*/true);
  };
  t.pointers = on_device(pointers.data(), {3, static_cast<int64_t>(lo.size())}, at::kLong);
  t.local = on_device(local.data(), {n}, at::kByte);
  if (t.int8) t.scales = on_device(scales.data(), {3, n}, at::kLong);
  return t;
}

ExpertStack stack_experts(std::vector<ExpertWeights>& experts) {
  const auto refuse = [](std::string why) {
    ExpertStack none;
    none.why = std::move(why);
    return none;
  };
  const int64_t n = static_cast<int64_t>(experts.size());
  int64_t first = -1, last = -1;
  for (int64_t e = 0; e < n; ++e) {
    if (experts[static_cast<size_t>(e)].remote) continue;
    if (first < 0) first = e;
    if (last >= 0 && last != e - 1) {
      return refuse(fmt::format("the local experts are not one contiguous range of ids (experts[{}] after experts[{}])",
                                e, last));
    }
    last = e;
  }
  if (first < 0) return refuse("no expert runs on this rank");
  const int64_t count = last - first + 1;
  const ExpertWeights& w0 = experts[static_cast<size_t>(first)];
  if (!w0.down.defined() || w0.down.weight.dim() != 2) return refuse(fmt::format("experts[{}].down is undefined", first));
  const int64_t hidden = w0.down.weight.size(0), inter = w0.down.weight.size(1);
  const at::TensorOptions options = w0.down.weight.options();
  for (int64_t e = first; e <= last; ++e) {
    const ExpertWeights& w = experts[static_cast<size_t>(e)];
    const bool fused = w.gate_up.defined();
    const std::vector<std::pair<const Linear*, std::vector<int64_t>>> layers =
        fused ? std::vector<std::pair<const Linear*, std::vector<int64_t>>>{{&w.gate_up, {2 * inter, hidden}},
                                                                          {&w.down, {hidden, inter}}}
              : std::vector<std::pair<const Linear*, std::vector<int64_t>>>{
                    {&w.gate, {inter, hidden}}, {&w.up, {inter, hidden}}, {&w.down, {hidden, inter}}};
    for (const auto& [l, expected] : layers) {
      if (!l->defined()) return refuse(fmt::format("experts[{}] has an undefined weight", e));
      if (l->format != WeightFormat::Dense) return refuse(fmt::format("experts[{}] has int8 weights", e));
      if (l->bias) return refuse(fmt::format("experts[{}] has a bias", e));
      if (l->weight.sizes() != at::IntArrayRef(expected)) {
        return refuse(fmt::format("experts[{}] differs in shape from experts[{}]", e, first));
      }
      if (l->weight.scalar_type() != w0.down.weight.scalar_type() || l->weight.device() != w0.down.weight.device()) {
        return refuse(fmt::format("experts[{}] differs in dtype or device from experts[{}]", e, first));
      }
    }
  }
  ExpertStack s;
  s.first = first;
  // Experts stacked before (a layer built again over the same weights) are viewed, not copied.
  bool stacked = true;
  const auto bytes_at = [](const at::Tensor& t) { return static_cast<const char*>(t.const_data_ptr()); };
  for (int64_t j = 0; stacked && j < count; ++j) {
    const ExpertWeights& w = experts[static_cast<size_t>(first + j)];
    stacked = w.gate_up.defined() && w.gate_up.weight.is_contiguous() && w.down.weight.is_contiguous() &&
              w.gate_up.weight.is_alias_of(w0.gate_up.weight) && w.down.weight.is_alias_of(w0.down.weight) &&
              bytes_at(w.gate_up.weight) == bytes_at(w0.gate_up.weight) + j * w0.gate_up.weight.nbytes() &&
              bytes_at(w.down.weight) == bytes_at(w0.down.weight) + j * w0.down.weight.nbytes() &&
              bytes_at(w.gate.weight) == bytes_at(w.gate_up.weight) &&
              bytes_at(w.up.weight) == bytes_at(w.gate_up.weight) + w.up.weight.nbytes();
  }
  if (stacked) {
    s.gate_up = w0.gate_up.weight.as_strided({count, 2 * inter, hidden}, {2 * inter * hidden, hidden, 1});
    s.down = w0.down.weight.as_strided({count, hidden, inter}, {hidden * inter, inter, 1});
  } else {
    s.gate_up = at::empty({count, 2 * inter, hidden}, options);
    s.down = at::empty({count, hidden, inter}, options);
  }
  for (int64_t j = 0; j < count && !stacked; ++j) {
    ExpertWeights& w = experts[static_cast<size_t>(first + j)];
    const at::Tensor gu = s.gate_up.select(0, j), dn = s.down.select(0, j);
    if (w.gate_up.defined()) {
      gu.copy_(w.gate_up.weight);
    } else {
      gu.narrow(0, 0, inter).copy_(w.gate.weight);
      gu.narrow(0, inter, inter).copy_(w.up.weight);
    }
    dn.copy_(w.down.weight);
    // The expert's own tensors become views of the stack (the old ones go with their last owner).
    w.gate_up = Linear(gu);
    w.gate = Linear(gu.narrow(0, 0, inter));
    w.up = Linear(gu.narrow(0, inter, inter));
    w.down = Linear(dn);
  }
  std::vector<uint8_t> local(static_cast<size_t>(n), 0);
  std::fill(local.begin() + first, local.begin() + last + 1, uint8_t{1});
  s.local = at::from_blob(local.data(), {n}, at::kByte).to(options.device(), at::kByte, /*non_blocking=*/false,
                                                           /*copy=*/true);  // a copy on the CPU too
  return s;
}

std::string moe_prefill_path(at::ScalarType dtype, WeightFormat format, const c10::Device& device, int64_t hidden,
                             int64_t inter) {
  const int sm = detail::cuda_sm_major(device);
  const bool grouped = format == WeightFormat::Dense && detail::grouped_mm_refusal(dtype, true, sm, hidden, inter).empty();
  return grouped ? "grouped" : "per_expert";
}

namespace detail {

std::string grouped_mm_refusal(at::ScalarType dtype, bool cuda, int sm_major, int64_t hidden, int64_t inter) {
  if (dtype != at::kBFloat16) {
    return fmt::format("dtype {} (at::_grouped_mm's device-side path takes bf16)", c10::toString(dtype));
  }
  if (cuda && sm_major != 9 && sm_major != 10) {
    return fmt::format("compute capability {}.x (at::_grouped_mm reads the group ends on the host outside 9.x/10.x)",
                       sm_major);
  }
  if (hidden % 8 != 0 || inter % 8 != 0) {
    return fmt::format("hidden {} and intermediate {} must be multiples of 8 (16-byte rows)", hidden, inter);
  }
  return "";
}

std::string moe_grouped_refusal(const ExpertStack* stack, const at::Tensor& x, int64_t num_experts, int sm_major) {
  if (stack == nullptr) return "no expert stack";
  if (!stack->defined()) return "no expert stack: " + stack->why;
  const at::Tensor& w = stack->gate_up;
  if (w.scalar_type() != x.scalar_type() || w.device() != x.device() || stack->hidden() != x.size(1)) {
    return fmt::format("the stack ({}, {}, hidden {}) does not match x ({}, {}, hidden {})",
                       c10::toString(w.scalar_type()), w.device().str(), stack->hidden(),
                       c10::toString(x.scalar_type()), x.device().str(), x.size(1));
  }
  if (stack->first + stack->experts() > num_experts || stack->local.numel() != num_experts) {
    return fmt::format("the stack's experts {}..{} are not among the {} given", stack->first,
                       stack->first + stack->experts() - 1, num_experts);
  }
  return grouped_mm_refusal(x.scalar_type(), x.is_cuda(), sm_major, stack->hidden(), stack->inter());
}

GroupedExperts moe_grouped_experts(const at::Tensor& x, const at::Tensor& order, const at::Tensor& offsets,
                                   int64_t top_k, const ExpertStack& stack, Activation activation) {
  const int64_t m = order.numel(), count = stack.experts();
  // Group ends: the cumulative row ends of the stack's experts, relative to its first row.
  const at::Tensor bounds = offsets.narrow(0, stack.first, count + 1);
  GroupedExperts g;
  at::Tensor rows = order;  // grouped row -> flat position
  at::Tensor ends = bounds.narrow(0, 1, count);
  if (stack.first > 0) {  // rotate the grouped rows so that the stack's start at row 0
    g.start = bounds.narrow(0, 0, 1);
    rows = order.index_select(0, at::remainder(at::arange(m, order.options()) + g.start, m));
    ends = ends - g.start;
  }
  ends = ends.contiguous();
  const at::Tensor xs = x.index_select(0, at::div(rows, top_k, "floor"));  // [M, H]
  const at::Tensor h = at::_grouped_mm(xs, stack.gate_up.transpose(1, 2), ends);  // [M, 2I]
  // act(gate) * up in the model dtype: on CUDA the gated activation kernel (SiLU, gelu_new), one
  // launch and no [M, I] temporary, bitwise the reference's two ATen ops
  // (ActivationCuda.KernelIsBitwiseTheReference); elsewhere those ops.
  const at::Tensor a = gated_activation(activation, h, Backend::Auto);
  g.y = at::_grouped_mm(a, stack.down.transpose(1, 2), ends);  // [M, H]
  return g;
}

at::Tensor moe_grouped_row_of(const at::Tensor& row_of, const at::Tensor& start) {
  if (!start.defined()) return row_of;
  return at::remainder(row_of - start, row_of.numel()).to(at::kInt);
}

}  // namespace detail

namespace {

at::Tensor routed_sum(const at::Tensor& x, const Routing& routing, const std::vector<ExpertWeights>& experts,
                      Activation activation, Backend backend);

}  // namespace

at::Tensor moe_dispatch(const at::Tensor& x, const Routing& routing, const std::vector<ExpertWeights>& experts,
                        Activation activation, Backend backend, const ExpertTable* table, const ExpertStack* stack,
                        const GatedMlpWeights* shared) {
  RECORD_USER_SCOPE("effarch::moe_dispatch");  // names the op in profiles (effarch profile)
  constexpr const char* op = "moe_dispatch";
  static_cast<void>(table);  // read by the CUDA path only (CPU builds have none)
  static_cast<void>(stack);
  check_float(x, op, "x");
  if (x.dim() != 2) throw OpError(fmt::format("{}: x has shape {}, expected [N, H]", op, shape(x)));
  const int64_t n = x.size(0), num_experts = static_cast<int64_t>(experts.size());
  const at::Tensor& ids = routing.expert_ids;
  if (!ids.defined() || ids.dim() != 2 || ids.size(0) != n || ids.scalar_type() != at::kLong) {
    throw OpError(fmt::format("{}: expert_ids must be [N, k] int64 with N = {}, got {}", op, n,
                                 ids.defined() ? shape(ids) : "undefined"));
  }
  const int64_t k = ids.size(1);
  check_float(routing.weights, op, "weights");
  if (routing.weights.sizes() != ids.sizes()) {
    throw OpError(fmt::format("{}: weights {} and expert_ids {} differ in shape", op, shape(routing.weights),
                                 shape(ids)));
  }
  if (ids.device() != x.device() || routing.weights.device() != x.device()) {
    throw OpError(fmt::format("{}: expert_ids ({}) and weights ({}) must be on x's device ({})", op,
                                 ids.device().str(), routing.weights.device().str(), x.device().str()));
  }
  at::Tensor out;
  if (use_cuda_kernel(backend, OpFamily::MoeDispatch, x.device()) && num_experts <= kMoeKernelMaxExperts &&
      k <= kMoeKernelMaxTopK) {
#ifdef EFFARCH_WITH_CUDA
    detail::CudaDispatch d =
        detail::moe_dispatch_cuda(x, routing, experts, activation, table, stack, shared,
                                  [&](int64_t e) { check_expert(experts[static_cast<size_t>(e)], e, x); });
    if (d.with_shared) return d.out;
    out = std::move(d.out);
#endif
  }
  if (!out.defined()) out = routed_sum(x, routing, experts, activation, backend);
  // DeepSeekMoE's shared experts, after the routed sum, on the model's backend like a dense MLP.
  if (shared != nullptr) out = out + gated_mlp(x, *shared, activation, backend);
  return out;
}

namespace {

// moe_dispatch without the CUDA kernels or the shared experts: the CPU dispatch or the reference.
at::Tensor routed_sum(const at::Tensor& x, const Routing& routing, const std::vector<ExpertWeights>& experts,
                      Activation activation, Backend backend) {
  constexpr const char* op = "moe_dispatch";
  const at::Tensor& ids = routing.expert_ids;
  const int64_t n = x.size(0), k = ids.size(1), num_experts = static_cast<int64_t>(experts.size());
  if (use_cpu_kernel(backend, OpFamily::MoeDispatch, x.device())) {
    return cpu::moe_dispatch(x, ids, routing.weights, experts, activation,
                             [&](int64_t e) { check_expert(experts[static_cast<size_t>(e)], e, x); });
  }
  at::Tensor out = at::zeros_like(x);
  if (n == 0) return out;
  const at::Tensor flat = ids.reshape({-1});  // [N*k]: entry p is token p / k, slot p % k
  at::Tensor counts;
  try {
    counts = at::bincount(flat, {}, num_experts).cpu();
  } catch (const c10::Error&) {  // bincount's own refusal: a negative id
    throw OpError(fmt::format("{}: expert_ids holds a negative expert id", op));
  }
  if (counts.numel() > num_experts) {
    throw OpError(fmt::format("{}: an expert id is >= the {} experts given", op, num_experts));
  }
  const at::Tensor order = std::get<1>(at::sort(flat, /*stable=*/true, 0, /*descending=*/false));
  const at::Tensor flat_weights = routing.weights.reshape({-1});
  const int64_t* count = counts.data_ptr<int64_t>();
  int64_t offset = 0;
  for (int64_t e = 0; e < num_experts; ++e) {
    const int64_t c = count[e];
    if (c == 0) continue;
    const ExpertWeights& w = experts[static_cast<size_t>(e)];
    if (w.remote) {  // another rank runs it
      offset += c;
      continue;
    }
    check_expert(w, e, x);
    const at::Tensor pos = order.narrow(0, offset, c);
    offset += c;
    const at::Tensor tokens = at::div(pos, k, "floor");
    const at::Tensor xe = x.index_select(0, tokens);
    const at::Tensor h = gated_mlp(xe, w, activation);
    // Mixtral's weights are fp32: the product is fp32, then rounded once into the buffer.
    const at::Tensor y = h * flat_weights.index_select(0, pos).unsqueeze(1);
    out.index_add_(0, tokens, y.to(out.scalar_type()));
  }
  return out;
}

}  // namespace

}  // namespace effarch::ops
