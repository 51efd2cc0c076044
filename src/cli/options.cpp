// Options that several commands share, registered the same way everywhere.

#include "commands.h"

namespace effarch::cli {

void add_backend_option(CLI::App* sub, std::string* value) {
  sub->add_option("--backend", *value,
                  "auto: each op's kernel for the device where it has one (CUDA on a GPU, fused CPU kernels on "
                  "the CPU), else its ATen reference; reference: the reference everywhere; cuda: the CUDA kernels, "
                  "an error for an op without one")
      ->capture_default_str();
}

void add_weights_option(CLI::App* sub, std::string* value) {
  sub->add_option("--weights", *value,
                  "dense: every weight in the model dtype; int8: every linear weight quantised at load to int8 "
                  "with an fp32 scale per output channel (embeddings, norms, routers stay in the dtype)")
      ->capture_default_str();
}

}  // namespace effarch::cli
