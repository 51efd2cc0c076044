// The roofline model: see effarch/bench/roofline.h and docs/bench.md.

#include "effarch/bench/roofline.h"

#include <algorithm>
#include <cmath>

#include "effarch/model/stats.h"
#include "effarch/model/tensor_spec.h"

namespace effarch::bench {

RooflineModel roofline_model(const model::ModelConfig& c) {
  const model::ModelStats s = model::compute_stats(c);
  RooflineModel f;
  f.total_params = s.total_params;
  f.active_params = s.active_params;
  const double embed = static_cast<double>(c.vocab_size) * static_cast<double>(c.hidden_size);
  f.head_params = embed;
  // The embedding lookup is no matmul; a separate head is counted in active_params as well.
  f.body_matmul_params = static_cast<double>(s.active_params) - (c.tie_word_embeddings ? embed : 2 * embed);
  if (c.attention) {
    const double per_layer = 2.0 * static_cast<double>(c.attention->num_heads * c.attention->head_dim);
    f.attention_flops_per_token2 = per_layer * static_cast<double>(c.count_layers(model::MixerKind::Attention));
  }
  if (c.mamba) {
    const double n = static_cast<double>(c.mamba->d_inner * c.mamba->d_state);
    f.scan_flops_per_token = 6.0 * n *
                             static_cast<double>(c.count_layers(model::MixerKind::Mamba1) +
                                                 c.count_layers(model::MixerKind::Mamba2));
  }
  if (c.moe && c.moe->num_experts > 0 && c.count_layers(model::FfnKind::MoE) > 0) {
    f.num_experts = c.moe->num_experts;
    f.top_k = c.moe->top_k;
  }
  return f;
}

void set_weight_bytes(RooflineModel& f, const model::Weights& w) {
  // The head reads the embedding table only when there is no separate lm_head tensor.
  const bool head_is_embedding = w.find(-1, "lm_head.weight") == nullptr;
  auto routed = [](const std::string& role) { return role.rfind("moe.expert.", 0) == 0; };
  const auto shared = static_cast<double>(w.bytes_where([&](int, const std::string& role) {
    return !routed(role) && (role != "embed.weight" || head_is_embedding);
  }));
  const auto experts = static_cast<double>(w.bytes_where([&](int, const std::string& role) { return routed(role); }));
  f.expert_bytes = f.num_experts > 0 ? experts / static_cast<double>(f.num_experts) : 0.0;
  f.weight_bytes_per_decode = shared + static_cast<double>(f.top_k) * f.expert_bytes;
}

double prefill_flops(const RooflineModel& m, int64_t batch, int64_t prompt_len) {
  const double b = static_cast<double>(batch), l = static_cast<double>(prompt_len);
  return 2.0 * b * l * m.body_matmul_params + 2.0 * b * m.head_params + m.attention_flops_per_token2 * b * l * l +
         m.scan_flops_per_token * b * l;
}

double expected_distinct_experts(int64_t num_experts, int64_t top_k, int64_t tokens) {
  if (num_experts <= 0 || top_k <= 0 || tokens <= 0) return 0;
  const double e = static_cast<double>(num_experts);
  // Each expert is missed by one token with probability 1 - k/E, by all of them with its power.
  return e * (1.0 - std::pow(1.0 - static_cast<double>(std::min(top_k, num_experts)) / e, static_cast<double>(tokens)));
}

Roofline roofline(const RooflineModel& m, const RooflineInputs& in) {
  Roofline r;
  r.prefill_flops = prefill_flops(m, in.batch, in.prompt_len);
  r.prefill_flops_per_s = r.prefill_flops / in.prefill_s;
  r.prefill_fraction_of_gemm = in.gemm_flops_per_s > 0 ? r.prefill_flops_per_s / in.gemm_flops_per_s : 0.0;
  if (!in.decode_step_s) return r;
  Roofline::Decode d;
  // KV read per step: the filled prefix on average (prompt + half the generated tokens, of the
  // cache allocated for prompt + generated), or the whole allocated cache.
  const double l = static_cast<double>(in.prompt_len), gen = static_cast<double>(in.gen_tokens);
  const double kv = static_cast<double>(in.kv_cache_bytes);
  const double kv_read = in.kv_read == KvRead::FilledPrefix && l + gen > 0 ? kv * (l + gen / 2.0) / (l + gen) : kv;
  if (in.kv_cache_bytes > 0) d.kv_read = in.kv_read;
  double weights = m.weight_bytes_per_decode;
  if (m.num_experts > 0) {
    const double touched = in.measured_experts_per_layer
                               ? *in.measured_experts_per_layer
                               : expected_distinct_experts(m.num_experts, m.top_k, in.batch);
    weights += (touched - static_cast<double>(m.top_k)) * m.expert_bytes;
    d.experts_per_moe_layer = touched;
    d.experts_source = in.measured_experts_per_layer ? ExpertsSource::Measured : ExpertsSource::UniformRoutingEstimate;
  }
  // The recurrent state (Mamba's SSM and conv states) is read and written back whole every step;
  // of the KV cache a step writes one position, left out (1/L of what it reads).
  d.bytes_per_step = weights + kv_read + 2.0 * static_cast<double>(in.state_bytes);
  d.bytes_per_s = d.bytes_per_step / *in.decode_step_s;
  d.fraction_of_bandwidth = in.copy_bandwidth_bytes_per_s > 0 ? d.bytes_per_s / in.copy_bandwidth_bytes_per_s : 0.0;
  r.decode = d;
  return r;
}

}  // namespace effarch::bench
