// Options that several commands share, registered the same way everywhere.

#include <charconv>
#include <cstdint>
#include <optional>

#include <fmt/format.h>

#include "commands.h"
#include "effarch/common/device.h"
#include "effarch/common/error.h"
#include "effarch/model/catalog.h"
#include "effarch/ops/backend.h"
#include "effarch/parallel/parallel.h"

namespace effarch::cli {

std::string model_footer(bool commands) {
  return fmt::format("MODEL{} is a Hugging Face checkpoint folder, a config.json, or a built-in config name (see "
                     "`effarch info`); a path that exists wins over a built-in name, with a note.",
                     commands ? " (info, generate, experts, bench, profile)" : "");
}

void add_model_footer(CLI::App* sub) { sub->footer(model_footer()); }

void note_shadowed_model(const std::string& model) {
  // Said once, by rank 0, when a launcher started several processes (a bad launch environment is
  // the command's own error to report, later).
  int rank = 0;
  try {
    rank = parallel::read_launch_env().rank;
  } catch (const std::exception&) {
  }
  if (rank != 0) return;
  if (const auto note = model::shadowed_builtin_note(model)) fmt::print(stderr, "note: {}\n", *note);
}

void add_backend_option(CLI::App* sub, std::string* value, bool list) {
  const std::string what =
      "auto: each op's kernel for the device where it has one (CUDA on a GPU, fused CPU kernels on "
      "the CPU), else its ATen reference; reference: the reference everywhere; cuda: the CUDA kernels, "
      "an error for an op without one";
  sub->add_option("--backend", *value, list ? what + ". Several (reference,auto) run every point under each in turn" : what)
      ->capture_default_str();
}

void add_weights_option(CLI::App* sub, std::string* value) {
  sub->add_option("--weights", *value,
                  "dense: every weight in the model dtype; int8: every linear weight quantised at load to int8 "
                  "with an fp32 scale per output channel (embeddings, norms, routers stay in the dtype)")
      ->capture_default_str();
}

void add_parallel_block_option(CLI::App* sub, std::string* value) {
  sub->add_option("--parallel-block", *value,
                  "fused: a parallel block's (Phi's) one-token steps run two products a layer, q/k/v with fc1 and "
                  "fc2 with the attention's output projection, the weights laid out for them at load; separate: "
                  "four, as prefill runs them; auto: fused on a GPU, separate on the CPU (docs/engine.md). "
                  "Recorded as parallel_block_products")
      ->capture_default_str();
}

void add_norm_prologue_option(CLI::App* sub, std::string* value) {
  sub->add_option("--norm-prologue", *value,
                  "auto|fused|separate: a decode step's residual add + norm inside the dense GEMV that reads it "
                  "(one kernel fewer per norm), or the add_norm kernel then the GEMV. auto: fused where the CUDA "
                  "add_norm and dense GEMV kernels run with dense weights. Recorded as add_norm_in_gemv")
      ->capture_default_str();
}

void add_selective_scan_option(CLI::App* sub, std::string* value) {
  sub->add_option("--selective-scan", *value,
                  "auto|lanes16|lanes8|pieces|seg4|seg8|split: the CUDA selective scan's prefill kernel the Mamba-1 "
                  "layers run (docs/mamba.md); auto: the default (lanes16). Recorded as selective_scan_variant")
      ->capture_default_str();
}

void add_seed_option(CLI::App* sub, uint64_t* value, const std::string& what) {
  // CLI11 converts with strtoull, which takes "-1" as 2^64 - 1 and a number past 2^64 as 2^64 - 1:
  // two seeds nobody asked for. A seed is a decimal number that fits.
  const CLI::Validator whole_number(
      [](std::string& text) {
        uint64_t v = 0;
        const char* end = text.data() + text.size();
        const auto [ptr, ec] = std::from_chars(text.data(), end, v);
        if (text.empty() || ec != std::errc() || ptr != end) {
          return std::string("a seed is a whole number from 0 to 18446744073709551615, got '") + text + "'";
        }
        return std::string();
      },
      "UINT64");
  sub->add_option("--seed", *value, what)->check(whole_number)->capture_default_str();
}

void add_pdl_option(CLI::App* sub, std::string* value, bool list) {
  const std::string what =
      "auto (default: on for a GPU of compute capability 9.x, off elsewhere), on or off: programmatic "
      "dependent launch of the decode step's CUDA kernels (sm_90 and up): each may start while the "
      "kernel before it finishes, the GEMVs streaming their first weights meanwhile; same results "
      "(docs/kernels.md)";
  sub->add_option("--pdl", *value,
                  list ? what + "; recorded in each point's key. off,on runs every point under both in turn"
                       : what + "; recorded in the results")
      ->capture_default_str();
}

bool resolve_pdl(const std::optional<bool>& request, const std::string& device) {
  if (request) return *request;
  try {
    return ops::programmatic_launch_auto(parse_device(device, "--device"));
  } catch (const UsageError&) {  // the command reports its device where it always did
    return false;
  }
}

void check_threads(const std::optional<int>& threads, const std::string& option) {
  if (threads && (*threads < 1 || *threads > 1024)) {
    throw UsageError(fmt::format("{} must be from 1 to 1024, got {}", option, *threads));
  }
}

void apply_pdl_option(const std::string& value, const std::string& device) {
  ops::set_programmatic_launch(resolve_pdl(ops::parse_programmatic_launch_request(value, "--pdl"), device), "--pdl");
}

}  // namespace effarch::cli
