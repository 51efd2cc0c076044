// The environment a results file records: host, device, versions, and the two roofline
// ceilings measured at start (copy bandwidth, GEMM rate).

#include <sys/utsname.h>

#include <algorithm>
#include <ctime>
#include <fstream>
#include <sstream>
#include <thread>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <fmt/format.h>

#include "device_probe.h"
#include "effarch/bench/bench.h"
#include "effarch/common/device.h"
#include "effarch/common/dtype.h"
#include "effarch/ops/backend.h"
#include "effarch/version.h"

#ifdef EFFARCH_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAFunctions.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#endif

namespace effarch::bench {
namespace {

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    for (const char* key : {"model name", "Model", "Hardware"}) {
      if (line.rfind(key, 0) == 0 && line.find(':') != std::string::npos) return line.substr(line.find(':') + 2);
    }
  }
  return "unknown";
}

#ifdef EFFARCH_WITH_CUDA
// The NVIDIA kernel module's version ("580.159.04"), from /proc/driver/nvidia/version; "" if absent.
std::string nvidia_driver_version() {
  std::ifstream in("/proc/driver/nvidia/version");
  std::string line;
  return std::getline(in, line) ? detail::parse_nvidia_driver_version(line) : "";
}
#endif

// Median seconds of `fn` over `reps` runs after one warm-up, synchronised around each.
template <typename Fn>
double time_median(const c10::Device& device, int reps, Fn&& fn) {
  fn();
  detail::synchronize(device);
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const double t0 = detail::now_s();
    fn();
    detail::synchronize(device);
    t.push_back(detail::now_s() - t0);
  }
  return percentile(t, 50);
}

}  // namespace

nlohmann::json probe_environment(const std::string& device_name, const std::string& dtype_name) {
  const at::Device device = parse_device(device_name, "--device");
  const at::ScalarType dtype = parse_run_dtype(dtype_name, device, "--dtype");
  // A first tensor initialises the device's allocator (cuBLAS allocates its workspace there).
  (void)at::empty({1}, at::TensorOptions().device(device));
  nlohmann::json env;
  std::time_t now = std::time(nullptr);
  char iso[32];
  std::strftime(iso, sizeof iso, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  env["time"] = iso;
  env["effarch"] = {{"version", EFFARCH_VERSION}, {"git_commit", git_commit()}};
  utsname u{};
  uname(&u);
  env["host"] = {{"cpu", cpu_model()},
                 {"cores", std::thread::hardware_concurrency()},
                 {"ram_bytes", detail::device_total_memory(at::Device(at::kCPU))},
                 {"os", fmt::format("{} {} {}", u.sysname, u.release, u.machine)},
                 {"hostname", u.nodename},
                 {"usable_cores", usable_cores()},
                 {"aten_threads", at::get_num_threads()}};
#ifdef EFFARCH_TORCH_VERSION
  env["libtorch"] = EFFARCH_TORCH_VERSION;
#endif
  nlohmann::json dev = {{"type", device.is_cuda() ? "cuda" : "cpu"}, {"string", device.str()}};
#ifdef EFFARCH_WITH_CUDA
  if (device.is_cuda()) {
    // The device asked for ("cuda:1"), not whichever is current.
    const cudaDeviceProp* prop =
        at::cuda::getDeviceProperties(device.index() < 0 ? c10::cuda::current_device() : device.index());
    int driver = 0, runtime = 0, cublas = 0;
    cudaDriverGetVersion(&driver);
    cudaRuntimeGetVersion(&runtime);
    cublasGetVersion(at::cuda::getCurrentCUDABlasHandle(), &cublas);
    dev["name"] = prop->name;
    dev["compute_capability"] = fmt::format("{}.{}", prop->major, prop->minor);
    dev["memory_bytes"] = detail::device_total_memory(device);
    dev["multiprocessors"] = prop->multiProcessorCount;
    dev["l2_cache_bytes"] = prop->l2CacheSize;  // effarch kernels scrubs twice this before each timed call
    dev["driver_version"] = nvidia_driver_version();
    dev["driver_cuda_version"] = fmt::format("{}.{}", driver / 1000, (driver % 1000) / 10);  // the driver's CUDA API
    dev["cuda_runtime_version"] = fmt::format("{}.{}", runtime / 1000, (runtime % 1000) / 10);
    dev["cublas_version"] = cublas;
  }
#endif
  env["programmatic_launch"] = ops::programmatic_launch_record(device);  // --pdl
  if (!device.is_cuda()) {
    dev["name"] = cpu_model();
    dev["memory_bytes"] = detail::device_total_memory(device);
  }
  // Copy bandwidth: a large device-to-device copy reads and writes every byte once.
  const int64_t copy_bytes = device.is_cuda() ? (int64_t{1} << 30) : (int64_t{1} << 28);
  {
    const auto opts = at::TensorOptions().dtype(at::kByte).device(device);
    at::Tensor src = at::ones({copy_bytes}, opts), dst = at::empty({copy_bytes}, opts);
    const double t = time_median(device, device.is_cuda() ? 20 : 5, [&] { dst.copy_(src); });
    dev["copy_bandwidth_bytes_per_s"] = 2.0 * static_cast<double>(copy_bytes) / t;
    dev["copy_bandwidth_test_bytes"] = copy_bytes;
  }
  // GEMM rate in the run's dtype: n^3 multiply-adds = 2 n^3 FLOPs.
  {
    const int64_t n = device.is_cuda() ? 8192 : 1024;
    const auto opts = at::TensorOptions().dtype(dtype).device(device);
    at::Tensor a = at::randn({n, n}, opts), b = at::randn({n, n}, opts), c = at::empty({n, n}, opts);
    const double t = time_median(device, device.is_cuda() ? 20 : 3, [&] { at::mm_out(c, a, b); });
    dev["gemm_flops_per_s"] = 2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n) / t;
    dev["gemm_size"] = n;
    dev["gemm_dtype"] = float_dtype_name(dtype);
  }
  // The harness's own cost around a timed region: two clock reads and a sync with nothing queued.
  {
    std::vector<double> t;
    for (int i = 0; i < 200; ++i) {
      const double t0 = detail::now_s();
      detail::synchronize(device);
      t.push_back(detail::now_s() - t0);
    }
    env["harness_timer_overhead_s"] = percentile(t, 50);
  }
  env["device"] = dev;
  // The energy counter the points read (NVML on a GPU, with the power limit; RAPL on the CPU), or
  // why there is none. NVML's index is taken to be CUDA's (true unless CUDA_VISIBLE_DEVICES or
  // CUDA_DEVICE_ORDER reorders them).
  env["energy"] = open_energy_counter(device).describe();
  detail::reset_peaks(device);
  return env;
}

}  // namespace effarch::bench
