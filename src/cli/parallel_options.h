#pragma once
// --tp / --ep and the start of a multi-process run, shared by bench and generate.

#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "effarch/model/config.h"
#include "effarch/parallel/parallel.h"

namespace effarch::cli {

struct ParallelCmd {
  int tp = 1;
  int ep = 1;
};

void add_parallel_options(CLI::App* sub, ParallelCmd* p);

// Checks that every config splits tp x ep ways and that the launch has tp x ep processes
// (UsageErrors, before any weight loads), then starts the process group. `device`: the requested
// device (auto resolved here); on return this rank's (cuda:LOCAL_RANK under a launcher).
std::shared_ptr<parallel::Context> start_parallel(const ParallelCmd& p, const std::vector<model::ModelConfig>& configs,
                                                  std::string* device);

// What results record of the run: world size, tp, ep, backend, launcher, every rank's device.
nlohmann::json parallel_json(const parallel::Context& ctx);

}  // namespace effarch::cli
