#pragma once
// The typed results of `effarch bench`: a point's key (what identifies it across files), its
// status, and its speed, memory and roofline figures, each with nlohmann's to_json / from_json.
// Field names and meanings: docs/bench.md. The JSON of a point is exactly what these write.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "effarch/bench/energy.h"  // EnergyResult
#include "effarch/model/model.h"  // DecodeMode
#include "effarch/ops/backend.h"

namespace effarch::bench {

// The current results schema. 2: the key gained backend, implementations and weights; a point's
// checkpoint/random field is `weights_source` (it was `weights`). Version 1 files are converted
// on read (read_document).
inline constexpr int kSchemaVersion = 2;

// ---- enums, each parsed in one place; `where` names the option or file in the UsageError ----

enum class PointStatus { Ok, Oom, Error };
const char* to_string(PointStatus status);  // "ok", "oom", "error"
PointStatus parse_status(const std::string& value, const std::string& where);

enum class Mode { Speed, Memory };
const char* to_string(Mode mode);  // "speed", "memory"
Mode parse_mode(const std::string& value, const std::string& where);
// What a sweep measures: --mode speed,memory on the command line, "mode": ["speed"] in a suite.
struct Modes {
  bool speed = true, memory = true;
};
Modes parse_modes(const std::vector<std::string>& values, const std::string& where);
Modes parse_modes(const std::string& comma_list, const std::string& where);
std::vector<std::string> mode_names(const Modes& modes);  // ["speed", "memory"]

// How the MoE roofline knows how many experts a decode step reads.
enum class ExpertsSource { Measured, UniformRoutingEstimate };
const char* to_string(ExpertsSource source);  // "measured", "uniform_routing_estimate"
ExpertsSource parse_experts_source(const std::string& value, const std::string& where);

// What the decode roofline counts of the KV cache per step: the filled prefix (eager attention,
// or the decode attention kernel, which reads the filled length from the device) or the whole
// allocated cache (the static step's reference SDPA, which attends over all of it under a mask).
enum class KvRead { FilledPrefix, Allocated };
const char* to_string(KvRead read);  // "filled_prefix", "allocated"
KvRead parse_kv_read(const std::string& value, const std::string& where);

// ---- results ----

struct Stats {
  double mean = 0, stddev = 0, median = 0, min = 0, max = 0;
  std::vector<double> samples;
  bool operator==(const Stats& o) const;
};
void to_json(nlohmann::json& j, const Stats& s);
void from_json(const nlohmann::json& j, Stats& s);

// The key a point is matched by across files. Its fields are listed here once; everything that
// builds, prints, compares or reads a key goes through this struct.
struct PointKey {
  std::string model;
  std::string dtype;  // the run's dtype name ("bfloat16")
  int64_t batch = 1;
  int64_t prompt_len = 0;
  int64_t gen_tokens = 0;
  std::string device;  // "cpu", "cuda", "cuda:1"
  model::DecodeMode cuda_graphs = model::DecodeMode::Eager;
  ops::Backend backend = ops::Backend::Auto;  // what was asked for
  // What ran: op family -> "cuda" | "cpu" | "reference", for the op families the model uses. Empty means
  // unknown (a version 1 file), which compare matches with any value (matches()).
  std::map<std::string, std::string> implementations;
  std::string weights;  // the weight format ("bfloat16"; "int8" later)
  // Programmatic dependent launch of the decode kernels (--pdl): true only where it ran (a CUDA
  // device). "pdl": "off" | "on" in JSON; a file written before the key had it takes its
  // environment's `programmatic_launch`.
  bool pdl = false;

  // "tiny-llama float32 b1 p64 g16 cpu graphs=off backend=auto weights=float32 ops=reference"
  // (" pdl=on" after graphs= where it ran):
  // the model and shape first, then what ran (ops= only when known: one value when every family
  // agrees, else family:impl pairs).
  std::string str() const;
  // Every field but the model: the side-by-side tables put different models in one row.
  std::string str_without_model() const;
  // The launch setting alone, launch_label's words: how one run's settings are told apart.
  std::string launch_str() const;
  bool operator==(const PointKey& o) const;
  bool operator!=(const PointKey& o) const { return !(*this == o); }
  bool operator<(const PointKey& o) const;
  // Equal, except that an empty (unknown) implementations map matches any: how compare pairs a
  // version 1 baseline with a new point (docs/bench.md, "Gating CI").
  bool matches(const PointKey& o) const;
};
void to_json(nlohmann::json& j, const PointKey& k);
void from_json(const nlohmann::json& j, PointKey& k);

// A launch setting as bench labels it (progress lines, compare of one run's settings):
// "backend=auto graphs=on pdl=off".
std::string launch_label(ops::Backend backend, model::DecodeMode cuda_graphs, bool pdl);

struct DecodeStepStats {
  Stats p50, p90, p99;
  bool operator==(const DecodeStepStats& o) const { return p50 == o.p50 && p90 == o.p90 && p99 == o.p99; }
};
void to_json(nlohmann::json& j, const DecodeStepStats& s);
void from_json(const nlohmann::json& j, DecodeStepStats& s);

// Which SDPA backend the prefill's attention ran (ops::last_prefill_sdpa): models with attention.
struct PrefillAttention {
  std::string sdpa_backend;  // "flash_attention", "efficient_attention", "cudnn_attention", "math"
  bool mask = false;         // a [T, S] mask tensor went in (never for a plain causal prefill)
  bool operator==(const PrefillAttention& o) const { return sdpa_backend == o.sdpa_backend && mask == o.mask; }
};
void to_json(nlohmann::json& j, const PrefillAttention& a);
void from_json(const nlohmann::json& j, PrefillAttention& a);

struct SpeedResult {
  Stats prefill_s, prefill_tokens_per_s, ttft_s;
  std::optional<Stats> decode_tokens_per_s;      // absent when nothing is decoded (gen_tokens 1)
  std::optional<DecodeStepStats> decode_step_s;  // likewise
  std::optional<PrefillAttention> prefill_attention;  // absent without attention layers
  bool operator==(const SpeedResult& o) const;
};
void to_json(nlohmann::json& j, const SpeedResult& s);
void from_json(const nlohmann::json& j, SpeedResult& s);

struct MemoryResult {
  std::string source;  // "cuda_caching_allocator", "cpu_counting_allocator"
  uint64_t weights_bytes = 0, cache_bytes = 0, kv_cache_bytes = 0, state_bytes = 0;
  uint64_t peak_allocated_bytes = 0, peak_bytes = 0, activations_bytes = 0;
  std::optional<uint64_t> peak_reserved_bytes;    // CUDA
  std::optional<uint64_t> peak_rss_growth_bytes;  // CPU
  // A multi-process run (docs/parallel.md): the fields above are rank 0's; these are every rank's
  // weights, cache and peak bytes in rank order (empty for one process), their sums in the JSON's
  // "total".
  std::vector<uint64_t> rank_weights_bytes, rank_cache_bytes, rank_peak_bytes;
  bool operator==(const MemoryResult& o) const;
};
void to_json(nlohmann::json& j, const MemoryResult& m);
void from_json(const nlohmann::json& j, MemoryResult& m);

struct Roofline {
  double prefill_flops = 0, prefill_flops_per_s = 0, prefill_fraction_of_gemm = 0;
  struct Decode {
    double bytes_per_step = 0, bytes_per_s = 0, fraction_of_bandwidth = 0;
    std::optional<double> experts_per_moe_layer;  // MoE models
    std::optional<ExpertsSource> experts_source;  // with it
    std::optional<KvRead> kv_read;                // models with a KV cache
    bool operator==(const Decode& o) const;
  };
  std::optional<Decode> decode;  // absent when nothing is decoded
  bool operator==(const Roofline& o) const;
};
void to_json(nlohmann::json& j, const Roofline& r);
void from_json(const nlohmann::json& j, Roofline& r);

// How long the model took to load: reading the checkpoint (or drawing random weights) and placing
// the weights on the device, the device synchronised after. Written as the point's "load" object.
struct LoadTime {
  double seconds = 0;
  uint64_t weights_bytes = 0;  // the weights as placed on the device
  double bytes_per_s = 0;      // weights_bytes / seconds
  bool operator==(const LoadTime& o) const;
};
void to_json(nlohmann::json& j, const LoadTime& t);
void from_json(const nlohmann::json& j, LoadTime& t);

// What was loaded: written as fields of the point itself.
struct ModelInfo {
  std::string model_path;
  std::string weights_source;  // "checkpoint" or "random"
  std::string architecture, family;
  int64_t params_total = 0, params_active = 0;
  std::optional<int64_t> max_position_embeddings;  // null for models without one (Mamba)
  std::optional<LoadTime> load;                    // absent when the model did not load (or an older file)
  bool operator==(const ModelInfo& o) const;
};

// The machine's load at one moment: /proc/loadavg's 1-minute average and its count of runnable
// scheduling entities (threads) less the one reading it.
struct LoadSample {
  double load1 = 0;
  int64_t others_runnable = 0;
  bool operator==(const LoadSample& o) const { return load1 == o.load1 && others_runnable == o.others_runnable; }
};
void to_json(nlohmann::json& j, const LoadSample& s);
void from_json(const nlohmann::json& j, LoadSample& s);

// The load before and after a point against what the point needed. busy: before or after, other
// runnable threads + the threads the point computes with exceeded the cores it may use, so its
// threads had to share cores with other work (docs/bench.md, "A busy machine"). Only a point with
// timings is flagged: the load does not change what a --mode memory point measures.
struct MachineLoad {
  std::optional<LoadSample> before, after;  // absent where /proc/loadavg cannot be read
  int64_t cores = 0;    // the CPUs this process may run on (sched_getaffinity)
  int64_t threads = 0;  // ATen's intra-op threads on the CPU; 1 (the launching thread) on a GPU
  bool busy = false;
  bool operator==(const MachineLoad& o) const;
};
void to_json(nlohmann::json& j, const MachineLoad& m);
void from_json(const nlohmann::json& j, MachineLoad& m);

// One point of a sweep, as written to the results file and the JSON Lines file.
struct Point {
  PointKey key;
  PointStatus status = PointStatus::Ok;
  std::string error;  // the message of an oom / error point ("" when ok)
  std::optional<ModelInfo> loaded;  // absent when the model could not even be resolved
  bool beyond_trained_context = false;
  std::optional<SpeedResult> speed;
  std::optional<double> harness_overhead_fraction;  // with speed
  std::optional<Roofline> roofline;                 // with speed
  std::optional<MemoryResult> memory;
  std::optional<EnergyResult> energy;       // with speed, where an energy counter is readable
  std::optional<MachineLoad> machine_load;  // absent in older files; "busy": true beside it when flagged
  double elapsed_s = 0;
  bool operator==(const Point& o) const;
};
void to_json(nlohmann::json& j, const Point& p);
void from_json(const nlohmann::json& j, Point& p);

}  // namespace effarch::bench
