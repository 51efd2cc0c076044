#include "effarch/generate/generate.h"

#include <chrono>

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "effarch/common/error.h"

namespace effarch::generate {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::vector<int64_t> to_host(const at::Tensor& ids) {
  const at::Tensor cpu = ids.to(at::kCPU).contiguous();
  return {cpu.data_ptr<int64_t>(), cpu.data_ptr<int64_t>() + cpu.numel()};
}

}  // namespace

GenerateResult generate(model::Model& model, const at::Tensor& prompts, const GenerateOptions& options) {
  if (prompts.dim() != 2 || prompts.size(1) == 0) throw UsageError("generate: prompts must be [batch, tokens] with tokens > 0");
  if (options.max_new_tokens <= 0) throw UsageError(fmt::format("-n must be positive, got {}", options.max_new_tokens));
  model::check_sequence_tokens(options.max_new_tokens, "-n");
  const int64_t batch = prompts.size(0), len = prompts.size(1);
  const auto& config = model.config();
  if (config.attention && config.max_position_embeddings && len + options.max_new_tokens > *config.max_position_embeddings) {
    throw UsageError(fmt::format("prompt of {} tokens + {} new tokens exceed the model's context of {} tokens", len,
                                 options.max_new_tokens, *config.max_position_embeddings));
  }
  const at::Device device = model.options().device;
  Sampler sampler(options.sampling, device);
  model.allocate_cache(batch, len + options.max_new_tokens);

  at::Tensor eos;
  if (!options.eos_ids.empty()) eos = at::tensor(options.eos_ids, at::kLong).to(device);
  at::Tensor finished = at::zeros({batch}, at::TensorOptions().dtype(at::kBool).device(device));
  std::vector<at::Tensor> steps;  // [B] device tensors

  GenerateResult result;
  result.prompt_tokens = len;
  const auto t0 = Clock::now();
  const at::Tensor logits = model.prefill_last(prompts.to(device));  // [B, V]: the head on the last position only
  at::Tensor next = sampler.sample(logits);
  steps.push_back(next);
  std::vector<int64_t> host = to_host(next);  // the first token on the host: TTFT
  result.ttft_s = seconds_since(t0);
  if (options.on_token) options.on_token(host);
  if (eos.defined()) finished = at::isin(next, eos);

  const auto t1 = Clock::now();
  for (int64_t s = 1; s < options.max_new_tokens; ++s) {
    // Check for the end every 8 steps only (a host sync) unless streaming syncs anyway.
    if (eos.defined() && (options.on_token || s % 8 == 0) && finished.all().item<bool>()) break;
    next = sampler.sample(model.decode(next));
    steps.push_back(next);
    if (eos.defined()) finished = finished | at::isin(next, eos);
    if (options.on_token) options.on_token(to_host(next));
    ++result.steps;
  }
  const at::Tensor all = at::stack(steps, 1).to(at::kCPU);  // [B, steps]
  result.decode_s = seconds_since(t1);
  for (int64_t b = 0; b < batch; ++b) {
    std::vector<int64_t> seq;
    for (int64_t s = 0; s < all.size(1); ++s) {
      const int64_t id = all[b][s].item<int64_t>();
      seq.push_back(id);
      if (std::find(options.eos_ids.begin(), options.eos_ids.end(), id) != options.eos_ids.end()) break;
    }
    result.tokens.push_back(std::move(seq));
  }
  return result;
}

}  // namespace effarch::generate
