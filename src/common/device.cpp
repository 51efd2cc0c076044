#include "effarch/common/device.h"

#include <mutex>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <fmt/format.h>

#include "effarch/common/dtype.h"
#include "effarch/common/error.h"

namespace effarch {

at::Device parse_device(const std::string& name, const std::string& option) {
  if (name == "auto") return at::hasCUDA() ? at::Device(at::kCUDA, 0) : at::Device(at::kCPU);
  if (name == "cpu") return at::kCPU;
  if (name.rfind("cuda", 0) == 0) {
    if (!at::hasCUDA()) {
      throw UsageError(fmt::format("{} {}: no CUDA device available (this build or machine has none); use --device cpu",
                                   option, name));
    }
    try {
      const at::Device d(name);
      if (d.has_index() && d.index() >= static_cast<int>(at::getNumGPUs())) {
        throw UsageError(fmt::format("{} {}: only {} CUDA devices", option, name, at::getNumGPUs()));
      }
      return d;
    } catch (const c10::Error&) {
    }
  }
  throw UsageError(fmt::format("{}: unknown device '{}' (use auto, cpu, cuda or cuda:N)", option, name));
}

at::ScalarType parse_run_dtype(const std::string& name, at::Device device, const std::string& option) {
  if (name == "auto") return device.is_cpu() ? at::kFloat : at::kBFloat16;
  return parse_float_dtype(name, option);
}

at::Generator make_generator(at::Device device, uint64_t seed) {
  if (device.is_cpu()) return at::make_generator<at::CPUGeneratorImpl>(seed);
  if (!device.is_cuda()) throw UsageError(fmt::format("no random generator for device {}", device.str()));
  at::Generator gen = at::detail::getCUDAHooks().getNewGenerator(device.has_index() ? device.index() : 0);
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_current_seed(seed);
  return gen;
}

}  // namespace effarch
