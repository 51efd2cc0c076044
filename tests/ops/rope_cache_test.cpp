// rope_cache_write: the fused kernel's per-element math (kernels/rope_cache/rope_cache_math.h)
// run on the CPU over every (sequence, head, element) against the reference (apply_rope_at and
// index_copy_), bitwise, in every dtype, full and partial rotary, llama3 scaling, no RoPE; the
// errors; and, with a GPU, the CUDA kernel against the reference, bitwise.

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include "../../kernels/rope_cache/rope_cache_math.h"
#include "../test_util.h"
#include "effarch/common/error.h"
#include "effarch/ops/rope_cache.h"

namespace effarch::ops {
namespace {

namespace rw = kernels::rope_write;

struct Shape {
  int64_t batch, q_heads, kv_heads, head_dim, rotary_dim, max_len, position;
  const char* type;  // RoPE type
};

RopeParams rope_params(const Shape& s) {
  RopeParams r;
  r.rotary_dim = s.rotary_dim;
  r.type = s.type;
  if (r.type == "llama3") {
    r.factor = 8.0;
    r.original_max_position = 64;
  }
  return r;
}

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

const Shape kShapes[] = {
    {2, 4, 2, 32, 32, 20, 7, "default"},      // tiny-llama: full rotary, GQA
    {1, 4, 4, 80, 32, 40, 39, "default"},     // Phi-2's head: 32 of 80 rotate
    {2, 8, 2, 128, 128, 300, 257, "llama3"},  // Llama-3's scaling, past the original context
    {3, 2, 1, 16, 8, 5, 0, "default"},
};

TEST(RopeCacheEmulation, KernelMathIsBitwiseTheReference) {
  for (const Shape& s : kShapes) {
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

TEST(RopeCacheCuda, KernelIsBitwiseTheReference) {
  if (!(kBuiltWithCuda && at::hasCUDA())) GTEST_SKIP() << "needs a CUDA build and a GPU";
  const at::Device gpu(at::kCUDA, 0);
  for (const Shape& s : kShapes) {
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
