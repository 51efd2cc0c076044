// The sweep: models (each loaded once) x batch sizes x prompt lengths x launch settings (backend,
// decode mode, --pdl), the settings of a point back to back. Per point: the cache
// allocated for prompt + generated tokens, W warm-up runs, R timed runs of prefill + decode, the
// allocator's (or the process's) peaks, and the roofline fractions.

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <fmt/format.h>

#include "device_probe.h"
#include "effarch/bench/bench.h"
#include "effarch/common/device.h"
#include "effarch/common/dtype.h"
#include "effarch/common/error.h"
#include "effarch/model/catalog.h"
#include "effarch/model/model.h"
#include "effarch/ops/attention.h"
#include "effarch/ops/backend.h"

namespace effarch::bench {
namespace {

struct Interrupted {};

struct RunTimes {
  double prefill_s = 0, ttft_s = 0;
  std::vector<double> steps;  // per decode step
  // With an energy counter: joules over the prefill, and over the rest of the run (the first
  // token to the host and the decode steps) with that window's seconds.
  std::optional<double> prefill_j, decode_j;
  double decode_window_s = 0;
};

// One generation as a user sees it: prefill, the first token on the host (TTFT), then
// gen_tokens - 1 decode steps, each ending with its token on the host. Clocks are read only
// after the device is synchronised. `decode_observer` (untimed runs only) watches the decode
// steps' routing.
RunTimes one_run(model::Model& m, const at::Tensor& ids, int64_t gen_tokens, const at::Device& device,
                 const std::atomic<bool>* stop, const model::RoutingObserver* decode_observer = nullptr,
                 const EnergyCounter* energy = nullptr) {
  RunTimes r;
  struct ObserverGuard {
    model::Model& m;
    ~ObserverGuard() { m.set_routing_observer({}); }
  } observer_guard{m};
  const bool counting = energy != nullptr && energy->available();
  detail::synchronize(device);
  const std::optional<double> e0 = counting ? energy->read_joules() : std::nullopt;  // outside the timed region
  const double t0 = detail::now_s();
  const at::Tensor logits = m.prefill_last(ids);
  detail::synchronize(device);
  const double t1 = detail::now_s();
  const std::optional<double> e1 = counting ? energy->read_joules() : std::nullopt;
  const double w1 = detail::now_s();
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
  if (counting) {
    const double w2 = detail::now_s();
    const std::optional<double> e2 = energy->read_joules();
    if (e0 && e1 && e2) {
      r.prefill_j = *e1 - *e0;
      r.decode_j = *e2 - *e1;
      r.decode_window_s = w2 - w1;
    }
  }
  return r;
}

// What one point measured: status ok unless an exception leaves.
struct Measured {
  std::optional<SpeedResult> speed;
  std::optional<double> harness_overhead_fraction;
  std::optional<Roofline> roofline;
  std::optional<MemoryResult> memory;
  std::optional<EnergyResult> energy;
};

Measured measure_point(model::Model& m, const RooflineModel& f, const SweepSpec& spec, int64_t batch, int64_t len,
                       const at::Device& device, const nlohmann::json& env, const RunCallbacks& cb,
                       const EnergyCounter& energy) {
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
  ops::clear_last_prefill_sdpa();
  for (int i = 0; i < runs; ++i) {
    if (cb.stop != nullptr && cb.stop->load()) throw Interrupted{};
    const bool warm_up = speed && i < spec.warmup;
    RunTimes r = one_run(m, prompts[static_cast<size_t>(i)], spec.gen_tokens, device, cb.stop,
                         count_routing && warm_up ? &count_experts : nullptr, warm_up ? nullptr : &energy);
    if (!speed || i >= spec.warmup) timed.push_back(std::move(r));
  }
  const detail::MemorySnapshot after = detail::memory(device);
  // Every rank's bytes, gathered by all ranks alike (a collective: all ranks reach it).
  std::vector<int64_t> rank_weights, rank_cache, rank_peak;
  if (spec.parallel && spec.parallel->grouped()) {
    rank_weights = spec.parallel->gather(static_cast<int64_t>(m.weights().bytes()));
    rank_cache = spec.parallel->gather(static_cast<int64_t>(m.cache().bytes()));
    rank_peak = spec.parallel->gather(static_cast<int64_t>(after.peak_allocated));
  }

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
    if (const std::optional<ops::SdpaChoice> sdpa = ops::last_prefill_sdpa()) {
      sr.prefill_attention = PrefillAttention{sdpa->backend, sdpa->mask};
    }
    p.speed = sr;
    // Energy over the timed runs, when every one of them read the counter.
    double prefill_j = 0, decode_j = 0, prefill_time = 0, decode_time = 0, decoded = 0;
    bool all_counted = energy.available() && !timed.empty();
    for (const auto& r : timed) {
      all_counted = all_counted && r.prefill_j && r.decode_j;
      if (!all_counted) break;
      prefill_j += *r.prefill_j;
      decode_j += *r.decode_j;
      prefill_time += r.prefill_s;
      decode_time += r.decode_window_s;
      decoded += static_cast<double>(batch) * static_cast<double>(r.steps.size());
    }
    if (all_counted) {
      p.energy = energy_figures(energy.source, prefill_j, static_cast<double>(batch * len) * static_cast<double>(timed.size()),
                                prefill_time, decode_j, decoded, decode_time);
    }
    // Harness overhead: two clock reads and a sync around each timed region, against the
    // shortest region the point times (a decode step, or the prefill when nothing is decoded).
    const double shortest = all_steps.empty() ? percentile(prefill, 50) : percentile(all_steps, 50);
    p.harness_overhead_fraction = shortest > 0 ? env.value("harness_timer_overhead_s", 0.0) / shortest : 0.0;

    RooflineInputs in;
    in.batch = batch;
    in.prompt_len = len;
    in.gen_tokens = spec.gen_tokens;
    // The decode attention kernel reads the filled length from the device, graphed or not; the
    // static step's reference attends over the whole allocated cache under a mask.
    const auto attention = m.implementations().find(std::string(ops::op_name(ops::OpFamily::DecodeAttention)));
    const bool kernel =
        attention != m.implementations().end() && attention->second == ops::backend_name(ops::Backend::Cuda);
    in.kv_read = m.options().decode == model::DecodeMode::Eager || kernel ? KvRead::FilledPrefix : KvRead::Allocated;
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
    for (size_t r = 0; r < rank_peak.size(); ++r) {
      mem.rank_weights_bytes.push_back(static_cast<uint64_t>(rank_weights[r]));
      mem.rank_cache_bytes.push_back(static_cast<uint64_t>(rank_cache[r]));
      mem.rank_peak_bytes.push_back(static_cast<uint64_t>(rank_peak[r]));
    }
    p.memory = mem;
  }
  return p;
}

// A model as the sweep loaded it (or failed to), with what every point's key records of it.
struct Loaded {
  std::unique_ptr<model::Model> m;  // null when the load failed
  PointStatus status = PointStatus::Ok;
  std::string error;
  RooflineModel f;
  std::optional<ModelInfo> info;
  std::optional<model::ModelConfig> config;  // once resolved, even if the load then failed
  std::string weights;  // the format loaded; until the model loads, the request (the dtype)

  // The decode mode a launch setting runs (auto resolved); until the config is read, the request.
  model::DecodeMode decode_mode(const LaunchSetting& launch, const SweepSpec& spec, const at::Device& device) const {
    if (!config) return launch.cuda_graphs.value_or(model::DecodeMode::Eager);
    return model::resolve_decode_mode(*config, device, launch.cuda_graphs, ops::kBuiltWithCuda, launch.backend,
                                      spec.weights);
  }
};

Loaded load_model(const std::string& name, const SweepSpec& spec, const std::vector<LaunchSetting>& launches,
                  const at::Device& device, at::ScalarType dtype, bool distributed) {
  Loaded l;
  l.weights = spec.weights == ops::WeightFormat::Int8 ? "int8" : float_dtype_name(dtype);
  try {
    const model::ModelSource source = model::resolve_model(name);
    l.config = source.config;
    model::ModelOptions opt;
    opt.device = device;
    opt.dtype = dtype;
    opt.seed = spec.seed;
    opt.attention = ops::parse_attention_impl(spec.attention, "--attention");
    opt.weights = spec.weights;
    opt.fuse_parallel_block = spec.fuse_parallel_block;
    opt.fuse_norm_prologue = spec.fuse_norm_prologue;
    opt.selective_scan = spec.selective_scan;
    // One setting: loaded with its backend and mode (a refused one fails the load, naming why).
    // Several: auto and eager, which every model takes, and each point sets its own
    // (Model::set_execution), so a refused setting fails its own points.
    const bool one = launches.size() == 1;
    opt.backend = one ? launches.front().backend : ops::Backend::Auto;
    opt.decode = one ? l.decode_mode(launches.front(), spec, device) : model::DecodeMode::Eager;
    opt.allow_beyond_context = true;
    opt.parallel = spec.parallel;
    l.f = roofline_model(source.config);
    ModelInfo mi;
    mi.model_path = source.checkpoint_dir ? source.checkpoint_dir->string() : source.config_path.string();
    mi.weights_source = source.checkpoint_dir ? "checkpoint" : "random";
    mi.architecture = source.config.architecture;
    mi.family = model::to_string(source.config.family);
    mi.params_total = l.f.total_params;
    mi.params_active = l.f.active_params;
    mi.max_position_embeddings = source.config.max_position_embeddings;
    l.info = mi;
    detail::reset_peaks(device);
    detail::synchronize(device);
    const double load_start = detail::now_s();
    l.m = model::Model::load(source, opt);
    detail::synchronize(device);
    LoadTime lt;
    lt.seconds = detail::now_s() - load_start;
    lt.weights_bytes = l.m->weights().bytes();
    lt.bytes_per_s = lt.seconds > 0 ? static_cast<double>(lt.weights_bytes) / lt.seconds : 0.0;
    l.info->load = lt;
    set_weight_bytes(l.f, l.m->weights());
    l.weights = l.m->weight_format();
  } catch (const std::exception& e) {
    if (distributed) throw;  // the ranks would no longer run the same points
    l.status = detail::classify(e);
    l.error = fmt::format("loading {}: {}", name, error_message(e));
    l.m.reset();
    detail::reset_peaks(device);
  }
  return l;
}

// One point: a model's workload under one launch setting. Interrupted leaves (the point is dropped).
Point run_point(Loaded& l, const std::string& name, int64_t batch, int64_t len, const LaunchSetting& launch,
                const SweepSpec& spec, const at::Device& device, const std::string& dtype_name, bool distributed,
                const nlohmann::json& environment, const RunCallbacks& cb, const EnergyCounter& energy) {
  const model::DecodeMode decode_mode = l.decode_mode(launch, spec, device);
  Point p;
  p.key.model = name;
  p.key.dtype = dtype_name;
  p.key.batch = batch;
  p.key.prompt_len = len;
  p.key.gen_tokens = spec.gen_tokens;
  p.key.device = device.str();
  p.key.cuda_graphs = decode_mode;
  const bool pdl = ops::resolve_programmatic_launch(launch.pdl, device);
  p.key.pdl = pdl && device.is_cuda();
  p.key.backend = launch.backend;  // implementations: what ran, once the setting is taken (unknown if not)
  p.key.weights = l.weights;
  p.loaded = l.info;
  const std::optional<LoadSample> load_before = read_machine_load();
  const double t0 = detail::now_s();
  if (!l.m) {
    p.status = l.status;
    p.error = l.error;
    p.elapsed_s = detail::now_s() - t0;
    return p;
  }
  model::Model& m = *l.m;
  try {
    ops::set_programmatic_launch(pdl, "--pdl");
    if (m.options().backend != launch.backend || m.options().decode != decode_mode) {
      m.set_execution(launch.backend, decode_mode);
    }
    p.key.implementations = m.implementations();
    Measured r = measure_point(m, l.f, spec, batch, len, device, environment, cb, energy);
    p.speed = std::move(r.speed);
    p.harness_overhead_fraction = r.harness_overhead_fraction;
    p.roofline = std::move(r.roofline);
    p.memory = std::move(r.memory);
    p.energy = std::move(r.energy);
    p.status = PointStatus::Ok;
    if (l.info && l.info->max_position_embeddings && len + spec.gen_tokens > *l.info->max_position_embeddings) {
      p.beyond_trained_context = true;
    }
  } catch (const Interrupted&) {
    m.release_cache();
    throw;
  } catch (const std::exception& e) {
    if (distributed) throw;  // one rank's out-of-memory would leave the others waiting in a collective
    p.status = detail::classify(e);
    p.error = error_message(e);
    m.release_cache();
    detail::reset_peaks(device);  // give the memory back before the next point
  }
  p.elapsed_s = detail::now_s() - t0;
  // The threads a point computes with: ATen's pool on the CPU; on a GPU the host thread that
  // launches the kernels.
  const int64_t threads = device.is_cuda() ? 1 : at::get_num_threads();
  p.machine_load = judge_load(load_before, read_machine_load(), usable_cores(), threads);
  // Other work slows a point's timings, not its bytes: a point without timings (--mode memory, a
  // failed point) keeps the load's record but is not flagged, so no warning cries wolf over it.
  if (!p.speed) p.machine_load->busy = false;
  return p;
}

}  // namespace

void check_sweep(const SweepSpec& spec) {
  const at::Device device = parse_device(spec.device, "--device");
  (void)parse_run_dtype(spec.dtype, device, "--dtype");
  if (launch_settings(spec).empty()) {
    throw UsageError("bench: no launch setting to run (--cuda-graphs and --pdl need a value)");
  }
  if (spec.pdl.size() > 1 && !device.is_cuda()) {
    throw UsageError(fmt::format("--pdl {}: programmatic dependent launch applies to CUDA kernels only; on {} every "
                                 "value would run the same",
                                 pdl_list_name(spec.pdl), device.str()));
  }
}

std::vector<Point> run_sweep(const SweepSpec& spec, const nlohmann::json& environment, const RunCallbacks& cb) {
  check_sweep(spec);
  const at::Device device = parse_device(spec.device, "--device");
  const bool distributed = spec.parallel && spec.parallel->grouped();
  const at::ScalarType dtype = parse_run_dtype(spec.dtype, device, "--dtype");
  const std::vector<LaunchSetting> launches = launch_settings(spec);
  // --pdl is a process-wide switch: each point sets its own, and the caller's comes back after.
  struct PdlGuard {
    bool was = ops::programmatic_launch();
    ~PdlGuard() {
      try {
        ops::set_programmatic_launch(was);
      } catch (...) {  // only a build without CUDA refuses, and only `on`, which `was` cannot be there
      }
    }
  } pdl_guard;
  // ATen's CPU allocations counted for this sweep only (the original allocator back after it).
  std::optional<detail::CpuCountingScope> counting;
  if (!device.is_cuda()) counting.emplace();
  const std::string dtype_name = float_dtype_name(dtype);
  const size_t total = spec.models.size() * spec.batches.size() * spec.prompt_lengths.size() * launches.size();
  std::vector<Point> points;
  size_t index = 0;
  // The device's energy counter (NVML on a GPU, RAPL on the CPU), when one is readable.
  const EnergyCounter energy =
      spec.energy ? open_energy_counter(device) : EnergyCounter{};
  for (const std::string& name : spec.models) {
    Loaded loaded = load_model(name, spec, launches, device, dtype, distributed);
    for (int64_t batch : spec.batches) {
      for (int64_t len : spec.prompt_lengths) {
        // Each launch setting in turn on the one loaded model, back to back: the ratio between
        // them is measured minutes apart at most.
        for (const LaunchSetting& launch : launches) {
          if (cb.stop != nullptr && cb.stop->load()) return points;
          std::string label = fmt::format("{} batch {} prompt {} gen {}", name, batch, len, spec.gen_tokens);
          if (launches.size() > 1) {
            label += " " + launch_label(launch.backend, loaded.decode_mode(launch, spec, device),
                                        ops::resolve_programmatic_launch(launch.pdl, device) && device.is_cuda());
          }
          if (cb.on_start) cb.on_start(index, total, label);
          ++index;
          try {
            points.push_back(
                run_point(loaded, name, batch, len, launch, spec, device, dtype_name, distributed, environment, cb, energy));
          } catch (const Interrupted&) {
            return points;  // the unfinished point is dropped
          }
          if (cb.on_point) cb.on_point(points.back());
        }
      }
    }
    if (loaded.m) loaded.m->release_cache();
    loaded.m.reset();
    detail::reset_peaks(device);
  }
  return points;
}

}  // namespace effarch::bench
