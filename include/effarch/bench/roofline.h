#pragma once
// The roofline model of the benchmark: the FLOPs a prefill does (from the model's config) and the
// bytes a decode step reads (from the weights as stored on the device), and the fractions of the device's measured GEMM rate and copy
// bandwidth that a point's timings reach. Definitions: docs/bench.md.

#include <cstdint>
#include <optional>

#include <c10/core/ScalarType.h>

#include "effarch/bench/results.h"
#include "effarch/model/config.h"
#include "effarch/model/weights.h"

namespace effarch::bench {

// What the roofline needs to know about a model, computed once per model: the FLOP terms from its
// config (roofline_model), the bytes from its loaded weights (set_weight_bytes).
struct RooflineModel {
  int64_t total_params = 0, active_params = 0;
  double body_matmul_params = 0;          // active parameters prefill multiplies per token (head excluded)
  double head_params = 0;                 // the head, applied to the last position only
  double attention_flops_per_token2 = 0;  // x batch x L^2: QK^T and PV over the causal half
  double scan_flops_per_token = 0;        // x batch x L: the recurrences
  double weight_bytes_per_decode = 0;     // active weights one decode step reads (top-k experts per MoE layer)
  double expert_bytes = 0;                // one routed expert in every MoE layer
  int64_t num_experts = 0, top_k = 0;     // 0: no MoE layers
};
RooflineModel roofline_model(const model::ModelConfig& config);
// weight_bytes_per_decode and expert_bytes from the tensors as they are stored (their format's
// bytes: bf16, int8 with scales, a shard), never from a dtype's element size: every weight but
// the embedding table (of which a step reads one row; a tied head reads all of it) and the routed
// experts, plus top_k routed experts per MoE layer.
void set_weight_bytes(RooflineModel& m, const model::Weights& weights);

// 2 x batch x prompt x body parameters + the head on the last position + attention + the scans.
double prefill_flops(const RooflineModel& m, int64_t batch, int64_t prompt_len);

// Distinct experts that `tokens` tokens, each picking top_k of num_experts uniformly at random,
// touch on average: E x (1 - (1 - k/E)^tokens). The fallback when routing was not observed.
double expected_distinct_experts(int64_t num_experts, int64_t top_k, int64_t tokens);

// One point's measurements, as the roofline needs them.
struct RooflineInputs {
  int64_t batch = 1, prompt_len = 0, gen_tokens = 0;
  KvRead kv_read = KvRead::FilledPrefix;                // what a decode step reads of the KV cache
  uint64_t kv_cache_bytes = 0, state_bytes = 0;        // as allocated for prompt + generated tokens
  double prefill_s = 0;                                // median
  std::optional<double> decode_step_s;                 // median; none when nothing was decoded
  std::optional<double> measured_experts_per_layer;    // distinct experts per MoE layer per step, counted
  double copy_bandwidth_bytes_per_s = 0, gemm_flops_per_s = 0;  // measured at start; 0 gives fractions of 0
};

// A decode step reads the active weights (every expert the batch picked), the KV cache (the filled
// prefix on average, or the whole allocated cache: kv_read) and the recurrent state.
Roofline roofline(const RooflineModel& m, const RooflineInputs& in);

}  // namespace effarch::bench
