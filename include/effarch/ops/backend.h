#pragma once
// Which implementation an op runs: its CUDA kernel, its fused CPU kernel (src/ops/cpu) or its
// ATen reference (any device; the oracle the kernels are tested against).
// The choice is made here once, for every op family: the model resolves each family it uses
// when it is built (Model::implementations() records them), and each op entry resolves the
// same way when it runs, so what is recorded is what ran.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <c10/core/Device.h>

namespace effarch::ops {

enum class Backend {
  Auto,       // the op's kernel for the tensors' device (CUDA or CPU) where it has one, else the reference
  Reference,  // the ATen reference, on any device
  Cuda,       // the CUDA kernel; an error without CUDA support, for non-CUDA tensors, or for an op without one
  Cpu,        // the fused CPU kernel: what Auto resolves to on the CPU where one exists (not a --backend
              // value: auto picks it, reference avoids it); an error for non-CPU tensors or an op without one
};

// Whether this build has the CUDA kernels (effarch::torch defines EFFARCH_WITH_CUDA in CUDA builds).
inline constexpr bool kBuiltWithCuda =
#ifdef EFFARCH_WITH_CUDA
    true;
#else
    false;
#endif

std::string_view backend_name(Backend backend);  // "auto", "reference", "cuda", "cpu"
// The value of a --backend option (or a suite's "backend"): auto, reference or cuda. Throws
// UsageError naming `option`.
Backend parse_backend(const std::string& value, const std::string& option);

// Programmatic dependent launch (kernels/common/launch.h, kernels/common/grid_dependency.h): when
// on, effarch's decode-step CUDA kernels (the dense and int8 GEMVs, add_norm, the conv and state
// updates, the gated RMSNorm, RoPE + cache write, decode attention, the activation, the MoE
// dispatch) are launched so that each may start while the kernel before it in the stream finishes,
// its blocks scheduled during that kernel's last wave and, for the GEMVs, its first weights
// streamed before it waits. Results are the same bit for bit: only when kernels start changes.
// A process-wide setting, off until set; the CLI's `--pdl auto` (its default) sets it on where
// programmatic_launch_auto says, and results record what ran.
bool programmatic_launch();
// Turns it on or off; on throws UsageError naming `option` in a build without CUDA kernels and in
// one whose kernels include code for an architecture below 9.0 (programmatic_launch_refusal).
void set_programmatic_launch(bool on, const std::string& option = "--pdl");
// The value of a --pdl option: "on" or "off"; anything else throws UsageError naming `option`.
// What a result's key holds (the value that ran).
bool parse_programmatic_launch(const std::string& value, const std::string& option);
// The value of a --pdl option as asked: "on", "off" or "auto" (nullopt: decided per device by
// programmatic_launch_auto); anything else throws UsageError naming `option`.
std::optional<bool> parse_programmatic_launch_request(const std::string& value, const std::string& option);
// What `auto` means on `device`: on for a GPU of compute capability 9.x (sm_90, where it was
// measured as fast or faster for every model timed: docs/perf/pending.md, entry 28) in a build
// whose kernels all carry the grid-dependency wait; off elsewhere (the CPU, other GPUs, where it
// has not been measured: a DGX Spark's 12.1 among them).
bool programmatic_launch_auto(const c10::Device& device);
// The request's value, auto resolved for `device`.
bool resolve_programmatic_launch(const std::optional<bool>& request, const c10::Device& device);
// What results record for a run on `device`: "on" when the switch is on and the device is CUDA
// of compute capability 9.0 or more (it changes only CUDA launches, and older GPUs ignore the
// attribute), else "off".
const char* programmatic_launch_record(const c10::Device& device);

namespace detail {
// The compute capability's major number of a CUDA device (its current one without an index); -1
// for another device or in a build without CUDA.
int cuda_sm_major(const c10::Device& device);
// Why `option` on cannot be had when the lowest architecture the kernels were built for is
// `lowest_cuda_arch` (as 90 for sm_90; 0 unknown): code below 90 has no grid-dependency wait and
// may still run on a GPU that honours the launch attribute. Empty when it can.
std::string programmatic_launch_refusal(int lowest_cuda_arch, const std::string& option);
// programmatic_launch_auto's rule: a CUDA device of compute capability major `sm_major` (-1: not
// CUDA), kernels built (`built_with_cuda`) with `lowest_cuda_arch` as their lowest architecture.
bool programmatic_launch_auto(int sm_major, int lowest_cuda_arch, bool built_with_cuda);
}  // namespace detail

// The op families that have a Backend switch: each `effarch::ops` entry taking a Backend belongs
// to one. A family is the unit recorded in results ("selective_scan": "reference").
enum class OpFamily {
  CausalConv1d,          // causal_conv1d and causal_conv1d_update
  SelectiveScan,         // Mamba-1 prefill scan
  SelectiveStateUpdate,  // Mamba-1 decode step
  SsdScan,               // Mamba-2 chunked prefill scan
  SsdStateUpdate,        // Mamba-2 decode step
  GatedRmsNorm,          // Mamba-2's gated RMSNorm
  MoeDispatch,           // MoE expert dispatch
  DecodeAttention,       // decode_attention: a decode step's attention over the KV cache
  RopeCacheWrite,        // rope_cache_write, rope_cache_prefill: RoPE and the KV-cache write (a decode step, a prefill)
  AddNorm,               // add_norm: a block boundary's residual add and the next RMSNorm / LayerNorm
  Activation,            // activation: a dense MLP's SiLU(gate) * up or gelu_new (activate / gated_activation)
  DenseGemv,             // linear with a dense weight and 1..8 rows on CUDA (a decode step's projections)
};
std::string_view op_name(OpFamily op);  // e.g. "selective_scan"
const std::vector<OpFamily>& all_op_families();

// Whether this build has a CUDA kernel for `op`.
bool has_cuda_kernel(OpFamily op);
// Whether `op` has a fused CPU kernel (every build has them).
bool has_cpu_kernel(OpFamily op);

// Whether `device` runs the CUDA kernels: a CUDA device; or the CPU while the CPU executor's
// whole-model tests stand it in for one (tests/sim/model_sim_test.cpp: an executable that
// compiles the CUDA bindings for the executor, so the ops' CUDA paths run there on host tensors).
// Every decision between a CUDA kernel and another path asks this, not is_cuda(); what needs a
// real GPU (CUDA graphs, the grouped prefill's at::_grouped_mm, streams) asks is_cuda().
bool runs_cuda_kernels(const c10::Device& device);
namespace detail {
// The executor's switch behind runs_cuda_kernels (off unless a tests/sim test turns it on; never
// in an executable whose bindings launch on a GPU, which would be handed host tensors).
void set_host_runs_cuda_kernels(bool on);
}  // namespace detail

// The implementation `op` runs on `device` when `requested` is asked for: Backend::Cuda,
// Backend::Cpu or Backend::Reference, never Auto. Auto picks the CUDA kernel where this build has
// one and the device is CUDA, the CPU kernel where the op has one and the device is the CPU. Cuda without a kernel for `op`, without CUDA support or on a non-CUDA device throws
// OpError naming the op and saying what to use instead.
Backend resolve_backend(Backend requested, OpFamily op, const c10::Device& device);

// resolve_backend(...) == Backend::Cuda.
inline bool use_cuda_kernel(Backend requested, OpFamily op, const c10::Device& device) {
  return resolve_backend(requested, op, device) == Backend::Cuda;
}
// resolve_backend(...) == Backend::Cpu.
inline bool use_cpu_kernel(Backend requested, OpFamily op, const c10::Device& device) {
  return resolve_backend(requested, op, device) == Backend::Cpu;
}

}  // namespace effarch::ops
