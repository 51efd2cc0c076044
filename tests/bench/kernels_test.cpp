// effarch kernels: the byte formulas on the real configs' shapes (numbers worked out by hand from
// the configs, in the comments), which implementations run where, the sweep on tiny configs on the
// CPU (every row timed, skipped rows for what does not fit, bad ops refused) and the scan vs
// attention summary; the GPU timer's decisions (the L2 scrub, the blocker's status, the fallback for
// calls that sync) on the CPU with fake timers, and the timer itself on a GPU.

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#ifdef EFFARCH_WITH_CUDA
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#endif

#include "../../src/bench/call_timer.h"
#include "../../src/bench/kernel_cases.h"
#include "../test_util.h"
#include "effarch/bench/bench.h"
#include "effarch/bench/kernels.h"
#include "effarch/common/error.h"
#include "effarch/model/catalog.h"
#include "timing/blocking_kernel_params.h"

namespace effarch::bench {
namespace {

model::ModelConfig config(const std::string& name) { return model::resolve_model(name).config; }

KernelBytes bytes_of(const std::string& op, const model::ModelConfig& c, int64_t len, at::ScalarType dtype = at::kBFloat16,
                     int64_t batch = 1) {
  return find_kernel_case(op, "test").bytes(KernelShape{&c, batch, len, dtype});
}

TEST(KernelBytes, Mamba1OnMamba28b) {
  const auto c = config("mamba-2.8b");  // d_inner 5120, d_state 16, d_conv 4; bf16 = 2 bytes
  // conv: read x 5120*4096 + weight 5120*4 + bias 5120; write out 5120*4096 + state 5120*4.
  EXPECT_EQ(bytes_of("causal_conv1d", c, 4096).read, 41994240u);
  EXPECT_EQ(bytes_of("causal_conv1d", c, 4096).written, 41984000u);
  // conv update: read x 5120 + state 20480 + weight 20480 + bias 5120; write out 5120 + state 20480.
  EXPECT_EQ(bytes_of("causal_conv1d_update", c, 1).read, 102400u);
  EXPECT_EQ(bytes_of("causal_conv1d_update", c, 1).written, 51200u);
  // scan: u, delta, z 3 x 5120*4096 and B, C 2 x 16*4096 (bf16), A 5120*16, D and bias 2 x 5120 (fp32);
  // write y 5120*4096 bf16 and the state 5120*16 fp32.
  EXPECT_EQ(bytes_of("selective_scan", c, 4096).read, 126459904u);
  EXPECT_EQ(bytes_of("selective_scan", c, 4096).written, 42270720u);
  EXPECT_EQ(bytes_of("selective_scan", c, 4096).total(), 126459904u + 42270720u);
  // decode: the state read and written in fp32 dominates.
  EXPECT_EQ(bytes_of("selective_state_update", c, 1).read, 727104u);
  EXPECT_EQ(bytes_of("selective_state_update", c, 1).written, 337920u);
  // With dt_proj fused: delta [5120] gives way to dt_low [160] and dt_proj [5120, 160] (bf16).
  EXPECT_EQ(bytes_of("selective_state_update_dt_proj", c, 1).read, 727104u - 2u * 5120 + 2u * 160 + 2u * 5120 * 160);
  EXPECT_EQ(bytes_of("selective_state_update_dt_proj", c, 1).written, 337920u);
  // The activations and the state double with the batch; A, D and the bias are read once whatever it
  // is. fp32 doubles the dtype's share only.
  const uint64_t weights = 4u * 5120 * 16 + 4u * 2 * 5120;
  EXPECT_EQ(bytes_of("selective_scan", c, 4096, at::kBFloat16, 2).total(),
            2 * bytes_of("selective_scan", c, 4096).total() - weights);
  const KernelBytes f32 = bytes_of("selective_scan", c, 4096, at::kFloat);
  EXPECT_EQ(f32.read, 2 * (126459904u - weights) + weights);
}

// The dense GEMV cases: the weight read once, x read and y written per row of the batch.
TEST(KernelBytes, DenseGemvOnDecodeShapes) {
  const auto m = config("mamba-2.8b");  // H 2560, d_inner 5120, dt_rank 160, d_state 16, vocab 50280
  // in_proj [10240, 2560]: read 2 x (10240*2560 + 2560), write 2 x 10240.
  EXPECT_EQ(bytes_of("dense_gemv_in_proj", m, 1).read, 52433920u);
  EXPECT_EQ(bytes_of("dense_gemv_in_proj", m, 1).written, 20480u);
  // With the conv update in its epilogue: the conv state [5120, 4] read and written, the conv's
  // weight [5120, 4] and bias [5120] read, its output [5120] written.
  EXPECT_EQ(bytes_of("dense_gemv_in_proj_conv", m, 1).read, 52433920u + 2u * (20480 + 20480 + 5120));
  EXPECT_EQ(bytes_of("dense_gemv_in_proj_conv", m, 1).written, 20480u + 2u * (5120 + 20480));
  // x_proj [192, 5120] at batch 8: read 2 x (192*5120 + 8*5120), write 2 x 8*192.
  EXPECT_EQ(bytes_of("dense_gemv_x_proj", m, 1, at::kBFloat16, 8).read, 2048000u);
  EXPECT_EQ(bytes_of("dense_gemv_x_proj", m, 1, at::kBFloat16, 8).written, 3072u);
  // head [50280, 2560]: read 2 x (50280*2560 + 2560).
  EXPECT_EQ(bytes_of("dense_gemv_lm_head", m, 1).read, 257438720u);
  const auto phi = config("phi-2");  // H 2560, fc2 [2560, 10240]; fp32 = 4 bytes
  EXPECT_EQ(bytes_of("dense_gemv_mlp_down", phi, 1, at::kFloat).read, 4u * (2560 * 10240 + 10240));
  EXPECT_EQ(bytes_of("dense_gemv_mlp_down", phi, 1, at::kFloat).written, 4u * 2560);
  // Mamba-1 out_proj [2560, 5120]; Phi-2's fc1 [10240, 2560] (not gated) and q, k, v [3 x 2560,
  // 2560] (32 heads of 80, no GQA).
  EXPECT_EQ(bytes_of("dense_gemv_out_proj", m, 1).read, 2u * (2560 * 5120 + 5120));
  EXPECT_EQ(bytes_of("dense_gemv_mlp_up", phi, 1).read, 2u * (10240 * 2560 + 2560));
  EXPECT_EQ(bytes_of("dense_gemv_qkv", phi, 1).read, 2u * (7680 * 2560 + 2560));
  EXPECT_EQ(bytes_of("dense_gemv_qkv", phi, 1).written, 2u * 7680);
  // Phi-2's two products a step: [7680 + 10240, 2560] and [2560, 10240 + 2560] (87.5 and 62.5 MiB).
  EXPECT_EQ(bytes_of("dense_gemv_parallel_in", phi, 1).read, 2u * (17920u * 2560 + 2560));
  EXPECT_EQ(bytes_of("dense_gemv_parallel_out", phi, 1).read, 2u * (2560u * 12800 + 12800));
  EXPECT_EQ(bytes_of("dense_gemv_parallel_out", phi, 1).written, 2u * 2560);
  const auto llama = config("llama-3-8b");  // H 4096, I 14336 gated; 32 heads + 2 x 8 kv heads of 128
  EXPECT_EQ(bytes_of("dense_gemv_mlp_up", llama, 1).read, 2u * (28672u * 4096 + 4096));
  EXPECT_EQ(bytes_of("dense_gemv_qkv", llama, 1).read, 2u * (6144u * 4096 + 4096));
  // The first projection with its activation in the epilogue: Llama's gate/up [28672, 4096] writes
  // act(gate) * up [14336]; Phi-2's fc1 [10240, 2560] reads its bias too and writes gelu_new(fc1).
  EXPECT_EQ(bytes_of("dense_gemv_mlp_up_act", llama, 1).read, 2u * (28672u * 4096 + 4096));
  EXPECT_EQ(bytes_of("dense_gemv_mlp_up_act", llama, 1).written, 2u * 14336);
  EXPECT_EQ(bytes_of("dense_gemv_mlp_up_act", phi, 1).read, 2u * (10240 * 2560 + 2560 + 10240));
  EXPECT_EQ(bytes_of("dense_gemv_mlp_up_act", phi, 1).written, 2u * 10240);
  // Codestral: in_proj [2 x 8192 + 2 x 8 x 128 + 128, 4096] = [18560, 4096], out_proj [4096, 8192].
  const auto cs = config("mamba-codestral-7b");
  EXPECT_EQ(bytes_of("dense_gemv_mamba2_in_proj", cs, 1).read, 2u * (18560u * 4096 + 4096));
  EXPECT_EQ(bytes_of("dense_gemv_mamba2_out_proj", cs, 1).read, 2u * (4096u * 8192 + 8192));
}

TEST(KernelBytes, Mamba2OnCodestral) {
  const auto c = config("mamba-codestral-7b");  // 128 heads of 64, 8 groups, d_state 128, d_inner 8192
  // x 4096*128*64, dt 4096*128, B and C 2 x 4096*8*128, D and dt bias 2 x 128 (bf16), A 128 fp32;
  // write y 4096*128*64 and the state 128*64*128, fp32.
  EXPECT_EQ(bytes_of("ssd_chunk_scan", c, 4096).read, 84935680u);
  EXPECT_EQ(bytes_of("ssd_chunk_scan", c, 4096).written, 138412032u);
  EXPECT_EQ(bytes_of("ssd_state_update", c, 1).read, 4216064u);
  EXPECT_EQ(bytes_of("ssd_state_update", c, 1).written, 4227072u);
  // y fp32 + z bf16 + weight bf16; out fp32.
  EXPECT_EQ(bytes_of("gated_rms_norm", c, 4096).read, 201342976u);
  EXPECT_EQ(bytes_of("gated_rms_norm", c, 4096).written, 134217728u);
}

TEST(KernelBytes, AttentionOnPhi2) {
  const auto c = config("phi-2");  // 32 heads (32 kv heads) of 80
  EXPECT_EQ(bytes_of("attention", c, 4096).read, 62914560u);  // q, k, v: 3 x 32*4096*80 x 2
  EXPECT_EQ(bytes_of("attention", c, 4096).written, 20971520u);
  EXPECT_EQ(bytes_of("attention_decode", c, 4096).read, 41948160u);  // q 32*80 + k, v 2 x 32*4096*80
  EXPECT_EQ(bytes_of("attention_decode", c, 4096).written, 5120u);
  // Decode reads the cache: linear in its length.
  EXPECT_EQ(bytes_of("attention_decode", c, 8192).read - bytes_of("attention_decode", c, 4096).read,
            2u * 2 * 32 * 4096 * 80);
}

TEST(KernelBytes, FusedDecodeOpsOnPhi2AndLlama3) {
  const auto phi = config("phi-2");  // hidden 2560, LayerNorm, parallel block; fc1 10240, gelu_new
  // x, attention out, MLP out 3 x 2560 + weight and bias 2 x 2560, bf16; write residual, normed.
  EXPECT_EQ(bytes_of("add_norm", phi, 1).read, 25600u);
  EXPECT_EQ(bytes_of("add_norm", phi, 1).written, 10240u);
  EXPECT_EQ(bytes_of("activation", phi, 1).read, 20480u);  // fc1's output 10240
  EXPECT_EQ(bytes_of("activation", phi, 1).written, 20480u);
  const auto llama = config("llama-3-8b");  // hidden 4096, RMSNorm; gate/up 2 x 14336, SiLU
  EXPECT_EQ(bytes_of("add_norm", llama, 1).read, 24576u);  // x, y 2 x 4096 + weight 4096
  EXPECT_EQ(bytes_of("add_norm", llama, 1).written, 16384u);
  EXPECT_EQ(bytes_of("activation", llama, 1).read, 57344u);  // gate_up 2 x 14336
  EXPECT_EQ(bytes_of("activation", llama, 1).written, 28672u);
  EXPECT_EQ(bytes_of("activation", llama, 1, at::kBFloat16, 4).total(), 4 * bytes_of("activation", llama, 1).total());
}

// The FLOP counts of the compute-bound ops, worked out by hand.
TEST(KernelFlops, SsdOnCodestralAndAttentionOnPhi2) {
  const auto c = config("mamba-codestral-7b");  // 128 heads of 64, 8 groups, d_state 128, chunk 256
  // 600 tokens: chunks of 256, 256 and 88; causal pairs 2 * 256 * 257 / 2 + 88 * 89 / 2 = 69708.
  const KernelShape s{&c, 2, 600, at::kBFloat16};
  const double pairs = 69708.0;
  const double per_seq = 2.0 * 600 * 128 * 64 * 128 * 2 + 2.0 * 8 * 128 * pairs + 2.0 * 128 * 64 * pairs;
  EXPECT_DOUBLE_EQ(find_kernel_case("ssd_chunk_scan", "t").flops(s), 2 * per_seq);
  EXPECT_DOUBLE_EQ(find_kernel_case("ssd_chunk_scan_fma", "t").flops(s), 2 * per_seq);
  const auto phi = config("phi-2");  // 32 heads of 80
  const KernelShape a{&phi, 1, 4096, at::kBFloat16};
  EXPECT_DOUBLE_EQ(find_kernel_case("attention", "t").flops(a), 4.0 * 32 * 80 * (4096.0 * 4097 / 2));
  EXPECT_EQ(find_kernel_case("selective_scan", "t").flops, nullptr);  // elementwise: bytes are its roofline
}

TEST(KernelBytes, MoeOnDeepSeekMoE16b) {
  const auto c = config("deepseek-moe-16b");  // H 2048, 64 experts of 1408, top-6; bf16
  const KernelShape s{&c, 1, 4096, at::kBFloat16};
  // x 4096*2048 + router 64*2048 + experts 3*64*1408*2048, then out 4096*2048; 2 bytes each.
  EXPECT_EQ(bytes_of("moe_prefill", c, 4096).read, 1124335616u);
  EXPECT_EQ(bytes_of("moe_prefill", c, 4096).written, 16777216u);
  EXPECT_EQ(bytes_of("moe_prefill_per_expert", c, 4096).read, 1124335616u);
  // Routed: 2 * 4096 * 6 * 3 * 2048 * 1408; router: 2 * 4096 * 2048 * 64. Dense: the routed FLOPs.
  EXPECT_DOUBLE_EQ(find_kernel_case("moe_prefill", "t").flops(s), 425201762304.0 + 1073741824.0);
  EXPECT_DOUBLE_EQ(find_kernel_case("moe_dense_gemm", "t").flops(s), 425201762304.0);
  // x 4096*2048 + w 2048*25344 read, [4096, 25344] written.
  EXPECT_EQ(bytes_of("moe_dense_gemm", c, 4096).read, 2u * (4096 * 2048 + 2048 * 25344));
  EXPECT_EQ(bytes_of("moe_dense_gemm", c, 4096).written, 2u * 4096 * 25344);
  // One decode step at batch 1: the 6 experts the routing names (3 x 1408 x 2048 each), the two
  // shared experts (one MLP of 2816: 3 x 2816 x 2048) and x, 2 bytes each, the 6 ids (8 bytes) and
  // weights (bf16: DeepSeekMoE's router keeps the model dtype); out [1, 2048]. At batch 16 the 96
  // slots name all 64 experts.
  EXPECT_EQ(bytes_of("moe_decode", c, 1).read, 2u * (6u * 3 * 1408 * 2048 + 3u * 2816 * 2048 + 2048) + 6u * (8 + 2));
  EXPECT_EQ(bytes_of("moe_decode", c, 1).written, 2u * 2048);
  EXPECT_EQ(bytes_of("moe_decode_staged", c, 1).read, bytes_of("moe_decode", c, 1).read);
  EXPECT_DOUBLE_EQ(find_kernel_case("moe_decode", "t").flops(KernelShape{&c, 1, 1, at::kBFloat16}),
                   2.0 * 3 * 2048 * (6 * 1408 + 2816));
  EXPECT_EQ(bytes_of("moe_decode", c, 1, at::kBFloat16, 16).read,
            2u * (64u * 3 * 1408 * 2048 + 3u * 2816 * 2048 + 16 * 2048) + 96u * (8 + 2));
  // Mixtral: 2 of 8 experts of 14336 at batch 1, fp32 combine weights (4 bytes) beside bf16.
  const auto mx = config("mixtral-8x7b");
  EXPECT_EQ(bytes_of("moe_decode", mx, 1).read, 2u * (2u * 3 * 14336 * 4096 + 4096) + 2u * (8 + 4));
}

TEST(KernelCases, RegistryAndImplementations) {
  std::vector<std::string> ops;
  for (const auto& c : kernel_cases()) ops.push_back(c.op);
  EXPECT_EQ(ops, (std::vector<std::string>{"causal_conv1d", "causal_conv1d_vec", "causal_conv1d_update",
                                           "selective_scan", "selective_scan_lanes8", "selective_scan_pieces", "selective_scan_seg4",
                                           "selective_scan_seg8",
                                           "selective_scan_split", "selective_state_update",
                                           "selective_state_update_dt_proj", "ssd_chunk_scan", "ssd_chunk_scan_fma",
                                           "ssd_state_update", "gated_rms_norm", "attention", "attention_decode",
                                           "decode_attention", "decode_attention_b4", "decode_attention_b6",
                                           "add_norm", "add_norm_element", "add_norm_t32", "add_norm_t128",
                                           "add_norm_vec", "activation", "dense_gemv_in_proj",
                                           "dense_gemv_in_proj_u8", "dense_gemv_in_proj_s1", "dense_gemv_in_proj_s2", "dense_gemv_in_proj_s4", "add_norm_gemv_in_proj", "dense_gemv_in_proj_conv", "dense_gemv_x_proj",
                                           "dense_gemv_lm_head", "dense_gemv_out_proj", "dense_gemv_out_proj_u8", "dense_gemv_out_proj_s1", "dense_gemv_out_proj_s2", "dense_gemv_out_proj_s4",
                                           "dense_gemv_mlp_down", "dense_gemv_mlp_down_u8", "dense_gemv_mlp_down_s1", "dense_gemv_mlp_down_s2", "dense_gemv_mlp_down_s4", "dense_gemv_mlp_up",
                                           "dense_gemv_mlp_up_u8", "dense_gemv_mlp_up_s1", "dense_gemv_mlp_up_s2", "dense_gemv_mlp_up_s4", "dense_gemv_mlp_up_act", "dense_gemv_qkv",
                                           "dense_gemv_qkv_u8", "dense_gemv_qkv_s1", "dense_gemv_qkv_s2", "dense_gemv_qkv_s4", "add_norm_gemv_qkv", "dense_gemv_parallel_in", "dense_gemv_parallel_out", "dense_gemv_mamba2_in_proj",
                                           "dense_gemv_mamba2_out_proj", "dense_gemv_mamba2_out_proj_u8", "dense_gemv_mamba2_out_proj_s1", "dense_gemv_mamba2_out_proj_s2", "dense_gemv_mamba2_out_proj_s4",
                                           "moe_decode", "moe_decode_staged", "moe_decode_r1", "moe_decode_r1l8",
                                           "moe_prefill", "moe_prefill_per_expert", "moe_dense_gemm"}));
  EXPECT_THROW_WITH(find_kernel_case("flash_scan", "--ops"), UsageError, {"--ops", "flash_scan", "selective_scan"});
  // The lane-per-state variant was removed (slower than lanes16 on an H100): its op is unknown now.
  EXPECT_THROW_WITH(find_kernel_case("selective_scan_states", "--ops"), UsageError,
                    {"--ops: unknown op 'selective_scan_states' (ops: ", "selective_scan_seg4"});
  const at::Device cpu(at::kCPU);
  auto names = [&](const std::string& op) {
    std::vector<std::string> out;
    for (const auto& [backend, name] : kernel_implementations(find_kernel_case(op, "t"), cpu)) out.push_back(name);
    return out;
  };
  // On the CPU: the CPU kernel where the family has one, and the reference always.
  EXPECT_EQ(names("selective_scan"), (std::vector<std::string>{"cpu", "reference"}));
  EXPECT_EQ(names("ssd_state_update"), (std::vector<std::string>{"cpu", "reference"}));
  EXPECT_EQ(names("causal_conv1d"), (std::vector<std::string>{"reference"}));
  EXPECT_EQ(names("gated_rms_norm"), (std::vector<std::string>{"reference"}));
  EXPECT_EQ(names("attention"), (std::vector<std::string>{"sdpa"}));
  EXPECT_EQ(names("add_norm"), (std::vector<std::string>{"reference"}));
  EXPECT_EQ(names("add_norm_t128"), (std::vector<std::string>{"reference"}));
  EXPECT_EQ(names("activation"), (std::vector<std::string>{"reference"}));
  EXPECT_EQ(names("dense_gemv_in_proj"), (std::vector<std::string>{"reference"}));  // no CPU kernel
  EXPECT_EQ(names("moe_prefill"), (std::vector<std::string>{"cpu", "reference"}));
  EXPECT_EQ(names("moe_dense_gemm"), (std::vector<std::string>{"aten"}));
}

KernelSweep tiny_sweep() {
  KernelSweep s;
  s.device = "cpu";
  s.dtype = "float32";
  s.lengths = {8, 24};
  s.reps = 2;
  s.warmup = 1;
  s.mamba1 = "tiny-mamba";
  s.mamba2 = "tiny-mamba2";
  s.transformer = "tiny-phi";
  s.moe = "tiny-mixtral";
  return s;
}

nlohmann::json fake_env() { return {{"device", {{"copy_bandwidth_bytes_per_s", 1e10}, {"name", "test"}}}}; }

// What a CUDA row of the selective scan's variants records as `variant`: the kernel that ran; the
// table prints it with the pieces. Rows of other ops, and rows that did not run the CUDA kernel,
// record none.
TEST(KernelCases, ScanRowsRecordTheVariantThatRan) {
  auto variant = [](const std::string& op, const std::string& impl = "cuda") {
    return detail::scan_variant(find_kernel_case(op, "t"), impl);
  };
  EXPECT_EQ(variant("selective_scan"), "lanes16");
  EXPECT_EQ(variant("selective_scan_lanes8"), "lanes8");
  EXPECT_EQ(variant("selective_scan_pieces"), "pieces");
  EXPECT_EQ(variant("selective_scan_seg4"), "seg4");
  EXPECT_EQ(variant("selective_scan_seg8"), "seg8");
  EXPECT_EQ(variant("selective_scan_split"), "split");
  EXPECT_EQ(variant("selective_scan", "reference"), std::nullopt);
  EXPECT_EQ(variant("selective_scan_seg4", "cpu"), std::nullopt);
  EXPECT_EQ(variant("selective_state_update"), std::nullopt);
  EXPECT_EQ(variant("ssd_chunk_scan"), std::nullopt);

  nlohmann::json row = {{"op", "selective_scan_split"}, {"model", "mamba-2.8b"}, {"implementation", "cuda"},
                        {"batch", 1}, {"length", 4096}, {"status", "skipped"}, {"bytes", 1},
                        {"variant", "split"}, {"pieces", 4}};
  const auto doc = kernels_document(tiny_sweep(), fake_env(), {"effarch", "kernels"}, {row}, false);
  const std::string table = format_kernels_table(doc);
  EXPECT_NE(table.find("cuda (split, 4 pieces)"), std::string::npos) << table;
}

TEST(KernelSweepTest, EveryRowTimedOnTinyConfigs) {
  const KernelSweep s = tiny_sweep();
  size_t seen = 0;
  KernelCallbacks cb;
  cb.on_row = [&](const nlohmann::json&) { ++seen; };
  const auto rows = run_kernels(s, fake_env(), cb);
  // Per op: rows = lengths (or 1) x implementations.
  size_t expected = 0;
  for (const auto& c : kernel_cases()) {
    expected += (c.sweeps_length ? 2 : 1) * kernel_implementations(c, at::Device(at::kCPU)).size();
  }
  ASSERT_EQ(rows.size(), expected);
  EXPECT_EQ(seen, rows.size());
  for (const auto& r : rows) {
    ASSERT_EQ(r.at("status"), "ok") << r.dump();
    const double t = r.at("time_s").at("median").get<double>();
    EXPECT_GT(t, 0) << r.dump();
    EXPECT_EQ(r.at("time_s").at("samples").size(), 2u);
    EXPECT_EQ(r.at("bytes").get<uint64_t>(), r.at("bytes_read").get<uint64_t>() + r.at("bytes_written").get<uint64_t>());
    EXPECT_NEAR(r.at("bytes_per_s").get<double>(), static_cast<double>(r.at("bytes").get<uint64_t>()) / t,
                1e-9 * r.at("bytes_per_s").get<double>());
    EXPECT_NEAR(r.at("fraction_of_copy_bandwidth").get<double>(), r.at("bytes_per_s").get<double>() / 1e10, 1e-12);
    EXPECT_EQ(r.at("timer"), "steady_clock");
    EXPECT_FALSE(r.contains("timer_fallback")) << r.dump();
    EXPECT_FALSE(r.contains("l2_scrub_bytes")) << r.dump();
    EXPECT_FALSE(r.contains("products")) << "only rows that ran the CUDA scan name its products: " << r.dump();
    EXPECT_FALSE(r.contains("pieces")) << "only rows that ran the CUDA split scan name its pieces: " << r.dump();
    EXPECT_FALSE(r.contains("variant")) << "only rows that ran the CUDA scan name its variant: " << r.dump();
  }
  const auto doc = kernels_document(s, fake_env(), {"effarch", "kernels"}, rows, false);
  EXPECT_EQ(doc.at("schema"), "effarch-kernels");
  EXPECT_EQ(doc.at("schema_version"), 2);
  EXPECT_EQ(doc.at("settings").at("timing"), (nlohmann::json{{"timer", "steady_clock"}}));
  ASSERT_EQ(doc.at("scan_vs_attention").size(), 2u);  // lengths 8 and 24
  const auto& e = doc.at("scan_vs_attention")[1];
  EXPECT_EQ(e.at("length"), 24);
  EXPECT_GT(e.at("selective_scan").at("attention_over_scan").get<double>(), 0);
  EXPECT_GT(e.at("ssd_chunk_scan").at("attention_over_scan").get<double>(), 0);
  // Decode: the state updates (one length) beside attention over caches of 8 and 24 tokens.
  ASSERT_EQ(doc.at("decode_vs_attention").size(), 2u);
  for (const auto& d : doc.at("decode_vs_attention")) {
    EXPECT_GT(d.at("selective_state_update").at("attention_over_scan").get<double>(), 0);
    EXPECT_GT(d.at("ssd_state_update").at("attention_over_scan").get<double>(), 0);
  }
  EXPECT_EQ(doc.at("decode_vs_attention")[0].at("selective_state_update").at("time_s"),
            doc.at("decode_vs_attention")[1].at("selective_state_update").at("time_s"));
  // MoE: the two dispatch rows beside the dense GEMM of the routed FLOPs, at each length.
  ASSERT_EQ(doc.at("moe_vs_dense_gemm").size(), 2u);
  for (const auto& m : doc.at("moe_vs_dense_gemm")) {
    for (const char* op : {"moe_prefill", "moe_prefill_per_expert"}) {
      ASSERT_TRUE(m.contains(op)) << m.dump();
      const double f = m.at(op).at("fraction_of_dense_gemm").get<double>();
      EXPECT_NEAR(f, m.at(op).at("flops_per_s").get<double>() / m.at("moe_dense_gemm").at("flops_per_s").get<double>(),
                  1e-9 * f);
    }
  }
  for (const auto& r : rows) {
    const std::string op = r.at("op").get<std::string>();
    const bool counted = op.rfind("moe_", 0) == 0 || op.rfind("ssd_chunk_scan", 0) == 0 || op == "attention";
    EXPECT_EQ(r.contains("flops"), counted) << r.dump();
    if (counted) {
      EXPECT_NEAR(r.at("flops_per_s").get<double>(), r.at("flops").get<double>() / r.at("time_s").at("median").get<double>(),
                  1e-9 * r.at("flops_per_s").get<double>());
    }
  }
  const std::string table = format_kernels_table(doc);
  EXPECT_NE(table.find("MoE prefill vs one dense GEMM"), std::string::npos);
  EXPECT_NE(table.find("Scan vs attention"), std::string::npos);
  EXPECT_NE(table.find("Decode step vs attention"), std::string::npos);
  EXPECT_NE(table.find("tiny-phi"), std::string::npos);
}

TEST(KernelSweepTest, RowsThatDoNotFitAreSkippedAndTheRestRun) {
  KernelSweep s = tiny_sweep();
  s.ops = {"selective_scan", "attention"};
  s.lengths = {8, 4096};
  // tiny-mamba's scan at 4096 moves about 9 MB in fp32, at 8 about 20 kB: a 1 MB cap skips the former.
  s.memory_limit = 1 << 20;
  const auto rows = run_kernels(s, fake_env());
  ASSERT_EQ(rows.size(), 2u * 2 + 2u);
  for (const auto& r : rows) {
    const bool big = r.at("bytes").get<uint64_t>() > s.memory_limit;
    EXPECT_EQ(r.at("status"), big ? "skipped" : "ok") << r.dump();
    if (big) EXPECT_NE(r.at("error").get<std::string>().find("--memory-limit"), std::string::npos) << r.dump();
  }
  EXPECT_EQ(rows[0].at("length"), 8);
  EXPECT_EQ(rows[0].at("status"), "ok");
}

TEST(KernelSweepTest, BadArgumentsAreRefusedBeforeAnythingRuns) {
  KernelSweep s = tiny_sweep();
  s.ops = {"selective_scan"};
  s.mamba1 = "tiny-llama";
  EXPECT_THROW_WITH(run_kernels(s, fake_env()), UsageError, {"--mamba1", "tiny-llama", "Mamba-1"});
  s = tiny_sweep();
  s.ops = {"nope"};
  EXPECT_THROW_WITH(run_kernels(s, fake_env()), UsageError, {"--ops", "nope"});
  s = tiny_sweep();
  s.reps = 0;
  EXPECT_THROW_WITH(run_kernels(s, fake_env()), UsageError, {"--reps"});
}

TEST(KernelSweepTest, AttentionComparisonsPickTheFastestOkRow) {
  auto row = [](const std::string& op, const std::string& impl, int64_t len, double t, const std::string& status) {
    return nlohmann::json{{"op", op},       {"implementation", impl}, {"model", "m"},
                          {"batch", 1},     {"length", len},          {"status", status},
                          {"time_s", {{"median", t}}}};
  };
  const std::vector<nlohmann::json> rows = {
      row("selective_scan", "cpu", 512, 2.0, "ok"),      row("selective_scan", "reference", 512, 4.0, "ok"),
      row("selective_scan", "cuda", 512, 0.5, "oom"),    row("attention", "sdpa", 512, 6.0, "ok"),
      row("ssd_chunk_scan", "reference", 1024, 1.0, "ok"),  // no attention at 1024: no entry
  };
  const auto s = scan_vs_attention(rows);
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].at("selective_scan").at("implementation"), "cpu");
  EXPECT_DOUBLE_EQ(s[0].at("selective_scan").at("attention_over_scan").get<double>(), 3.0);
  EXPECT_FALSE(s[0].contains("ssd_chunk_scan"));

  // Decode: the one-length state update stands beside attention at every cache length.
  const std::vector<nlohmann::json> dec = {
      row("selective_state_update", "cpu", 1, 0.5, "ok"),  row("selective_state_update", "reference", 1, 1.0, "ok"),
      row("attention_decode", "sdpa", 512, 1.0, "ok"),     row("attention_decode", "sdpa", 4096, 4.0, "ok"),
      row("attention_decode", "sdpa", 8192, 8.0, "error"),
  };
  const auto d = decode_vs_attention(dec);
  ASSERT_EQ(d.size(), 2u);
  EXPECT_EQ(d[1].at("length"), 4096);
  EXPECT_EQ(d[1].at("selective_state_update").at("implementation"), "cpu");
  EXPECT_DOUBLE_EQ(d[0].at("selective_state_update").at("attention_over_scan").get<double>(), 2.0);
  EXPECT_DOUBLE_EQ(d[1].at("selective_state_update").at("attention_over_scan").get<double>(), 8.0);
  EXPECT_TRUE(scan_vs_attention(dec).empty());
  // Attention's best implementation stands for it: effarch's decode attention kernel where it
  // beats SDPA (at 4096 here), SDPA where it does not.
  std::vector<nlohmann::json> both = dec;
  both.push_back(row("decode_attention", "cuda", 512, 1.5, "ok"));
  both.push_back(row("decode_attention", "cuda", 4096, 2.0, "ok"));
  const auto fair = decode_vs_attention(both);
  ASSERT_EQ(fair.size(), 2u);
  EXPECT_EQ(fair[0].at("attention").at("op"), "attention_decode");
  EXPECT_EQ(fair[1].at("attention").at("op"), "decode_attention");
  EXPECT_EQ(fair[1].at("attention").at("implementation"), "cuda");
  EXPECT_DOUBLE_EQ(fair[1].at("selective_state_update").at("attention_over_scan").get<double>(), 4.0);
}

// ---- The GPU timer's decisions, on the CPU ----

TEST(KernelTimer, TheScrubReadsTwiceTheL2) {
  EXPECT_EQ(l2_scrub_bytes(uint64_t{50} << 20), uint64_t{100} << 20);  // H100 / H200: 50 MiB
  EXPECT_EQ(l2_scrub_bytes(96 * 1024), 192u * 1024);
  EXPECT_EQ(l2_scrub_bytes(1000), 4096u);  // rounded up to 4 KiB
  EXPECT_EQ(l2_scrub_bytes(0), kUnknownL2ScrubBytes);
  EXPECT_EQ(kUnknownL2ScrubBytes, uint64_t{256} << 20);
}

TEST(KernelTimer, TheBlockersStatusWords) {
  EXPECT_EQ(blocker_outcome(kernels::kBlockerReleased), BlockerOutcome::Released);
  EXPECT_EQ(blocker_outcome(kernels::kBlockerTimedOut), BlockerOutcome::TimedOut);
  EXPECT_EQ(blocker_outcome(kernels::kBlockerPending), BlockerOutcome::NotRun);  // the host's value: it never ran
  EXPECT_EQ(blocker_outcome(7), BlockerOutcome::NotRun);
  EXPECT_STREQ(timer_name(CallTimer::SteadyClock), "steady_clock");
  EXPECT_STREQ(timer_name(CallTimer::CudaEvents), "cuda_events");
  EXPECT_STREQ(timer_name(CallTimer::CudaEventsQueued), "cuda_events_queued");
}

// A fake GPU: queued calls report `outcomes` in turn (Released once they run out) and take 1 s
// plus their index; plain calls take 100 s plus theirs, so the samples say which timer took them.
struct FakeGpu {
  std::vector<BlockerOutcome> outcomes;
  int calls = 0, queued = 0, plain = 0;
  CallTimes time(int warmup, int reps) {
    return time_queued_with_fallback(
        warmup, reps, [this] { ++calls; },
        [this] {
          const BlockerOutcome o =
              static_cast<size_t>(queued) < outcomes.size() ? outcomes[static_cast<size_t>(queued)] : BlockerOutcome::Released;
          return QueuedCall{1.0 + queued++, o};
        },
        [this] { return 100.0 + plain++; }, 0.2);
  }
};

TEST(KernelTimer, EveryCallQueuedWhenTheBlockerIsReleased) {
  FakeGpu gpu;
  const CallTimes t = gpu.time(3, 4);
  EXPECT_EQ(t.timer, CallTimer::CudaEventsQueued);
  EXPECT_TRUE(t.fallback.empty());
  // Two plain warm-up calls, the third queued (untimed): its sample (1 s) is not kept.
  EXPECT_EQ(gpu.calls, 2);
  EXPECT_EQ(gpu.queued, 5);
  EXPECT_EQ(gpu.plain, 0);
  EXPECT_EQ(t.seconds, (std::vector<double>{2, 3, 4, 5}));
}

TEST(KernelTimer, ACallThatSyncsIsFoundInTheWarmupAndTimedWithPlainEvents) {
  FakeGpu gpu;
  gpu.outcomes = {BlockerOutcome::TimedOut, BlockerOutcome::TimedOut};
  const CallTimes t = gpu.time(2, 3);
  EXPECT_EQ(t.timer, CallTimer::CudaEvents);
  EXPECT_EQ(gpu.queued, 2);  // the probe and its second try; the blocker is not tried again for the row
  EXPECT_EQ(t.seconds, (std::vector<double>{100, 101, 102}));
  EXPECT_NE(t.fallback.find("the last warm-up call"), std::string::npos) << t.fallback;
  EXPECT_NE(t.fallback.find("200 ms timeout twice"), std::string::npos) << t.fallback;
  nlohmann::json row;
  record_timer(row, t);
  EXPECT_EQ(row.at("timer"), "cuda_events");
  EXPECT_EQ(row.at("timer_fallback"), t.fallback);
}

TEST(KernelTimer, OneTimeoutIsTriedAgainAndItsSampleDropped) {
  // A first use's one-time sync (lazy module loading, a library handle) times out once: the call is
  // queued again, and only released calls give samples.
  FakeGpu gpu;
  gpu.outcomes = {BlockerOutcome::TimedOut, BlockerOutcome::Released,  // the probe, then its retry
                  BlockerOutcome::Released, BlockerOutcome::TimedOut, BlockerOutcome::Released};
  const CallTimes t = gpu.time(1, 3);
  EXPECT_EQ(t.timer, CallTimer::CudaEventsQueued);
  EXPECT_TRUE(t.fallback.empty()) << t.fallback;
  EXPECT_EQ(gpu.plain, 0);
  EXPECT_EQ(t.seconds, (std::vector<double>{3, 5, 6}));  // queued calls 0-1 probe, 2 call 1, 3 timed out, 4 its retry
}

TEST(KernelTimer, TwoTimeoutsInATimedCallRetimeEverySampleWithPlainEvents) {
  FakeGpu gpu;
  gpu.outcomes = {BlockerOutcome::Released, BlockerOutcome::Released, BlockerOutcome::Released,
                  BlockerOutcome::TimedOut, BlockerOutcome::TimedOut};
  const CallTimes t = gpu.time(1, 5);  // the probe, timed calls 1 and 2 queued, call 3 times out twice
  EXPECT_EQ(t.timer, CallTimer::CudaEvents);
  EXPECT_EQ(gpu.queued, 5);
  EXPECT_EQ(gpu.plain, 5);  // one timer for every sample of the row: the two queued ones are dropped
  EXPECT_EQ(t.seconds, (std::vector<double>{100, 101, 102, 103, 104}));
  EXPECT_NE(t.fallback.find("timed call 3 of 5"), std::string::npos) << t.fallback;
}

TEST(KernelTimer, WithoutWarmupTheFirstTimedCallFindsTheSync) {
  FakeGpu gpu;
  gpu.outcomes = {BlockerOutcome::TimedOut, BlockerOutcome::TimedOut};
  const CallTimes t = gpu.time(0, 2);
  EXPECT_EQ(gpu.calls, 0);
  EXPECT_EQ(t.timer, CallTimer::CudaEvents);
  EXPECT_EQ(t.seconds, (std::vector<double>{100, 101}));
  EXPECT_NE(t.fallback.find("timed call 1 of 2"), std::string::npos) << t.fallback;
  FakeGpu fine;
  EXPECT_EQ(fine.time(0, 2).seconds, (std::vector<double>{1, 2}));
}

TEST(KernelTimer, ABlockerThatDidNotRunIsAnError) {
  FakeGpu gpu;
  gpu.outcomes = {BlockerOutcome::Released, BlockerOutcome::NotRun};
  EXPECT_THROW_WITH(gpu.time(1, 3), Error, {"blocking kernel did not run", "timed call 1 of 3"});
}

TEST(KernelTimer, RowsAndSettingsSayHowTheyWereTimed) {
  nlohmann::json row;
  record_timer(row, CallTimes{{1.0}, CallTimer::CudaEventsQueued, ""});
  EXPECT_EQ(row, (nlohmann::json{{"timer", "cuda_events_queued"}}));
  const nlohmann::json env{{"device", {{"l2_cache_bytes", 52428800}}}};  // the H200's 50 MiB
  const auto gpu = kernel_timing_settings(at::Device(at::kCUDA, 0), env);
  EXPECT_EQ(gpu.at("timer"), "cuda_events_queued");
  EXPECT_EQ(gpu.at("fallback_timer"), "cuda_events");
  EXPECT_EQ(gpu.at("l2_cache_bytes"), 52428800u);
  EXPECT_EQ(gpu.at("l2_scrub_bytes"), 104857600u);
  EXPECT_DOUBLE_EQ(gpu.at("blocker_timeout_s").get<double>(), kBlockerTimeoutS);
  EXPECT_EQ(kernel_timing_settings(at::Device(at::kCUDA, 0), nlohmann::json::object()).at("l2_scrub_bytes"),
            kUnknownL2ScrubBytes);
  EXPECT_EQ(kernel_timing_settings(at::Device(at::kCPU), env), (nlohmann::json{{"timer", "steady_clock"}}));
  // The table marks a row timed with the fallback.
  KernelSweep s = tiny_sweep();
  s.ops = {"causal_conv1d_update"};
  std::vector<nlohmann::json> rows = run_kernels(s, fake_env());
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(format_kernels_table(kernels_document(s, fake_env(), {}, rows, false)).find("plain events"),
            std::string::npos);
  record_timer(rows[0], CallTimes{{1.0}, CallTimer::CudaEvents, "the last warm-up call waited"});
  EXPECT_NE(format_kernels_table(kernels_document(s, fake_env(), {}, rows, false))
                .find("| ok (plain events: could not queue) |"),
            std::string::npos);
}

// ---- The timer on a GPU (no timed assertions: only that calls are queued, released, found out) ----

#ifdef EFFARCH_WITH_CUDA
#define SKIP_WITHOUT_GPU() \
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device"
#else
#define SKIP_WITHOUT_GPU() GTEST_SKIP() << "built without CUDA"
#endif

TEST(KernelTimerCuda, TheBlockerReleasesAQueuedCall) {
  SKIP_WITHOUT_GPU();
#ifdef EFFARCH_WITH_CUDA
  const at::Device cuda(at::kCUDA, 0);
  QueuedCudaTimer timer(cuda, 0.5);
  int l2 = 0;
  ASSERT_EQ(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, 0), cudaSuccess);
  EXPECT_EQ(timer.scrub_bytes(), l2_scrub_bytes(static_cast<uint64_t>(l2)));
  EXPECT_GE(timer.scrub_bytes(), 2 * static_cast<uint64_t>(l2));
  at::Tensor x = at::zeros({4096}, at::TensorOptions().device(cuda));
  const std::function<void()> fn = [&] { x.add_(1); };
  fn();  // once unqueued: a first launch may load its module lazily, which can sync
  EXPECT_EQ(x.min().item<float>(), 1.0f);
  const QueuedCall q = timer.queued(fn);
  EXPECT_EQ(q.outcome, BlockerOutcome::Released);
  EXPECT_GT(q.seconds, 0);
  EXPECT_EQ(x.min().item<float>(), 2.0f);  // the call ran once, after the blocker
  const CallTimes t = timer.time(2, 3, fn);
  EXPECT_EQ(t.timer, CallTimer::CudaEventsQueued) << t.fallback;
  EXPECT_TRUE(t.fallback.empty()) << t.fallback;
  ASSERT_EQ(t.seconds.size(), 3u);
  for (double s : t.seconds) EXPECT_GT(s, 0);
  EXPECT_EQ(x.max().item<float>(), 7.0f);  // 2 + 2 warm-up + 3 timed calls (no retries: each ran once)
  EXPECT_GT(timer.plain(fn), 0);
#endif
}

TEST(KernelTimerCuda, ACallThatSyncsInsideTimesOutAndFallsBackInsteadOfHanging) {
  SKIP_WITHOUT_GPU();
#ifdef EFFARCH_WITH_CUDA
  const at::Device cuda(at::kCUDA, 0);
  QueuedCudaTimer timer(cuda, 0.05);
  at::Tensor x = at::zeros({4096}, at::TensorOptions().device(cuda));
  float seen = 0;
  const std::function<void()> item = [&] { seen = x.add_(1).sum().item<float>(); };  // a D2H copy: waits on the GPU
  const std::function<void()> sync = [&] {
    x.add_(1);
    ASSERT_EQ(cudaStreamSynchronize(c10::cuda::getCurrentCUDAStream(0).stream()), cudaSuccess);
  };
  EXPECT_EQ(timer.queued(item).outcome, BlockerOutcome::TimedOut);
  EXPECT_EQ(seen, 4096.0f);  // the call still ran, once the blocker gave up
  EXPECT_EQ(timer.queued(sync).outcome, BlockerOutcome::TimedOut);
  for (const auto* fn : {&item, &sync}) {
    const CallTimes t = timer.time(1, 3, *fn);
    EXPECT_EQ(t.timer, CallTimer::CudaEvents);
    EXPECT_NE(t.fallback.find("the last warm-up call"), std::string::npos) << t.fallback;
    ASSERT_EQ(t.seconds.size(), 3u);
    for (double s : t.seconds) EXPECT_GT(s, 0);
  }
  // The timer is whole after a timeout: a call that does not sync is queued again.
  EXPECT_EQ(timer.queued([&] { x.add_(1); }).outcome, BlockerOutcome::Released);
#endif
}

TEST(KernelTimerCuda, SweepRowsSayHowTheyWereTimed) {
  SKIP_WITHOUT_GPU();
  KernelSweep s = tiny_sweep();
  s.device = "cuda";
  s.ops = {"dense_gemv_x_proj", "selective_state_update", "moe_prefill_per_expert"};
  s.lengths = {8};
  const auto rows = run_kernels(s, fake_env());
  ASSERT_FALSE(rows.empty());
  for (const auto& r : rows) {
    ASSERT_EQ(r.at("status"), "ok") << r.dump();
    EXPECT_GT(r.at("l2_scrub_bytes").get<uint64_t>(), 0u) << r.dump();
    const std::string timer = r.at("timer").get<std::string>();
    if (r.at("op").get<std::string>().rfind("moe_", 0) == 0) {
      // The MoE rows may read counts on the host: either timer, and a fallback says why.
      EXPECT_TRUE(timer == "cuda_events_queued" || timer == "cuda_events") << r.dump();
      EXPECT_EQ(r.contains("timer_fallback"), timer == "cuda_events") << r.dump();
    } else {
      EXPECT_EQ(timer, "cuda_events_queued") << r.dump();  // one or a few launches, no sync
      EXPECT_FALSE(r.contains("timer_fallback")) << r.dump();
    }
  }
}

}  // namespace
}  // namespace effarch::bench
