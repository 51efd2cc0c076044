#pragma once
// effarch kernels: each op timed alone on shapes from real configs, against the bytes it must move
// and the device's measured copy bandwidth, with attention (SDPA) at the same lengths beside the
// scans. Definitions of every figure: docs/kernels.md.
//
// The ops form a registry (kernel_cases()): one KernelCase per op says where its shapes come from,
// what it must move and how to call it. A new kernel is one more case there.

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>
#include <nlohmann/json.hpp>

#include "effarch/model/config.h"
#include "effarch/ops/backend.h"

namespace effarch::bench {

// Which config a case reads its shapes from (--mamba1, --mamba2, --transformer, --moe).
enum class KernelModel { Mamba1, Mamba2, Transformer, Moe };
const char* to_string(KernelModel model);  // "mamba1", "mamba2", "transformer", "moe"

// The bytes an op must move at the least: every input read once and every output written once
// (a state updated in place counts as both). Workspace and re-reads are the implementation's cost.
struct KernelBytes {
  uint64_t read = 0, written = 0;
  uint64_t total() const { return read + written; }
};

// The shape of one call: the config's dimensions at (batch, length) and the run's dtype.
struct KernelShape {
  const model::ModelConfig* config = nullptr;
  int64_t batch = 1;
  int64_t length = 1;  // tokens of a prefill; the cache length of attention decode; 1 for a decode step
  at::ScalarType dtype = at::kFloat;
};

struct KernelCase {
  std::string op;                       // the row's name: "selective_scan", "attention_decode"
  KernelModel model;                    // the config its shapes come from
  std::optional<ops::OpFamily> family;  // its Backend switch; none: one implementation (attention's SDPA)
  bool sweeps_length;                   // runs at every --lengths value; else once per batch at length 1
  std::string bytes_formula;            // the bytes in words (docs/kernels.md, the JSON)
  // The tensors' shapes by name ({"x": [B, D, L], ...}), for the JSON.
  std::function<nlohmann::json(const KernelShape&)> shapes;
  std::function<KernelBytes(const KernelShape&)> bytes;
  // Allocates the inputs with `options` (dtype, device) and returns the call, which may run any
  // number of times (states updated in place stay valid).
  std::function<std::function<void()>(const KernelShape&, const at::TensorOptions& options, ops::Backend backend)>
      prepare;
  // Optional: the floating-point operations of one call (the MoE rows), giving "flops" and
  // "flops_per_s" in the row.
  std::function<double(const KernelShape&)> flops = nullptr;
  // The name of the one implementation of an op without a Backend switch.
  std::string implementation = "sdpa";
};

// Every op effarch kernels measures, in output order.
const std::vector<KernelCase>& kernel_cases();
// The case named `op`; throws UsageError naming `option` and listing the ops otherwise.
const KernelCase& find_kernel_case(const std::string& op, const std::string& option);

// The implementations a case runs on `device`: Backend::Auto when it resolves to a kernel (the
// CUDA one on a GPU, the CPU one on the CPU), and Backend::Reference always; {Auto} alone for an op
// without a Backend switch (attention). Each with the name recorded in a row ("cuda", "cpu",
// "reference", "sdpa"). With `dtype`, Auto is left out where it would run the reference for
// that dtype (ssd_chunk_scan in fp32 on a GPU: ops::ssd_scan_backend), so no row is timed twice.
std::vector<std::pair<ops::Backend, std::string>> kernel_implementations(
    const KernelCase& c, const c10::Device& device, std::optional<at::ScalarType> dtype = std::nullopt);

struct KernelSweep {
  std::vector<std::string> ops;     // empty: every case
  std::vector<int64_t> lengths;     // empty: 512..65536 on a GPU, 512..4096 on the CPU (docs/kernels.md)
  std::vector<int64_t> batches{1};
  std::string dtype = "auto";
  std::string device = "auto";
  int reps = 10, warmup = 2;
  std::string mamba1 = "mamba-2.8b", mamba2 = "mamba-codestral-7b", transformer = "phi-2";
  std::string moe = "deepseek-moe-16b";
  uint64_t seed = 0;
  // Rows whose inputs and outputs exceed this many bytes are skipped with a row saying so (0: the
  // device's free memory decides).
  uint64_t memory_limit = 0;
};

// The lengths a sweep runs when none are given.
std::vector<int64_t> default_kernel_lengths(const c10::Device& device);

struct KernelCallbacks {
  std::function<void(const nlohmann::json& row)> on_row;  // each finished row (ok, skipped, oom, error)
  const std::atomic<bool>* stop = nullptr;                // set: no new row starts
};

// Refuses (UsageError) a sweep that names an unknown op, a model that does not resolve or lacks the
// layers an op needs, or bad counts; reads configs only, so the command checks it before probing
// the device. run_kernels checks the same.
void check_kernel_sweep(const KernelSweep& sweep);

// The configs (--mamba1, --mamba2, --transformer, --moe values) the sweep's ops take their shapes
// from, each once, in that order, without reading them; an unknown op is left to check_kernel_sweep.
std::vector<std::string> kernel_sweep_configs(const KernelSweep& sweep);

// Runs every (case, batch, length, implementation) of the sweep; one row each, in order. A row that
// fails (out of memory, an error) is recorded with its status and the sweep goes on; a row whose
// bytes do not fit the device's free memory (or memory_limit) is recorded as skipped without
// allocating. `environment` is probe_environment()'s (its copy bandwidth gives the fractions).
std::vector<nlohmann::json> run_kernels(const KernelSweep& sweep, const nlohmann::json& environment,
                                        const KernelCallbacks& callbacks = {});

// Per (batch, length), the scans' times beside attention prefill's at the same length (the fastest
// ok row of each), with attention's time over each scan's ("attention_over_scan").
nlohmann::json scan_vs_attention(const std::vector<nlohmann::json>& rows);
// Per (batch, cache length), the decode steps' times (selective_state_update, ssd_state_update: one
// length) beside one query of attention over the cache.
nlohmann::json decode_vs_attention(const std::vector<nlohmann::json>& rows);

// Per (batch, length), the MoE prefill rows (moe_prefill: what --backend auto runs, the grouped
// GEMMs on a GPU where they fit; moe_prefill_per_expert) beside one dense GEMM of the routed
// experts' FLOPs (moe_dense_gemm), the fastest ok row of each, with each one's FLOP rate over the
// dense GEMM's ("fraction_of_dense_gemm").
nlohmann::json moe_vs_dense_gemm(const std::vector<nlohmann::json>& rows);

// The document's schema_version. 2: GPU rows timed behind a blocking kernel with the L2 scrubbed
// ("timer": "cuda_events_queued"; "cuda_events" is now the fallback for calls that sync, also
// scrubbed); version 1's "cuda_events" rows included the host's dispatch and a warm L2.
constexpr int kKernelsSchemaVersion = 2;

// settings.timing: how rows on `device` are timed ({"timer"}; on a GPU also "fallback_timer",
// "blocker_timeout_s", "l2_cache_bytes" (environment.device's; 0 unknown) and "l2_scrub_bytes").
nlohmann::json kernel_timing_settings(const c10::Device& device, const nlohmann::json& environment);

// The whole document: {"schema": "effarch-kernels", "schema_version", "command_line", "settings",
// "environment", "rows", "scan_vs_attention", "decode_vs_attention", "moe_vs_dense_gemm",
// "interrupted"}.
nlohmann::json kernels_document(const KernelSweep& sweep, const nlohmann::json& environment,
                                const std::vector<std::string>& command_line, const std::vector<nlohmann::json>& rows,
                                bool interrupted);
// The table a person reads: one line per row, then scan vs attention.
std::string format_kernels_table(const nlohmann::json& doc);

}  // namespace effarch::bench
