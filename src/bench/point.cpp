// The typed results of a point: enums parsed in one place, the key's fields and its string, and
// the JSON of every struct (to_json / from_json, found by nlohmann through ADL).

#include <algorithm>
#include <map>
#include <tuple>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "effarch/bench/results.h"
#include "effarch/common/error.h"
#include "effarch/common/format.h"
#include "effarch/model/model.h"

namespace effarch::bench {

using nlohmann::json;

// ---- enums ----

const char* to_string(PointStatus status) {
  switch (status) {
    case PointStatus::Ok: return "ok";
    case PointStatus::Oom: return "oom";
    case PointStatus::Error: return "error";
  }
  return "?";
}

PointStatus parse_status(const std::string& value, const std::string& where) {
  for (PointStatus s : {PointStatus::Ok, PointStatus::Oom, PointStatus::Error}) {
    if (value == to_string(s)) return s;
  }
  throw UsageError(fmt::format("{}: unknown status '{}' (ok, oom, error)", where, value));
}

const char* to_string(Mode mode) { return mode == Mode::Speed ? "speed" : "memory"; }

Mode parse_mode(const std::string& value, const std::string& where) {
  if (value == "speed") return Mode::Speed;
  if (value == "memory") return Mode::Memory;
  throw UsageError(fmt::format("{}: unknown mode '{}' (speed, memory, or both: speed,memory)", where, value));
}

Modes parse_modes(const std::vector<std::string>& values, const std::string& where) {
  if (values.empty()) throw UsageError(fmt::format("{}: no mode (speed, memory, or both: speed,memory)", where));
  Modes m{false, false};
  for (const auto& v : values) {
    (parse_mode(v, where) == Mode::Speed ? m.speed : m.memory) = true;
  }
  return m;
}

Modes parse_modes(const std::string& comma_list, const std::string& where) {
  return parse_modes(split_commas(comma_list), where);
}

std::vector<std::string> mode_names(const Modes& modes) {
  std::vector<std::string> out;
  if (modes.speed) out.emplace_back(to_string(Mode::Speed));
  if (modes.memory) out.emplace_back(to_string(Mode::Memory));
  return out;
}

const char* to_string(ExpertsSource source) {
  return source == ExpertsSource::Measured ? "measured" : "uniform_routing_estimate";
}

ExpertsSource parse_experts_source(const std::string& value, const std::string& where) {
  for (ExpertsSource s : {ExpertsSource::Measured, ExpertsSource::UniformRoutingEstimate}) {
    if (value == to_string(s)) return s;
  }
  throw UsageError(fmt::format("{}: unknown experts source '{}' (measured, uniform_routing_estimate)", where, value));
}

const char* to_string(KvRead read) { return read == KvRead::FilledPrefix ? "filled_prefix" : "allocated"; }

KvRead parse_kv_read(const std::string& value, const std::string& where) {
  for (KvRead r : {KvRead::FilledPrefix, KvRead::Allocated}) {
    if (value == to_string(r)) return r;
  }
  throw UsageError(fmt::format("{}: unknown KV read '{}' (filled_prefix, allocated)", where, value));
}

// ---- Stats ----

bool Stats::operator==(const Stats& o) const {
  return std::tie(mean, stddev, median, min, max, samples) == std::tie(o.mean, o.stddev, o.median, o.min, o.max, o.samples);
}

void to_json(json& j, const Stats& s) {
  j = {{"mean", s.mean}, {"stddev", s.stddev}, {"median", s.median}, {"min", s.min}, {"max", s.max},
       {"samples", s.samples}};
}

void from_json(const json& j, Stats& s) {
  j.at("mean").get_to(s.mean);
  j.at("stddev").get_to(s.stddev);
  j.at("median").get_to(s.median);
  j.at("min").get_to(s.min);
  j.at("max").get_to(s.max);
  j.at("samples").get_to(s.samples);
}

// ---- PointKey ----

namespace {

// Implementations in a few characters: one value when every family agrees, else the pairs.
std::string ops_summary(const std::map<std::string, std::string>& impl) {
  if (impl.empty()) return "";
  bool same = true;
  for (const auto& [family, value] : impl) same = same && value == impl.begin()->second;
  if (same) return " ops=" + impl.begin()->second;
  std::vector<std::string> pairs;
  for (const auto& [family, value] : impl) pairs.push_back(family + ":" + value);
  return fmt::format(" ops={}", fmt::join(pairs, ","));
}

auto tied(const PointKey& k) {
  return std::tie(k.model, k.dtype, k.batch, k.prompt_len, k.gen_tokens, k.device, k.cuda_graphs, k.pdl, k.backend,
                  k.implementations, k.weights);
}

}  // namespace

std::string PointKey::str_without_model() const {
  return fmt::format("{} b{} p{} g{} {} graphs={}{} backend={} weights={}{}", dtype, batch, prompt_len, gen_tokens,
                     device, model::to_string(cuda_graphs), pdl ? " pdl=on" : "", ops::backend_name(backend), weights,
                     ops_summary(implementations));
}

std::string PointKey::str() const { return model + " " + str_without_model(); }

std::string PointKey::launch_str() const { return launch_label(backend, cuda_graphs, pdl); }

std::string launch_label(ops::Backend backend, model::DecodeMode cuda_graphs, bool pdl) {
  return fmt::format("backend={} graphs={} pdl={}", ops::backend_name(backend), model::to_string(cuda_graphs),
                     pdl ? "on" : "off");
}

bool PointKey::operator==(const PointKey& o) const { return tied(*this) == tied(o); }
bool PointKey::operator<(const PointKey& o) const { return tied(*this) < tied(o); }

bool PointKey::matches(const PointKey& o) const {
  if (implementations.empty() || o.implementations.empty()) {
    PointKey a = *this, b = o;
    a.implementations.clear();
    b.implementations.clear();
    return a == b;
  }
  return *this == o;
}

void to_json(json& j, const PointKey& k) {
  j = {{"model", k.model},
       {"dtype", k.dtype},
       {"batch", k.batch},
       {"prompt_len", k.prompt_len},
       {"gen_tokens", k.gen_tokens},
       {"device", k.device},
       {"cuda_graphs", model::to_string(k.cuda_graphs)},
       {"pdl", k.pdl ? "on" : "off"},
       {"backend", ops::backend_name(k.backend)},
       {"implementations", k.implementations},
       {"weights", k.weights}};
}

void from_json(const json& j, PointKey& k) {
  j.at("model").get_to(k.model);
  j.at("dtype").get_to(k.dtype);
  j.at("batch").get_to(k.batch);
  j.at("prompt_len").get_to(k.prompt_len);
  j.at("gen_tokens").get_to(k.gen_tokens);
  j.at("device").get_to(k.device);
  k.cuda_graphs = model::parse_cuda_graphs(j.at("cuda_graphs").get<std::string>(), "key.cuda_graphs");
  // Absent in files written before the key had it: read_document fills it from the environment.
  k.pdl = j.contains("pdl") && ops::parse_programmatic_launch(j.at("pdl").get<std::string>(), "key.pdl");
  k.backend = ops::parse_backend(j.at("backend").get<std::string>(), "key.backend");
  j.at("implementations").get_to(k.implementations);
  // What Model::implementations() records: the name of a resolved (never Auto) backend per op
  // family, and beside them which variant of a CUDA path ran (model::implementation_variants()).
  const auto& variants = model::implementation_variants();
  for (const auto& [family, impl] : k.implementations) {
    if (const auto variant = variants.find(family); variant != variants.end()) {
      const auto& allowed = variant->second;
      if (std::find(allowed.begin(), allowed.end(), impl) == allowed.end()) {
        throw UsageError(fmt::format("key.implementations: '{}' for {} ({})", impl, family, fmt::join(allowed, ", ")));
      }
      continue;
    }
    bool known = false;
    for (ops::Backend b : {ops::Backend::Cuda, ops::Backend::Cpu, ops::Backend::Reference}) {
      known = known || impl == ops::backend_name(b);
    }
    if (!known) {
      throw UsageError(fmt::format("key.implementations: '{}' for {} (cuda, cpu, reference)", impl, family));
    }
  }
  j.at("weights").get_to(k.weights);
}

// ---- speed, memory, roofline ----

void to_json(json& j, const DecodeStepStats& s) { j = {{"p50", s.p50}, {"p90", s.p90}, {"p99", s.p99}}; }

void from_json(const json& j, DecodeStepStats& s) {
  j.at("p50").get_to(s.p50);
  j.at("p90").get_to(s.p90);
  j.at("p99").get_to(s.p99);
}

namespace {

template <typename T>
void put(json& j, const char* name, const std::optional<T>& v) {
  if (v) j[name] = *v;
}

template <typename T>
void take(const json& j, const char* name, std::optional<T>& v) {
  if (j.contains(name) && !j.at(name).is_null()) {
    v = j.at(name).get<T>();
  } else {
    v.reset();
  }
}

}  // namespace

void to_json(json& j, const PrefillAttention& a) { j = {{"sdpa_backend", a.sdpa_backend}, {"mask", a.mask}}; }

void from_json(const json& j, PrefillAttention& a) {
  j.at("sdpa_backend").get_to(a.sdpa_backend);
  j.at("mask").get_to(a.mask);
}

bool SpeedResult::operator==(const SpeedResult& o) const {
  return std::tie(prefill_s, prefill_tokens_per_s, ttft_s, decode_tokens_per_s, decode_step_s, prefill_attention) ==
         std::tie(o.prefill_s, o.prefill_tokens_per_s, o.ttft_s, o.decode_tokens_per_s, o.decode_step_s,
                  o.prefill_attention);
}

void to_json(json& j, const SpeedResult& s) {
  j = {{"prefill_s", s.prefill_s}, {"prefill_tokens_per_s", s.prefill_tokens_per_s}, {"ttft_s", s.ttft_s}};
  put(j, "decode_tokens_per_s", s.decode_tokens_per_s);
  put(j, "decode_step_s", s.decode_step_s);
  put(j, "prefill_attention", s.prefill_attention);
}

void from_json(const json& j, SpeedResult& s) {
  j.at("prefill_s").get_to(s.prefill_s);
  j.at("prefill_tokens_per_s").get_to(s.prefill_tokens_per_s);
  j.at("ttft_s").get_to(s.ttft_s);
  take(j, "decode_tokens_per_s", s.decode_tokens_per_s);
  take(j, "decode_step_s", s.decode_step_s);
  take(j, "prefill_attention", s.prefill_attention);
}

bool MemoryResult::operator==(const MemoryResult& o) const {
  return std::tie(source, weights_bytes, cache_bytes, kv_cache_bytes, state_bytes, peak_allocated_bytes, peak_bytes,
                  activations_bytes, peak_reserved_bytes, peak_rss_growth_bytes, rank_weights_bytes, rank_cache_bytes,
                  rank_peak_bytes) ==
         std::tie(o.source, o.weights_bytes, o.cache_bytes, o.kv_cache_bytes, o.state_bytes, o.peak_allocated_bytes,
                  o.peak_bytes, o.activations_bytes, o.peak_reserved_bytes, o.peak_rss_growth_bytes,
                  o.rank_weights_bytes, o.rank_cache_bytes, o.rank_peak_bytes);
}

void to_json(json& j, const MemoryResult& m) {
  j = {{"source", m.source},
       {"weights_bytes", m.weights_bytes},
       {"cache_bytes", m.cache_bytes},
       {"kv_cache_bytes", m.kv_cache_bytes},
       {"state_bytes", m.state_bytes},
       {"peak_allocated_bytes", m.peak_allocated_bytes},
       {"peak_bytes", m.peak_bytes},
       {"activations_bytes", m.activations_bytes}};
  put(j, "peak_reserved_bytes", m.peak_reserved_bytes);
  put(j, "peak_rss_growth_bytes", m.peak_rss_growth_bytes);
  if (!m.rank_peak_bytes.empty()) {
    json ranks = json::array();
    uint64_t w = 0, c = 0, p = 0;
    for (size_t r = 0; r < m.rank_peak_bytes.size(); ++r) {
      ranks.push_back({{"rank", r},
                       {"weights_bytes", m.rank_weights_bytes.at(r)},
                       {"cache_bytes", m.rank_cache_bytes.at(r)},
                       {"peak_bytes", m.rank_peak_bytes.at(r)}});
      w += m.rank_weights_bytes.at(r), c += m.rank_cache_bytes.at(r), p += m.rank_peak_bytes.at(r);
    }
    j["ranks"] = ranks;
    j["total"] = {{"weights_bytes", w}, {"cache_bytes", c}, {"peak_bytes", p}};
  }
}

void from_json(const json& j, MemoryResult& m) {
  j.at("source").get_to(m.source);
  j.at("weights_bytes").get_to(m.weights_bytes);
  j.at("cache_bytes").get_to(m.cache_bytes);
  j.at("kv_cache_bytes").get_to(m.kv_cache_bytes);
  j.at("state_bytes").get_to(m.state_bytes);
  j.at("peak_allocated_bytes").get_to(m.peak_allocated_bytes);
  j.at("peak_bytes").get_to(m.peak_bytes);
  j.at("activations_bytes").get_to(m.activations_bytes);
  take(j, "peak_reserved_bytes", m.peak_reserved_bytes);
  take(j, "peak_rss_growth_bytes", m.peak_rss_growth_bytes);
  if (j.contains("ranks")) {
    for (const json& r : j.at("ranks")) {
      m.rank_weights_bytes.push_back(r.at("weights_bytes").get<uint64_t>());
      m.rank_cache_bytes.push_back(r.at("cache_bytes").get<uint64_t>());
      m.rank_peak_bytes.push_back(r.at("peak_bytes").get<uint64_t>());
    }
  }
}

bool Roofline::Decode::operator==(const Decode& o) const {
  return std::tie(bytes_per_step, bytes_per_s, fraction_of_bandwidth, experts_per_moe_layer, experts_source, kv_read) ==
         std::tie(o.bytes_per_step, o.bytes_per_s, o.fraction_of_bandwidth, o.experts_per_moe_layer, o.experts_source,
                  o.kv_read);
}

bool Roofline::operator==(const Roofline& o) const {
  return std::tie(prefill_flops, prefill_flops_per_s, prefill_fraction_of_gemm, decode) ==
         std::tie(o.prefill_flops, o.prefill_flops_per_s, o.prefill_fraction_of_gemm, o.decode);
}

// The decode figures sit beside the prefill ones (flat, as in version 1).
void to_json(json& j, const Roofline& r) {
  j = {{"prefill_flops", r.prefill_flops},
       {"prefill_flops_per_s", r.prefill_flops_per_s},
       {"prefill_fraction_of_gemm", r.prefill_fraction_of_gemm}};
  if (r.decode) {
    j["decode_bytes_per_step"] = r.decode->bytes_per_step;
    j["decode_bytes_per_s"] = r.decode->bytes_per_s;
    j["decode_fraction_of_bandwidth"] = r.decode->fraction_of_bandwidth;
    put(j, "decode_experts_per_moe_layer", r.decode->experts_per_moe_layer);
    if (r.decode->experts_source) j["decode_experts_source"] = to_string(*r.decode->experts_source);
    if (r.decode->kv_read) j["decode_kv_read"] = to_string(*r.decode->kv_read);
  }
}

void from_json(const json& j, Roofline& r) {
  j.at("prefill_flops").get_to(r.prefill_flops);
  j.at("prefill_flops_per_s").get_to(r.prefill_flops_per_s);
  j.at("prefill_fraction_of_gemm").get_to(r.prefill_fraction_of_gemm);
  r.decode.reset();
  if (j.contains("decode_bytes_per_step")) {
    Roofline::Decode d;
    j.at("decode_bytes_per_step").get_to(d.bytes_per_step);
    j.at("decode_bytes_per_s").get_to(d.bytes_per_s);
    j.at("decode_fraction_of_bandwidth").get_to(d.fraction_of_bandwidth);
    take(j, "decode_experts_per_moe_layer", d.experts_per_moe_layer);
    if (j.contains("decode_experts_source")) {
      d.experts_source = parse_experts_source(j.at("decode_experts_source").get<std::string>(),
                                              "roofline.decode_experts_source");
    }
    if (j.contains("decode_kv_read")) {
      d.kv_read = parse_kv_read(j.at("decode_kv_read").get<std::string>(), "roofline.decode_kv_read");
    }
    r.decode = d;
  }
}

// ---- load time, machine load ----

bool LoadTime::operator==(const LoadTime& o) const {
  return std::tie(seconds, weights_bytes, bytes_per_s) == std::tie(o.seconds, o.weights_bytes, o.bytes_per_s);
}

void to_json(json& j, const LoadTime& t) {
  j = {{"seconds", t.seconds}, {"weights_bytes", t.weights_bytes}, {"bytes_per_s", t.bytes_per_s}};
}

void from_json(const json& j, LoadTime& t) {
  j.at("seconds").get_to(t.seconds);
  j.at("weights_bytes").get_to(t.weights_bytes);
  j.at("bytes_per_s").get_to(t.bytes_per_s);
}

void to_json(json& j, const LoadSample& s) { j = {{"load1", s.load1}, {"others_runnable", s.others_runnable}}; }

void from_json(const json& j, LoadSample& s) {
  j.at("load1").get_to(s.load1);
  j.at("others_runnable").get_to(s.others_runnable);
}

bool MachineLoad::operator==(const MachineLoad& o) const {
  return std::tie(before, after, cores, threads, busy) == std::tie(o.before, o.after, o.cores, o.threads, o.busy);
}

void to_json(json& j, const MachineLoad& m) {
  j = {{"cores", m.cores}, {"threads", m.threads}, {"busy", m.busy}};
  put(j, "before", m.before);
  put(j, "after", m.after);
}

void from_json(const json& j, MachineLoad& m) {
  j.at("cores").get_to(m.cores);
  j.at("threads").get_to(m.threads);
  j.at("busy").get_to(m.busy);
  take(j, "before", m.before);
  take(j, "after", m.after);
}

// ---- Point ----

bool ModelInfo::operator==(const ModelInfo& o) const {
  return std::tie(model_path, weights_source, architecture, family, params_total, params_active,
                  max_position_embeddings, load) == std::tie(o.model_path, o.weights_source, o.architecture,
                                                             o.family, o.params_total, o.params_active,
                                                             o.max_position_embeddings, o.load);
}

bool Point::operator==(const Point& o) const {
  return std::tie(key, status, error, loaded, beyond_trained_context, speed, harness_overhead_fraction, roofline,
                  memory, energy, machine_load, elapsed_s) ==
         std::tie(o.key, o.status, o.error, o.loaded, o.beyond_trained_context, o.speed, o.harness_overhead_fraction,
                  o.roofline, o.memory, o.energy, o.machine_load, o.elapsed_s);
}

void to_json(json& j, const Point& p) {
  j = {{"key", p.key}, {"status", to_string(p.status)}};
  if (p.status != PointStatus::Ok) j["error"] = p.error;
  if (p.loaded) {
    const ModelInfo& m = *p.loaded;
    j["model_path"] = m.model_path;
    j["weights_source"] = m.weights_source;
    j["architecture"] = m.architecture;
    j["family"] = m.family;
    j["params_total"] = m.params_total;
    j["params_active"] = m.params_active;
    j["max_position_embeddings"] = m.max_position_embeddings ? json(*m.max_position_embeddings) : json(nullptr);
    put(j, "load", m.load);
  }
  if (p.beyond_trained_context) j["beyond_trained_context"] = true;
  put(j, "speed", p.speed);
  put(j, "harness_overhead_fraction", p.harness_overhead_fraction);
  put(j, "roofline", p.roofline);
  put(j, "memory", p.memory);
  put(j, "energy", p.energy);
  if (p.machine_load) {
    j["machine_load"] = *p.machine_load;
    if (p.machine_load->busy) j["busy"] = true;  // the flag a reader (or jq) looks for
  }
  j["elapsed_s"] = p.elapsed_s;
}

void from_json(const json& j, Point& p) {
  j.at("key").get_to(p.key);
  p.status = parse_status(j.at("status").get<std::string>(), "status");
  p.error = j.value("error", "");
  p.loaded.reset();
  if (j.contains("model_path")) {
    ModelInfo m;
    j.at("model_path").get_to(m.model_path);
    j.at("weights_source").get_to(m.weights_source);
    j.at("architecture").get_to(m.architecture);
    j.at("family").get_to(m.family);
    j.at("params_total").get_to(m.params_total);
    j.at("params_active").get_to(m.params_active);
    take(j, "max_position_embeddings", m.max_position_embeddings);
    take(j, "load", m.load);
    p.loaded = m;
  }
  p.beyond_trained_context = j.value("beyond_trained_context", false);
  take(j, "speed", p.speed);
  take(j, "harness_overhead_fraction", p.harness_overhead_fraction);
  take(j, "roofline", p.roofline);
  take(j, "memory", p.memory);
  take(j, "energy", p.energy);
  take(j, "machine_load", p.machine_load);
  p.elapsed_s = j.value("elapsed_s", 0.0);
}

}  // namespace effarch::bench
