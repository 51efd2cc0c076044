// effarch profile: one decode step's time per op kind, through libtorch's profiler (Kineto).
// See effarch/bench/profile.h and docs/kernels.md.

#include "effarch/bench/profile.h"

#include <algorithm>
#include <cstdlib>
#include <cctype>
#include <filesystem>
#include <map>
#include <set>
#include <unordered_map>

#include <ATen/ATen.h>
#include <ATen/record_function.h>
#include <fmt/format.h>
#include <kineto/ActivityType.h>
#include <torch/csrc/autograd/profiler_kineto.h>

#include "device_probe.h"
#include "effarch/common/device.h"
#include "effarch/common/dtype.h"
#include "effarch/common/error.h"
#include "effarch/model/cache.h"
#include "effarch/model/catalog.h"
#include "effarch/ops/attention.h"

namespace effarch::bench {

using nlohmann::json;

const char* to_string(OpKind kind) {
  switch (kind) {
    case OpKind::Gemm: return "gemm";
    case OpKind::Scan: return "scan";
    case OpKind::Conv: return "conv";
    case OpKind::Norm: return "norm";
    case OpKind::Attention: return "attention";
    case OpKind::Elementwise: return "elementwise";
    case OpKind::Copy: return "copy";
    case OpKind::Other: return "other";
  }
  return "?";
}

const std::vector<OpKind>& all_op_kinds() {
  static const std::vector<OpKind> all{OpKind::Gemm,      OpKind::Scan,        OpKind::Conv, OpKind::Norm,
                                       OpKind::Attention, OpKind::Elementwise, OpKind::Copy, OpKind::Other};
  return all;
}

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool contains_any(const std::string& s, std::initializer_list<const char*> needles) {
  for (const char* n : needles) {
    if (s.find(n) != std::string::npos) return true;
  }
  return false;
}

// ATen ops by exact name (after "aten::"): substrings would confuse aten::add with aten::addmm.
const std::unordered_map<std::string, OpKind>& aten_kinds() {
  static const std::unordered_map<std::string, OpKind> table = [] {
    std::unordered_map<std::string, OpKind> t;
    for (const char* n : {"mm", "addmm", "bmm", "baddbmm", "matmul", "linear", "mv", "addmv", "dot", "vdot", "einsum",
                          "_int_mm", "_weight_int8pack_mm", "_weight_int4pack_mm", "_scaled_mm", "addbmm", "tensordot",
                          "_addmm_activation", "mkldnn_linear", "mkldnn_rnn_layer"}) {
      t[n] = OpKind::Gemm;
    }
    for (const char* n : {"conv1d", "conv2d", "convolution", "_convolution", "cudnn_convolution",
                          "mkldnn_convolution", "_conv_depthwise2d", "_nnpack_spatial_convolution",
                          "slow_conv_dilated2d", "thnn_conv2d", "_slow_conv2d_forward"}) {
      t[n] = OpKind::Conv;
    }
    for (const char* n : {"layer_norm", "native_layer_norm", "rms_norm", "_fused_rms_norm", "group_norm",
                          "native_group_norm", "batch_norm", "native_batch_norm", "_batch_norm_impl_index"}) {
      t[n] = OpKind::Norm;
    }
    for (const char* n : {"scaled_dot_product_attention", "_scaled_dot_product_flash_attention",
                          "_scaled_dot_product_efficient_attention", "_scaled_dot_product_cudnn_attention",
                          "_scaled_dot_product_flash_attention_for_cpu", "_flash_attention_forward",
                          "_efficient_attention_forward", "_scaled_dot_product_attention_math",
                          "_fused_sdp_choice"}) {
      t[n] = OpKind::Attention;
    }
    for (const char* n : {"copy_", "to", "_to_copy", "contiguous", "clone", "cat", "stack", "index_copy",
                          "index_copy_", "index_put_", "_index_put_impl_", "slice_scatter", "select_scatter",
                          "fill_", "zero_", "zeros", "zeros_like", "ones", "full", "empty_like", "copy",
                          "_copy_from", "_copy_from_and_resize", "masked_scatter_", "roll", "repeat",
                          "repeat_interleave", "expand_as", "constant_pad_nd", "pad", "flip"}) {
      t[n] = OpKind::Copy;
    }
    for (const char* n : {"add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "exp", "exp_", "log", "neg",
                          "pow", "rsqrt", "sqrt", "silu", "silu_", "gelu", "gelu_", "relu", "relu_", "sigmoid",
                          "tanh", "softplus", "where", "clamp", "clamp_", "clamp_min", "clamp_max", "softmax",
                          "_softmax", "log_softmax", "_log_softmax", "argmax", "max", "min", "sum", "mean", "topk",
                          "sort", "cumsum", "cumsum_", "embedding", "index_select", "index", "gather", "scatter",
                          "masked_fill", "masked_fill_", "ne", "eq", "lt", "le", "gt", "ge", "abs", "reciprocal",
                          "square", "cos", "sin", "float_power", "lerp", "addcmul", "addcdiv", "rsub",
                          "logsumexp", "amax", "triu", "tril", "arange", "randint", "bitwise_and", "logical_and",
                          "logical_not", "nan_to_num", "_unique2", "exp2", "erf", "one_hot"}) {
      t[n] = OpKind::Elementwise;
    }
    return t;
  }();
  return table;
}

// effarch's own op scopes (effarch::<op> in src/ops), by the op's name.
OpKind effarch_kind(const std::string& op) {
  if (contains_any(op, {"scan", "state_update"})) return OpKind::Scan;
  if (contains_any(op, {"conv"})) return OpKind::Conv;
  if (contains_any(op, {"norm"})) return OpKind::Norm;
  if (contains_any(op, {"attention"})) return OpKind::Attention;
  if (contains_any(op, {"linear", "gemv", "gemm", "moe_dispatch"})) return OpKind::Gemm;
  if (contains_any(op, {"activation"})) return OpKind::Elementwise;  // the fused MLP activation
  if (contains_any(op, {"rope"})) return OpKind::Elementwise;  // RoPE with the KV-cache write (rope_cache_write)
  return OpKind::Other;
}

// GPU kernels and anything else without a namespace: ordered substring rules, the specific first.
OpKind kernel_kind(const std::string& n) {
  if (contains_any(n, {"flash", "fmha", "attention", "attn_", "_attn"})) return OpKind::Attention;
  if (contains_any(n, {"selective_scan", "selective_state_update", "ssd_", "chunk_scan", "chunk_state",
                       "state_passing", "state_update", "ssm_"})) {
    return OpKind::Scan;
  }
  if (contains_any(n, {"causal_conv1d", "conv1d", "conv_depthwise", "convolution", "depthwise", "implicit_gemm_conv",
                       "conv2d", "cudnn::conv"})) {
    return OpKind::Conv;
  }
  if (contains_any(n, {"rms_norm", "rmsnorm", "layer_norm", "layernorm", "groupnorm", "group_norm",
                       "rowwisemoments", "norm_kernel", "add_norm"})) {
    return OpKind::Norm;
  }
  // Every kernel of the MoE dispatch (kernels/moe: router, permute, the expert GEMVs, the one-token
  // launches, combine) counts as its scope does (effarch::moe_dispatch: gemm), also where no scope
  // links it (a graph replay).
  if (contains_any(n, {"gemm", "gemv", "cublas", "cutlass", "xmma", "s16816", "s1688", "h16816", "splitkreduce",
                       "dot_kernel", "nvjet", "matmul", "_mma_", "wgmma", "effarch::kernels::moe_", "moe_router",
                       "moe_route_tokens", "moe_permute", "moe_token_down", "moe_combine"})) {
    return OpKind::Gemm;
  }
  if (contains_any(n, {"memcpy", "memset", "copy", "catarraybatched", "cat_batched", "fill_kernel", "index_put",
                       "indexput"})) {
    return OpKind::Copy;
  }
  if (contains_any(n, {"elementwise", "vectorized", "unrolled", "reduce_kernel", "reduce", "softmax", "index",
                       "activation_kernel", "activation_vector_kernel", "rope_cache",
                       "embedding", "argmax", "cumsum", "scan_kernel", "sort", "topk", "gather", "scatter"})) {
    return OpKind::Elementwise;
  }
  return OpKind::Other;
}

}  // namespace

OpKind classify_event(std::string_view name) {
  const std::string n = lower(name);
  // effarch's op scopes are effarch::<op>; its kernels effarch::kernels::..., which the profiler
  // names without a return type where the kernel is not a template (moe_router_kernel(...)).
  if (n.rfind("effarch::", 0) == 0 && n.rfind("effarch::kernels::", 0) != 0) return effarch_kind(n.substr(9));
  if (n.rfind("aten::", 0) == 0) {
    const auto& t = aten_kinds();
    const auto it = t.find(n.substr(6));
    if (it != t.end()) return it->second;
    // An ATen op not in the table: its name's hints, else an elementwise-style op.
    const OpKind k = kernel_kind(n.substr(6));
    return k == OpKind::Other ? OpKind::Other : k;
  }
  return kernel_kind(n);
}

namespace {

struct Totals {
  std::map<OpKind, double> ns;
  std::map<OpKind, int64_t> count;
  std::map<std::string, std::tuple<double, int64_t, OpKind>> by_name;  // ns, calls, kind
  void add(OpKind k, const std::string& name, double dur) {
    ns[k] += dur;
    count[k] += 1;
    auto& [t, c, kind] = by_name[name];
    t += dur;
    c += 1;
    kind = k;
  }
};

json kinds_json(const Totals& t, double step_ns, int steps, const std::string& rest_name, double rest_ns) {
  json kinds = json::array();
  const double s = static_cast<double>(steps);
  for (OpKind k : all_op_kinds()) {
    const double ns = t.ns.count(k) ? t.ns.at(k) : 0.0;
    const int64_t c = t.count.count(k) ? t.count.at(k) : 0;
    kinds.push_back({{"kind", to_string(k)},
                     {"seconds_per_step", ns / s / 1e9},
                     {"fraction_of_step", step_ns > 0 ? ns / step_ns : 0.0},
                     {"events_per_step", static_cast<double>(c) / s}});
  }
  kinds.push_back({{"kind", rest_name},
                   {"seconds_per_step", rest_ns / s / 1e9},
                   {"fraction_of_step", step_ns > 0 ? rest_ns / step_ns : 0.0},
                   {"events_per_step", 0.0}});
  return kinds;
}

json top_json(const Totals& t, int steps, size_t n) {
  std::vector<std::pair<std::string, std::tuple<double, int64_t, OpKind>>> v(t.by_name.begin(), t.by_name.end());
  std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return std::get<0>(a.second) > std::get<0>(b.second); });
  json out = json::array();
  for (size_t i = 0; i < v.size() && i < n; ++i) {
    const auto& [name, rec] = v[i];
    out.push_back({{"name", name},
                   {"kind", to_string(std::get<2>(rec))},
                   {"seconds_per_step", std::get<0>(rec) / static_cast<double>(steps) / 1e9},
                   {"calls_per_step", static_cast<double>(std::get<1>(rec)) / static_cast<double>(steps)}});
  }
  return out;
}

}  // namespace

ProfilePhase parse_profile_phase(const std::string& value, const std::string& option) {
  if (value == "decode") return ProfilePhase::Decode;
  if (value == "prefill") return ProfilePhase::Prefill;
  throw UsageError(fmt::format("{}: unknown phase '{}' (decode or prefill)", option, value));
}

const char* to_string(ProfilePhase phase) { return phase == ProfilePhase::Prefill ? "prefill" : "decode"; }

json attribute_profile(const std::vector<ProfileEvent>& events, int steps, std::string_view scope) {
  if (steps < 1) throw UsageError("profile: at least one step");
  // The step scopes: their threads and windows.
  std::map<uint64_t, std::vector<std::pair<int64_t, int64_t>>> windows;
  double step_ns = 0;
  int markers = 0;
  for (const auto& e : events) {
    if (!e.on_device && e.name == scope) {
      windows[e.thread].emplace_back(e.start_ns, e.end_ns);
      step_ns += static_cast<double>(e.end_ns - e.start_ns);
      ++markers;
    }
  }
  if (markers == 0) throw Error(fmt::format("profile: the profiler recorded no step (no {} scope)", scope));
  // Host events of the step threads, the scopes left out: each one's top-level ancestor by nesting.
  std::vector<size_t> host;
  for (size_t i = 0; i < events.size(); ++i) {
    const auto& e = events[i];
    if (!e.on_device && e.name != scope && windows.count(e.thread)) host.push_back(i);
  }
  std::sort(host.begin(), host.end(), [&](size_t a, size_t b) {
    const auto& x = events[a];
    const auto& y = events[b];
    if (x.thread != y.thread) return x.thread < y.thread;
    if (x.start_ns != y.start_ns) return x.start_ns < y.start_ns;
    return x.end_ns > y.end_ns;  // the enclosing one first
  });
  std::unordered_map<size_t, size_t> root;
  std::vector<size_t> stack;
  uint64_t thread = 0;
  for (size_t i : host) {
    const auto& e = events[i];
    if (stack.empty() || e.thread != thread) {
      stack.clear();
      thread = e.thread;
    }
    while (!stack.empty() && events[stack.back()].end_ns <= e.start_ns) stack.pop_back();
    root[i] = stack.empty() ? i : root[stack.back()];
    stack.push_back(i);
  }
  auto in_step = [&](const ProfileEvent& e) {
    for (const auto& [s, t] : windows.at(e.thread)) {
      if (e.start_ns >= s && e.end_ns <= t) return true;
    }
    return false;
  };
  Totals host_totals;
  double host_ops_ns = 0;
  std::unordered_map<uint64_t, size_t> corr_root;  // a host op's correlation -> its top-level op
  for (size_t i : host) {
    const auto& e = events[i];
    if (e.correlation != 0) corr_root[e.correlation] = root[i];
    if (root[i] != i || !in_step(e)) continue;
    const double d = static_cast<double>(e.end_ns - e.start_ns);
    host_totals.add(classify_event(e.name), e.name, d);
    host_ops_ns += d;
  }
  const double outside = std::max(0.0, step_ns - host_ops_ns);
  json out{{"steps", steps}, {"step_s", step_ns / markers / 1e9}};
  out["host"] = {{"kinds", kinds_json(host_totals, step_ns, markers, "outside ops", outside)},
                 {"ops_seconds_per_step", host_ops_ns / markers / 1e9}};
  // Device events: the launching top-level op's kind, else the kernel's own name.
  Totals dev;
  std::vector<std::pair<int64_t, int64_t>> intervals;
  for (const auto& e : events) {
    if (!e.on_device) continue;
    OpKind k = OpKind::Other;
    const auto it = e.linked != 0 ? corr_root.find(e.linked) : corr_root.end();
    if (it != corr_root.end()) k = classify_event(events[it->second].name);
    if (k == OpKind::Other) k = classify_event(e.name);
    dev.add(k, e.name, static_cast<double>(e.end_ns - e.start_ns));
    intervals.emplace_back(e.start_ns, e.end_ns);
  }
  const bool device = !intervals.empty();
  if (device) {
    std::sort(intervals.begin(), intervals.end());
    double busy = 0;
    int64_t cur_s = intervals[0].first, cur_e = intervals[0].second;
    for (const auto& [s, e] : intervals) {
      if (s > cur_e) {
        busy += static_cast<double>(cur_e - cur_s);
        cur_s = s;
        cur_e = e;
      } else {
        cur_e = std::max(cur_e, e);
      }
    }
    busy += static_cast<double>(cur_e - cur_s);
    const double idle = std::max(0.0, step_ns - busy);
    out["device"] = {{"kinds", kinds_json(dev, step_ns, markers, "idle", idle)},
                     {"busy_seconds_per_step", busy / markers / 1e9},
                     {"kernel_seconds_per_step", [&] {
                        double s = 0;
                        for (const auto& [k, ns] : dev.ns) s += ns;
                        return s / markers / 1e9;
                      }()}};
  }
  out["time_source"] = device ? "device" : "host";
  out["kinds"] = device ? out["device"]["kinds"] : out["host"]["kinds"];
  out["top_events"] = top_json(device ? dev : host_totals, markers, 15);
  return out;
}

json profile_model(const ProfileSpec& spec) {
  // The model and the numbers first: a usage error is reported as such on a machine without the
  // device too (tests/cli/gpu_session.sh rehearses GPU command lines on one).
  if (spec.batch < 1) throw UsageError("--batch must be at least 1");
  if (spec.context < 1) throw UsageError("--context must be at least 1");
  if (spec.steps < 1) throw UsageError("--steps must be at least 1");
  model::check_sequence_tokens(spec.context, "--context");
  model::check_sequence_tokens(spec.steps, "--steps");
  if (spec.warmup < 0) throw UsageError("--warmup must be at least 0");
  const model::ModelSource source = model::resolve_model(spec.model);
  const at::Device device = parse_device(spec.device, "--device");
  const at::ScalarType dtype = parse_run_dtype(spec.dtype, device, "--dtype");
  const bool prefill = spec.phase == ProfilePhase::Prefill;
  model::ModelOptions opt;
  opt.device = device;
  opt.dtype = dtype;
  opt.seed = spec.seed;
  opt.attention = ops::parse_attention_impl(spec.attention, "--attention");
  // A prefill never runs in a graph: its profile records the decode mode as eager.
  opt.decode = prefill ? model::DecodeMode::Eager : model::resolve_decode_mode(source.config, device, spec.cuda_graphs);
  opt.backend = spec.backend;
  opt.fuse_parallel_block = spec.fuse_parallel_block;
  opt.fuse_norm_prologue = spec.fuse_norm_prologue;
  opt.selective_scan = spec.selective_scan;
  opt.allow_beyond_context = true;
  // A CUDA graph is captured on an early step: that happens before the profiler starts, whatever
  // --warmup says (the profiler does not record inside a capture). A prefill's first run pays the
  // allocator's and the libraries' set-up: at least one runs before the profiled ones.
  const int warmup = prefill ? std::max(spec.warmup, 1)
                     : opt.decode == model::DecodeMode::CudaGraph ? std::max(spec.warmup, 2)
                                                                   : spec.warmup;
  auto m = model::Model::load(source, opt);
  m->allocate_cache(spec.batch, spec.context + (prefill ? 1 : warmup + spec.steps + 1));
  at::Generator gen = make_generator(at::Device(at::kCPU), spec.seed);
  const at::Tensor ids = at::randint(0, source.config.vocab_size, {spec.batch, spec.context}, gen, at::kLong).to(device);
  // One profiled (or warm-up) step: a decode step, or a whole prefill; each ends with its token
  // on the host, as bench's do.
  at::Tensor tok;
  const auto step = [&] {
    tok = prefill ? m->prefill_last(ids).argmax(-1) : m->decode(tok).argmax(-1);
    (void)tok.cpu();
  };
  if (!prefill) tok = m->prefill_last(ids).argmax(-1);
  for (int i = 0; i < warmup; ++i) step();
  detail::synchronize(device);

  using torch::profiler::impl::ActivityType;
  using torch::profiler::impl::ProfilerConfig;
  using torch::profiler::impl::ProfilerState;
  const ProfilerConfig config(ProfilerState::KINETO);
  std::set<ActivityType> activities{ActivityType::CPU};
  if (device.is_cuda()) activities.insert(ActivityType::CUDA);
  // A CPU profile asks nothing of a GPU, yet libkineto (built with CUPTI) looks for one when it
  // starts and, on a machine without an NVIDIA driver, logs "gpuGetDeviceCount failed with code
  // 35" as an ERROR: noise. Its own switch, KINETO_LOG_LEVEL (read once, as the profiler first
  // starts, which is here), quiets it for a CPU profile; one the user set is left as it is
  // (KINETO_LOG_LEVEL=4 shows kineto's errors). A trace kineto fails to write is caught below.
  if (device.is_cpu()) setenv("KINETO_LOG_LEVEL", "5", /*overwrite=*/0);
  torch::autograd::profiler::prepareProfiler(config, activities);
  torch::autograd::profiler::enableProfiler(config, activities);
  std::unique_ptr<torch::autograd::profiler::ProfilerResult> result;
  const std::string_view scope = prefill ? kPrefillScope : kDecodeStepScope;
  const std::string scope_name(scope);
  try {
    for (int i = 0; i < spec.steps; ++i) {
      RECORD_USER_SCOPE(scope_name.c_str());
      step();
    }
  } catch (...) {
    (void)torch::autograd::profiler::disableProfiler();
    throw;
  }
  result = torch::autograd::profiler::disableProfiler();
  if (!spec.trace.empty()) {
    std::error_code ec;
    std::filesystem::remove(spec.trace, ec);  // so that an earlier run's trace cannot pass for this one
    result->save(spec.trace);                 // the profiler logs a failed write and returns: look for the file
    if (!std::filesystem::is_regular_file(spec.trace, ec) || std::filesystem::file_size(spec.trace, ec) == 0) {
      throw Error(fmt::format("--trace: the profiler did not write {}", spec.trace));
    }
  }

  std::vector<ProfileEvent> events;
  for (const auto& k : result->events()) {
    const auto type = static_cast<libkineto::ActivityType>(k.activityType());
    ProfileEvent e;
    if (type == libkineto::ActivityType::CONCURRENT_KERNEL || type == libkineto::ActivityType::GPU_MEMCPY ||
        type == libkineto::ActivityType::GPU_MEMSET) {
      e.on_device = true;
      e.linked = k.linkedCorrelationId();
    } else if (type == libkineto::ActivityType::CPU_OP || type == libkineto::ActivityType::USER_ANNOTATION) {
      e.correlation = k.correlationId();
    } else {
      continue;  // runtime and driver calls, GPU-side copies of the scopes: inside the ops counted
    }
    e.name = k.name();
    e.thread = k.startThreadId();
    e.start_ns = static_cast<int64_t>(k.startNs());
    e.end_ns = static_cast<int64_t>(k.endNs());
    events.push_back(std::move(e));
  }
  json out = attribute_profile(events, spec.steps, scope);
  out["model"] = spec.model;
  out["architecture"] = source.config.architecture;
  out["settings"] = {{"phase", to_string(spec.phase)},
                     {"device", device.str()},
                     {"dtype", float_dtype_name(dtype)},
                     {"batch", spec.batch},
                     {"context", spec.context},
                     {"steps", spec.steps},
                     {"warmup", warmup},
                     {"cuda_graphs", model::to_string(opt.decode)},
                     {"backend", ops::backend_name(spec.backend)},
                     {"attention", spec.attention},
                     {"programmatic_launch", ops::programmatic_launch_record(device)},
                     {"seed", spec.seed}};
  out["implementations"] = m->implementations();
  // As bench does (a point's beyond_trained_context), a run past the trained context is measured,
  // not refused, and said: the positions the model processed, the prefill's and each decode step's.
  const auto max_positions = source.config.max_position_embeddings;
  out["max_position_embeddings"] = max_positions ? json(*max_positions) : json(nullptr);
  const int64_t positions = spec.context + (prefill ? 0 : warmup + spec.steps);
  if (max_positions && positions > *max_positions) {
    out["beyond_trained_context"] = true;
    out["positions"] = positions;
  }
  out["events_recorded"] = events.size();
  if (!spec.trace.empty()) out["trace"] = spec.trace;
  return out;
}

std::string format_profile_table(const json& p) {
  const json& s = p.at("settings");
  const bool device = p.at("time_source") == "device";
  // A profile written before profiles had a phase is one of decode steps.
  const bool prefill = s.value("phase", std::string("decode")) == "prefill";
  std::string out =
      prefill ? fmt::format("{}: one prefill of {} tokens at batch {} (to its first token on the host), {} {}: {:.3f} ms "
                            "per prefill (mean of the {} profiled, profiler overhead included)\n",
                            p.at("model").get<std::string>(), s.at("context").get<int64_t>(), s.at("batch").get<int64_t>(),
                            s.at("device").get<std::string>(), s.at("dtype").get<std::string>(),
                            p.at("step_s").get<double>() * 1e3, p.at("steps").get<int>())
              : fmt::format("{}: one decode step at batch {} after {} tokens, {} {}, CUDA graphs {}: {:.3f} ms per step "
                            "(mean of the {} profiled, profiler overhead included)\n",
                            p.at("model").get<std::string>(), s.at("batch").get<int64_t>(),
                            s.at("context").get<int64_t>(), s.at("device").get<std::string>(),
                            s.at("dtype").get<std::string>(), s.at("cuda_graphs").get<std::string>(),
                            p.at("step_s").get<double>() * 1e3, p.at("steps").get<int>());
  out += device ? "Time on the GPU per kind (kernels by the op that launched them, else by their name):\n\n"
                : "Host time per kind (the top-level ops the model called):\n\n";
  std::vector<std::vector<std::string>> rows;
  size_t w0 = 4, w1 = prefill ? 14 : 11, w2 = prefill ? 10 : 9, w3 = 10;
  for (const auto& k : p.at("kinds")) {
    rows.push_back({k.at("kind").get<std::string>(), fmt::format("{:.3f} ms", k.at("seconds_per_step").get<double>() * 1e3),
                    fmt::format("{:.1f}%", 100 * k.at("fraction_of_step").get<double>()),
                    fmt::format("{:.1f}", k.at("events_per_step").get<double>())});
    w0 = std::max(w0, rows.back()[0].size());
    w1 = std::max(w1, rows.back()[1].size());
    w2 = std::max(w2, rows.back()[2].size());
    w3 = std::max(w3, rows.back()[3].size());
  }
  out += fmt::format("| {:<{}} | {:>{}} | {:>{}} | {:>{}} |\n", "kind", w0, prefill ? "time / prefill" : "time / step",
                     w1, prefill ? "of prefill" : "of step", w2, "events", w3);
  out += fmt::format("|{}|{}|{}|{}|\n", std::string(w0 + 2, '-'), std::string(w1 + 2, '-'), std::string(w2 + 2, '-'),
                     std::string(w3 + 2, '-'));
  for (const auto& r : rows) {
    out += fmt::format("| {:<{}} | {:>{}} | {:>{}} | {:>{}} |\n", r[0], w0, r[1], w1, r[2], w2, r[3], w3);
  }
  out += "\nTop events:\n";
  for (const auto& e : p.at("top_events")) {
    std::string name = e.at("name").get<std::string>();
    if (name.size() > 90) name = name.substr(0, 87) + "...";
    out += fmt::format("  {:>9.3f} ms  {:>6.1f} calls  {:<11}  {}\n", e.at("seconds_per_step").get<double>() * 1e3,
                       e.at("calls_per_step").get<double>(), e.at("kind").get<std::string>(), name);
  }
  if (p.value("beyond_trained_context", false)) {
    out += fmt::format("\nnote: {} positions ({} of context{}) run past {}'s max_position_embeddings ({}): the "
                       "time is measured all the same, but the model was not trained that far (\"beyond_trained_"
                       "context\": true in the JSON)\n",
                       p.at("positions").get<int64_t>(), s.at("context").get<int64_t>(),
                       prefill ? "" : fmt::format(" + {} warm-up and {} profiled decode steps",
                                                  s.at("warmup").get<int64_t>(), s.at("steps").get<int64_t>()),
                       p.at("model").get<std::string>(), p.at("max_position_embeddings").get<int64_t>());
  }
  return out;
}

}  // namespace effarch::bench
