#include "effarch/model/weights.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "effarch/common/error.h"
#include "effarch/io/checkpoint.h"
#include "effarch/model/random_weights.h"
#include "effarch/model/tensor_spec.h"

namespace effarch::model {
void Weights::put(const ModelConfig&, int layer, const std::string& role, at::Tensor t) {
  by_role_[{layer, role}] = std::move(t);
}

void Weights::put_in_format(const ModelConfig& config, const TensorSpec& spec, at::Tensor t, ops::WeightFormat format) {
  if (format == ops::WeightFormat::Int8 && spec.linear) {
    auto [q, scale] = ops::quantize_int8(t);
    t = at::Tensor();  // the dense copy goes before the next tensor loads
    put(config, spec.layer, spec.role, std::move(q));
    put(config, spec.layer, spec.role + "_scale", std::move(scale));
    return;
  }
  put(config, spec.layer, spec.role, std::move(t));
}

Weights Weights::from_checkpoint(const ModelConfig& config, const io::TensorStore& store, at::ScalarType dtype,
                                 at::Device device, const Shard& shard, ops::WeightFormat format) {
  const CheckpointCheck check = check_checkpoint(config, store);
  require_valid(check, store.root().string());
  std::map<std::string, std::string> found(check.resolved.begin(), check.resolved.end());
  Weights w;
  w.shard_ = shard;
  for (const auto& spec : expected_tensors(config)) {
    auto it = found.find(spec.name);
    if (it == found.end()) continue;  // an optional tensor that is absent
    // Every tensor in the model dtype, as HF loads them; ops upcast where their math is fp32.
    if (shard.whole()) {
      w.put_in_format(config, spec, store.load(it->second, dtype, device), format);
      continue;
    }
    const TensorSplit split = tensor_split(config, spec, shard);
    if (!holds(split, shard)) continue;
    if (split.kind != TensorSplit::Kind::Split) {
      w.put_in_format(config, spec, store.load(it->second, dtype, device), format);
      continue;
    }
    // The rank's slices of the mapped file, copied into a tensor of their own.
    const at::Tensor part = take_shard(store.view(it->second), split, shard);
    w.put_in_format(config, spec, part.to(device, dtype, /*non_blocking=*/false, /*copy=*/true).contiguous(), format);
  }
  return w;
}

Weights Weights::random(const ModelConfig& config, uint64_t seed, at::ScalarType dtype, at::Device device,
                        const Shard& shard, ops::WeightFormat format, RandomInit init) {
  Weights w;
  w.shard_ = shard;
  for (const auto& spec : expected_tensors(config)) {
    if (spec.optional) continue;
    const TensorSplit split = tensor_split(config, spec, shard);
    if (!holds(split, shard)) continue;
    at::Tensor t = random_tensor(config, spec, seed, dtype, device, init);
    if (split.kind == TensorSplit::Kind::Split) t = take_shard(t, split, shard).clone(at::MemoryFormat::Contiguous);
    w.put_in_format(config, spec, std::move(t), format);
  }
  return w;
}

const at::Tensor* Weights::find(int layer, const std::string& role) const {
  auto it = by_role_.find({layer, role});
  return it == by_role_.end() ? nullptr : &it->second;
}

const at::Tensor& Weights::get(int layer, const std::string& role) const {
  const at::Tensor* t = find(layer, role);
  if (t == nullptr) {
    throw CheckpointError(layer < 0 ? fmt::format("no weight for '{}'", role)
                                    : fmt::format("no weight for '{}' in layer {}", role, layer));
  }
  return *t;
}

ops::Linear Weights::linear(int layer, const std::string& prefix, bool with_bias) const {
  const at::Tensor* bias = with_bias ? find(layer, prefix + "bias") : nullptr;
  const at::Tensor& w = get(layer, prefix + "weight");
  // The optional built in each call, not moved from a local: GCC 12 warned (a false
  // -Wmaybe-uninitialized) on the moved-from optional's destructor.
  if (const at::Tensor* scale = find(layer, prefix + "weight_scale")) {
    return bias != nullptr ? ops::Linear::int8(w, *scale, *bias) : ops::Linear::int8(w, *scale);
  }
  return bias != nullptr ? ops::Linear(w, *bias) : ops::Linear(w);
}

std::optional<std::string> Weights::parts_refusal(int layer, const std::vector<std::string>& prefixes,
                                                  int shared) const {
  if (prefixes.empty()) return fmt::format("layer {}: nothing to fuse", layer);
  const at::Tensor* first = nullptr;
  for (const std::string& p : prefixes) {
    const at::Tensor* w = find(layer, p + "weight");
    if (w == nullptr) return fmt::format("layer {}: no '{}weight' to fuse", layer, p);
    if (w->dim() != 2 || (first != nullptr && (w->size(shared) != first->size(shared) ||
                                               w->scalar_type() != first->scalar_type() ||
                                               w->device() != first->device()))) {
      return fmt::format("layer {}: cannot fuse '{}weight' [{}] with '{}weight'{}: the {} features, dtype and device "
                         "must match",
                         layer, p, fmt::join(w->sizes(), ", "), prefixes[0], shared == 0 ? " along the inputs" : "",
                         shared == 0 ? "output" : "input");
    }
    if (first == nullptr) first = w;
  }
  return std::nullopt;
}

std::optional<std::string> Weights::fuse_refusal(int layer, const std::vector<std::string>& prefixes) const {
  if (auto why = parts_refusal(layer, prefixes, 1)) return why;
  size_t biases = 0, scales = 0;
  for (const std::string& p : prefixes) {
    biases += find(layer, p + "bias") != nullptr ? 1 : 0;
    scales += find(layer, p + "weight_scale") != nullptr ? 1 : 0;
  }
  if (scales != 0 && scales != prefixes.size()) {
    return fmt::format("layer {}: cannot fuse '{}...': some parts are int8 and some not", layer, prefixes[0]);
  }
  if (biases != 0 && biases != prefixes.size()) {
    return fmt::format("layer {}: cannot fuse '{}...': some parts have a bias and some not", layer, prefixes[0]);
  }
  return std::nullopt;
}

bool Weights::can_fuse(int layer, const std::vector<std::string>& prefixes) const {
  return !prefixes.empty() && !fuse_refusal(layer, prefixes);
}

ops::Linear Weights::fused_linear(int layer, const std::vector<std::string>& prefixes) const {
  std::vector<at::Tensor> weights, biases, scales;
  for (const std::string& p : prefixes) weights.push_back(get(layer, p + "weight"));  // a missing one: get's error
  if (const auto why = fuse_refusal(layer, prefixes)) throw CheckpointError(*why);
  for (const std::string& p : prefixes) {
    if (const at::Tensor* b = find(layer, p + "bias")) biases.push_back(*b);
    if (const at::Tensor* sc = find(layer, p + "weight_scale")) scales.push_back(*sc);
  }
  // Parts that are already consecutive rows of one allocation (experts stacked by
  // ops::stack_experts, a layer built a second time, q/k/v inside a parallel block's fused
  // product), their biases and scales too, are viewed, not copied.
  const auto adjacent = [](const std::vector<at::Tensor>& parts) {
    for (size_t i = 0; i < parts.size(); ++i) {
      if (!parts[i].is_contiguous()) return false;
      if (i > 0 && (!parts[i].is_alias_of(parts[0]) ||
                    static_cast<const char*>(parts[i].const_data_ptr()) !=
                        static_cast<const char*>(parts[i - 1].const_data_ptr()) + parts[i - 1].nbytes())) {
        return false;
      }
    }
    return true;
  };
  // The parts' rows as one tensor: a view where they are adjacent, else a copy.
  const auto rows_of = [&](const std::vector<at::Tensor>& parts) {
    if (parts.empty()) return at::Tensor();
    int64_t rows = 0;
    for (const at::Tensor& t : parts) rows += t.size(0);
    std::vector<int64_t> sizes = parts[0].sizes().vec(), strides = parts[0].strides().vec();
    sizes[0] = rows;
    return adjacent(parts) ? parts[0].as_strided(sizes, strides) : at::cat(parts, 0);
  };
  const at::Tensor fused = rows_of(weights);
  const at::Tensor fused_bias = rows_of(biases);
  const at::Tensor fused_scale = rows_of(scales);
  int64_t row = 0;
  for (size_t i = 0; i < prefixes.size(); ++i) {
    const int64_t rows = weights[i].size(0);
    by_role_[{layer, prefixes[i] + "weight"}] = fused.narrow(0, row, rows);
    if (fused_bias.defined()) by_role_[{layer, prefixes[i] + "bias"}] = fused_bias.narrow(0, row, rows);
    if (fused_scale.defined()) by_role_[{layer, prefixes[i] + "weight_scale"}] = fused_scale.narrow(0, row, rows);
    row += rows;
  }
  std::optional<at::Tensor> b = fused_bias.defined() ? std::optional<at::Tensor>(fused_bias) : std::nullopt;
  if (fused_scale.defined()) return ops::Linear::int8(fused, fused_scale, std::move(b));
  return ops::Linear(fused, std::move(b));
}

std::optional<std::string> Weights::fuse_inputs_refusal(int layer, const std::vector<std::string>& prefixes) const {
  for (const std::string& p : prefixes) {
    if (find(layer, p + "weight_scale") != nullptr) {
      return fmt::format("layer {}: cannot fuse '{}weight' along its inputs: int8 weights keep a scale per output "
                         "of each part",
                         layer, p);
    }
  }
  return parts_refusal(layer, prefixes, 0);
}

bool Weights::can_fuse_inputs(int layer, const std::vector<std::string>& prefixes) const {
  return !fuse_inputs_refusal(layer, prefixes);
}

ops::Linear Weights::fused_linear_inputs(int layer, const std::vector<std::string>& prefixes) const {
  if (const auto why = fuse_inputs_refusal(layer, prefixes)) throw CheckpointError(*why);
  std::vector<at::Tensor> weights;
  at::Tensor bias_sum;  // fp32 while summing
  for (const std::string& p : prefixes) {
    weights.push_back(get(layer, p + "weight"));
    if (const at::Tensor* b = find(layer, p + "bias")) {
      bias_sum = bias_sum.defined() ? bias_sum + b->to(at::kFloat) : b->to(at::kFloat);
    }
  }
  const at::Tensor fused = at::cat(weights, 1);
  int64_t column = 0;
  for (size_t i = 0; i < prefixes.size(); ++i) {
    const int64_t columns = weights[i].size(1);
    by_role_[{layer, prefixes[i] + "weight"}] = fused.narrow(1, column, columns);
    column += columns;
  }
  if (!bias_sum.defined()) return ops::Linear(fused);
  return ops::Linear(fused, bias_sum.to(fused.scalar_type()));
}

ops::GatedMlpWeights Weights::gated_mlp(int layer, const std::string& prefix) const {
  ops::GatedMlpWeights w;
  w.gate_up = fused_linear(layer, {prefix + "gate.", prefix + "up."});
  w.gate = linear(layer, prefix + "gate.");
  w.up = linear(layer, prefix + "up.");
  w.down = linear(layer, prefix + "down.");
  return w;
}

void Weights::repoint(int layer, const std::string& role, const at::Tensor& view) const {
  auto it = by_role_.find({layer, role});
  if (it == by_role_.end()) throw CheckpointError(fmt::format("repoint: no weight for '{}' in layer {}", role, layer));
  const at::Tensor& old = it->second;
  if (!view.defined() || view.sizes() != old.sizes() || view.scalar_type() != old.scalar_type() ||
      view.device() != old.device()) {
    throw CheckpointError(fmt::format("repoint: '{}' in layer {} differs in shape, dtype or device from its view", role,
                                      layer));
  }
  it->second = view;
}

uint64_t Weights::bytes() const {
  return bytes_where([](int, const std::string&) { return true; });
}

uint64_t Weights::bytes_where(const std::function<bool(int layer, const std::string& role)>& keep) const {
  uint64_t n = 0;
  for (const auto& [key, t] : by_role_) {
    if (keep(key.first, key.second)) n += static_cast<uint64_t>(t.nbytes());
  }
  return n;
}

}  // namespace effarch::model
