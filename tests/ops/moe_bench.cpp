// effarch_moe_bench: one MoE layer's routed experts at prefill (moe_route + moe_dispatch) on a
// model's shapes from the catalog (default DeepSeekMoE-16B and Mixtral-8x7B, 4096 tokens, random
// router and experts, so the load is about even), timed three ways on the same routing:
//   grouped     the CUDA dispatch with the expert stack (two at::_grouped_mm, no host sync);
//   per_expert  the CUDA dispatch without it (the counts read on the host, a GEMM chain per expert);
//   dense_gemm  one bf16 at::mm of the routed experts' FLOPs: [N, H] x [H, k * 3 * I].
// (On the CPU the second is the fused CPU dispatch, recorded as cpu_dispatch, and grouped does
// not run: a dry run of the program, not a measurement.)
// Prints each one's median, its TFLOP/s over the routed FLOPs (2 N k 3 H I; the router's 2 N H E
// is counted for the two dispatches), and the dispatch's rate as a fraction of dense_gemm's
// (issue 12's target: grouped >= 50%). Writes the same as JSON with --json FILE. Not a test.
//
//   effarch_moe_bench [--models deepseek-moe-16b,mixtral-8x7b] [--tokens 4096] [--reps 10]
//                     [--dtype bf16|fp32] [--json FILE]

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#ifdef EFFARCH_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAEvent.h>
#endif

#include "effarch/model/catalog.h"
#include "effarch/ops/moe.h"

namespace {

using namespace effarch;

// Median seconds of `reps` calls after two warm-ups: CUDA events on a GPU, the wall clock else.
double median_s(const at::Device& device, int reps, const std::function<void()>& f) {
  f();
  f();
  std::vector<double> t;
#ifdef EFFARCH_WITH_CUDA
  if (device.is_cuda()) {
    for (int i = 0; i < reps; ++i) {
      at::cuda::CUDAEvent start(cudaEventDefault), end(cudaEventDefault);
      start.record();
      f();
      end.record();
      end.synchronize();
      t.push_back(static_cast<double>(start.elapsed_time(end)) / 1e3);
    }
  }
#endif
  if (t.empty()) {
    for (int i = 0; i < reps; ++i) {
      const auto a = std::chrono::steady_clock::now();
      f();
      t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count());
    }
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string part; std::getline(in, part, ',');) out.push_back(part);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> models = {"deepseek-moe-16b", "mixtral-8x7b"};
  int64_t tokens = 4096;
  int reps = 10;
  std::string dtype_name = "bf16", json_path;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--models") models = split(v);
    else if (a == "--tokens") tokens = std::atoll(v.c_str());
    else if (a == "--reps") reps = std::atoi(v.c_str());
    else if (a == "--dtype") dtype_name = v;
    else if (a == "--json") json_path = v;
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  const at::ScalarType dtype = dtype_name == "fp32" ? at::kFloat : at::kBFloat16;
  const at::Device device = at::hasCUDA() ? at::Device(at::kCUDA, 0) : at::Device(at::kCPU);
  const auto o = at::TensorOptions().dtype(dtype).device(device);
  nlohmann::json doc{{"device", device.str()}, {"dtype", dtype_name}, {"tokens", tokens}, {"reps", reps}};
#ifdef EFFARCH_WITH_CUDA
  if (device.is_cuda()) {
    const auto* p = at::cuda::getCurrentDeviceProperties();
    doc["gpu"] = p->name;
    doc["compute_capability"] = fmt::format("{}.{}", p->major, p->minor);
  }
#endif
  std::printf("%s, %s, %lld tokens\n", device.str().c_str(), dtype_name.c_str(), static_cast<long long>(tokens));
  for (const std::string& name : models) {
    const model::ModelConfig c = model::resolve_model(name).config;
    if (!c.moe) {
      std::fprintf(stderr, "%s has no MoE layers\n", name.c_str());
      return 2;
    }
    const int64_t e = c.moe->num_experts, k = c.moe->top_k, inter = c.moe->expert_intermediate, h = c.hidden_size;
    at::manual_seed(0);
    std::vector<ops::ExpertWeights> experts(static_cast<size_t>(e));
    for (auto& w : experts) {
      w.gate_up = ops::Linear(at::randn({2 * inter, h}, o) * 0.02);
      w.gate = ops::Linear(w.gate_up.weight.narrow(0, 0, inter));
      w.up = ops::Linear(w.gate_up.weight.narrow(0, inter, inter));
      w.down = ops::Linear(at::randn({h, inter}, o) * 0.02);
    }
    const ops::ExpertStack stack = ops::stack_experts(experts);
    const at::Tensor router = at::randn({e, h}, o) * 0.02;
    const at::Tensor x = at::randn({tokens, h}, o);
    const auto layer = [&](const ops::ExpertStack* s) {
      return [&, s] {
        const ops::Routing r = ops::moe_route(x, router, k, c.moe->router, ops::Backend::Auto);
        (void)ops::moe_dispatch(x, r, experts, ops::Activation::SiLU, ops::Backend::Auto, nullptr, s);
      };
    };
    const std::string why = device.is_cuda() ? ops::detail::moe_grouped_refusal(
                                                   &stack, x, e,
#ifdef EFFARCH_WITH_CUDA
                                                   at::cuda::getCurrentDeviceProperties()->major
#else
                                                   0
#endif
                                                   )
                                             : "not on CUDA (the grouped path is the CUDA dispatch's)";
    const at::Tensor dense_w = at::randn({h, k * 3 * inter}, o) * 0.02;
    const double routed_flops = 2.0 * static_cast<double>(tokens * k * 3 * h * inter);
    const double router_flops = 2.0 * static_cast<double>(tokens * h * e);
    const double t_dense = median_s(device, reps, [&] { (void)at::mm(x, dense_w); });
    const double t_per = median_s(device, reps, layer(nullptr));
    const double t_grouped = why.empty() ? median_s(device, reps, layer(&stack)) : 0.0;
    const double dense_rate = routed_flops / t_dense;
    const std::string per_name = device.is_cuda() ? "per_expert" : "cpu_dispatch";
    nlohmann::json m{{"model", name},
                     {"experts", e},
                     {"top_k", k},
                     {"hidden", h},
                     {"inter", inter},
                     {"routed_flops", routed_flops},
                     {"router_flops", router_flops},
                     {"dense_gemm", {{"time_s", t_dense}, {"flops_per_s", dense_rate}}},
                     {per_name,
                      {{"time_s", t_per},
                       {"flops_per_s", (routed_flops + router_flops) / t_per},
                       {"fraction_of_dense", (routed_flops + router_flops) / t_per / dense_rate}}}};
    if (why.empty()) {
      m["grouped"] = {{"time_s", t_grouped},
                      {"flops_per_s", (routed_flops + router_flops) / t_grouped},
                      {"fraction_of_dense", (routed_flops + router_flops) / t_grouped / dense_rate}};
    } else {
      m["grouped"] = {{"refused", why}};
    }
    std::printf("%s (E %lld, k %lld, H %lld, I %lld): %.1f GFLOP routed\n", name.c_str(), static_cast<long long>(e),
                static_cast<long long>(k), static_cast<long long>(h), static_cast<long long>(inter), routed_flops / 1e9);
    std::printf("  dense_gemm  %9.3f ms  %7.1f TFLOP/s\n", t_dense * 1e3, dense_rate / 1e12);
    std::printf("  %-12s%9.3f ms  %7.1f TFLOP/s  %5.1f%% of dense\n", per_name.c_str(), t_per * 1e3,
                (routed_flops + router_flops) / t_per / 1e12, 100 * m[per_name]["fraction_of_dense"].get<double>());
    if (why.empty()) {
      std::printf("  grouped     %9.3f ms  %7.1f TFLOP/s  %5.1f%% of dense\n", t_grouped * 1e3,
                  (routed_flops + router_flops) / t_grouped / 1e12, 100 * m["grouped"]["fraction_of_dense"].get<double>());
    } else {
      std::printf("  grouped     not run: %s\n", why.c_str());
    }
    doc["models"].push_back(m);
  }
  if (!json_path.empty()) std::ofstream(json_path) << doc.dump(2) << "\n";
  return 0;
}
