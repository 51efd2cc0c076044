// Options that several commands share, registered the same way everywhere.

#include "commands.h"

namespace effarch::cli {

void add_backend_option(CLI::App* sub, std::string* value) {
  sub->add_option("--backend", *value,
                  "auto: each op's CUDA kernel on a GPU where it has one, else its ATen reference; reference: the "
                  "reference everywhere; cuda: the kernels, an error for an op without one")
      ->capture_default_str();
}

}  // namespace effarch::cli
