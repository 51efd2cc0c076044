#include "effarch/ops/backend.h"

#include <fmt/format.h>

#include <atomic>

#include "effarch/common/error.h"
#ifdef EFFARCH_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAFunctions.h>

#include "common/launch.h"
#endif

namespace effarch::ops {

namespace {
std::atomic<bool> g_host_runs_cuda_kernels{false};
}  // namespace

bool runs_cuda_kernels(const c10::Device& device) {
  return device.is_cuda() || (device.is_cpu() && g_host_runs_cuda_kernels.load(std::memory_order_relaxed));
}

void detail::set_host_runs_cuda_kernels(bool on) { g_host_runs_cuda_kernels.store(on); }

std::string_view backend_name(Backend backend) {
  switch (backend) {
    case Backend::Auto: return "auto";
    case Backend::Reference: return "reference";
    case Backend::Cuda: return "cuda";
    case Backend::Cpu: return "cpu";
  }
  return "?";
}

Backend parse_backend(const std::string& value, const std::string& option) {
  for (Backend b : {Backend::Auto, Backend::Reference, Backend::Cuda}) {
    if (value == backend_name(b)) return b;
  }
  throw UsageError(fmt::format("{}: unknown backend '{}' (use auto, reference or cuda)", option, value));
}

bool programmatic_launch() {
#ifdef EFFARCH_WITH_CUDA
  return kernels::programmatic_launch_enabled();
#else
  return false;
#endif
}

void set_programmatic_launch(bool on, [[maybe_unused]] const std::string& option) {
#ifdef EFFARCH_WITH_CUDA
  if (on) {
    const std::string refusal = detail::programmatic_launch_refusal(kernels::lowest_compiled_cuda_arch(), option);
    if (!refusal.empty()) throw UsageError(refusal);
  }
  kernels::set_programmatic_launch_enabled(on);
#else
  if (on) throw UsageError(fmt::format("{} on: this build has no CUDA kernels to launch", option));
#endif
}

const char* programmatic_launch_record(const c10::Device& device) {
  if (!device.is_cuda() || !programmatic_launch()) return "off";
#ifdef EFFARCH_WITH_CUDA
  // Where the GPU can be asked (a CUDA build may run without one: the record is then the switch).
  if (c10::cuda::device_count() > 0 && detail::cuda_sm_major(device) < 9) return "off";
#endif
  return "on";
}

std::string detail::programmatic_launch_refusal(int lowest_cuda_arch, const std::string& option) {
  // Every kernel must carry the grid-dependency wait, which exists from compute capability 9.0
  // (kernels/common/grid_dependency.h compiles it out below): code built for less may run on a
  // GPU that honours the attribute, as compute_80 PTX JIT-compiled on an H100.
  if (lowest_cuda_arch <= 0 || lowest_cuda_arch >= 90) return "";
  return fmt::format(
      "{} on: this build's kernels include code for compute capability {}.{} (CMAKE_CUDA_ARCHITECTURES), which has "
      "no grid-dependency wait; build for 90 and up (the default, 90;121) to launch them early",
      option, lowest_cuda_arch / 10, lowest_cuda_arch % 10);
}

int detail::cuda_sm_major([[maybe_unused]] const c10::Device& device) {
#ifdef EFFARCH_WITH_CUDA
  if (!device.is_cuda()) return -1;
  return at::cuda::getDeviceProperties(device.has_index() ? device.index() : c10::cuda::current_device())->major;
#else
  return -1;
#endif
}

bool parse_programmatic_launch(const std::string& value, const std::string& option) {
  if (value == "on") return true;
  if (value == "off") return false;
  throw UsageError(fmt::format("{}: unknown value '{}' (use on or off)", option, value));
}

std::optional<bool> parse_programmatic_launch_request(const std::string& value, const std::string& option) {
  if (value == "auto") return std::nullopt;
  if (value == "on") return true;
  if (value == "off") return false;
  throw UsageError(fmt::format("{}: unknown value '{}' (use auto, on or off)", option, value));
}

bool detail::programmatic_launch_auto(int sm_major, int lowest_cuda_arch, bool built_with_cuda) {
  return built_with_cuda && sm_major == 9 && programmatic_launch_refusal(lowest_cuda_arch, "--pdl").empty();
}

bool programmatic_launch_auto([[maybe_unused]] const c10::Device& device) {
#ifdef EFFARCH_WITH_CUDA
  if (!device.is_cuda() || c10::cuda::device_count() == 0) return false;
  return detail::programmatic_launch_auto(detail::cuda_sm_major(device), kernels::lowest_compiled_cuda_arch(), true);
#else
  return false;
#endif
}

bool resolve_programmatic_launch(const std::optional<bool>& request, const c10::Device& device) {
  return request ? *request : programmatic_launch_auto(device);
}

std::string_view op_name(OpFamily op) {
  switch (op) {
    case OpFamily::CausalConv1d: return "causal_conv1d";
    case OpFamily::SelectiveScan: return "selective_scan";
    case OpFamily::SelectiveStateUpdate: return "selective_state_update";
    case OpFamily::SsdScan: return "ssd_scan";
    case OpFamily::SsdStateUpdate: return "ssd_state_update";
    case OpFamily::GatedRmsNorm: return "gated_rms_norm";
    case OpFamily::MoeDispatch: return "moe_dispatch";
    case OpFamily::DecodeAttention: return "decode_attention";
    case OpFamily::RopeCacheWrite: return "rope_cache_write";
    case OpFamily::AddNorm: return "add_norm";
    case OpFamily::Activation: return "activation";
    case OpFamily::DenseGemv: return "dense_gemv";
  }
  return "?";
}

const std::vector<OpFamily>& all_op_families() {
  static const std::vector<OpFamily> all{OpFamily::CausalConv1d,   OpFamily::SelectiveScan,
                                         OpFamily::SelectiveStateUpdate, OpFamily::SsdScan,
                                         OpFamily::SsdStateUpdate, OpFamily::GatedRmsNorm,
                                         OpFamily::MoeDispatch,    OpFamily::DecodeAttention,
                                         OpFamily::RopeCacheWrite, OpFamily::AddNorm,
                                         OpFamily::Activation,     OpFamily::DenseGemv};
  return all;
}

bool has_cuda_kernel(OpFamily op) {
  if (!kBuiltWithCuda) return false;
  switch (op) {
    case OpFamily::CausalConv1d:          // kernels/causal_conv1d
    case OpFamily::SelectiveScan:         // kernels/selective_scan
    case OpFamily::SelectiveStateUpdate:  // the same folder, one step
    case OpFamily::MoeDispatch:           // kernels/moe (router, permute, expert GEMV, combine)
    case OpFamily::DecodeAttention:       // kernels/decode_attention
    case OpFamily::RopeCacheWrite:        // kernels/rope_cache
    case OpFamily::AddNorm:               // kernels/add_norm
    case OpFamily::Activation:            // kernels/activation (silu and gelu_new; the others run their reference)
    case OpFamily::SsdScan:               // kernels/ssd: the chunked scan,
    case OpFamily::SsdStateUpdate:        // the decode step
    case OpFamily::GatedRmsNorm:          // and Mamba-2's gated RMSNorm
    case OpFamily::DenseGemv:             // kernels/gemv (a decode step's dense projections)
      return true;
    default: return false;                      // the ATen reference runs on the GPU too
  }
}

bool has_cpu_kernel(OpFamily op) {
  switch (op) {
    case OpFamily::SelectiveScan:         // src/ops/cpu/selective_scan.cpp
    case OpFamily::SelectiveStateUpdate:  // the same kernel, one step
    case OpFamily::MoeDispatch:           // src/ops/cpu/moe_dispatch.cpp
    case OpFamily::SsdScan:               // src/ops/cpu/ssd.cpp
    case OpFamily::SsdStateUpdate:        // the same recurrence, one step
      return true;
    default: return false;
  }
}

Backend resolve_backend(Backend requested, OpFamily op, const c10::Device& device) {
  switch (requested) {
    case Backend::Reference:
      return Backend::Reference;
    case Backend::Auto:
      if (runs_cuda_kernels(device) && has_cuda_kernel(op)) return Backend::Cuda;
      if (device.is_cpu() && has_cpu_kernel(op)) return Backend::Cpu;
      return Backend::Reference;
    case Backend::Cpu:
      if (!device.is_cpu()) {
        throw OpError(fmt::format("{}: the CPU kernel was asked for tensors on {}", op_name(op), device.str()));
      }
      if (!has_cpu_kernel(op)) {
        throw OpError(fmt::format("{}: it has no CPU kernel (backend auto runs its reference)", op_name(op)));
      }
      return Backend::Cpu;
    case Backend::Cuda:
      if (!kBuiltWithCuda) {
        throw OpError(fmt::format("{}: backend cuda requested, but effarch was built without CUDA", op_name(op)));
      }
      if (!runs_cuda_kernels(device)) {
        throw OpError(fmt::format("{}: backend cuda requested for tensors on {}; it needs CUDA tensors", op_name(op),
                                  device.str()));
      }
      if (!has_cuda_kernel(op)) {
        throw OpError(fmt::format("{}: backend cuda requested, but it has no CUDA kernel yet (backend auto runs "
                                  "its reference on the GPU)",
                                  op_name(op)));
      }
      return Backend::Cuda;
  }
  throw OpError(fmt::format("{}: unknown backend", op_name(op)));
}

}  // namespace effarch::ops
