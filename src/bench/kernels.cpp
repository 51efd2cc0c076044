// effarch kernels: the timed sweep over the op registry (kernel_cases.cpp), its document and its
// table (effarch/bench/kernels.h, docs/kernels.md).

#include "effarch/bench/kernels.h"

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "call_timer.h"
#include "device_probe.h"
#include "kernel_cases.h"
#include "effarch/bench/bench.h"
#include "effarch/common/device.h"
#include "effarch/common/dtype.h"
#include "effarch/common/error.h"
#include "effarch/common/format.h"
#include "effarch/model/catalog.h"

#ifdef EFFARCH_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>
#endif

namespace effarch::bench {

const char* to_string(KernelModel model) {
  switch (model) {
    case KernelModel::Mamba1: return "mamba1";
    case KernelModel::Mamba2: return "mamba2";
    case KernelModel::Transformer: return "transformer";
    case KernelModel::Moe: return "moe";
  }
  return "?";
}

namespace {

using nlohmann::json;

// The bytes free for a row's tensors: the CUDA device's free memory plus what the caching
// allocator holds unused; on the CPU, MemAvailable.
uint64_t free_bytes(const c10::Device& device) {
#ifdef EFFARCH_WITH_CUDA
  if (device.is_cuda()) {
    c10::cuda::CUDACachingAllocator::emptyCache();
    const c10::cuda::CUDAGuard guard(device.index() < 0 ? c10::cuda::current_device() : device.index());
    size_t free = 0, total = 0;
    if (cudaMemGetInfo(&free, &total) != cudaSuccess) return 0;
    return static_cast<uint64_t>(free);
  }
#endif
  (void)device;
  return detail::available_host_memory();
}

// The samples of `reps` calls after `warmup` untimed ones, and how they were taken: on a GPU the
// queued CUDA events of call_timer.h (the GPU's time, L2 scrubbed; plain events for a call that
// syncs inside), else the steady clock around the call.
CallTimes time_calls(const c10::Device& device, int warmup, int reps, const std::function<void()>& fn,
                     [[maybe_unused]] QueuedCudaTimer* gpu_timer) {
#ifdef EFFARCH_WITH_CUDA
  if (device.is_cuda()) {
    if (gpu_timer == nullptr) throw Error("effarch kernels: a CUDA row without its timer");
    return gpu_timer->time(warmup, reps, fn);
  }
#endif
  for (int i = 0; i < warmup; ++i) fn();
  detail::synchronize(device);
  CallTimes out;
  out.timer = CallTimer::SteadyClock;
  out.seconds.reserve(static_cast<size_t>(reps));
  for (int i = 0; i < reps; ++i) {
    const double t0 = detail::now_s();
    fn();
    detail::synchronize(device);
    out.seconds.push_back(detail::now_s() - t0);
  }
  return out;
}

json row_base(const KernelCase& c, const std::string& model_name, const KernelShape& s, const std::string& impl,
              ops::Backend backend, const c10::Device& device) {
  const KernelBytes b = c.bytes(s);
  return json{{"op", c.op},
              {"family", c.family ? std::string(ops::op_name(*c.family)) : std::string("attention")},
              {"model", model_name},
              {"config_kind", to_string(c.model)},
              {"implementation", impl},
              {"backend", ops::backend_name(backend)},
              {"dtype", float_dtype_name(s.dtype)},
              {"device", device.str()},
              {"batch", s.batch},
              {"length", s.length},
              {"shapes", c.shapes(s)},
              {"bytes", b.total()},
              {"bytes_read", b.read},
              {"bytes_written", b.written},
              {"bytes_formula", c.bytes_formula}};
}

}  // namespace

const std::vector<KernelCase>& kernel_cases() {
  static const std::vector<KernelCase> cases = detail::make_kernel_cases();
  return cases;
}

const KernelCase& find_kernel_case(const std::string& op, const std::string& option) {
  std::vector<std::string> names;
  for (const auto& c : kernel_cases()) {
    if (c.op == op) return c;
    names.push_back(c.op);
  }
  throw UsageError(fmt::format("{}: unknown op '{}' (ops: {})", option, op, fmt::join(names, ", ")));
}

std::vector<std::pair<ops::Backend, std::string>> kernel_implementations(const KernelCase& c,
                                                                         const c10::Device& device,
                                                                         std::optional<at::ScalarType> dtype) {
  if (!c.family) return {{ops::Backend::Auto, c.implementation}};
  std::vector<std::pair<ops::Backend, std::string>> out;
  ops::Backend resolved = ops::resolve_backend(ops::Backend::Auto, *c.family, device);
  if (const auto products = detail::ssd_case_products(c); products && dtype) {
    resolved = ops::ssd_scan_backend(ops::Backend::Auto, *dtype, *products, device);
  }
  if (resolved != ops::Backend::Reference) out.emplace_back(ops::Backend::Auto, std::string(ops::backend_name(resolved)));
  out.emplace_back(ops::Backend::Reference, "reference");
  return out;
}

std::vector<int64_t> default_kernel_lengths(const c10::Device& device) {
  if (device.is_cuda()) return {512, 1024, 2048, 4096, 8192, 16384, 32768, 65536};
  return {512, 1024, 2048, 4096};
}

namespace {

// The cases a sweep runs and, per model option they use, its name and config.
struct KernelPlan {
  std::vector<const KernelCase*> cases;
  std::map<KernelModel, std::pair<std::string, model::ModelConfig>> configs;
};

// The config a case's shapes come from, and the option that names it.
std::pair<std::string, const char*> config_of(const KernelSweep& sweep, KernelModel model) {
  switch (model) {
    case KernelModel::Mamba1: return {sweep.mamba1, "--mamba1"};
    case KernelModel::Mamba2: return {sweep.mamba2, "--mamba2"};
    case KernelModel::Transformer: return {sweep.transformer, "--transformer"};
    case KernelModel::Moe: break;
  }
  return {sweep.moe, "--moe"};
}

KernelPlan plan_kernels(const KernelSweep& sweep) {
  if (sweep.reps < 1) throw UsageError("--reps must be at least 1");
  if (sweep.warmup < 0) throw UsageError("--warmup must be at least 0");
  KernelPlan plan;
  auto& cases = plan.cases;
  auto& configs = plan.configs;
  if (sweep.ops.empty()) {
    for (const auto& c : kernel_cases()) cases.push_back(&c);
  } else {
    if (const auto twice = first_repeat(sweep.ops)) {
      throw UsageError(fmt::format("--ops: '{}' is given twice (each op is a row per shape already)", *twice));
    }
    for (const auto& name : sweep.ops) cases.push_back(&find_kernel_case(name, "--ops"));
  }
  // Each config read once, checked to have what its cases need before anything runs.
  for (const KernelCase* c : cases) {
    if (configs.count(c->model)) continue;
    const auto [name, option] = config_of(sweep, c->model);
    model::ModelConfig cfg;
    try {
      cfg = model::resolve_model(name).config;
    } catch (const UsageError& e) {
      throw UsageError(fmt::format("{}: {}", option, e.what()));
    }
    const bool fits = c->model == KernelModel::Transformer ? cfg.attention.has_value()
                      : c->model == KernelModel::Moe
                          ? cfg.moe.has_value()
                          : cfg.mamba.has_value() && cfg.mamba->version == (c->model == KernelModel::Mamba1 ? 1 : 2);
    if (!fits) {
      throw UsageError(fmt::format("{}: '{}' has no {} layers (op {} needs them)", option, name,
                                   c->model == KernelModel::Transformer ? "attention"
                                   : c->model == KernelModel::Moe       ? "MoE"
                                   : c->model == KernelModel::Mamba1    ? "Mamba-1"
                                                                        : "Mamba-2",
                                   c->op));
    }
    configs.emplace(c->model, std::make_pair(name, std::move(cfg)));
  }
  return plan;
}

}  // namespace

void check_kernel_sweep(const KernelSweep& sweep) { (void)plan_kernels(sweep); }

std::vector<std::string> kernel_sweep_configs(const KernelSweep& sweep) {
  std::set<KernelModel> used;
  for (const auto& c : kernel_cases()) {
    if (sweep.ops.empty() || std::find(sweep.ops.begin(), sweep.ops.end(), c.op) != sweep.ops.end()) used.insert(c.model);
  }
  std::vector<std::string> names;
  for (const KernelModel model : used) names.push_back(config_of(sweep, model).first);  // (the enum's order)
  return names;
}

std::vector<json> run_kernels(const KernelSweep& sweep, const json& environment, const KernelCallbacks& cb) {
  const KernelPlan plan = plan_kernels(sweep);
  const auto& cases = plan.cases;
  const auto& configs = plan.configs;
  const at::Device device = parse_device(sweep.device, "--device");
  const at::ScalarType dtype = parse_run_dtype(sweep.dtype, device, "--dtype");
  const std::vector<int64_t> lengths = sweep.lengths.empty() ? default_kernel_lengths(device) : sweep.lengths;
  const double copy_bw = environment.contains("device")
                             ? environment.at("device").value("copy_bandwidth_bytes_per_s", 0.0)
                             : 0.0;
  const double gemm_rate =
      environment.contains("device") ? environment.at("device").value("gemm_flops_per_s", 0.0) : 0.0;
  const auto options = at::TensorOptions().dtype(dtype).device(device);
  std::optional<detail::CpuCountingScope> counting;  // the CPU allocator's bytes, for --memory-limit
  if (!device.is_cuda()) counting.emplace();
  at::manual_seed(sweep.seed);
  // One GPU timer for the sweep: its scrub buffer and flags are allocated once (call_timer.h).
  QueuedCudaTimer* gpu_timer = nullptr;
#ifdef EFFARCH_WITH_CUDA
  std::optional<QueuedCudaTimer> gpu_timer_storage;
  if (device.is_cuda()) gpu_timer = &gpu_timer_storage.emplace(device);
#endif

  std::vector<json> rows;
  for (const KernelCase* c : cases) {
    const auto& [model_name, cfg] = configs.at(c->model);
    const std::vector<int64_t> lens = c->sweeps_length ? lengths : std::vector<int64_t>{1};
    for (int64_t batch : sweep.batches) {
      for (int64_t len : lens) {
        for (const auto& [backend, impl] : kernel_implementations(*c, device, dtype)) {
          if (cb.stop != nullptr && cb.stop->load()) return rows;
          const KernelShape shape{&cfg, batch, len, dtype};
          json row = row_base(*c, model_name, shape, impl, backend, device);
          if (const auto products = detail::scan_products(*c, shape, impl)) row["products"] = *products;
          if (const auto variant = detail::scan_variant(*c, impl)) row["variant"] = *variant;
          if (const auto pieces = detail::scan_pieces(*c, shape, impl, environment)) row["pieces"] = *pieces;
          if (c->flops) row["flops"] = c->flops(shape);
          const uint64_t need = row["bytes"].get<uint64_t>();
          uint64_t free = free_bytes(device);
          if (free == 0) free = UINT64_MAX;  // unknown: the run itself finds out
          const uint64_t cap = sweep.memory_limit > 0 ? std::min(sweep.memory_limit, free) : free;
          if (need > cap) {
            row["status"] = "skipped";
            row["error"] = fmt::format("inputs and outputs need {}, more than the {} {}", human_bytes(need),
                                       human_bytes(cap),
                                       sweep.memory_limit > 0 && sweep.memory_limit <= free ? "of --memory-limit"
                                                                                            : "free on the device");
          } else {
            try {
              if (sweep.memory_limit > 0) detail::set_memory_limit(device, sweep.memory_limit);
              struct LimitGuard {
                const at::Device& d;
                bool on;
                ~LimitGuard() {
                  if (on) detail::set_memory_limit(d, 0);
                }
              } guard{device, sweep.memory_limit > 0};
              const std::function<void()> call = c->prepare(shape, options, backend);
              const CallTimes t = time_calls(device, sweep.warmup, sweep.reps, call, gpu_timer);
              const Stats st = summarize(t.seconds);
              row["status"] = "ok";
              record_timer(row, t);
#ifdef EFFARCH_WITH_CUDA
              if (gpu_timer != nullptr) row["l2_scrub_bytes"] = gpu_timer->scrub_bytes();
#endif
              row["time_s"] = st;
              const double bps = static_cast<double>(need) / st.median;
              row["bytes_per_s"] = bps;
              row["fraction_of_copy_bandwidth"] = copy_bw > 0 ? bps / copy_bw : 0.0;
              if (c->flops) {
                row["flops_per_s"] = row["flops"].get<double>() / st.median;
                if (gemm_rate > 0) row["fraction_of_gemm"] = row["flops_per_s"].get<double>() / gemm_rate;
              }
            } catch (const std::exception& e) {
              row["status"] = to_string(detail::classify(e));
              row["error"] = error_message(e);
            }
          }
          detail::synchronize(device);
          detail::reset_peaks(device);  // the row's tensors are gone: give the cache back
          rows.push_back(row);
          if (cb.on_row) cb.on_row(row);
        }
      }
    }
  }
  return rows;
}

namespace {

// The fastest ok row of `op` per (batch, length) (length 0 for every length when !by_length).
std::map<std::pair<int64_t, int64_t>, json> fastest(const std::vector<json>& rows, const std::vector<std::string>& ops,
                                                    bool by_length) {
  std::map<std::pair<int64_t, int64_t>, json> best;
  for (const auto& r : rows) {
    if (r.value("status", "") != "ok" || std::find(ops.begin(), ops.end(), r.at("op").get<std::string>()) == ops.end()) {
      continue;
    }
    auto& slot = best[{r.at("batch").get<int64_t>(), by_length ? r.at("length").get<int64_t>() : 0}];
    const double t = r.at("time_s").at("median").get<double>();
    if (slot.is_null() || t < slot.at("time_s").get<double>()) {
      slot = json{{"time_s", t}, {"op", r.at("op")}, {"implementation", r.at("implementation")}, {"model", r.at("model")}};
      if (r.contains("flops_per_s")) slot["flops_per_s"] = r.at("flops_per_s");
    }
  }
  return best;
}

// Per (batch, length) the fastest row of any of `attention_ops` beside each scan's, with
// attention's time over the scan's. Prefill scans are matched at the same length; decode steps
// (same_length false) have one length and stand beside attention over every cache length.
json versus_attention(const std::vector<json>& rows, const std::vector<std::string>& attention_ops,
                      const std::vector<std::string>& scans, bool same_length) {
  const auto attention = fastest(rows, attention_ops, true);
  std::map<std::string, std::map<std::pair<int64_t, int64_t>, json>> scan_best;
  for (const auto& op : scans) scan_best[op] = fastest(rows, {op}, same_length);
  json out = json::array();
  for (const auto& [key, att] : attention) {
    json e{{"batch", key.first}, {"length", key.second}, {"attention", att}};
    bool any = false;
    for (const auto& op : scans) {
      const auto it = scan_best[op].find(same_length ? key : std::make_pair(key.first, int64_t{0}));
      if (it == scan_best[op].end()) continue;
      json sc = it->second;
      sc["attention_over_scan"] = att.at("time_s").get<double>() / sc.at("time_s").get<double>();
      e[op] = sc;
      any = true;
    }
    if (any) out.push_back(e);
  }
  return out;
}

}  // namespace

json scan_vs_attention(const std::vector<json>& rows) {
  return versus_attention(rows, {"attention"}, {"selective_scan", "ssd_chunk_scan"}, true);
}

json decode_vs_attention(const std::vector<json>& rows) {
  // Attention's best: ATen's SDPA (attention_decode) or effarch's kernel (decode_attention),
  // whichever ran faster at that length.
  return versus_attention(rows, {"attention_decode", "decode_attention"}, {"selective_state_update", "ssd_state_update"},
                          false);
}

json moe_vs_dense_gemm(const std::vector<json>& rows) {
  const auto dense = fastest(rows, {"moe_dense_gemm"}, true);
  const std::vector<std::string> ops = {"moe_prefill", "moe_prefill_per_expert"};
  std::map<std::string, std::map<std::pair<int64_t, int64_t>, json>> best;
  for (const auto& op : ops) best[op] = fastest(rows, {op}, true);
  json out = json::array();
  for (const auto& [key, d] : dense) {
    json e{{"batch", key.first}, {"length", key.second}, {"moe_dense_gemm", d}};
    bool any = false;
    for (const auto& op : ops) {
      const auto it = best[op].find(key);
      if (it == best[op].end()) continue;
      json m = it->second;
      m["fraction_of_dense_gemm"] = m.at("flops_per_s").get<double>() / d.at("flops_per_s").get<double>();
      e[op] = m;
      any = true;
    }
    if (any) out.push_back(e);
  }
  return out;
}

json kernel_timing_settings(const c10::Device& device, const json& environment) {
  if (!device.is_cuda()) return json{{"timer", timer_name(CallTimer::SteadyClock)}};
  const uint64_t l2 = environment.contains("device") ? environment.at("device").value("l2_cache_bytes", uint64_t{0}) : 0;
  return json{{"timer", timer_name(CallTimer::CudaEventsQueued)},
              {"fallback_timer", timer_name(CallTimer::CudaEvents)},
              {"blocker_timeout_s", kBlockerTimeoutS},
              {"l2_cache_bytes", l2},
              {"l2_scrub_bytes", l2_scrub_bytes(l2)}};
}

json kernels_document(const KernelSweep& sweep, const json& environment, const std::vector<std::string>& command_line,
                      const std::vector<json>& rows, bool interrupted) {
  const at::Device device = parse_device(sweep.device, "--device");
  json settings{{"device", device.str()},
                {"dtype", float_dtype_name(parse_run_dtype(sweep.dtype, device, "--dtype"))},
                {"batch", sweep.batches},
                {"lengths", sweep.lengths.empty() ? default_kernel_lengths(device) : sweep.lengths},
                {"reps", sweep.reps},
                {"warmup", sweep.warmup},
                {"seed", sweep.seed},
                {"models",
                 {{"mamba1", sweep.mamba1}, {"mamba2", sweep.mamba2}, {"transformer", sweep.transformer}, {"moe", sweep.moe}}}};
  std::vector<std::string> ops = sweep.ops;
  if (ops.empty()) {
    for (const auto& c : kernel_cases()) ops.push_back(c.op);
  }
  settings["ops"] = ops;
  if (sweep.memory_limit > 0) settings["memory_limit_bytes"] = sweep.memory_limit;
  settings["timing"] = kernel_timing_settings(device, environment);
  return json{{"schema", "effarch-kernels"},
              {"schema_version", kKernelsSchemaVersion},
              {"command_line", command_line},
              {"settings", settings},
              {"environment", environment},
              {"rows", rows},
              {"scan_vs_attention", scan_vs_attention(rows)},
              {"decode_vs_attention", decode_vs_attention(rows)},
              {"moe_vs_dense_gemm", moe_vs_dense_gemm(rows)},
              {"interrupted", interrupted}};
}

namespace {

std::string seconds(double s) {
  if (s >= 1) return fmt::format("{:.3f} s", s);
  if (s >= 1e-3) return fmt::format("{:.3f} ms", s * 1e3);
  return fmt::format("{:.1f} us", s * 1e6);
}

std::string table(const std::vector<std::string>& head, const std::vector<std::vector<std::string>>& cells,
                  size_t left_columns) {
  std::vector<size_t> width(head.size());
  for (size_t i = 0; i < head.size(); ++i) {
    width[i] = head[i].size();
    for (const auto& row : cells) width[i] = std::max(width[i], row[i].size());
  }
  std::string out;
  auto line = [&](const std::vector<std::string>& row) {
    std::string s = "|";
    for (size_t i = 0; i < row.size(); ++i) {
      s += i < left_columns ? fmt::format(" {:<{}} |", row[i], width[i]) : fmt::format(" {:>{}} |", row[i], width[i]);
    }
    out += s + "\n";
  };
  line(head);
  std::string sep = "|";
  for (size_t w : width) sep += std::string(w + 2, '-') + "|";
  out += sep + "\n";
  for (const auto& row : cells) line(row);
  return out;
}

}  // namespace

std::string format_kernels_table(const json& doc) {
  const json& env = doc.at("environment");
  const double bw = env.contains("device") ? env.at("device").value("copy_bandwidth_bytes_per_s", 0.0) : 0.0;
  std::string out = fmt::format("{} ({}), {}; measured copy bandwidth {:.1f} GB/s\n\n",
                                env.contains("device") ? env.at("device").value("name", "?") : "?",
                                doc.at("settings").at("device").get<std::string>(),
                                doc.at("settings").at("dtype").get<std::string>(), bw / 1e9);
  std::vector<std::vector<std::string>> cells;
  bool any_flops = false;
  for (const auto& r : doc.at("rows")) any_flops = any_flops || r.contains("flops");
  for (const auto& r : doc.at("rows")) {
    const std::string status = r.at("status").get<std::string>();
    const bool ok = status == "ok";
    std::string impl = r.at("implementation").get<std::string>();
    std::vector<std::string> what;  // what the kernel ran: "cuda (split, 4 pieces)"
    if (r.contains("products")) what.push_back(r.at("products").get<std::string>());
    if (r.contains("variant")) what.push_back(r.at("variant").get<std::string>());
    if (r.contains("pieces")) {
      const int pieces = r.at("pieces").get<int>();
      what.push_back(fmt::format("{} piece{}", pieces, pieces == 1 ? "" : "s"));
    }
    if (!what.empty()) impl += fmt::format(" ({})", fmt::join(what, ", "));
    cells.push_back({r.at("op").get<std::string>(), r.at("model").get<std::string>(), impl, std::to_string(r.at("batch").get<int64_t>()),
                     std::to_string(r.at("length").get<int64_t>()),
                     ok ? seconds(r.at("time_s").at("median").get<double>()) : "-",
                     human_bytes(r.at("bytes").get<uint64_t>()),
                     ok ? fmt::format("{:.1f}", r.at("bytes_per_s").get<double>() / 1e9) : "-",
                     ok ? fmt::format("{:.1f}%", 100 * r.at("fraction_of_copy_bandwidth").get<double>()) : "-",
                     ok ? (r.contains("timer_fallback") ? "ok (plain events: could not queue)" : status)
                        : status + ": " + r.value("error", std::string())});
    if (any_flops) {  // compute-bound ops: their FLOP rate against the measured GEMM rate
      std::string rate = "-";
      if (ok && r.contains("flops_per_s")) {
        rate = fmt::format("{:.3g}", r.at("flops_per_s").get<double>() / 1e12);
        if (r.contains("fraction_of_gemm")) rate += fmt::format(" ({:.1f}%)", 100 * r.at("fraction_of_gemm").get<double>());
      }
      cells.back().insert(cells.back().end() - 1, rate);
    }
  }
  std::vector<std::string> heads = {"op", "model", "impl", "batch", "length", "time (median)", "bytes", "GB/s",
                                    "of copy bw", "status"};
  if (any_flops) heads.insert(heads.end() - 1, "TFLOP/s (of GEMM)");
  out += table(heads, cells, 3);
  auto versus = [&](const json& entries, const std::string& title, const std::vector<std::string>& scans,
                    const std::vector<std::string>& heads) {
    if (entries.empty()) return;
    out += fmt::format("\n{} (fastest implementation of each; attention on {}'s heads):\n\n", title,
                       entries[0].at("attention").at("model").get<std::string>());
    std::vector<std::vector<std::string>> c2;
    for (const auto& e : entries) {
      const json& att = e.at("attention");
      std::vector<std::string> row{std::to_string(e.at("batch").get<int64_t>()),
                                   std::to_string(e.at("length").get<int64_t>()),
                                   fmt::format("{} ({} {})", seconds(att.at("time_s").get<double>()),
                                               att.at("op").get<std::string>(),
                                               att.at("implementation").get<std::string>())};
      for (const auto& op : scans) {
        if (!e.contains(op)) {
          row.insert(row.end(), {"-", "-"});
          continue;
        }
        row.push_back(fmt::format("{} ({})", seconds(e.at(op).at("time_s").get<double>()),
                                  e.at(op).at("implementation").get<std::string>()));
        row.push_back(fmt::format("{:.2f}x", e.at(op).at("attention_over_scan").get<double>()));
      }
      c2.push_back(row);
    }
    out += table(heads, c2, 0);
  };
  versus(doc.at("scan_vs_attention"), "Scan vs attention, prefill of L tokens", {"selective_scan", "ssd_chunk_scan"},
         {"batch", "length", "attention", "selective_scan", "attn / scan", "ssd_chunk_scan", "attn / ssd"});
  if (doc.contains("decode_vs_attention")) {
    versus(doc.at("decode_vs_attention"), "Decode step vs attention over a cache of L tokens",
           {"selective_state_update", "ssd_state_update"},
           {"batch", "length", "attention", "selective_state_update", "attn / step", "ssd_state_update",
            "attn / step"});
  }
  if (doc.contains("moe_vs_dense_gemm") && !doc.at("moe_vs_dense_gemm").empty()) {
    const json& entries = doc.at("moe_vs_dense_gemm");
    out += fmt::format("\nMoE prefill vs one dense GEMM of the routed experts' FLOPs ({}):\n\n",
                       entries[0].at("moe_dense_gemm").at("model").get<std::string>());
    std::vector<std::vector<std::string>> c3;
    for (const auto& e : entries) {
      std::vector<std::string> row{std::to_string(e.at("batch").get<int64_t>()),
                                   std::to_string(e.at("length").get<int64_t>()),
                                   fmt::format("{} ({:.1f} TFLOP/s)", seconds(e.at("moe_dense_gemm").at("time_s").get<double>()),
                                               e.at("moe_dense_gemm").at("flops_per_s").get<double>() / 1e12)};
      for (const char* op : {"moe_prefill", "moe_prefill_per_expert"}) {
        if (!e.contains(op)) {
          row.insert(row.end(), {"-", "-"});
          continue;
        }
        row.push_back(fmt::format("{} ({})", seconds(e.at(op).at("time_s").get<double>()),
                                  e.at(op).at("implementation").get<std::string>()));
        row.push_back(fmt::format("{:.1f}%", 100 * e.at(op).at("fraction_of_dense_gemm").get<double>()));
      }
      c3.push_back(row);
    }
    out += table({"batch", "length", "dense GEMM", "moe_prefill", "of dense", "per_expert", "of dense"}, c3, 0);
  }
  return out;
}

}  // namespace effarch::bench
