// The launch environment (torchrun, Slurm or none), the layout check and the Context's helpers.
// No c10d here: process_group.cpp starts the groups.

#include <cstdlib>
#include <optional>

#include <ATen/ATen.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "effarch/parallel/parallel.h"
#include "process_group.h"

namespace effarch::parallel {
namespace {

std::optional<std::string> env_var(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return std::nullopt;
  return std::string(v);
}

int env_int(const char* name, const std::string& value, int min) {
  size_t used = 0;
  long n = 0;
  try {
    n = std::stol(value, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != value.size() || n < min || n > 1000000) {
    throw UsageError(fmt::format("environment variable {}='{}': expected an integer >= {}", name, value, min));
  }
  return static_cast<int>(n);
}

}  // namespace

LaunchEnv read_launch_env(bool slurm) {
  LaunchEnv e;
  const char* rank_var = nullptr;
  const char* world_var = nullptr;
  const char* local_var = nullptr;
  if (env_var("RANK") || env_var("WORLD_SIZE")) {
    rank_var = "RANK", world_var = "WORLD_SIZE", local_var = "LOCAL_RANK";
    e.launcher = "torchrun";
  } else if (slurm && env_var("SLURM_PROCID") && env_var("SLURM_NTASKS")) {
    rank_var = "SLURM_PROCID", world_var = "SLURM_NTASKS", local_var = "SLURM_LOCALID";
    e.launcher = "slurm";
  } else {
    return e;
  }
  const auto rank = env_var(rank_var);
  const auto world = env_var(world_var);
  if (!rank || !world) {
    throw UsageError(fmt::format("environment: {} is set but {} is not (a launcher sets both)",
                                 rank ? rank_var : world_var, rank ? world_var : rank_var));
  }
  e.rank = env_int(rank_var, *rank, 0);
  e.world_size = env_int(world_var, *world, 1);
  if (e.rank >= e.world_size) {
    throw UsageError(fmt::format("environment: {}={} is not below {}={}", rank_var, e.rank, world_var, e.world_size));
  }
  if (const auto local = env_var(local_var)) e.local_rank = env_int(local_var, *local, 0);
  const auto addr = env_var("MASTER_ADDR");
  const auto port = env_var("MASTER_PORT");
  if (e.world_size > 1 || (addr && port)) {
    if (!addr || !port) {
      throw UsageError(fmt::format("environment: {}={} but {} is not set (the address and port of rank 0's store; "
                                   "torchrun sets them, an srun job script exports them: docs/parallel.md)",
                                   world_var, e.world_size, addr ? "MASTER_PORT" : "MASTER_ADDR"));
    }
    e.master_addr = *addr;
    e.master_port = env_int("MASTER_PORT", *port, 1);
    if (e.master_port > 65535) throw UsageError(fmt::format("environment: MASTER_PORT={} is not a port", *port));
    const auto agent = env_var("TORCHELASTIC_USE_AGENT_STORE");
    e.agent_store = agent && (*agent == "True" || *agent == "true" || *agent == "1");
  }
  return e;
}

std::chrono::milliseconds default_timeout() {
  if (const auto v = env_var("EFFARCH_DIST_TIMEOUT")) {
    return std::chrono::milliseconds(int64_t{1000} * env_int("EFFARCH_DIST_TIMEOUT", *v, 1));
  }
  return std::chrono::seconds(300);
}

std::string rank_device(const std::string& requested, const LaunchEnv& env) {
  if (requested != "cuda" || env.launcher == "none") return requested;
  // A launcher that gives each task its own GPU (srun --gpus-per-task 1: CUDA_VISIBLE_DEVICES
  // holds one) leaves one visible device: local rank modulo the visible ones.
  const int visible = static_cast<int>(at::detail::getCUDAHooks().getNumGPUs());
  return fmt::format("cuda:{}", visible > 0 ? env.local_rank % visible : env.local_rank);
}

std::shared_ptr<Context> init(const Layout& layout, const std::string& device, std::chrono::milliseconds timeout) {
  if (layout.tp < 1) throw UsageError(fmt::format("--tp {}: must be at least 1", layout.tp));
  if (layout.ep < 1) throw UsageError(fmt::format("--ep {}: must be at least 1", layout.ep));
  auto ctx = std::make_shared<Context>();
  ctx->env = read_launch_env(/*slurm=*/layout.world() > 1);
  ctx->layout = layout;
  ctx->device = device;
  if (layout.world() != ctx->env.world_size) {
    throw UsageError(fmt::format(
        "--tp {} x --ep {} = {} processes, but the launch has a world size of {}{} (start tp x ep processes: "
        "torchrun --nproc-per-node {} --no-python effarch ...; docs/parallel.md)",
        layout.tp, layout.ep, layout.world(), ctx->env.world_size,
        ctx->env.launcher == "none" ? " (no launcher: RANK/WORLD_SIZE and SLURM_PROCID/SLURM_NTASKS are unset)"
                                    : fmt::format(" ({})", ctx->env.launcher),
        layout.world()));
  }
  ctx->tp_rank = ctx->env.rank % layout.tp;
  ctx->ep_rank = ctx->env.rank / layout.tp;
  ctx->rank_devices = {device};
  // No launcher, or a world of one without a store address: one process, no group.
  if (!ctx->distributed() && (ctx->env.launcher == "none" || ctx->env.master_addr.empty())) return ctx;
  const at::Device dev(device);
  if (dev.is_cuda() && !detail::have_nccl()) {
    throw UsageError("a multi-process run on CUDA needs NCCL, which this effarch was built without (docs/parallel.md)");
  }
  if (!dev.is_cuda() && !detail::have_gloo()) {
    throw UsageError("a multi-process run on the CPU needs Gloo, which this effarch was built without "
                     "(apt-get install libgloo-dev, then configure again; docs/parallel.md)");
  }
  if (!dev.is_cuda() && !dev.is_cpu()) {
    throw UsageError(fmt::format("--device {}: multi-process runs support cpu (Gloo) and cuda (NCCL)", device));
  }
  if (dev.is_cuda() && !dev.has_index()) {
    throw UsageError(fmt::format("--device {}: a multi-process run needs each rank's GPU index (cuda or auto "
                                 "becomes cuda:LOCAL_RANK)", device));
  }
  if (dev.is_cuda()) {
    // This rank's GPU as the current device, for NCCL and for anything launched without a guard.
    c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA)->setDevice(dev);
  }
  detail::Groups g = detail::start(ctx->env, layout, ctx->tp_rank, ctx->ep_rank, dev.is_cuda() ? dev.index() : -1,
                                   timeout);
  ctx->world = g.world;
  ctx->tp = g.tp;
  ctx->backend = g.backend;
  // Every rank's device, for the results: exchanged as device type and index.
  const std::vector<int64_t> types = ctx->gather(dev.is_cuda() ? 1 : 0);
  const std::vector<int64_t> indices = ctx->gather(dev.has_index() ? dev.index() : -1);
  ctx->rank_devices.clear();
  for (size_t r = 0; r < types.size(); ++r) {
    const std::string type = types[r] == 1 ? "cuda" : "cpu";
    ctx->rank_devices.push_back(indices[r] >= 0 ? fmt::format("{}:{}", type, indices[r]) : type);
  }
  return ctx;
}

std::vector<int64_t> Context::gather(int64_t value) const {
  if (!world) return {value};
  const at::Device dev(device);
  at::Tensor t = at::zeros({world_size()}, at::TensorOptions().dtype(at::kLong).device(dev));
  t.select(0, rank()).fill_(value);
  world->all_reduce(t);
  const at::Tensor host = t.cpu();
  return std::vector<int64_t>(host.data_ptr<int64_t>(), host.data_ptr<int64_t>() + host.numel());
}

void Context::barrier() const { (void)gather(0); }

void report_failure(const std::string& message) { detail::post_failure(message); }

}  // namespace effarch::parallel
