// The decode attention kernels (kernels/decode_attention: the split kernel and the combine) run by
// the CPU executor through their launcher, on a cache whose sequences are filled to different
// lengths, against attention computed here in fp64: GQA ratios 1, 4 and 8, head sizes 64, 80 and
// 128, one split and several, a sliding window, two queries a sequence. The cp.async copies land
// only at the thread's wait (cuda_sim.h), so a read of shared memory before it shows.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "../ops/tolerance.h"
#include "cuda_sim.h"
// the kernels' per-dtype translation units, host-compiled
#include "decode_attention/decode_attention_bf16.cu"
#include "decode_attention/decode_attention_fp16.cu"
#include "decode_attention/decode_attention_fp32.cu"
#include "sim_test.h"

namespace effarch::sim {
namespace {

namespace k = ::effarch::kernels;

struct Case {
  int64_t batch, q_heads, kv_heads, head_dim, max_keys, queries, window;
  int splits;
  std::vector<int64_t> positions;  // each sequence's newest query
};

// out[b, h, t] over the keys query t of sequence b sees, in fp64.
at::Tensor reference(const Case& c, const at::Tensor& q, const at::Tensor& kc, const at::Tensor& vc) {
  at::Tensor out = at::zeros({c.batch, c.q_heads, c.queries, c.head_dim}, at::kDouble);
  const int64_t group = c.q_heads / c.kv_heads;
  for (int64_t b = 0; b < c.batch; ++b) {
    for (int64_t h = 0; h < c.q_heads; ++h) {
      for (int64_t t = 0; t < c.queries; ++t) {
        const int64_t pos = c.positions[static_cast<size_t>(b)] - (c.queries - 1) + t;
        const int64_t first = c.window > 0 ? std::max<int64_t>(0, pos - c.window + 1) : 0;
        const at::Tensor keys = kc[b][h / group].narrow(0, first, pos - first + 1).to(at::kDouble);
        const at::Tensor values = vc[b][h / group].narrow(0, first, pos - first + 1).to(at::kDouble);
        const at::Tensor scores = at::mv(keys, q[b][h][t].to(at::kDouble)) / std::sqrt(static_cast<double>(c.head_dim));
        out[b][h][t] = at::mv(values.t(), at::softmax(scores, 0));
      }
    }
  }
  return out;
}

at::Tensor run(const Case& c, const at::Tensor& q, const at::Tensor& kc, const at::Tensor& vc, const at::Tensor& pos) {
  at::Tensor out = at::zeros({c.batch, c.q_heads, c.queries, c.head_dim}, q.options());
  at::Tensor partial_out = at::full({c.batch, c.q_heads, c.queries, c.splits, c.head_dim}, NAN);
  at::Tensor partial_lse = at::full({c.batch, c.q_heads, c.queries, c.splits}, NAN);
  k::DecodeAttentionParams p;
  p.batch = static_cast<int>(c.batch);
  p.q_heads = static_cast<int>(c.q_heads);
  p.kv_heads = static_cast<int>(c.kv_heads);
  p.num_queries = static_cast<int>(c.queries);
  p.head_dim = static_cast<int>(c.head_dim);
  p.max_keys = c.max_keys;
  p.window = c.window;
  p.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.head_dim)));
  p.type = element_of(q.scalar_type());
  p.q = q.const_data_ptr();
  p.q_batch_stride = q.stride(0);
  p.q_head_stride = q.stride(1);
  p.q_query_stride = q.stride(2);
  p.k = kc.const_data_ptr();
  p.k_batch_stride = kc.stride(0);
  p.k_head_stride = kc.stride(1);
  p.k_key_stride = kc.stride(2);
  p.v = vc.const_data_ptr();
  p.v_batch_stride = vc.stride(0);
  p.v_head_stride = vc.stride(1);
  p.v_key_stride = vc.stride(2);
  p.out = out.mutable_data_ptr();
  p.out_batch_stride = out.stride(0);
  p.out_head_stride = out.stride(1);
  p.out_query_stride = out.stride(2);
  p.positions = pos.const_data_ptr<int64_t>();
  p.positions_stride = 1;
  p.num_splits = c.splits;
  p.partial_out = partial_out.mutable_data_ptr<float>();
  p.partial_lse = partial_lse.mutable_data_ptr<float>();
  EXPECT_TRUE(k::decode_attention(p, nullptr).ok());
  return out;
}

TEST(DecodeAttentionSim, MatchesTheReference) {
  const std::vector<Case> cases = {
      {2, 8, 2, 64, 200, 1, 0, 1, {37, 150}},  // GQA 4, one split
      {2, 8, 2, 64, 200, 1, 0, 3, {0, 199}},   // a sequence of one key; a full one; three splits
      {1, 8, 1, 128, 333, 1, 0, 4, {300}},     // GQA 8, head 128
      {2, 4, 4, 80, 90, 2, 0, 2, {41, 88}},    // Phi-2's head size, MHA, two queries
      {1, 4, 2, 64, 120, 1, 20, 2, {100}},     // a sliding window
  };
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    for (const Case& c : cases) {
      at::manual_seed(c.head_dim + c.max_keys);
      const at::Tensor q = at::randn({c.batch, c.q_heads, c.queries, c.head_dim}).to(dtype);
      // the cache as the model keeps it: [B, S, Hkv, D] storage viewed [B, Hkv, S, D]
      const at::Tensor kc = at::randn({c.batch, c.max_keys, c.kv_heads, c.head_dim}).to(dtype).transpose(1, 2);
      const at::Tensor vc = at::randn({c.batch, c.max_keys, c.kv_heads, c.head_dim}).to(dtype).transpose(1, 2);
      const at::Tensor pos = at::tensor(c.positions, at::kLong);
      const at::Tensor out = run_both_orders([&] { return run(c, q, kc, vc, pos); }, same_bytes);
      const at::Tensor ref = reference(c, q, kc, vc);
      const double err = (out.to(at::kDouble) - ref).abs().max().item<double>();
      const std::string what =
          fmt::format("{} B {} Hq {} Hkv {} D {} S {} T {} window {} splits {}", name_of(dtype), c.batch, c.q_heads,
                      c.kv_heads, c.head_dim, c.max_keys, c.queries, c.window, c.splits);
      if (dtype == at::kFloat) {
        EXPECT_LE(err, 2e-6) << what;
      } else {
        // Every sum in fp32, one rounding at the end: within half an ulp of the fp64 truth (the
        // 10% and 1e-6 for fp32's own error in the sums), not a fixed 1.6e-2 on outputs about 0.3.
        const at::Tensor bound = 1.1 * (test::epsilon(dtype) / 2) * ref.abs() + 1e-6;  // half an ulp, at most
        const double excess = ((out.to(at::kDouble) - ref).abs() - bound).max().item<double>();
        EXPECT_LE(excess, 0.0) << what << ": max error " << err;
      }
    }
  }
}

}  // namespace
}  // namespace effarch::sim
