// The sweep: models (each loaded once) x batch sizes x prompt lengths. Per point: the cache
// allocated for prompt + generated tokens, W warm-up runs, R timed runs of prefill + decode, the
// allocator's (or the process's) peaks, and the roofline fractions.

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <fmt/format.h>

#include "device_probe.h"
#include "effarch/bench/bench.h"
#include "effarch/common/device.h"
#include "effarch/common/dtype.h"
#include "effarch/common/error.h"
#include "effarch/model/catalog.h"
#include "effarch/model/model.h"
#include "effarch/model/stats.h"
#include "effarch/model/tensor_spec.h"

namespace effarch::bench {
namespace {

struct Interrupted {};

struct RunTimes {
  double prefill_s = 0, ttft_s = 0;
  std::vector<double> steps;  // per decode step
};

// One generation as a user sees it: prefill, the first token on the host (TTFT), then
// gen_tokens - 1 decode steps, each ending with its token on the host. Clocks are read only
// after the device is synchronised. `decode_observer` (untimed runs only) watches the decode
// steps' routing.
RunTimes one_run(model::Model& m, const at::Tensor& ids, int64_t gen_tokens, const at::Device& device,
                 const std::atomic<bool>* stop, const model::RoutingObserver* decode_observer = nullptr) {
  RunTimes r;
  struct ObserverGuard {
    model::Model& m;
    ~ObserverGuard() { m.set_routing_observer({}); }
  } observer_guard{m};
  detail::synchronize(device);
  const double t0 = detail::now_s();
  const at::Tensor logits = m.prefill_last(ids);
  detail::synchronize(device);
  const double t1 = detail::now_s();
  at::Tensor tok = logits.argmax(-1);
  at::Tensor host = tok.cpu();
  r.prefill_s = t1 - t0;
  r.ttft_s = detail::now_s() - t0;
  r.steps.reserve(static_cast<size_t>(gen_tokens));
  if (decode_observer != nullptr) m.set_routing_observer(*decode_observer);
  for (int64_t i = 1; i < gen_tokens; ++i) {
    if (stop != nullptr && stop->load()) throw Interrupted{};
    const double s = detail::now_s();
    tok = m.decode(tok).argmax(-1);
    host = tok.cpu();
    r.steps.push_back(detail::now_s() - s);
  }
  return r;
}

struct ModelFacts {
  int64_t total_params = 0, active_params = 0;
  double body_matmul_params = 0;  // active parameters that prefill multiplies per token (head excluded)
  double head_params = 0;
  double attention_flops_per_token2 = 0;  // x L^2 x batch: QK^T and PV over the causal half
  double scan_flops_per_token = 0;        // x L x batch: the recurrences
  double weight_bytes_per_decode = 0;     // active weights one decode step reads (top-k experts per MoE layer)
  double expert_bytes = 0;                // one routed expert in every MoE layer
  int64_t num_experts = 0, top_k = 0;
};

ModelFacts facts(const model::ModelConfig& c, at::ScalarType dtype) {
  const model::ModelStats s = model::compute_stats(c, dtype);
  ModelFacts f;
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
  const double elt = static_cast<double>(c10::elementSize(dtype));
  // A decode step reads every active weight once, the head included; of the embedding, one row.
  f.weight_bytes_per_decode = (static_cast<double>(s.active_params) - (c.tie_word_embeddings ? 0 : embed)) * elt;
  if (c.moe && c.moe->num_experts > 0) {
    double routed = 0;
    for (const auto& t : model::expected_tensors(c)) {
      if (!t.optional && t.expert >= 0) routed += static_cast<double>(t.numel());
    }
    f.num_experts = c.moe->num_experts;
    f.top_k = c.moe->top_k;
    f.expert_bytes = routed / static_cast<double>(c.moe->num_experts) * elt;
  }
  return f;
}

nlohmann::json key_of(const std::string& model, const std::string& dtype, int64_t batch, int64_t len, int64_t gen,
                      const std::string& device, const std::string& graphs) {
  return {{"model", model}, {"dtype", dtype}, {"batch", batch}, {"prompt_len", len},
          {"gen_tokens", gen}, {"device", device}, {"cuda_graphs", graphs}};
}

nlohmann::json measure_point(model::Model& m, const ModelFacts& f, const SweepSpec& spec, int64_t batch, int64_t len,
                             const at::Device& device, const nlohmann::json& env, const RunCallbacks& cb) {
  nlohmann::json p;
  m.release_cache();
  detail::reset_peaks(device);
  const detail::MemorySnapshot before = detail::memory(device);
  if (spec.memory_limit) detail::set_memory_limit(device, *spec.memory_limit);
  struct LimitGuard {
    const at::Device& d;
    bool on;
    ~LimitGuard() {
      if (on) detail::set_memory_limit(d, 0);
    }
  } guard{device, spec.memory_limit.has_value()};

  m.allocate_cache(batch, len + spec.gen_tokens);
  uint64_t kv = 0, state = 0;
  for (const auto& l : m.cache().layers) {
    for (const at::Tensor* t : {&l.k, &l.v}) kv += t->defined() ? static_cast<uint64_t>(t->nbytes()) : 0;
    for (const at::Tensor* t : {&l.conv_state, &l.ssm_state}) state += t->defined() ? static_cast<uint64_t>(t->nbytes()) : 0;
  }
  // Prompts drawn before any timing, one per run, from a seeded generator.
  at::Generator gen = at::detail::createCPUGenerator(spec.seed + static_cast<uint64_t>(len * 1315423911 + batch));
  const int runs = spec.speed ? spec.warmup + spec.reps : 1;
  std::vector<at::Tensor> prompts;
  for (int i = 0; i < runs; ++i) {
    prompts.push_back(at::randint(0, m.config().vocab_size, {batch, len}, gen, at::kLong).to(device));
  }
  // A batch's decode step reads every expert that any of its tokens picked: counted in the
  // warm-up runs (untimed: counting syncs with the host), where there are any.
  double touched_sum = 0, touched_events = 0;
  const model::RoutingObserver count_experts = [&](const model::RoutingEvent& ev) {
    touched_sum += static_cast<double>(std::get<0>(at::_unique(ev.expert_ids.flatten())).numel());
    touched_events += 1;
  };
  const bool count_routing = f.num_experts > 0 && spec.speed && spec.warmup > 0;
  std::vector<RunTimes> timed;
  for (int i = 0; i < runs; ++i) {
    if (cb.stop != nullptr && cb.stop->load()) throw Interrupted{};
    const bool warm_up = spec.speed && i < spec.warmup;
    RunTimes r = one_run(m, prompts[static_cast<size_t>(i)], spec.gen_tokens, device, cb.stop,
                         count_routing && warm_up ? &count_experts : nullptr);
    if (!spec.speed || i >= spec.warmup) timed.push_back(std::move(r));
  }
  const detail::MemorySnapshot after = detail::memory(device);

  const double step_overhead = env.value("harness_timer_overhead_s", 0.0);
  const auto& dev = env.at("device");
  const double bandwidth = dev.value("copy_bandwidth_bytes_per_s", 0.0);
  const double gemm = dev.value("gemm_flops_per_s", 0.0);
  if (spec.speed) {
    std::vector<double> prefill, ttft, prefill_tps, decode_tps, p50, p90, p99, all_steps;
    for (const auto& r : timed) {
      prefill.push_back(r.prefill_s);
      ttft.push_back(r.ttft_s);
      prefill_tps.push_back(static_cast<double>(batch * len) / r.prefill_s);
      double decode_s = 0;
      for (double s : r.steps) decode_s += s;
      if (!r.steps.empty()) {
        decode_tps.push_back(static_cast<double>(batch) * static_cast<double>(r.steps.size()) / decode_s);
        p50.push_back(percentile(r.steps, 50));
        p90.push_back(percentile(r.steps, 90));
        p99.push_back(percentile(r.steps, 99));
        all_steps.insert(all_steps.end(), r.steps.begin(), r.steps.end());
      }
    }
    nlohmann::json speed = {{"prefill_s", to_json(summarize(prefill))},
                            {"prefill_tokens_per_s", to_json(summarize(prefill_tps))},
                            {"ttft_s", to_json(summarize(ttft))}};
    if (!decode_tps.empty()) {
      speed["decode_tokens_per_s"] = to_json(summarize(decode_tps));
      speed["decode_step_s"] = {{"p50", to_json(summarize(p50))},
                                {"p90", to_json(summarize(p90))},
                                {"p99", to_json(summarize(p99))}};
    }
    p["speed"] = speed;
    // Harness overhead: two clock reads and a sync around each timed region, against the
    // shortest region the point times (a decode step, or the prefill when nothing is decoded).
    const double shortest = all_steps.empty() ? percentile(prefill, 50) : percentile(all_steps, 50);
    p["harness_overhead_fraction"] = shortest > 0 ? step_overhead / shortest : 0.0;

    // Roofline.
    nlohmann::json roof;
    const double prefill_median = percentile(prefill, 50);
    const double b = static_cast<double>(batch), l = static_cast<double>(len);
    const double flops = 2.0 * b * l * f.body_matmul_params + 2.0 * b * f.head_params +
                         f.attention_flops_per_token2 * b * l * l + f.scan_flops_per_token * b * l;
    roof["prefill_flops"] = flops;
    roof["prefill_flops_per_s"] = flops / prefill_median;
    roof["prefill_fraction_of_gemm"] = gemm > 0 ? flops / prefill_median / gemm : 0.0;
    if (!all_steps.empty()) {
      // KV read per step: the filled prefix on average (eager), the whole cache (static / graph).
      const double total_len = static_cast<double>(len + spec.gen_tokens);
      const double kv_read = spec.cuda_graphs == "off"
                                 ? static_cast<double>(kv) * (l + static_cast<double>(spec.gen_tokens) / 2.0) / total_len
                                 : static_cast<double>(kv);
      double weights = f.weight_bytes_per_decode;
      if (f.num_experts > 0) {
        const bool measured = touched_events > 0;
        const double touched = measured ? touched_sum / touched_events
                                        : expected_distinct_experts(f.num_experts, f.top_k, batch);
        weights += (touched - static_cast<double>(f.top_k)) * f.expert_bytes;
        roof["decode_experts_per_moe_layer"] = touched;
        roof["decode_experts_source"] = measured ? "measured" : "uniform_routing_estimate";
      }
      const double bytes = weights + kv_read + static_cast<double>(state);
      const double step = percentile(all_steps, 50);
      roof["decode_bytes_per_step"] = bytes;
      roof["decode_bytes_per_s"] = bytes / step;
      roof["decode_fraction_of_bandwidth"] = bandwidth > 0 ? bytes / step / bandwidth : 0.0;
    }
    p["roofline"] = roof;
  }
  if (spec.memory) {
    nlohmann::json mem = {{"weights_bytes", m.weights().bytes()},
                          {"cache_bytes", m.cache().bytes()},
                          {"kv_cache_bytes", kv},
                          {"state_bytes", state}};
    if (device.is_cuda()) {
      const uint64_t cache_and_base = before.allocated + m.cache().bytes();
      mem["source"] = "cuda_caching_allocator";
      mem["peak_allocated_bytes"] = after.peak_allocated;
      mem["peak_reserved_bytes"] = after.peak_reserved;
      mem["peak_bytes"] = after.peak_allocated;
      mem["activations_bytes"] = after.peak_allocated > cache_and_base ? after.peak_allocated - cache_and_base : 0;
    } else {
      // ATen's CPU allocations, counted exactly; the process's RSS growth beside them.
      const uint64_t cache_and_base = before.allocated + m.cache().bytes();
      mem["source"] = "cpu_counting_allocator";
      mem["peak_allocated_bytes"] = after.peak_allocated;
      mem["peak_bytes"] = after.peak_allocated;
      mem["activations_bytes"] = after.peak_allocated > cache_and_base ? after.peak_allocated - cache_and_base : 0;
      mem["peak_rss_growth_bytes"] = after.peak_rss > before.rss ? after.peak_rss - before.rss : 0;
    }
    p["memory"] = mem;
  }
  return p;
}

}  // namespace

std::vector<nlohmann::json> run_sweep(const SweepSpec& spec, const nlohmann::json& environment,
                                      const RunCallbacks& cb) {
  const at::Device device = parse_device(spec.device, "--device");
  const at::ScalarType dtype = parse_run_dtype(spec.dtype, device, "--dtype");
  if (!device.is_cuda()) detail::install_cpu_counting_allocator();
  const std::string dtype_name = float_dtype_name(dtype);
  const size_t total = spec.models.size() * spec.batches.size() * spec.prompt_lengths.size();
  std::vector<nlohmann::json> points;
  size_t index = 0;
  for (const std::string& name : spec.models) {
    std::unique_ptr<model::Model> m;
    std::string load_status, load_error;
    ModelFacts f;
    nlohmann::json info = nlohmann::json::object();
    try {
      const model::ModelSource source = model::resolve_model(name);
      model::ModelOptions opt;
      opt.device = device;
      opt.dtype = dtype;
      opt.seed = spec.seed;
      opt.attention = ops::parse_attention_impl(spec.attention, "--attention");
      opt.decode = model::parse_cuda_graphs(spec.cuda_graphs, "--cuda-graphs");
      opt.allow_beyond_context = true;
      f = facts(source.config, dtype);
      info = {{"model_path", source.checkpoint_dir ? source.checkpoint_dir->string() : source.config_path.string()},
              {"weights", source.checkpoint_dir ? "checkpoint" : "random"},
              {"architecture", source.config.architecture},
              {"family", model::to_string(source.config.family)},
              {"params_total", f.total_params},
              {"params_active", f.active_params},
              {"max_position_embeddings", source.config.max_position_embeddings
                                              ? nlohmann::json(*source.config.max_position_embeddings)
                                              : nlohmann::json(nullptr)}};
      detail::reset_peaks(device);
      m = model::Model::load(source, opt);
    } catch (const std::exception& e) {
      load_status = detail::classify(e);
      load_error = fmt::format("loading {}: {}", name, detail::message(e));
      m.reset();
      detail::reset_peaks(device);
    }
    for (int64_t batch : spec.batches) {
      for (int64_t len : spec.prompt_lengths) {
        if (cb.stop != nullptr && cb.stop->load()) return points;
        const std::string label = fmt::format("{} batch {} prompt {} gen {}", name, batch, len, spec.gen_tokens);
        if (cb.on_start) cb.on_start(index, total, label);
        ++index;
        nlohmann::json p = {{"key", key_of(name, dtype_name, batch, len, spec.gen_tokens, device.str(), spec.cuda_graphs)}};
        p.update(info);
        const double t0 = detail::now_s();
        if (!m) {
          p["status"] = load_status;
          p["error"] = load_error;
        } else {
          try {
            p.update(measure_point(*m, f, spec, batch, len, device, environment, cb));
            p["status"] = "ok";
            if (info.contains("max_position_embeddings") && info.at("max_position_embeddings").is_number() &&
                len + spec.gen_tokens > info.at("max_position_embeddings").get<int64_t>()) {
              p["beyond_trained_context"] = true;
            }
          } catch (const Interrupted&) {
            m->release_cache();
            return points;  // the unfinished point is dropped
          } catch (const std::exception& e) {
            p["status"] = detail::classify(e);
            p["error"] = detail::message(e);
            m->release_cache();
            detail::reset_peaks(device);  // give the memory back before the next point
          }
        }
        p["elapsed_s"] = detail::now_s() - t0;
        points.push_back(p);
        if (cb.on_point) cb.on_point(p);
      }
    }
    if (m) m->release_cache();
    m.reset();
    detail::reset_peaks(device);
  }
  return points;
}

}  // namespace effarch::bench
