// effarch profile: the event classifier's table, the attribution of host and device time on
// hand-made event lists (nesting, kernels linked to their op, graph kernels by name, idle time), and
// real profiles of tiny models' decode step and prefill on the CPU.

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <regex>
#include <set>
#include <string>

#include "../test_util.h"
#include "effarch/bench/profile.h"
#include "effarch/common/error.h"

namespace effarch::bench {
namespace {

TEST(ProfileClassify, NamesToKinds) {
  const std::vector<std::pair<std::string, OpKind>> table = {
      // effarch's op scopes
      {"effarch::linear", OpKind::Gemm},
      {"effarch::moe_dispatch", OpKind::Gemm},
      {"effarch::selective_scan", OpKind::Scan},
      {"effarch::selective_state_update", OpKind::Scan},
      {"effarch::ssd_chunk_scan", OpKind::Scan},
      {"effarch::ssd_state_update", OpKind::Scan},
      {"effarch::causal_conv1d", OpKind::Conv},
      {"effarch::causal_conv1d_update", OpKind::Conv},
      {"effarch::gated_rms_norm", OpKind::Norm},
      {"effarch::rms_norm", OpKind::Norm},
      {"effarch::layer_norm", OpKind::Norm},
      {"effarch::causal_attention", OpKind::Attention},
      {"effarch::decode_attention", OpKind::Attention},
      {"effarch::add_norm", OpKind::Norm},
      {"effarch::activation", OpKind::Elementwise},
      {"effarch::rope_cache_write", OpKind::Elementwise},
      {"effarch::something_new", OpKind::Other},
      // ATen ops, exactly: add is not addmm
      {"aten::addmm", OpKind::Gemm},
      {"aten::mm", OpKind::Gemm},
      {"aten::linear", OpKind::Gemm},
      {"aten::bmm", OpKind::Gemm},
      {"aten::add", OpKind::Elementwise},
      {"aten::mul", OpKind::Elementwise},
      {"aten::silu", OpKind::Elementwise},
      {"aten::argmax", OpKind::Elementwise},
      {"aten::scaled_dot_product_attention", OpKind::Attention},
      {"aten::_scaled_dot_product_flash_attention", OpKind::Attention},
      {"aten::layer_norm", OpKind::Norm},
      {"aten::conv1d", OpKind::Conv},
      {"aten::copy_", OpKind::Copy},
      {"aten::_to_copy", OpKind::Copy},
      {"aten::cat", OpKind::Copy},
      {"aten::index_copy_", OpKind::Copy},
      {"aten::empty", OpKind::Other},
      {"aten::view", OpKind::Other},
      // GPU kernels
      {"sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64_warpgroupsize1x1x1", OpKind::Gemm},
      {"nvjet_tst_128x64_64x8_2x1_v_bz_TNT", OpKind::Gemm},
      {"void gemv2T_kernel_val<int, int, __nv_bfloat16, float, float, 128, 16, 4, 4, false>", OpKind::Gemm},
      {"ampere_bf16_s16816gemm_bf16_128x64_ldg8_f2f_tn", OpKind::Gemm},
      {"void cutlass::Kernel2<cutlass_80_wmma_tensorop_bf16_s161616gemm>", OpKind::Gemm},
      {"void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<128, 128>>", OpKind::Attention},
      {"fmha_cutlassF_bf16_aligned_64x64_rf_sm80", OpKind::Attention},
      {"void effarch::kernels::causal_conv1d_fwd_kernel<__nv_bfloat16>", OpKind::Conv},
      {"void selective_scan_fwd_kernel<Ktraits>", OpKind::Scan},
      {"void at::native::(anonymous namespace)::vectorized_layer_norm_kernel<float, float>", OpKind::Norm},
      {"void at::native::vectorized_elementwise_kernel<4, at::native::silu_kernel>", OpKind::Elementwise},
      {"void at::native::reduce_kernel<512, 1, at::native::ReduceOp<float>>", OpKind::Elementwise},
      {"void at::native::(anonymous namespace)::CatArrayBatchedCopy<float>", OpKind::Copy},
      // effarch's own kernels by name (inside a graph replay no scope links them)
      {"void effarch::kernels::rope_cache_kernel<__nv_bfloat16>(effarch::kernels::RopeCacheParams)",
       OpKind::Elementwise},
      {"void effarch::kernels::decode_attention_split_kernel<__nv_bfloat16, 80, 1>", OpKind::Attention},
      {"void effarch::kernels::add_norm_kernel<__nv_bfloat16>(effarch::kernels::AddNormParams)", OpKind::Norm},
      {"void effarch::kernels::activation_kernel<__nv_bfloat16>(effarch::kernels::ActivationParams)",
       OpKind::Elementwise},
      {"void effarch::kernels::activation_vector_kernel<__nv_bfloat16>(effarch::kernels::ActivationParams)",
       OpKind::Elementwise},
      {"void effarch::kernels::gemv_detail::gemv_kernel<__nv_bfloat16, 1, true, false>", OpKind::Gemm},
      {"void effarch::kernels::moe_detail::moe_expert_gemv_kernel<(effarch::kernels::moe::Precision)1, 8, "
       "unsigned short, true>",
       OpKind::Gemm},
      {"void effarch::kernels::moe_router_kernel(effarch::kernels::MoeRouterParams)", OpKind::Gemm},
      {"void effarch::kernels::moe_permute_kernel(effarch::kernels::MoePermuteParams)", OpKind::Gemm},
      {"void effarch::kernels::moe_detail::moe_combine_kernel<(effarch::kernels::moe::Precision)1>", OpKind::Gemm},
      {"void effarch::kernels::selective_scan_lanes_kernel<__nv_bfloat16>(effarch::kernels::SelectiveScanParams)",
       OpKind::Scan},
      {"Memcpy DtoH (Device -> Pinned)", OpKind::Copy},
      {"Memset (Device)", OpKind::Copy},
      {"cudaGraphLaunch", OpKind::Other},
      {"", OpKind::Other},
  };
  for (const auto& [name, kind] : table) EXPECT_EQ(classify_event(name), kind) << "'" << name << "'";
  EXPECT_EQ(all_op_kinds().size(), 8u);
  EXPECT_STREQ(to_string(OpKind::Gemm), "gemm");
}

// Every kernel under kernels/ (but the timer's own, kernels/timing) has a kind by its name alone, as a
// graph replay shows it with no launching op: both as the profiler names a template kernel ("void
// effarch::kernels::...<T>(...)") and as it names a plain one (no return type, which once sent the
// MoE router and permute kernels to effarch's op scopes and `other`). The names are read from the
// sources, so a kernel added later is held to it too.
TEST(ProfileClassify, EveryEffarchKernelHasAKind) {
  namespace fs = std::filesystem;
  const fs::path root = fs::path(EFFARCH_TESTS_DIR) / ".." / "kernels";
  // __global__ void [__launch_bounds__(...)] name(: the bounds may hold one level of parentheses.
  const std::regex global(R"(__global__\s+void\s+(?:__launch_bounds__\((?:[^()]|\([^()]*\))*\)\s*)?([A-Za-z_0-9]+)\s*\()");
  std::set<std::string> names;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    const std::string ext = entry.path().extension().string();
    if (!entry.is_regular_file() || (ext != ".cu" && ext != ".cuh" && ext != ".h")) continue;
    if (entry.path().parent_path().filename() == "timing") continue;
    std::ifstream in(entry.path());
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    for (std::sregex_iterator it(text.begin(), text.end(), global), end; it != end; ++it) names.insert((*it)[1].str());
  }
  EXPECT_GE(names.size(), 35u) << "kernels found under " << root;
  for (const std::string& name : names) {
    for (const std::string& shown : {"void effarch::kernels::" + name + "<__nv_bfloat16>(effarch::kernels::Params)",
                                     "effarch::kernels::" + name + "(effarch::kernels::Params)",
                                     "void effarch::kernels::op_detail::" + name + "<(effarch::kernels::Precision)1, 8>(Params)"}) {
      EXPECT_NE(classify_event(shown), OpKind::Other) << "'" << shown << "'";
    }
  }
  // The ones that once fell through, with their kinds.
  EXPECT_EQ(classify_event("effarch::kernels::moe_detail::moe_router_kernel(effarch::kernels::MoeRouterParams)"),
            OpKind::Gemm);
  EXPECT_EQ(classify_event("effarch::kernels::moe_detail::moe_permute_kernel(effarch::kernels::MoePermuteParams)"),
            OpKind::Gemm);
  EXPECT_EQ(classify_event("void effarch::kernels::moe_detail::moe_route_tokens_kernel<(effarch::kernels::moe::Precision)1>"),
            OpKind::Gemm);
  EXPECT_EQ(classify_event("void effarch::kernels::moe_detail::moe_token_down_kernel<(effarch::kernels::moe::Precision)1, 4>"),
            OpKind::Gemm);
  EXPECT_EQ(classify_event("void effarch::kernels::add_norm_vec_kernel<__nv_bfloat16>(effarch::kernels::AddNormParams)"),
            OpKind::Norm);
  // effarch's op scopes keep their own rules.
  EXPECT_EQ(classify_event("effarch::moe_dispatch"), OpKind::Gemm);
  EXPECT_EQ(classify_event("effarch::add_norm"), OpKind::Norm);
}

ProfileEvent host(const std::string& name, int64_t s, int64_t e, uint64_t corr = 0, uint64_t thread = 1) {
  ProfileEvent ev;
  ev.name = name;
  ev.start_ns = s;
  ev.end_ns = e;
  ev.correlation = corr;
  ev.thread = thread;
  return ev;
}
ProfileEvent dev(const std::string& name, int64_t s, int64_t e, uint64_t linked) {
  ProfileEvent ev;
  ev.name = name;
  ev.on_device = true;
  ev.start_ns = s;
  ev.end_ns = e;
  ev.linked = linked;
  return ev;
}

std::map<std::string, double> by_kind(const nlohmann::json& kinds) {
  std::map<std::string, double> m;
  for (const auto& k : kinds) m[k.at("kind").get<std::string>()] = k.at("seconds_per_step").get<double>() * 1e9;
  return m;
}

TEST(ProfileAttribution, HostTopLevelOpsAndOutsideTime) {
  // Two steps of 1000 ns. Step 1: a linear (600, with an aten::mm inside), an add (100).
  // Step 2: a selective_state_update scope (500) with elementwise ops inside, an argmax (200).
  // An op on another thread and one outside the steps are not counted.
  std::vector<ProfileEvent> ev = {
      host("effarch::decode_step", 0, 1000),
      host("effarch::linear", 100, 700, 1),
      host("aten::mm", 150, 650, 2),
      host("aten::add", 800, 900, 3),
      host("effarch::decode_step", 2000, 3000),
      host("effarch::selective_state_update", 2000, 2500, 4),
      host("aten::exp", 2100, 2200, 5),
      host("aten::mul", 2200, 2300, 6),
      host("aten::argmax", 2600, 2800, 7),
      host("aten::mm", 100, 900, 8, /*thread=*/2),
      host("aten::mm", 5000, 6000, 9),
  };
  const auto p = attribute_profile(ev, 2);
  EXPECT_EQ(p.at("time_source"), "host");
  EXPECT_DOUBLE_EQ(p.at("step_s").get<double>(), 1000e-9);
  const auto k = by_kind(p.at("kinds"));
  EXPECT_DOUBLE_EQ(k.at("gemm"), 300);         // 600 over two steps
  EXPECT_DOUBLE_EQ(k.at("scan"), 250);         // the scope, not its exp and mul
  EXPECT_DOUBLE_EQ(k.at("elementwise"), 150);  // add 100 + argmax 200
  EXPECT_DOUBLE_EQ(k.at("outside ops"), 300);  // 2000 - 1400, per step
  double fractions = 0;
  for (const auto& e : p.at("kinds")) fractions += e.at("fraction_of_step").get<double>();
  EXPECT_NEAR(fractions, 1.0, 1e-12);
  EXPECT_EQ(p.at("top_events")[0].at("name"), "effarch::linear");
  EXPECT_DOUBLE_EQ(p.at("top_events")[0].at("calls_per_step").get<double>(), 0.5);
}

TEST(ProfileAttribution, DeviceKernelsGoToTheirLaunchingOp) {
  // One step of 1000 ns. A gemv kernel launched from the linear's aten::mm (its root: gemm); an
  // elementwise kernel launched inside the scan scope (root: scan, whatever its name); a graph's
  // kernel with no launching op (by its own name: flash -> attention); a memcpy linked to the step
  // scope only (by name: copy).
  std::vector<ProfileEvent> ev = {
      host("effarch::decode_step", 0, 1000, 100),
      host("effarch::linear", 0, 300, 1),
      host("aten::mm", 10, 290, 2),
      host("effarch::selective_state_update", 300, 600, 3),
      host("aten::mul", 310, 400, 4),
      dev("gemv2T_kernel", 100, 300, 2),
      dev("vectorized_elementwise_kernel", 400, 450, 4),
      dev("flash_fwd_splitkv_kernel", 500, 600, 0),
      dev("Memcpy DtoH", 650, 700, 100),
  };
  const auto p = attribute_profile(ev, 1);
  EXPECT_EQ(p.at("time_source"), "device");
  const auto k = by_kind(p.at("kinds"));
  EXPECT_DOUBLE_EQ(k.at("gemm"), 200);
  EXPECT_DOUBLE_EQ(k.at("scan"), 50);
  EXPECT_DOUBLE_EQ(k.at("attention"), 100);
  EXPECT_DOUBLE_EQ(k.at("copy"), 50);
  EXPECT_DOUBLE_EQ(k.at("idle"), 600);  // busy 400 of 1000
  EXPECT_DOUBLE_EQ(p.at("device").at("busy_seconds_per_step").get<double>(), 400e-9);
  // Host figures are there too.
  EXPECT_DOUBLE_EQ(by_kind(p.at("host").at("kinds")).at("gemm"), 300);
}

TEST(ProfileAttribution, OverlappingKernelsCountOnceInBusyTime) {
  std::vector<ProfileEvent> ev = {host("effarch::decode_step", 0, 1000), dev("gemm_a", 0, 400, 0),
                                  dev("gemm_b", 200, 600, 0)};
  const auto p = attribute_profile(ev, 1);
  EXPECT_DOUBLE_EQ(p.at("device").at("busy_seconds_per_step").get<double>(), 600e-9);
  EXPECT_DOUBLE_EQ(p.at("device").at("kernel_seconds_per_step").get<double>(), 800e-9);
  EXPECT_DOUBLE_EQ(by_kind(p.at("kinds")).at("idle"), 400);
}

TEST(ProfileAttribution, NoStepScopeIsAnError) {
  EXPECT_THROW(attribute_profile({host("aten::mm", 0, 10)}, 1), Error);
  EXPECT_THROW(attribute_profile({host("effarch::decode_step", 0, 10)}, 0), UsageError);
}

// The real profiler on the CPU: tiny models' decode steps, every kind they run found.
TEST(ProfileDecode, TinyModelsOnTheCpu) {
  for (const char* name : {"tiny-mamba", "tiny-mamba2", "tiny-llama"}) {
    ProfileSpec spec;
    spec.model = name;
    spec.device = "cpu";
    spec.context = 8;
    spec.steps = 3;
    spec.warmup = 1;
    const auto p = profile_model(spec);
    EXPECT_EQ(p.at("time_source"), "host") << name;
    EXPECT_GT(p.at("step_s").get<double>(), 0) << name;
    const auto k = by_kind(p.at("kinds"));
    EXPECT_GT(k.at("gemm"), 0) << name << " " << p.dump();
    EXPECT_GT(k.at("norm"), 0) << name;
    if (std::string(name) == "tiny-llama") {
      EXPECT_GT(k.at("attention"), 0) << name;
      EXPECT_EQ(k.at("scan"), 0) << name;
    } else {
      EXPECT_GT(k.at("scan"), 0) << name;
      EXPECT_GT(k.at("conv"), 0) << name;
      EXPECT_EQ(k.at("attention"), 0) << name;
    }
    double fractions = 0;
    for (const auto& e : p.at("kinds")) fractions += e.at("fraction_of_step").get<double>();
    EXPECT_NEAR(fractions, 1.0, 1e-9) << name;
    EXPECT_EQ(p.at("settings").at("cuda_graphs"), "off");
    EXPECT_FALSE(p.at("top_events").empty());
    EXPECT_NE(format_profile_table(p).find("gemm"), std::string::npos);
  }
}

// Past the model's max_position_embeddings (tiny-llama's 2048), as in bench: profiled, not
// refused, and said under the table and in the JSON. The positions are the prefill's and each
// decode step's, warm-up included.
TEST(ProfileDecode, BeyondTheTrainedContextIsNoted) {
  ProfileSpec spec;
  spec.model = "tiny-llama";
  spec.device = "cpu";
  spec.steps = 1;
  spec.warmup = 0;
  spec.context = 2047;  // 2048 positions: within
  const auto within = profile_model(spec);
  EXPECT_EQ(within.at("max_position_embeddings"), 2048);
  EXPECT_FALSE(within.contains("beyond_trained_context"));
  EXPECT_EQ(format_profile_table(within).find("max_position_embeddings"), std::string::npos);
  spec.context = 2048;
  const auto past = profile_model(spec);
  EXPECT_EQ(past.at("beyond_trained_context"), true);
  EXPECT_EQ(past.at("positions"), 2049);
  const std::string table = format_profile_table(past);
  EXPECT_NE(table.find("note: 2049 positions (2048 of context + 0 warm-up and 1 profiled decode steps) run past "
                       "tiny-llama's max_position_embeddings (2048)"),
            std::string::npos)
      << table;
}

// --phase prefill: the prefill of `context` tokens is the profiled step; the scan (Mamba) or the
// attention (Llama) is in it, and the settings say which phase ran.
TEST(ProfilePrefill, TinyModelsOnTheCpu) {
  for (const char* name : {"tiny-mamba", "tiny-llama"}) {
    ProfileSpec spec;
    spec.model = name;
    spec.device = "cpu";
    spec.phase = ProfilePhase::Prefill;
    spec.context = 64;
    spec.steps = 2;
    spec.warmup = 0;  // one runs anyway
    const auto p = profile_model(spec);
    EXPECT_EQ(p.at("settings").at("phase"), "prefill") << name;
    EXPECT_EQ(p.at("settings").at("warmup"), 1) << name;
    EXPECT_EQ(p.at("settings").at("cuda_graphs"), "off") << name;
    EXPECT_EQ(p.at("steps"), 2) << name;
    const auto k = by_kind(p.at("kinds"));
    EXPECT_GT(k.at("gemm"), 0) << name;
    EXPECT_GT(k.at(std::string(name) == "tiny-llama" ? "attention" : "scan"), 0) << name << " " << p.dump();
    double fractions = 0;
    for (const auto& e : p.at("kinds")) fractions += e.at("fraction_of_step").get<double>();
    EXPECT_NEAR(fractions, 1.0, 1e-9) << name;
    const std::string table = format_profile_table(p);
    EXPECT_NE(table.find("one prefill of 64 tokens at batch 1"), std::string::npos) << table;
    EXPECT_NE(table.find("time / prefill"), std::string::npos) << table;
  }
  // A prefill scope is not a decode step: attributing with the wrong scope finds no step.
  EXPECT_THROW_WITH(attribute_profile({host("effarch::prefill", 0, 10)}, 1), Error, {"effarch::decode_step"});
  const auto p = attribute_profile({host("effarch::prefill", 0, 10), host("aten::mm", 2, 8)}, 1, kPrefillScope);
  EXPECT_NEAR(by_kind(p.at("kinds")).at("gemm"), 6, 1e-9);  // ns
  EXPECT_EQ(parse_profile_phase("prefill", "--phase"), ProfilePhase::Prefill);
  EXPECT_THROW_WITH(parse_profile_phase("both", "--phase"), UsageError, {"--phase", "'both'", "decode or prefill"});
}

}  // namespace
}  // namespace effarch::bench
