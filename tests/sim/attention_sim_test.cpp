// The attention side's CUDA bindings on the CPU executor: decode attention
// (src/ops/decode_attention_cuda.cpp: the layout checks, the split plan from the device's SM
// count, the fp32 workspace) and RoPE with the KV-cache write (src/ops/rope_cache_cuda.cpp: the
// tables cast and strided, q, k, v and the caches as the model views them). The kernel-level
// tests (decode_attention_sim_test.cpp, rope_cache_sim_test.cpp) fill the params by hand; these run
// the bindings' own, against the references the GPU tests use (tests/ops/decode_attention_test.cpp,
// rope_cache_test.cpp).
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "../ops/rope_cases.h"
#include "cuda_sim.h"
#include "effarch/common/error.h"
#include "effarch/ops/decode_attention.h"
#include "effarch/ops/rope.h"
#include "effarch/ops/rope_cache.h"
#include "sim_test.h"

namespace effarch::sim {
namespace {

using namespace ::effarch::ops;

class AttentionSim : public ::testing::Test {
 protected:
  void TearDown() override { reset_device(); }
};

struct AttnCase {
  int64_t batch, q_heads, kv_heads, head_dim, max_keys, queries;
  std::optional<int64_t> window;
  std::vector<int64_t> positions;  // each sequence's newest query; one entry: the host position for all
};

// The cache as the model keeps it: [B, S, Hkv, D] storage viewed [B, Hkv, S, D].
at::Tensor cache(const AttnCase& c, at::ScalarType dtype) {
  return at::randn({c.batch, c.max_keys, c.kv_heads, c.head_dim}).to(dtype).transpose(1, 2);
}

// The binding's output for `c` with the device's SM count `sms` (0: the H100's), and the launches it made.
at::Tensor run_binding(const AttnCase& c, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int sms,
                       int blocks_per_sm, int* launches_made) {
  if (sms > 0) device_properties().multiProcessorCount = sms;
  const double scale = 1.0 / std::sqrt(static_cast<double>(c.head_dim));
  const at::Tensor positions = c.positions.size() == 1 ? at::Tensor() : at::tensor(c.positions, at::kLong);
  at::Tensor out = at::full(q.sizes(), NAN, q.options());
  reset_launches();
  detail::decode_attention_cuda(q, k, v, positions, c.positions[0], scale, c.window, out, blocks_per_sm);
  *launches_made = launches();
  reset_device();
  return out;
}

// Decode attention through its binding against the reference in fp64 (the eager masked attention
// decode_attention falls back to): GQA 1, 4 and 8, head sizes 64, 80 and 128, sequences filled to
// different lengths (positions on the device) and one host position, two queries a sequence, a
// sliding window; the split plan of an H100 (several splits: the workspace and the combine), of a
// one-SM device asking one block an SM (one split, one launch) and of the measuring knob's four
// blocks an SM.
TEST_F(AttentionSim, DecodeAttentionMatchesTheReference) {
  const std::vector<AttnCase> cases = {
      {2, 8, 2, 64, 200, 1, std::nullopt, {37, 150}},  // GQA 4
      {1, 8, 1, 128, 333, 1, std::nullopt, {300}},     // GQA 8, a host position
      {2, 4, 4, 80, 90, 2, std::nullopt, {41, 88}},    // Phi-2's head size, MHA, two queries
      {1, 4, 2, 64, 120, 1, int64_t{20}, {100}},       // a sliding window
  };
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    for (const AttnCase& c : cases) {
      at::manual_seed(c.head_dim + c.max_keys);
      const at::Tensor q = at::randn({c.batch, c.q_heads, c.queries, c.head_dim}).to(dtype);
      const at::Tensor k = cache(c, dtype), v = cache(c, dtype);
      const at::Tensor positions = at::tensor(c.positions, at::kLong);
      const double scale = 1.0 / std::sqrt(static_cast<double>(c.head_dim));
      const at::Tensor ref = detail::decode_attention_reference(q.to(at::kDouble), k.to(at::kDouble), v.to(at::kDouble),
                                                                positions, scale, c.window, AttentionImpl::Eager);
      const double tol = dtype == at::kFloat ? 2e-6 : dtype == at::kBFloat16 ? 1.6e-2 : 2e-3;
      for (const auto& [sms, per_sm] : std::vector<std::pair<int, int>>{{0, 0}, {1, 1}, {0, 4}}) {
        const std::string what =
            fmt::format("{} B {} Hq {} Hkv {} D {} S {} T {} window {} sms {} per sm {}", name_of(dtype), c.batch,
                        c.q_heads, c.kv_heads, c.head_dim, c.max_keys, c.queries, c.window.value_or(0), sms, per_sm);
        int made = 0;
        const at::Tensor out = run_both_orders([&] { return run_binding(c, q, k, v, sms, per_sm, &made); }, same_bytes);
        EXPECT_EQ(made, sms == 1 ? 1 : 2) << what << ": the split kernel, then the combine where it split";
        EXPECT_LE((out.to(at::kDouble) - ref).abs().max().item<double>(), tol) << what;
      }
    }
  }
}

// What only the CUDA kernel needs, refused by name: a head size without a kernel, K rows that are
// not 16-byte aligned (cp.async copies), a strided head dimension.
TEST_F(AttentionSim, DecodeAttentionRefusesWhatTheKernelCannotRead) {
  const auto expect_refused = [](const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const char* what) {
    at::Tensor out = at::empty(q.sizes(), q.options());
    try {
      detail::decode_attention_cuda(q, k, v, at::Tensor(), 3, 0.125, std::nullopt, out);
      ADD_FAILURE() << "not refused: " << what;
    } catch (const OpError& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  const at::Tensor q96 = at::randn({1, 2, 1, 96}), kv96 = at::randn({1, 2, 8, 96});
  expect_refused(q96, kv96, kv96, "head size 96");
  const at::Tensor q = at::randn({1, 2, 1, 64});
  const at::Tensor wide = at::randn({1, 2, 8, 66});
  const at::Tensor shifted = wide.narrow(3, 1, 64);  // rows start 4 bytes into 16-byte chunks
  expect_refused(q, shifted, at::randn({1, 2, 8, 64}), "k_cache rows");
  const at::Tensor strided = at::randn({1, 2, 8, 128}).slice(3, 0, 128, 2);
  expect_refused(q, at::randn({1, 2, 8, 64}), strided, "v_cache needs a contiguous head dimension");
}

using RopeCase = test::RopeShape;

// The case's tables on the host (tests/ops/rope_cases.h).
RopeTables rope_tables(const RopeCase& s) { return make_rope_tables(test::rope_params(s), s.max_len, at::kCPU); }

// What a binding wrote: q rotated, the two caches.
struct Written {
  at::Tensor q, k, v;
};

// `write` (a binding into clones of the caches) under both schedules, the same bytes each time,
// then bit for bit the reference's.
template <typename Write>
void expect_written_as_the_reference(Write&& write, const at::Tensor& k_cache, const at::Tensor& v_cache,
                                     const at::Tensor& ref_q, const at::Tensor& ref_k, const at::Tensor& ref_v,
                                     const std::string& what) {
  const Written w = run_both_orders(
      [&] {
        Written r{at::Tensor(), k_cache.clone(), v_cache.clone()};
        r.q = write(r.k, r.v);
        return r;
      },
      [](const Written& a, const Written& b) {
        return same_bytes(a.q, b.q) && same_bytes(a.k, b.k) && same_bytes(a.v, b.v);
      });
  EXPECT_TRUE(at::equal(w.q, ref_q))
      << what << ": q, max diff " << (w.q.to(at::kDouble) - ref_q.to(at::kDouble)).abs().max().item<double>();
  EXPECT_TRUE(at::equal(w.k, ref_k)) << what << ": k_cache";
  EXPECT_TRUE(at::equal(w.v, ref_v)) << what << ": v_cache";
}

// RoPE and the cache write through the binding: bit for bit the reference (apply_rope_at, then
// index_copy_ into the caches), as tests/ops/rope_cache_test.cpp holds the GPU to; every dtype,
// full and partial rotary, llama3's scaling, no RoPE; q, k and v as views of the projections.
TEST_F(AttentionSim, RopeCacheWriteIsBitwiseTheReference) {
  for (const RopeCase& s : test::kRopeShapes) {  // the op tests' shapes (tests/ops/rope_cases.h)
    const RopeTables tables = rope_tables(s);
    for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
      for (const bool with_rope : {true, false}) {
        at::manual_seed(5);
        // q, k, v as the model makes them: a [B, 1, H*D] projection viewed [B, H, 1, D].
        const auto proj = [&](int64_t heads) {
          return at::randn({s.batch, 1, heads * s.head_dim})
              .to(dtype)
              .view({s.batch, 1, heads, s.head_dim})
              .transpose(1, 2);
        };
        const at::Tensor q = proj(s.q_heads), k = proj(s.kv_heads), v = proj(s.kv_heads);
        const at::Tensor k_cache = at::randn({s.batch, s.kv_heads, s.max_len, s.head_dim}).to(dtype);
        const at::Tensor v_cache = at::randn({s.batch, s.kv_heads, s.max_len, s.head_dim}).to(dtype);
        const at::Tensor position = at::full({1}, s.position, at::kLong);
        const RopeTables* t = with_rope ? &tables : nullptr;
        at::Tensor ref_k = k_cache.clone(), ref_v = v_cache.clone();
        const at::Tensor ref_q = rope_cache_write(q, k, v, t, position, ref_k, ref_v, Backend::Reference);
        const std::string what =
            fmt::format("{}/{} {} {}{}", s.head_dim, s.rotary_dim, s.type, name_of(dtype), with_rope ? "" : " no rope");
        expect_written_as_the_reference(
            [&](at::Tensor& kc, at::Tensor& vc) { return detail::rope_cache_write_cuda(q, k, v, t, position, kc, vc); },
            k_cache, v_cache, ref_q, ref_k, ref_v, what);
      }
    }
  }
}

// A prefill's RoPE and cache write through its binding (rope_cache_prefill_cuda, the rows
// kernel): bit for bit the reference (apply_rope on q and k, then copies into the caches), every
// dtype, full and partial rotary, llama3's scaling, no RoPE; T tokens from a start position (one
// token, odd counts, a start past the original context), q, k and v as the model views them
// (head views of one fused [B, T, (Hq + 2 Hkv) D] projection), rows before and after the tokens
// untouched.
TEST_F(AttentionSim, RopeCachePrefillIsBitwiseTheReference) {
  struct PrefillCase {
    RopeCase shape;
    int64_t tokens;  // from shape.position
  };
  const PrefillCase cases[] = {
      {{2, 4, 2, 32, 32, 40, 0, "default"}, 13},      // full rotary, GQA, from the start
      {{1, 4, 4, 80, 32, 40, 5, "default"}, 33},      // Phi-2's head: 32 of 80 rotate, a later start
      {{2, 8, 2, 128, 128, 300, 250, "llama3"}, 7},   // Llama-3's scaling, past the original context
      {{3, 2, 1, 16, 8, 9, 8, "default"}, 1},         // one token, the cache's last row
  };
  for (const PrefillCase& pc : cases) {
    const RopeCase& s = pc.shape;
    const RopeTables tables = rope_tables(s);
    for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
      for (const bool with_rope : {true, false}) {
        at::manual_seed(7);
        const int64_t t = pc.tokens, d = s.head_dim;
        const at::Tensor proj = at::randn({s.batch, t, (s.q_heads + 2 * s.kv_heads) * d}).to(dtype);
        const auto heads = [&](int64_t first, int64_t n) {
          return proj.narrow(2, first * d, n * d).view({s.batch, t, n, d}).transpose(1, 2);
        };
        const at::Tensor q = heads(0, s.q_heads), k = heads(s.q_heads, s.kv_heads),
                         v = heads(s.q_heads + s.kv_heads, s.kv_heads);
        const at::Tensor k_cache = at::randn({s.batch, s.kv_heads, s.max_len, d}).to(dtype);
        const at::Tensor v_cache = at::randn({s.batch, s.kv_heads, s.max_len, d}).to(dtype);
        const RopeTables* tb = with_rope ? &tables : nullptr;
        at::Tensor ref_k = k_cache.clone(), ref_v = v_cache.clone();
        const at::Tensor ref_q = rope_cache_prefill(q, k, v, tb, s.position, ref_k, ref_v, Backend::Reference);
        const std::string what = fmt::format("{}/{} {} {} T {} from {}{}", s.head_dim, s.rotary_dim, s.type,
                                             name_of(dtype), t, s.position, with_rope ? "" : " no rope");
        expect_written_as_the_reference(
            [&](at::Tensor& kc, at::Tensor& vc) {
              return detail::rope_cache_prefill_cuda(q, k, v, tb, s.position, kc, vc);
            },
            k_cache, v_cache, ref_q, ref_k, ref_v, what);
        if (with_rope) EXPECT_FALSE(at::equal(ref_q, q)) << what << ": the reference did not rotate q";
      }
    }
  }
  // The binding refuses what the kernel cannot do: rows past the cache (the op checks first too).
  const at::Tensor q = at::randn({1, 2, 4, 16}), kv = at::randn({1, 1, 4, 16});
  at::Tensor kc = at::zeros({1, 1, 6, 16}), vc = at::zeros({1, 1, 6, 16});
  EXPECT_THROW(detail::rope_cache_prefill_cuda(q, kv, kv, nullptr, 3, kc, vc), std::exception);
}

}  // namespace
}  // namespace effarch::sim
