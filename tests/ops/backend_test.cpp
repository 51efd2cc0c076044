// The Backend decision, made once for every op family: what auto, reference and cuda resolve to
// on this build and device, and the errors that name the op.

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "../test_util.h"
#include "effarch/common/error.h"
#include "effarch/ops/backend.h"
#include "effarch/ops/ssd.h"
#include "kernel_params.h"

namespace effarch::ops {
namespace {

TEST(Backend, ParsesTheThreeNamesAndNamesTheOption) {
  EXPECT_EQ(parse_backend("auto", "--backend"), Backend::Auto);
  EXPECT_EQ(parse_backend("reference", "--backend"), Backend::Reference);
  EXPECT_EQ(parse_backend("cuda", "--backend"), Backend::Cuda);
  for (Backend b : {Backend::Auto, Backend::Reference, Backend::Cuda}) {
    EXPECT_EQ(parse_backend(std::string(backend_name(b)), "x"), b);
  }
  EXPECT_THROW_WITH(parse_backend("kernel", "--backend"), UsageError, {"--backend", "'kernel'", "auto, reference or cuda"});
}

// --pdl: programmatic dependent launch of the decode kernels, a process-wide switch (off by
// default). A build without CUDA kernels refuses on, naming the option.
TEST(Backend, ProgrammaticLaunchParsesOnOffAndIsOffByDefault) {
  EXPECT_FALSE(programmatic_launch());
  EXPECT_TRUE(parse_programmatic_launch("on", "--pdl"));
  EXPECT_FALSE(parse_programmatic_launch("off", "--pdl"));
  EXPECT_THROW_WITH(parse_programmatic_launch("yes", "--pdl"), UsageError, {"--pdl", "'yes'", "on or off"});
  set_programmatic_launch(false);
  EXPECT_FALSE(programmatic_launch());
  if (!kBuiltWithCuda) {
    EXPECT_THROW_WITH(set_programmatic_launch(true, "--pdl"), UsageError, {"--pdl on", "no CUDA kernels"});
    EXPECT_FALSE(programmatic_launch());
    return;
  }
  set_programmatic_launch(true);
  EXPECT_TRUE(programmatic_launch());
  // Results say "on" only where it changes something: CUDA launches.
  EXPECT_STREQ(programmatic_launch_record(c10::Device(c10::kCPU)), "off");
  EXPECT_STREQ(programmatic_launch_record(c10::Device(c10::kCUDA, 0)), "on");
  set_programmatic_launch(false);
  EXPECT_STREQ(programmatic_launch_record(c10::Device(c10::kCUDA, 0)), "off");
  EXPECT_FALSE(programmatic_launch());
}

// --pdl auto (the CLI's default): on for a GPU of compute capability 9.x in a build whose kernels
// all have the wait, where it was measured (an H100: docs/perf/pending.md, entry 28); off for the
// CPU, older GPUs, and 12.x (a DGX Spark's sm_121, not yet measured).
TEST(Backend, ProgrammaticLaunchAutoIsOnWhereItWasMeasured) {
  EXPECT_EQ(parse_programmatic_launch_request("auto", "--pdl"), std::nullopt);
  EXPECT_EQ(parse_programmatic_launch_request("on", "--pdl"), true);
  EXPECT_EQ(parse_programmatic_launch_request("off", "--pdl"), false);
  EXPECT_THROW_WITH(parse_programmatic_launch_request("yes", "--pdl"), UsageError, {"--pdl", "'yes'", "auto, on or off"});
  EXPECT_TRUE(detail::programmatic_launch_auto(9, 90, true));
  EXPECT_TRUE(detail::programmatic_launch_auto(9, 0, true));     // "native": built for the GPU it runs on
  EXPECT_FALSE(detail::programmatic_launch_auto(9, 80, true));   // code without the wait: refused for on
  EXPECT_FALSE(detail::programmatic_launch_auto(12, 90, true));  // sm_121: not measured
  EXPECT_FALSE(detail::programmatic_launch_auto(8, 90, true));
  EXPECT_FALSE(detail::programmatic_launch_auto(-1, 90, true));  // not a CUDA device
  EXPECT_FALSE(detail::programmatic_launch_auto(9, 90, false));  // no CUDA kernels
  const c10::Device cpu(c10::kCPU);
  EXPECT_FALSE(programmatic_launch_auto(cpu));
  EXPECT_FALSE(resolve_programmatic_launch(std::nullopt, cpu));
  EXPECT_TRUE(resolve_programmatic_launch(true, cpu));
  EXPECT_FALSE(resolve_programmatic_launch(false, cpu));
}

// A build whose kernels include code below compute capability 9.0 has no grid-dependency wait in
// that code, which may run on a GPU that honours the attribute: --pdl on is refused there.
TEST(Backend, ProgrammaticLaunchIsRefusedForKernelsBuiltBelowSm90) {
  const std::string refusal = detail::programmatic_launch_refusal(80, "--pdl");
  for (const char* fragment : {"--pdl on", "compute capability 8.0", "CMAKE_CUDA_ARCHITECTURES", "90 and up"}) {
    EXPECT_NE(refusal.find(fragment), std::string::npos) << refusal;
  }
  EXPECT_NE(detail::programmatic_launch_refusal(86, "--pdl").find("8.6"), std::string::npos);
  EXPECT_EQ(detail::programmatic_launch_refusal(90, "--pdl"), "");
  EXPECT_EQ(detail::programmatic_launch_refusal(121, "--pdl"), "");
  EXPECT_EQ(detail::programmatic_launch_refusal(0, "--pdl"), "");  // unknown ("native": the GPU it runs on)
}

TEST(Backend, EveryFamilyHasADistinctName) {
  std::set<std::string> names;
  for (OpFamily op : all_op_families()) names.insert(std::string(op_name(op)));
  EXPECT_EQ(names.size(), all_op_families().size());
  EXPECT_EQ(names.count("?"), 0u);
}

TEST(Backend, OnTheCpuAutoPicksTheCpuKernelAndReferenceTheReference) {
  EXPECT_EQ(backend_name(Backend::Cpu), "cpu");
  for (OpFamily op : all_op_families()) {
    EXPECT_EQ(resolve_backend(Backend::Reference, op, at::kCPU), Backend::Reference) << op_name(op);
    EXPECT_EQ(resolve_backend(Backend::Auto, op, at::kCPU), has_cpu_kernel(op) ? Backend::Cpu : Backend::Reference)
        << op_name(op);
    EXPECT_EQ(use_cpu_kernel(Backend::Auto, op, at::kCPU), has_cpu_kernel(op));
    EXPECT_FALSE(use_cuda_kernel(Backend::Auto, op, at::kCPU));
    if (has_cpu_kernel(op)) {
      EXPECT_EQ(resolve_backend(Backend::Cpu, op, at::kCPU), Backend::Cpu);
    } else {
      EXPECT_THROW_WITH(resolve_backend(Backend::Cpu, op, at::kCPU), OpError, {std::string(op_name(op)), "no CPU kernel"});
    }
  }
  EXPECT_TRUE(has_cpu_kernel(OpFamily::SelectiveScan));
  EXPECT_TRUE(has_cpu_kernel(OpFamily::SelectiveStateUpdate));
  EXPECT_TRUE(has_cpu_kernel(OpFamily::SsdScan));
  EXPECT_TRUE(has_cpu_kernel(OpFamily::SsdStateUpdate));
}

TEST(Backend, CudaOnTheCpuIsAnOpErrorNamingTheOp) {
  for (OpFamily op : all_op_families()) {
    EXPECT_THROW_WITH(resolve_backend(Backend::Cuda, op, at::kCPU), OpError, {std::string(op_name(op)), "cuda"});
  }
}

// The kernels' params count in int: a size past INT32_MAX (a cast would wrap it to a small or
// negative one) is an OpError naming the op and the size, in every launcher that takes one from a
// tensor (batch, channels, length, tokens).
TEST(Backend, SizesPastTheKernelsIntAreRefusedByName) {
  EXPECT_EQ(detail::to_int(int64_t{2147483647}, "selective_scan", "length"), 2147483647);
  EXPECT_EQ(detail::to_int(0, "selective_scan", "length"), 0);
  EXPECT_THROW_WITH(detail::to_int(int64_t{1} << 31, "selective_scan", "length"), OpError,
                    {"selective_scan", "length = 2147483648", "32-bit"});
  EXPECT_THROW_WITH(detail::to_int(int64_t{3} << 32, "moe_dispatch", "tokens x top_k"), OpError,
                    {"moe_dispatch", "tokens x top_k"});
  EXPECT_THROW_WITH(detail::to_int(-1, "causal_conv1d", "batch"), OpError, {"causal_conv1d", "batch = -1"});
}

TEST(Backend, KernelsExistOnlyInCudaBuilds) {
  for (OpFamily op : all_op_families()) {
    if (!kBuiltWithCuda) EXPECT_FALSE(has_cuda_kernel(op)) << op_name(op);
  }
  EXPECT_EQ(has_cuda_kernel(OpFamily::CausalConv1d), kBuiltWithCuda);
  EXPECT_EQ(has_cuda_kernel(OpFamily::MoeDispatch), kBuiltWithCuda);  // kernels/moe
}

TEST(Backend, AutoOnAGpuPicksTheKernelWhereThereIsOne) {
  if (!kBuiltWithCuda) GTEST_SKIP() << "needs a CUDA build";
  const at::Device gpu(at::kCUDA, 0);
  for (OpFamily op : all_op_families()) {
    EXPECT_EQ(resolve_backend(Backend::Auto, op, gpu), has_cuda_kernel(op) ? Backend::Cuda : Backend::Reference)
        << op_name(op);
    if (!has_cuda_kernel(op)) {
      EXPECT_THROW_WITH(resolve_backend(Backend::Cuda, op, gpu), OpError, {std::string(op_name(op)), "no CUDA kernel"});
    }
  }
}

// The SSD scan's one exception to resolve_backend: under Auto on a GPU, fp32 x runs the reference
// (the CUDA scan's FMA products ran 4x slower than it on an H200); asked-for products or
// --backend cuda still run the kernel, and the CPU and the other dtypes are resolve_backend's.
TEST(Backend, SsdScanAutoRunsTheReferenceForFp32OnAGpu) {
  const at::Device cpu(at::kCPU), gpu(at::kCUDA, 0);
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    for (SsdScanProducts products : {SsdScanProducts::Auto, SsdScanProducts::Fma}) {
      EXPECT_EQ(ssd_scan_backend(Backend::Auto, dtype, products, cpu), Backend::Cpu);
      EXPECT_EQ(ssd_scan_backend(Backend::Reference, dtype, products, gpu), Backend::Reference);
    }
  }
  if (!kBuiltWithCuda) {
    EXPECT_EQ(ssd_scan_backend(Backend::Auto, at::kBFloat16, SsdScanProducts::Auto, gpu), Backend::Reference);
    GTEST_SKIP() << "the GPU cases need a CUDA build";
  }
  EXPECT_EQ(ssd_scan_backend(Backend::Auto, at::kFloat, SsdScanProducts::Auto, gpu), Backend::Reference);
  EXPECT_EQ(ssd_scan_backend(Backend::Auto, at::kFloat, SsdScanProducts::Fma, gpu), Backend::Cuda);
  EXPECT_EQ(ssd_scan_backend(Backend::Cuda, at::kFloat, SsdScanProducts::Auto, gpu), Backend::Cuda);
  EXPECT_EQ(ssd_scan_backend(Backend::Auto, at::kBFloat16, SsdScanProducts::Auto, gpu), Backend::Cuda);
  EXPECT_EQ(ssd_scan_backend(Backend::Auto, at::kHalf, SsdScanProducts::Auto, gpu), Backend::Cuda);
}

}  // namespace
}  // namespace effarch::ops
