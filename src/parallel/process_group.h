#pragma once
// Internal to src/parallel: the c10d side (process_group.cpp), kept apart from the launch logic.

#include <chrono>
#include <memory>
#include <string>

#include "effarch/parallel/parallel.h"

namespace effarch::parallel::detail {

struct Groups {
  std::shared_ptr<Communicator> world;
  std::shared_ptr<Communicator> tp;  // null when tp == 1
  std::string backend;               // "gloo" or "nccl"
};

// Connects to (or, rank 0 without torchrun's agent, serves) the TCPStore at MASTER_ADDR:PORT and
// creates the world group and this rank's tp group. `cuda_index` >= 0: NCCL on that device.
Groups start(const LaunchEnv& env, const Layout& layout, int tp_rank, int ep_rank, int cuda_index,
             std::chrono::milliseconds timeout);

// Posts "rank r failed: message" where the other ranks look when a collective fails.
void post_failure(const std::string& message) noexcept;

// Which backends this build has.
bool have_gloo();
bool have_nccl();

}  // namespace effarch::parallel::detail
