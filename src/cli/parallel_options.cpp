// --tp / --ep for the commands that run a model (bench, generate) and the start of a multi-process
// run (docs/parallel.md): every model's config is checked to split before the process group
// starts, and the world size before any weight loads.

#include "parallel_options.h"

#include <fmt/format.h>

#include "effarch/common/device.h"
#include "effarch/common/error.h"
#include "effarch/model/sharding.h"

namespace effarch::cli {

void add_parallel_options(CLI::App* sub, ParallelCmd* p) {
  sub->add_option("--tp", p->tp,
                  "Tensor parallelism: split attention heads, MLP channels and Mamba channels over N processes "
                  "(start tp x ep processes with torchrun or srun; docs/parallel.md)")
      ->capture_default_str();
  sub->add_option("--ep", p->ep, "Expert parallelism: split each MoE layer's experts over N processes (x --tp)")
      ->capture_default_str();
}

std::shared_ptr<parallel::Context> start_parallel(const ParallelCmd& p, const std::vector<model::ModelConfig>& configs,
                                                  std::string* device) {
  for (const auto& c : configs) model::check_shardable(c, p.tp, p.ep);
  const parallel::LaunchEnv env = parallel::read_launch_env(/*slurm=*/p.tp * p.ep > 1);
  const at::Device dev = parse_device(*device, "--device");
  // "auto" or "cuda" on a GPU machine: each rank its own GPU (cuda:LOCAL_RANK); cuda:N as given.
  const bool explicit_index = device->rfind("cuda:", 0) == 0;
  *device = explicit_index ? dev.str() : parallel::rank_device(dev.is_cuda() ? "cuda" : dev.str(), env);
  return parallel::init(parallel::Layout{p.tp, p.ep}, *device, parallel::default_timeout());
}

nlohmann::json parallel_json(const parallel::Context& ctx) {
  return {{"world_size", ctx.world_size()},
          {"tp", ctx.layout.tp},
          {"ep", ctx.layout.ep},
          {"backend", ctx.backend},
          {"launcher", ctx.env.launcher},
          {"rank_devices", ctx.rank_devices}};
}

}  // namespace effarch::cli
