#include "effarch/model/stats.h"

#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "effarch/model/tensor_spec.h"

namespace effarch::model {
namespace {

// "attention 4 @ 4,12,20,28": the indices are listed when a kind covers a few of many layers.
std::string describe(const std::string& name, const std::vector<int64_t>& indices, int64_t total) {
  std::string s = fmt::format("{} {}", name, indices.size());
  if (!indices.empty() && static_cast<int64_t>(indices.size()) < total && indices.size() <= 8) {
    s += fmt::format(" @ {}", fmt::join(indices, ","));
  }
  return s;
}

template <typename Kind, typename Get>
std::string describe_kinds(const ModelConfig& c, const std::vector<Kind>& kinds, Get get) {
  std::vector<std::string> parts;
  for (Kind k : kinds) {
    std::vector<int64_t> idx;
    for (int64_t i = 0; i < c.num_layers; ++i) {
      if (get(c.layers[static_cast<size_t>(i)]) == k) idx.push_back(i);
    }
    if (!idx.empty()) parts.push_back(describe(to_string(k), idx, c.num_layers));
  }
  return fmt::format("{}", fmt::join(parts, " + "));
}

}  // namespace

std::string layer_codes(const ModelConfig& c) {
  std::string s;
  for (const auto& l : c.layers) {
    s += l.mixer == MixerKind::Attention ? 'A' : l.mixer == MixerKind::Mamba1 ? 'M' : 'S';
    s += l.ffn == FfnKind::MoE ? 'e' : l.ffn == FfnKind::Dense ? 'd' : '-';
  }
  return s;
}

ModelStats compute_stats(const ModelConfig& c, at::ScalarType cache_dtype) {
  ModelStats s;
  const int64_t top_k = c.moe ? c.moe->top_k : 0;
  for (const auto& t : expected_tensors(c)) {
    if (t.optional) continue;
    s.total_params += t.numel();
    const auto n = static_cast<uint64_t>(t.numel());
    s.weight_bytes_int8 += t.linear ? n + 4 * static_cast<uint64_t>(t.shape[0]) : 2 * n;
    if (t.expert < 0 || t.expert < top_k) s.active_params += t.numel();
  }
  s.attention_layers = c.count_layers(MixerKind::Attention);
  s.mamba_layers = c.count_layers(MixerKind::Mamba1) + c.count_layers(MixerKind::Mamba2);
  s.moe_layers = c.count_layers(FfnKind::MoE);
  s.dense_layers = c.count_layers(FfnKind::Dense);
  const auto total = static_cast<uint64_t>(s.total_params);
  s.weight_bytes_bf16 = total * 2;
  s.weight_bytes_checkpoint = total * c10::elementSize(c.torch_dtype);
  const uint64_t cache_elem = c10::elementSize(cache_dtype);
  if (c.attention) {
    s.kv_bytes_per_token = static_cast<uint64_t>(s.attention_layers) * 2 *
                           static_cast<uint64_t>(c.attention->num_kv_heads * c.attention->head_dim) * cache_elem;
  }
  if (c.mamba) {
    const auto& m = *c.mamba;
    const uint64_t conv = static_cast<uint64_t>(m.conv_dim() * m.d_conv) * cache_elem;
    const uint64_t ssm = static_cast<uint64_t>(m.d_inner * m.d_state) * 4;  // H*P*N == d_inner*N for Mamba-2
    s.state_bytes_per_sequence = static_cast<uint64_t>(s.mamba_layers) * (conv + ssm);
  }
  if (s.attention_layers > 0) s.max_context = c.max_position_embeddings;
  const std::string mixers = describe_kinds(c, std::vector<MixerKind>{MixerKind::Attention, MixerKind::Mamba1, MixerKind::Mamba2},
                                            [](const LayerSpec& l) { return l.mixer; });
  const std::string ffns = describe_kinds(c, std::vector<FfnKind>{FfnKind::MoE, FfnKind::Dense},
                                          [](const LayerSpec& l) { return l.ffn; });
  s.layout = ffns.empty() ? mixers : mixers + "; " + ffns;
  return s;
}

}  // namespace effarch::model
