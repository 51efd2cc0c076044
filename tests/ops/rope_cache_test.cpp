// rope_cache_write: the fused kernel's per-element math (kernels/rope_cache/rope_cache_math.h)
// run on the CPU over every (sequence, head, element) against the reference (apply_rope_at and
// index_copy_), bitwise, in every dtype, full and partial rotary, llama3 scaling, no RoPE; the
// errors; and, with a GPU, the CUDA kernel against the reference, bitwise. rope_cache_prefill (a
// prefill's tokens, the rows kernel): its reference against apply_rope and the copies, its errors,
// and with a GPU its kernel, bitwise (tests/sim/attention_sim_test.cpp runs that kernel on the CPU).

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include "../../kernels/rope_cache/rope_cache_math.h"
#include "../test_util.h"
#include "rope_cases.h"
#include "effarch/common/error.h"
#include "effarch/ops/rope.h"
#include "effarch/ops/rope_cache.h"

namespace effarch::ops {
namespace {

namespace rw = kernels::rope_write;

using Shape = test::RopeShape;
using test::rope_params;

struct Inputs {
  at::Tensor q, k, v, k_cache, v_cache, position;
};

// q, k, v as the model makes them: a [B, 1, H*D] projection viewed [B, H, 1, D].
Inputs make_inputs(const Shape& s, at::ScalarType dtype, at::Device device) {
  at::manual_seed(5);
  const auto opts = at::TensorOptions().dtype(dtype).device(device);
  const auto proj = [&](int64_t heads) {
    return at::randn({s.batch, 1, heads * s.head_dim}, at::kFloat).to(opts).view({s.batch, 1, heads, s.head_dim}).transpose(1, 2);
  };
  Inputs in;
  in.q = proj(s.q_heads);
  in.k = proj(s.kv_heads);
  in.v = proj(s.kv_heads);
  in.k_cache = at::randn({s.batch, s.kv_heads, s.max_len, s.head_dim}, at::kFloat).to(opts);
  in.v_cache = at::randn({s.batch, s.kv_heads, s.max_len, s.head_dim}, at::kFloat).to(opts);
  in.position = at::full({1}, s.position, at::TensorOptions().dtype(at::kLong).device(device));
  return in;
}

float round_to(float x, at::ScalarType dtype) {
  switch (dtype) {
    case at::kBFloat16: return static_cast<float>(c10::BFloat16(x));
    case at::kHalf: return static_cast<float>(c10::Half(x));
    default: return x;
  }
}

// The kernel's blocks on the CPU: per (sequence, head) the head in fp32, per element rotate_element.
at::Tensor emulate(const Inputs& in, const RopeTables* tables, int64_t position, at::Tensor& k_cache,
                   at::Tensor& v_cache) {
  const at::ScalarType dtype = in.q.scalar_type();
  const auto round = [dtype](float x) { return round_to(x, dtype); };
  const int64_t d_size = in.q.size(3);
  const int rd = tables != nullptr ? static_cast<int>(tables->rotary_dim) : 0;
  const at::Tensor cos = tables != nullptr ? tables->cos.to(at::kFloat).contiguous() : at::Tensor();
  const at::Tensor sin = tables != nullptr ? tables->sin.to(at::kFloat).contiguous() : at::Tensor();
  const auto rotate_head = [&](const at::Tensor& head) {  // [D] in dtype -> [D] float
    const at::Tensor x = head.to(at::kFloat).contiguous();
    at::Tensor out = at::empty({d_size}, at::kFloat);
    for (int d = 0; d < d_size; ++d) {
      const bool rot = rd > 0 && d < rd;
      const float c = rot ? cos[position][d].item<float>() : 1.0f;
      const float s = rot ? sin[position][d].item<float>() : 0.0f;
      out[d] = rw::rotate_element(x.const_data_ptr<float>(), d, rot ? rd : 0, c, s, round);
    }
    return out.to(dtype);
  };
  at::Tensor q_out = at::empty_like(in.q);
  for (int64_t b = 0; b < in.q.size(0); ++b) {
    for (int64_t h = 0; h < in.q.size(1); ++h) q_out[b][h][0].copy_(rotate_head(in.q[b][h][0]));
    for (int64_t h = 0; h < in.k.size(1); ++h) {
      k_cache[b][h][position].copy_(rotate_head(in.k[b][h][0]));
      v_cache[b][h][position].copy_(in.v[b][h][0]);
    }
  }
  return q_out;
}


TEST(RopeCacheEmulation, KernelMathIsBitwiseTheReference) {
  for (const Shape& s : test::kRopeShapes) {
    for (at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
      for (bool with_rope : {true, false}) {
        const Inputs in = make_inputs(s, dtype, at::kCPU);
        const RopeTables tables = make_rope_tables(rope_params(s), s.max_len, at::kCPU);
        const RopeTables* t = with_rope ? &tables : nullptr;
        at::Tensor ref_k = in.k_cache.clone(), ref_v = in.v_cache.clone();
        const at::Tensor ref_q = rope_cache_write(in.q, in.k, in.v, t, in.position, ref_k, ref_v, Backend::Reference);
        at::Tensor emu_k = in.k_cache.clone(), emu_v = in.v_cache.clone();
        const at::Tensor emu_q = emulate(in, t, s.position, emu_k, emu_v);
        const std::string what = std::to_string(s.head_dim) + "/" + std::to_string(s.rotary_dim) + " " + s.type +
                                 " " + c10::toString(dtype) + (with_rope ? "" : " no rope");
        EXPECT_TRUE(at::equal(emu_q, ref_q)) << what << ": q, max diff " << (emu_q - ref_q).abs().max().item<double>();
        EXPECT_TRUE(at::equal(emu_k, ref_k)) << what << ": k_cache";
        EXPECT_TRUE(at::equal(emu_v, ref_v)) << what << ": v_cache";
        // Only the position's row changed, and it did change.
        EXPECT_FALSE(at::equal(ref_k.select(2, s.position), in.k_cache.select(2, s.position))) << what;
        if (s.max_len > 1) {
          const int64_t other = s.position == 0 ? 1 : 0;
          EXPECT_TRUE(at::equal(ref_k.select(2, other), in.k_cache.select(2, other))) << what;
        }
      }
    }
  }
}

TEST(RopeCache, BadArgumentsAreOpErrorsNamingThem) {
  const Shape s{2, 4, 2, 32, 32, 20, 7, "default"};
  Inputs in = make_inputs(s, at::kFloat, at::kCPU);
  const RopeTables tables = make_rope_tables(rope_params(s), s.max_len, at::kCPU);
  EXPECT_THROW_WITH(rope_cache_write(in.q, in.k, in.v, &tables, in.position.to(at::kInt), in.k_cache, in.v_cache),
                    OpError, {"rope_cache_write", "position"});
  EXPECT_THROW_WITH(rope_cache_write(in.q, in.k.narrow(1, 0, 1), in.v, &tables, in.position, in.k_cache, in.v_cache),
                    OpError, {"rope_cache_write", "k"});
  at::Tensor short_k = in.k_cache.narrow(3, 0, 16), short_v = in.v_cache.narrow(3, 0, 16);
  EXPECT_THROW_WITH(rope_cache_write(in.q, in.k, in.v, &tables, in.position, short_k, short_v), OpError,
                    {"rope_cache_write", "k_cache"});
  const RopeTables few = make_rope_tables(rope_params(s), 4, at::kCPU);
  EXPECT_THROW_WITH(rope_cache_write(in.q, in.k, in.v, &few, in.position, in.k_cache, in.v_cache), OpError,
                    {"rope_cache_write", "rotary_dim"});
  EXPECT_THROW_WITH(rope_cache_write(in.q, in.k, in.v, &tables, in.position, in.k_cache, in.v_cache, Backend::Cuda),
                    OpError, {"rope_cache_write", "cuda"});
}

// A prefill's q, k and v: T tokens of a fused [B, T, (Hq + 2 Hkv) D] projection, as head views.
struct PrefillInputs {
  at::Tensor q, k, v, k_cache, v_cache;
};
PrefillInputs make_prefill_inputs(const Shape& s, int64_t tokens, at::ScalarType dtype, at::Device device) {
  at::manual_seed(9);
  const auto opts = at::TensorOptions().dtype(dtype).device(device);
  const int64_t d = s.head_dim;
  const at::Tensor proj = at::randn({s.batch, tokens, (s.q_heads + 2 * s.kv_heads) * d}, at::kFloat).to(opts);
  const auto heads = [&](int64_t first, int64_t n) {
    return proj.narrow(2, first * d, n * d).view({s.batch, tokens, n, d}).transpose(1, 2);
  };
  return {heads(0, s.q_heads), heads(s.q_heads, s.kv_heads), heads(s.q_heads + s.kv_heads, s.kv_heads),
          at::randn({s.batch, s.kv_heads, s.max_len, d}, at::kFloat).to(opts),
          at::randn({s.batch, s.kv_heads, s.max_len, d}, at::kFloat).to(opts)};
}

// The reference is what the model ran before the op: apply_rope on q and k, copies into the
// caches' rows start .. start + T - 1, the other rows untouched.
TEST(RopeCachePrefill, ReferenceIsApplyRopeAndTheCopies) {
  const Shape s{2, 4, 2, 80, 32, 40, 5, "default"};  // Phi-2's partial rotary
  const PrefillInputs in = make_prefill_inputs(s, 9, at::kBFloat16, at::kCPU);
  const RopeTables tables = make_rope_tables(rope_params(s), s.max_len, at::kCPU);
  at::Tensor k_cache = in.k_cache.clone(), v_cache = in.v_cache.clone();
  const at::Tensor q = rope_cache_prefill(in.q, in.k, in.v, &tables, s.position, k_cache, v_cache);
  EXPECT_TRUE(at::equal(q, apply_rope(in.q, tables, s.position)));
  EXPECT_TRUE(at::equal(k_cache.narrow(2, s.position, 9), apply_rope(in.k, tables, s.position)));
  EXPECT_TRUE(at::equal(v_cache.narrow(2, s.position, 9), in.v));
  EXPECT_TRUE(at::equal(k_cache.narrow(2, 0, s.position), in.k_cache.narrow(2, 0, s.position)));
  EXPECT_TRUE(at::equal(v_cache.narrow(2, 14, 26), in.v_cache.narrow(2, 14, 26)));
  // Without RoPE: q as it is, k and v copied.
  at::Tensor k2 = in.k_cache.clone(), v2 = in.v_cache.clone();
  EXPECT_TRUE(at::equal(rope_cache_prefill(in.q, in.k, in.v, nullptr, 0, k2, v2), in.q));
  EXPECT_TRUE(at::equal(k2.narrow(2, 0, 9), in.k));
}

TEST(RopeCachePrefill, BadArgumentsAreOpErrorsNamingThem) {
  const Shape s{1, 4, 2, 32, 32, 20, 0, "default"};
  PrefillInputs in = make_prefill_inputs(s, 6, at::kFloat, at::kCPU);
  const RopeTables tables = make_rope_tables(rope_params(s), s.max_len, at::kCPU);
  EXPECT_THROW_WITH(rope_cache_prefill(in.q, in.k, in.v, &tables, 15, in.k_cache, in.v_cache), OpError,
                    {"rope_cache_prefill", "6 tokens from position 15 do not fit a cache of 20"});
  EXPECT_THROW_WITH(rope_cache_prefill(in.q, in.k, in.v, &tables, -1, in.k_cache, in.v_cache), OpError,
                    {"rope_cache_prefill", "from position -1"});
  EXPECT_THROW_WITH(rope_cache_prefill(in.q, in.k.narrow(2, 0, 5), in.v, &tables, 0, in.k_cache, in.v_cache),
                    OpError, {"rope_cache_prefill", "[B, Hkv, T, D]"});
  EXPECT_THROW_WITH(rope_cache_prefill(in.q, in.k, in.v.to(at::kDouble), &tables, 0, in.k_cache, in.v_cache),
                    OpError, {"rope_cache_prefill", "v is"});
  EXPECT_THROW_WITH(rope_cache_prefill(in.q, in.k, in.v, &tables, 0, in.k_cache, in.v_cache, Backend::Cuda),
                    OpError, {"rope_cache_write", "cuda"});
}

TEST(RopeCacheCuda, PrefillKernelIsBitwiseTheReference) {
  if (!(kBuiltWithCuda && at::hasCUDA())) GTEST_SKIP() << "needs a CUDA build and a GPU";
  const at::Device gpu(at::kCUDA, 0);
  for (const Shape& s : test::kRopeShapes) {
    for (const int64_t tokens : {int64_t{1}, std::min<int64_t>(s.max_len - s.position, 37)}) {
      for (at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
        for (bool with_rope : {true, false}) {
          const PrefillInputs in = make_prefill_inputs(s, tokens, dtype, gpu);
          const RopeTables tables = make_rope_tables(rope_params(s), s.max_len, gpu);
          const RopeTables* t = with_rope ? &tables : nullptr;
          at::Tensor ref_k = in.k_cache.clone(), ref_v = in.v_cache.clone();
          const at::Tensor ref_q =
              rope_cache_prefill(in.q, in.k, in.v, t, s.position, ref_k, ref_v, Backend::Reference);
          at::Tensor k = in.k_cache.clone(), v = in.v_cache.clone();
          const at::Tensor q = rope_cache_prefill(in.q, in.k, in.v, t, s.position, k, v, Backend::Cuda);
          const std::string what = std::to_string(s.head_dim) + "/" + std::to_string(s.rotary_dim) + " " + s.type +
                                   " " + c10::toString(dtype) + " T " + std::to_string(tokens) +
                                   (with_rope ? "" : " no rope");
          EXPECT_TRUE(at::equal(q, ref_q)) << what << ": q, max diff " << (q - ref_q).abs().max().item<double>();
          EXPECT_TRUE(at::equal(k, ref_k)) << what << ": k_cache";
          EXPECT_TRUE(at::equal(v, ref_v)) << what << ": v_cache";
        }
      }
    }
  }
}

TEST(RopeCacheCuda, KernelIsBitwiseTheReference) {
  if (!(kBuiltWithCuda && at::hasCUDA())) GTEST_SKIP() << "needs a CUDA build and a GPU";
  const at::Device gpu(at::kCUDA, 0);
  for (const Shape& s : test::kRopeShapes) {
    for (at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
      for (bool with_rope : {true, false}) {
        const Inputs in = make_inputs(s, dtype, gpu);
        const RopeTables tables = make_rope_tables(rope_params(s), s.max_len, gpu);
        const RopeTables* t = with_rope ? &tables : nullptr;
        at::Tensor ref_k = in.k_cache.clone(), ref_v = in.v_cache.clone();
        const at::Tensor ref_q = rope_cache_write(in.q, in.k, in.v, t, in.position, ref_k, ref_v, Backend::Reference);
        at::Tensor k = in.k_cache.clone(), v = in.v_cache.clone();
        const at::Tensor q = rope_cache_write(in.q, in.k, in.v, t, in.position, k, v, Backend::Cuda);
        const std::string what = std::to_string(s.head_dim) + "/" + std::to_string(s.rotary_dim) + " " + s.type +
                                 " " + c10::toString(dtype) + (with_rope ? "" : " no rope");
        EXPECT_TRUE(at::equal(q, ref_q)) << what << ": q, max diff " << (q - ref_q).abs().max().item<double>();
        EXPECT_TRUE(at::equal(k, ref_k)) << what << ": k_cache";
        EXPECT_TRUE(at::equal(v, ref_v)) << what << ": v_cache";
      }
    }
  }
}

}  // namespace
}  // namespace effarch::ops
