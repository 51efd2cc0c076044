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

// What one point measured: status ok unless an exception leaves.
struct Measured {
  std::optional<SpeedResult> speed;
  std::optional<double> harness_overhead_fraction;
  std::optional<Roofline> roofline;
  std::optional<MemoryResult> memory;
};

Measured measure_point(model::Model& m, const RooflineModel& f, const SweepSpec& spec, int64_t batch, int64_t len,
                       const at::Device& device, const nlohmann::json& env, const RunCallbacks& cb) {
  Measured p;
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
  const bool speed = spec.modes.speed;
  // Prompts drawn before any timing, one per run, from a seeded generator.
  at::Generator gen = at::detail::createCPUGenerator(spec.seed + static_cast<uint64_t>(len * 1315423911 + batch));
  const int runs = speed ? spec.warmup + spec.reps : 1;
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
  const bool count_routing = f.num_experts > 0 && speed && spec.warmup > 0;
  std::vector<RunTimes> timed;
  for (int i = 0; i < runs; ++i) {
    if (cb.stop != nullptr && cb.stop->load()) throw Interrupted{};
    const bool warm_up = speed && i < spec.warmup;
    RunTimes r = one_run(m, prompts[static_cast<size_t>(i)], spec.gen_tokens, device, cb.stop,
                         count_routing && warm_up ? &count_experts : nullptr);
    if (!speed || i >= spec.warmup) timed.push_back(std::move(r));
  }
  const detail::MemorySnapshot after = detail::memory(device);

  if (speed) {
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
    SpeedResult sr;
    sr.prefill_s = summarize(prefill);
    sr.prefill_tokens_per_s = summarize(prefill_tps);
    sr.ttft_s = summarize(ttft);
    if (!decode_tps.empty()) {
      sr.decode_tokens_per_s = summarize(decode_tps);
      sr.decode_step_s = DecodeStepStats{summarize(p50), summarize(p90), summarize(p99)};
    }
    p.speed = sr;
    // Harness overhead: two clock reads and a sync around each timed region, against the
    // shortest region the point times (a decode step, or the prefill when nothing is decoded).
    const double shortest = all_steps.empty() ? percentile(prefill, 50) : percentile(all_steps, 50);
    p.harness_overhead_fraction = shortest > 0 ? env.value("harness_timer_overhead_s", 0.0) / shortest : 0.0;

    RooflineInputs in;
    in.batch = batch;
    in.prompt_len = len;
    in.gen_tokens = spec.gen_tokens;
    in.cuda_graphs = spec.cuda_graphs;
    in.kv_cache_bytes = kv;
    in.state_bytes = state;
    in.prefill_s = percentile(prefill, 50);
    if (!all_steps.empty()) in.decode_step_s = percentile(all_steps, 50);
    if (touched_events > 0) in.measured_experts_per_layer = touched_sum / touched_events;
    const auto& dev = env.at("device");
    in.copy_bandwidth_bytes_per_s = dev.value("copy_bandwidth_bytes_per_s", 0.0);
    in.gemm_flops_per_s = dev.value("gemm_flops_per_s", 0.0);
    p.roofline = roofline(f, in);
  }
  if (spec.modes.memory) {
    MemoryResult mem;
    mem.weights_bytes = m.weights().bytes();
    mem.cache_bytes = m.cache().bytes();
    mem.kv_cache_bytes = kv;
    mem.state_bytes = state;
    const uint64_t cache_and_base = before.allocated + m.cache().bytes();
    mem.peak_allocated_bytes = after.peak_allocated;
    mem.peak_bytes = after.peak_allocated;
    mem.activations_bytes = after.peak_allocated > cache_and_base ? after.peak_allocated - cache_and_base : 0;
    if (device.is_cuda()) {
      mem.source = "cuda_caching_allocator";
      mem.peak_reserved_bytes = after.peak_reserved;
    } else {
      // ATen's CPU allocations, counted exactly; the process's RSS growth beside them.
      mem.source = "cpu_counting_allocator";
      mem.peak_rss_growth_bytes = after.peak_rss > before.rss ? after.peak_rss - before.rss : 0;
    }
    p.memory = mem;
  }
  return p;
}

}  // namespace

std::vector<Point> run_sweep(const SweepSpec& spec, const nlohmann::json& environment, const RunCallbacks& cb) {
  const at::Device device = parse_device(spec.device, "--device");
  const at::ScalarType dtype = parse_run_dtype(spec.dtype, device, "--dtype");
  // ATen's CPU allocations counted for this sweep only (the original allocator back after it).
  std::optional<detail::CpuCountingScope> counting;
  if (!device.is_cuda()) counting.emplace();
  const std::string dtype_name = float_dtype_name(dtype);
  const size_t total = spec.models.size() * spec.batches.size() * spec.prompt_lengths.size();
  std::vector<Point> points;
  size_t index = 0;
  for (const std::string& name : spec.models) {
    std::unique_ptr<model::Model> m;
    PointStatus load_status = PointStatus::Ok;
    std::string load_error;
    RooflineModel f;
    std::optional<ModelInfo> info;
    // What the key records of the model: until it loads, the request (weights: the dtype).
    std::map<std::string, std::string> implementations;
    std::string weights = dtype_name;
    try {
      const model::ModelSource source = model::resolve_model(name);
      model::ModelOptions opt;
      opt.device = device;
      opt.dtype = dtype;
      opt.seed = spec.seed;
      opt.attention = ops::parse_attention_impl(spec.attention, "--attention");
      opt.decode = spec.cuda_graphs;
      opt.backend = spec.backend;
      opt.allow_beyond_context = true;
      f = roofline_model(source.config);
      ModelInfo mi;
      mi.model_path = source.checkpoint_dir ? source.checkpoint_dir->string() : source.config_path.string();
      mi.weights_source = source.checkpoint_dir ? "checkpoint" : "random";
      mi.architecture = source.config.architecture;
      mi.family = model::to_string(source.config.family);
      mi.params_total = f.total_params;
      mi.params_active = f.active_params;
      mi.max_position_embeddings = source.config.max_position_embeddings;
      info = mi;
      detail::reset_peaks(device);
      m = model::Model::load(source, opt);
      set_weight_bytes(f, m->weights());
      implementations = m->implementations();
      weights = m->weight_format();
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
        Point p;
        p.key.model = name;
        p.key.dtype = dtype_name;
        p.key.batch = batch;
        p.key.prompt_len = len;
        p.key.gen_tokens = spec.gen_tokens;
        p.key.device = device.str();
        p.key.cuda_graphs = spec.cuda_graphs;
        p.key.backend = spec.backend;
        p.key.implementations = implementations;
        p.key.weights = weights;
        p.loaded = info;
        const double t0 = detail::now_s();
        if (!m) {
          p.status = load_status;
          p.error = load_error;
        } else {
          try {
            Measured r = measure_point(*m, f, spec, batch, len, device, environment, cb);
            p.speed = std::move(r.speed);
            p.harness_overhead_fraction = r.harness_overhead_fraction;
            p.roofline = std::move(r.roofline);
            p.memory = std::move(r.memory);
            p.status = PointStatus::Ok;
            if (info && info->max_position_embeddings && len + spec.gen_tokens > *info->max_position_embeddings) {
              p.beyond_trained_context = true;
            }
          } catch (const Interrupted&) {
            m->release_cache();
            return points;  // the unfinished point is dropped
          } catch (const std::exception& e) {
            p.status = detail::classify(e);
            p.error = detail::message(e);
            m->release_cache();
            detail::reset_peaks(device);  // give the memory back before the next point
          }
        }
        p.elapsed_s = detail::now_s() - t0;
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
