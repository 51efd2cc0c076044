// effarch_parallel_check MODEL... --tp N --ep M: run as one of tp x ep processes (RANK,
// WORLD_SIZE, MASTER_ADDR, MASTER_PORT set by tests/cli/cli_parallel.sh), it loads each model
// split across the ranks, runs a prefill of two prompts and greedy decode steps, and rank 0
// compares with the same model in one process (built in rank 0 as well, same seed): the fp32
// logits within 1e-5, the greedy tokens identical, the ranks' cache bytes summing to ep x the
// single process's (tp splits the caches; ep ranks each hold the whole attention/Mamba cache).
// Prints one line per model; exits 0 when every model passed on every rank.

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "effarch/common/error.h"
#include "effarch/model/catalog.h"
#include "effarch/model/model.h"
#include "effarch/parallel/parallel.h"

namespace {

using namespace effarch;

struct Run {
  std::vector<at::Tensor> logits;  // prefill [B, T, V], then each decode step's [B, V]
  std::vector<at::Tensor> tokens;  // greedy tokens per step
  uint64_t cache_bytes = 0;
};

Run run(model::Model& m, const at::Tensor& ids, int steps) {
  Run r;
  m.allocate_cache(ids.size(0), ids.size(1) + steps);
  at::Tensor logits = m.prefill(ids);
  r.logits.push_back(logits);
  at::Tensor tok = logits.select(1, ids.size(1) - 1).argmax(-1);
  for (int i = 0; i < steps; ++i) {
    r.tokens.push_back(tok);
    logits = m.decode(tok);
    r.logits.push_back(logits);
    tok = logits.argmax(-1);
  }
  r.tokens.push_back(tok);
  r.cache_bytes = m.cache().bytes();
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> models;
  int tp = 1, ep = 1;
  std::string decode = "off";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--tp" && i + 1 < argc) {
      tp = std::atoi(argv[++i]);
    } else if (a == "--ep" && i + 1 < argc) {
      ep = std::atoi(argv[++i]);
    } else if (a == "--cuda-graphs" && i + 1 < argc) {
      decode = argv[++i];
    } else {
      models.push_back(a);
    }
  }
  try {
    at::set_num_threads(1);
    auto ctx = parallel::init(parallel::Layout{tp, ep}, "cpu", parallel::default_timeout());
    bool all_ok = true;
    for (const std::string& name : models) {
      const model::ModelSource source = model::resolve_model(name);
      model::ModelOptions opt;
      opt.dtype = at::kFloat;
      opt.seed = 7;
      opt.random_init = model::RandomInit::Varied;  // biases, norm weights, D and A_log drawn too
      opt.decode = model::parse_cuda_graphs(decode, "--cuda-graphs");
      opt.parallel = ctx;
      auto split = model::Model::load(source, opt);
      at::Generator gen = at::detail::createCPUGenerator(1234);
      const at::Tensor ids = at::randint(0, source.config.vocab_size, {2, 9}, gen, at::kLong);
      const int steps = 5;
      const Run got = run(*split, ids, steps);
      const std::vector<int64_t> cache = ctx->gather(static_cast<int64_t>(got.cache_bytes));
      int64_t ok = 1;
      if (ctx->rank() == 0) {
        model::ModelOptions single = opt;
        single.parallel = nullptr;
        auto whole = model::Model::load(source, single);
        const Run want = run(*whole, ids, steps);
        double max_diff = 0;
        for (size_t i = 0; i < want.logits.size(); ++i) {
          max_diff = std::max(max_diff, (got.logits[i] - want.logits[i]).abs().max().item<double>());
        }
        bool same_tokens = true;
        for (size_t i = 0; i < want.tokens.size(); ++i) same_tokens = same_tokens && at::equal(got.tokens[i], want.tokens[i]);
        int64_t total = 0;
        for (int64_t c : cache) total += c;
        const bool cache_ok = static_cast<uint64_t>(total) == static_cast<uint64_t>(ep) * want.cache_bytes;
        ok = max_diff <= 1e-5 && same_tokens && cache_ok;
        fmt::print("{} --tp {} --ep {} (decode {}): max |logits - single process| = {:.3g} over {} forwards; greedy "
                   "tokens {}; cache bytes per rank {} (sum {}, single process {} x ep {}): {}\n",
                   name, tp, ep, decode, max_diff, want.logits.size(), same_tokens ? "identical" : "DIFFER",
                   fmt::join(cache, " + "), total, want.cache_bytes, ep, ok ? "OK" : "FAIL");
        std::fflush(stdout);
      }
      const std::vector<int64_t> verdict = ctx->gather(ok);
      all_ok = all_ok && verdict[0] == 1;
    }
    ctx->barrier();
    return all_ok ? 0 : 1;
  } catch (const UsageError& e) {
    parallel::report_failure(e.what());
    fmt::print(stderr, "effarch_parallel_check: error: {}\n", e.what());
    return 2;
  } catch (const parallel::CommError& e) {
    fmt::print(stderr, "effarch_parallel_check: error: {}\n", e.what());
    std::fflush(stderr);
    std::_Exit(1);
  } catch (const std::exception& e) {
    parallel::report_failure(e.what());
    fmt::print(stderr, "effarch_parallel_check: error: {}\n", e.what());
    return 1;
  }
}
