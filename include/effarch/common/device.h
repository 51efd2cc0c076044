#pragma once
// --device and --dtype resolution shared by the commands that run models.

#include <cstdint>
#include <string>

#include <ATen/core/Generator.h>

#include <ATen/core/Tensor.h>

namespace effarch {

// "auto" (a GPU when present), "cpu", "cuda", "cuda:N". Throws UsageError naming `option`, also
// when CUDA is asked for and this build or machine has none.
at::Device parse_device(const std::string& name, const std::string& option);
// "auto": float32 on the CPU, bfloat16 on a GPU; else as parse_float_dtype.
at::ScalarType parse_run_dtype(const std::string& name, at::Device device, const std::string& option);
// A new random generator for `device` seeded with `seed`: the caller's own, never ATen's global
// default one, so drawing weights or sampling changes no other code's random stream.
at::Generator make_generator(at::Device device, uint64_t seed);

}  // namespace effarch
