#pragma once
// effarch profile: where one decode step's (or one prefill's) time goes, per op kind, from
// libtorch's profiler (Kineto) with CPU and CUDA activities. Definitions: docs/kernels.md
// ("effarch profile").

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "effarch/model/model.h"
#include "effarch/ops/backend.h"

namespace effarch::bench {

enum class OpKind { Gemm, Scan, Conv, Norm, Attention, Elementwise, Copy, Other };
const char* to_string(OpKind kind);  // "gemm", "scan", "conv", "norm", "attention", "elementwise", "copy", "other"
const std::vector<OpKind>& all_op_kinds();

// The kind of a profiler event from its name alone: an ATen op ("aten::addmm"), an effarch op's
// scope ("effarch::selective_scan") or a GPU kernel's name ("sm90_xmma_gemm_...",
// "void at::native::vectorized_elementwise_kernel<...>"). Names it does not know are Other.
OpKind classify_event(std::string_view name);

// One event as the attribution needs it (a KinetoEvent reduced to what is used).
struct ProfileEvent {
  std::string name;
  bool on_device = false;       // a GPU kernel, memcpy or memset; else a host op or scope
  uint64_t thread = 0;          // host events: the thread that ran it
  int64_t start_ns = 0, end_ns = 0;
  uint64_t correlation = 0;     // host ops: the id their kernels link to
  uint64_t linked = 0;          // device events: the launching host op's correlation (0: unknown)
};

// The scopes profile_model() wraps each profiled step in (a decode step, or one prefill); their
// events mark the steps.
inline constexpr std::string_view kDecodeStepScope = "effarch::decode_step";
inline constexpr std::string_view kPrefillScope = "effarch::prefill";

// Where the time of `steps` profiled steps (the `scope` events) went, per step:
//  - host: per thread that ran a step scope, the top-level events inside the step scopes (an
//    event inside no other), each classified by its own name (an effarch scope or the ATen op the
//    model called); "outside ops" is the step time they leave.
//  - device (when there are device events): each kernel's time goes to the kind of the top-level
//    host op that launched it; a kernel with no launching op (a CUDA graph replay) or whose
//    top-level op is Other is classified by its own name. "idle" is the step time the device had
//    nothing running (launch gaps, host work).
// Returns {"step_s", "time_source": "device" | "host", "kinds": [...], "host": {...}, "device":
// {...} (with device events), "top_events": [...]}: the schema in docs/kernels.md.
nlohmann::json attribute_profile(const std::vector<ProfileEvent>& events, int steps,
                                 std::string_view scope = kDecodeStepScope);

// What a profile times: decode steps after a prefill, or the prefill itself.
enum class ProfilePhase { Decode, Prefill };
ProfilePhase parse_profile_phase(const std::string& value, const std::string& option);  // "decode" | "prefill"
const char* to_string(ProfilePhase phase);

struct ProfileSpec {
  std::string model;
  std::string device = "auto";
  std::string dtype = "auto";
  int64_t batch = 1;
  ProfilePhase phase = ProfilePhase::Decode;
  int64_t context = 512;  // prompt tokens: prefilled before the decode steps, or the profiled prefill's
  int steps = 8;          // decode steps (or prefills) profiled
  int warmup = 3;         // decode steps (or prefills) run before the profiler starts
  std::optional<model::DecodeMode> cuda_graphs;  // nullopt: auto
  ops::Backend backend = ops::Backend::Auto;
  std::optional<bool> fuse_parallel_block;  // ModelOptions::fuse_parallel_block (--parallel-block; nullopt: auto)
  std::optional<bool> fuse_norm_prologue;   // ModelOptions::fuse_norm_prologue (--norm-prologue; nullopt: auto)
  std::optional<std::string> selective_scan;  // ModelOptions::selective_scan (--selective-scan; nullopt: auto)
  std::string attention = "sdpa";
  uint64_t seed = 0;
  std::string trace;  // a Chrome trace of the profiled steps is written here when set
};

// Loads the model (random weights for a bare config). Decode: prefills `context` tokens, runs
// `warmup` decode steps, then profiles `steps` steps, each in a kDecodeStepScope scope ending with
// its token on the host. Prefill: runs `warmup` prefills of `context` tokens (at least one: the
// first pays the allocator's and libraries' set-up), then profiles `steps` prefills, each in a
// kPrefillScope scope ending with its first token on the host (bench's TTFT). Returns {"model",
// "settings" (with "phase"), "implementations", ...attribute_profile()}.
nlohmann::json profile_model(const ProfileSpec& spec);

// The table: one line per kind with time per step, share of the step and events per step, then the
// top events.
std::string format_profile_table(const nlohmann::json& profile);

}  // namespace effarch::bench
