// effarch::ops::moe_route / moe_dispatch: argument checks and the ATen reference.
//
// The reference dispatch groups the N*k (token, slot) assignments by expert with one stable sort
// of the flat expert ids; per-expert counts come from a bincount (one device-to-host copy of E integers), and
// each expert with tokens runs one gather -> gated MLP -> scale -> index_add_ over exactly its rows.

#include "effarch/ops/moe.h"

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
                  Backend backend) {
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
  const at::Tensor logits = at::linear(x, router_weight);  // [N, E], model dtype
  if (use_cuda_kernel(backend, OpFamily::MoeDispatch, x.device()) && experts <= kMoeKernelMaxExperts &&
      top_k <= kMoeKernelMaxTopK) {
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

ExpertTable make_expert_table(const std::vector<ExpertWeights>& experts) {
  ExpertTable t;
  const auto refuse = [&](std::string why) {
    ExpertTable none;
    none.why = std::move(why);
    return none;
  };
  const int64_t n = static_cast<int64_t>(experts.size());
  if (n == 0 || n > kMoeKernelMaxExperts) return refuse(fmt::format("{} experts (the kernel takes 1..{})", n, kMoeKernelMaxExperts));
  std::vector<int64_t> pointers(static_cast<size_t>(3 * n), 0), scales(static_cast<size_t>(3 * n), 0);
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
      if (!l->weight.is_cuda()) return refuse(name + " is not on a CUDA device");
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
    const auto lo = reinterpret_cast<int64_t>(first.const_data_ptr());
    const auto hi = reinterpret_cast<int64_t>(second.const_data_ptr()) + (fused ? inter * hidden * elem : 0);
    const auto dn = reinterpret_cast<int64_t>(down.const_data_ptr());
    pointers[static_cast<size_t>(e)] = lo;
    pointers[static_cast<size_t>(n + e)] = hi;
    pointers[static_cast<size_t>(2 * n + e)] = dn;
    if (*format == WeightFormat::Int8) {  // fp32 scales per row, beside the rows they scale
      const Linear& gate = fused ? w.gate_up : w.gate;
      const Linear& up = fused ? w.gate_up : w.up;
      const auto fp32 = static_cast<int64_t>(sizeof(float));
      scales[static_cast<size_t>(e)] = reinterpret_cast<int64_t>(gate.scale.const_data_ptr());
      scales[static_cast<size_t>(n + e)] = reinterpret_cast<int64_t>(up.scale.const_data_ptr()) + (fused ? inter * fp32 : 0);
      scales[static_cast<size_t>(2 * n + e)] = reinterpret_cast<int64_t>(w.down.scale.const_data_ptr());
    }
    local[static_cast<size_t>(e)] = 1;
    t.aligned = t.aligned && lo % 16 == 0 && hi % 16 == 0 && dn % 16 == 0 && (hidden * elem) % 16 == 0 &&
                (inter * elem) % 16 == 0;
  }
  if (!device) return refuse("no expert runs on this rank");
  t.pointers = at::from_blob(pointers.data(), {3, n}, at::kLong).to(*device);
  t.local = at::from_blob(local.data(), {n}, at::kByte).to(*device);
  if (*format == WeightFormat::Int8) {
    t.int8 = true;
    t.scales = at::from_blob(scales.data(), {3, n}, at::kLong).to(*device);
  }
  return t;
}

at::Tensor moe_dispatch(const at::Tensor& x, const Routing& routing, const std::vector<ExpertWeights>& experts,
                        Activation activation, Backend backend, const ExpertTable* table) {
  RECORD_USER_SCOPE("effarch::moe_dispatch");  // names the op in profiles (effarch profile)
  constexpr const char* op = "moe_dispatch";
  static_cast<void>(table);  // read by the CUDA path only (CPU builds have none)
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
  if (use_cuda_kernel(backend, OpFamily::MoeDispatch, x.device()) && num_experts <= kMoeKernelMaxExperts &&
      k <= kMoeKernelMaxTopK) {
#ifdef EFFARCH_WITH_CUDA
    return detail::moe_dispatch_cuda(x, routing, experts, activation, table,
                                     [&](int64_t e) { check_expert(experts[static_cast<size_t>(e)], e, x); });
#endif
  }
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

}  // namespace effarch::ops
