// Split rules of tensor and expert parallelism: see include/effarch/model/sharding.h.

#include "effarch/model/sharding.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "effarch/common/error.h"

namespace effarch::model {
namespace {

bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }
bool ends_with(const std::string& s, const std::string& p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}

// The config keys that hold the numbers, as the architecture's config.json spells them.
const char* experts_key(const ModelConfig& c) {
  if (c.architecture == "DeepseekForCausalLM") return "n_routed_experts";
  if (c.architecture == "JambaForCausalLM") return "num_experts";
  return "num_local_experts";
}
const char* expert_width_key(const ModelConfig& c) {
  return c.architecture == "DeepseekForCausalLM" ? "moe_intermediate_size" : "intermediate_size";
}
const char* d_inner_key(const ModelConfig& c) {
  if (c.architecture == "JambaForCausalLM") return "mamba_expand x hidden_size";
  if (c.architecture == "Mamba2ForCausalLM") return "expand x hidden_size";
  return "intermediate_size";
}

void need(int64_t value, int parts, const ModelConfig& c, const std::string& key, const char* what, const char* flag) {
  if (value % parts == 0) return;
  throw UsageError(fmt::format("{} {}: {}: {} {} {} do not split into {} equal parts (choose a {} that divides {})",
                               flag, parts, c.source, key, value, what, parts, flag, value));
}

TensorSplit split(int dim, std::vector<int64_t> segments) {
  TensorSplit s;
  s.kind = TensorSplit::Kind::Split;
  s.dim = dim;
  s.segments = std::move(segments);
  return s;
}

TensorSplit kind(TensorSplit::Kind k) {
  TensorSplit s;
  s.kind = k;
  return s;
}

}  // namespace

void check_shardable(const ModelConfig& c, int tp, int ep) {
  if (tp < 1) throw UsageError(fmt::format("--tp {}: must be at least 1", tp));
  if (ep < 1) throw UsageError(fmt::format("--ep {}: must be at least 1", ep));
  if (tp > 1) {
    if (c.attention && c.count_layers(MixerKind::Attention) > 0) {
      need(c.attention->num_heads, tp, c, "num_attention_heads", "attention heads", "--tp");
      if (c.attention->num_kv_heads < tp) {
        throw UsageError(fmt::format("--tp {}: {}: num_key_value_heads {} is fewer than --tp (kv heads are split, "
                                     "not replicated: use a --tp of at most {} that divides it)",
                                     tp, c.source, c.attention->num_kv_heads, c.attention->num_kv_heads));
      }
      need(c.attention->num_kv_heads, tp, c, "num_key_value_heads", "kv heads", "--tp");
    }
    if (c.mlp && c.count_layers(FfnKind::Dense) > 0) {
      need(c.mlp->intermediate, tp, c, "intermediate_size", "MLP channels", "--tp");
    }
    if (c.moe && c.count_layers(FfnKind::MoE) > 0) {
      need(c.moe->expert_intermediate, tp, c, expert_width_key(c), "expert channels", "--tp");
    }
    if (c.mamba && (c.count_layers(MixerKind::Mamba1) > 0 || c.count_layers(MixerKind::Mamba2) > 0)) {
      if (c.mamba->version == 2) {
        need(c.mamba->num_heads, tp, c, "num_heads", "Mamba-2 heads", "--tp");
        need(c.mamba->n_groups, tp, c, "n_groups", "Mamba-2 groups", "--tp");
      } else {
        need(c.mamba->d_inner, tp, c, d_inner_key(c), "Mamba channels", "--tp");
      }
    }
  }
  if (ep > 1) {
    if (!c.moe || c.count_layers(FfnKind::MoE) == 0) {
      throw UsageError(fmt::format("--ep {}: {} has no MoE layers (expert parallelism splits experts; use --tp)", ep,
                                   c.source));
    }
    need(c.moe->num_experts, ep, c, experts_key(c), "experts", "--ep");
  }
}

ModelConfig local_config(const ModelConfig& config, const Shard& s) {
  ModelConfig c = config;
  if (s.tp == 1) return c;
  if (c.attention) {
    c.attention->num_heads /= s.tp;
    c.attention->num_kv_heads /= s.tp;
  }
  if (c.mlp) c.mlp->intermediate /= s.tp;
  if (c.moe) c.moe->expert_intermediate /= s.tp;
  if (c.mamba) {
    c.mamba->d_inner /= s.tp;
    if (c.mamba->version == 2) {
      c.mamba->num_heads /= s.tp;
      c.mamba->n_groups /= s.tp;
    }
  }
  return c;
}

TensorSplit tensor_split(const ModelConfig& c, const TensorSpec& spec, const Shard& s) {
  using Kind = TensorSplit::Kind;
  const std::string& r = spec.role;
  if (s.whole() || spec.layer < 0) return kind(Kind::Replicated);
  // Expert parallelism first: a tensor of another rank's experts is not held at all.
  if (starts_with(r, "moe.expert.") && spec.expert >= 0) {
    const auto [first, count] = expert_range(c.moe->num_experts, s);
    if (spec.expert < first || spec.expert >= first + count) return kind(Kind::NotHeld);
  }
  if (starts_with(r, "moe.shared.") && s.ep_rank != 0) return kind(Kind::NotHeld);  // added once, by ep rank 0
  const bool bias = ends_with(r, ".bias");
  if (s.tp == 1) return kind(Kind::Replicated);
  const int64_t out = spec.shape.at(0);
  // Column-parallel (output features split) and row-parallel (input features split; the bias once).
  const auto column = [&] { return split(0, {out}); };
  const auto row = [&] { return bias ? kind(Kind::FirstRank) : split(1, {spec.shape.at(1)}); };
  if (starts_with(r, "attn.q.") || starts_with(r, "attn.k.") || starts_with(r, "attn.v.")) return column();
  if (starts_with(r, "attn.o.")) return row();
  for (const char* p : {"mlp.", "moe.shared.", "moe.expert."}) {
    if (!starts_with(r, p)) continue;
    if (ends_with(r, ".gate.weight") || ends_with(r, ".gate.bias") || ends_with(r, ".up.weight") ||
        ends_with(r, ".up.bias") || starts_with(r, "mlp.fc1.")) {
      return column();
    }
    if (ends_with(r, ".down.weight") || ends_with(r, ".down.bias") || starts_with(r, "mlp.fc2.")) return row();
  }
  if (starts_with(r, "mamba.")) {
    const MambaConfig& m = *c.mamba;
    const int64_t di = m.d_inner;
    if (m.version == 1) {
      if (starts_with(r, "mamba.in_proj.")) return split(0, {di, di});  // [x | z]
      if (r == "mamba.x_proj.weight") return split(1, {di});
      if (starts_with(r, "mamba.out_proj.")) return row();
      if (r == "mamba.conv.weight" || r == "mamba.conv.bias" || starts_with(r, "mamba.dt_proj.") ||
          r == "mamba.A_log" || r == "mamba.D") {
        return column();
      }
      return kind(Kind::Replicated);  // dt/B/C norms: on the all-reduced x_proj output
    }
    const int64_t gn = m.n_groups * m.d_state, h = m.num_heads;
    if (starts_with(r, "mamba.in_proj.")) return split(0, {di, di, gn, gn, h});  // [z | x | B | C | dt]
    if (r == "mamba.conv.weight" || r == "mamba.conv.bias") return split(0, {di, gn, gn});
    if (starts_with(r, "mamba.out_proj.")) return row();
    if (r == "mamba.A_log" || r == "mamba.D" || r == "mamba.dt_bias" || r == "mamba.norm.weight") return column();
  }
  return kind(Kind::Replicated);  // norms, routers
}

bool holds(const TensorSplit& split, const Shard& s) {
  if (split.kind == TensorSplit::Kind::NotHeld) return false;
  if (split.kind == TensorSplit::Kind::FirstRank) return s.tp_rank == 0;
  return true;
}

std::vector<int64_t> local_shape(const TensorSpec& spec, const TensorSplit& split, const Shard& s) {
  std::vector<int64_t> shape = spec.shape;
  if (split.kind == TensorSplit::Kind::Split) shape.at(static_cast<size_t>(split.dim)) /= s.tp;
  return shape;
}

at::Tensor take_shard(const at::Tensor& full, const TensorSplit& split, const Shard& s) {
  if (split.kind != TensorSplit::Kind::Split) return full;
  std::vector<at::Tensor> parts;
  int64_t start = 0;
  for (int64_t seg : split.segments) {
    const int64_t part = seg / s.tp;
    parts.push_back(full.narrow(split.dim, start + part * s.tp_rank, part));
    start += seg;
  }
  return parts.size() == 1 ? parts[0] : at::cat(parts, split.dim);
}

std::pair<int64_t, int64_t> expert_range(int64_t num_experts, const Shard& s) {
  const int64_t count = num_experts / s.ep;
  return {count * s.ep_rank, count};
}

uint64_t shard_bytes(const ModelConfig& config, const Shard& shard, uint64_t bytes_per_element) {
  uint64_t n = 0;
  for (const TensorSpec& spec : expected_tensors(config)) {
    if (spec.optional) continue;
    const TensorSplit split = tensor_split(config, spec, shard);
    if (!holds(split, shard)) continue;
    uint64_t e = 1;
    for (int64_t d : local_shape(spec, split, shard)) e *= static_cast<uint64_t>(d);
    n += e * bytes_per_element;
  }
  return n;
}

}  // namespace effarch::model
