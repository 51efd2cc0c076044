#pragma once
// Tensor and expert parallelism across processes (docs/parallel.md). The model calls all_reduce
// on a Communicator; at world size 1 there is none and nothing is called. The c10d code (TCPStore
// rendezvous, Gloo / NCCL process groups) lives in src/parallel/ only, so nothing else includes
// its headers.
//
// Ranks: world = tp x ep, rank = ep_rank * tp + tp_rank. Attention heads, dense MLP columns and
// Mamba channels/heads are split across the tp ranks of one ep group (all-reduce over that tp
// group); each ep rank holds a contiguous share of every MoE layer's experts (and, with tp > 1,
// a tp share of each of those experts), so an MoE layer's output is all-reduced over the world.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "effarch/common/error.h"

namespace effarch::parallel {

// A collective that failed: a peer rank lost or failed, or a timeout. The message names the
// rank(s) when they can be told. The CLI exits 1 (and does not wait for the process group).
class CommError : public Error {
 public:
  using Error::Error;
};

// The launcher's environment: torchrun (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT)
// or Slurm (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID; MASTER_ADDR/MASTER_PORT from the job
// script). No launcher: one process.
struct LaunchEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  std::string master_addr;
  int master_port = 0;
  bool agent_store = false;  // torchrun's agent already serves the store (TORCHELASTIC_USE_AGENT_STORE)
  std::string launcher = "none";  // "torchrun" (the variables torchrun sets), "slurm" or "none"
};
// Reads the environment; a malformed or half-set launch (RANK without WORLD_SIZE, a rank outside
// the world, a world > 1 without MASTER_ADDR/MASTER_PORT) is a UsageError naming the variable.
// `slurm`: read Slurm's variables too. They are also set in batch scripts and in each task of a
// plain multi-task srun, so only a request for several processes (--tp/--ep) reads them.
LaunchEnv read_launch_env(bool slurm = true);

// How the model is split: --tp and --ep.
struct Layout {
  int tp = 1;
  int ep = 1;
  int world() const { return tp * ep; }
};

// A group of ranks that reduce together. Every call is bounded by the group's timeout; a failure
// throws CommError.
class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Sum over the group, in place. `t` must be contiguous on the group's device.
  virtual void all_reduce(at::Tensor& t) = 0;
};

// This process's place in the run: the launch, the layout and the groups it belongs to.
struct Context {
  LaunchEnv env;
  Layout layout;
  int tp_rank = 0;
  int ep_rank = 0;
  std::string backend = "none";  // "gloo", "nccl" or "none" (one process)
  std::string device;            // this rank's device ("cpu", "cuda:1")
  std::vector<std::string> rank_devices;  // every rank's device, in rank order (gathered at start-up)
  std::shared_ptr<Communicator> world;  // all ranks (the MoE combine); null without a process group
  std::shared_ptr<Communicator> tp;     // this rank's tp group (the world when tp is the world size)

  int rank() const { return env.rank; }
  int world_size() const { return env.world_size; }
  bool distributed() const { return env.world_size > 1; }
  // A process group is up: a launch of several processes, or a launcher's world of one (the same
  // code path, every all-reduce a no-op through c10d). Without one, nothing is ever reduced.
  bool grouped() const { return world != nullptr; }
  // Sums 64-bit counts over the world (memory per rank, cache bytes): with `per_rank`, each rank's
  // value in rank order. At world size 1, the value itself.
  std::vector<int64_t> gather(int64_t value) const;
  // Waits for every rank (the end of a run: no rank leaves while another still reduces).
  void barrier() const;
};

// Checks the layout against the launch and starts the process group: a UsageError (before any
// weight loads) when tp x ep differs from the world size; Gloo for a CPU device, NCCL for CUDA
// (this rank's device is cuda:LOCAL_RANK). `timeout` bounds every collective and the rendezvous.
// Without a launcher (world size 1, tp = ep = 1): no process group, a Context whose groups are
// null. Under a launcher even a world of one starts its group, so that path can be checked alone.
std::shared_ptr<Context> init(const Layout& layout, const std::string& device_type, std::chrono::milliseconds timeout);

// The collective timeout: EFFARCH_DIST_TIMEOUT seconds, else 300 s.
std::chrono::milliseconds default_timeout();

// Tells the other ranks why this one is about to exit (they name it in their own error), when a
// process group is up. Never throws.
void report_failure(const std::string& message);

// The device this rank runs on: under a launcher, "cuda" becomes cuda:LOCAL_RANK (modulo the
// visible GPUs); anything else, or no launcher, the request as it is.
std::string rank_device(const std::string& requested, const LaunchEnv& env);

}  // namespace effarch::parallel
