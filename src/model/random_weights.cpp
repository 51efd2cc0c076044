#include "effarch/model/random_weights.h"

#include <cmath>

#include <ATen/ATen.h>

#include "effarch/common/device.h"

namespace effarch::model {
namespace {

uint64_t mix_seed(uint64_t seed, const std::string& name) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a of the name
  for (unsigned char ch : name) h = (h ^ ch) * 1099511628211ull;
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * (h | 1);  // splitmix64 finaliser
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// The constant inits' spread under RandomInit::Varied.
constexpr double kVariedStd = 0.1;

// Draws in fp32 on `device` with a generator seeded for this tensor.
at::Tensor draw(const TensorSpec& spec, const ModelConfig& c, uint64_t seed, at::Device device, RandomInit init) {
  const auto opts = at::TensorOptions().dtype(at::kFloat).device(device);
  const auto shape = spec.shape;
  at::Generator gen = make_generator(device, seed);
  const double std = c.initializer_range;
  const bool varied = init == RandomInit::Varied;
  switch (spec.init) {
    case Init::Normal:
      return at::empty(shape, opts).normal_(0.0, std, gen);
    case Init::NormalOut:
      return at::empty(shape, opts).normal_(0.0, std / std::sqrt(2.0 * static_cast<double>(c.num_layers)), gen);
    case Init::Ones:
      return varied ? at::empty(shape, opts).normal_(1.0, kVariedStd, gen) : at::ones(shape, opts);
    case Init::Zeros:
      return varied ? at::empty(shape, opts).normal_(0.0, kVariedStd, gen) : at::zeros(shape, opts);
    case Init::ConvWeight: {
      const double bound = 1.0 / std::sqrt(static_cast<double>(shape.back()));
      return at::empty(shape, opts).uniform_(-bound, bound, gen);
    }
    case Init::DtProjWeight: {
      const double bound = 1.0 / std::sqrt(static_cast<double>(shape.back()));
      return at::empty(shape, opts).uniform_(-bound, bound, gen);
    }
    case Init::DtBias: {
      // dt = exp(U(log 1e-3, log 1e-1)); store softplus^-1(dt) = dt + log(-expm1(-dt)).
      at::Tensor dt = at::empty(shape, opts).uniform_(std::log(1e-3), std::log(1e-1), gen).exp_().clamp_min_(1e-4);
      return dt + at::log(-at::expm1(-dt));
    }
    case Init::MambaALog: {
      const int64_t n = shape.back();
      at::Tensor a_log = at::log(at::arange(1, n + 1, opts)).expand(shape).contiguous();
      return varied ? a_log.add_(at::empty(shape, opts).normal_(0.0, kVariedStd, gen)) : a_log;
    }
    case Init::Mamba2ALog:
      return at::empty(shape, opts).uniform_(1.0, 16.0, gen).log_();
  }
  return at::Tensor();
}

}  // namespace

at::Tensor random_tensor(const ModelConfig& config, const TensorSpec& spec, uint64_t seed, at::ScalarType dtype,
                         at::Device device, RandomInit init) {
  return draw(spec, config, mix_seed(seed, spec.name), device, init).to(dtype);
}

std::map<std::string, at::Tensor> random_weights(const ModelConfig& config, uint64_t seed, at::ScalarType dtype,
                                                 at::Device device, RandomInit init) {
  std::map<std::string, at::Tensor> out;
  for (const auto& spec : expected_tensors(config)) {
    if (spec.optional) continue;
    out.emplace(spec.name, random_tensor(config, spec, seed, dtype, device, init));
  }
  return out;
}

}  // namespace effarch::model
