// The fused RoPE + KV-cache write (kernels/rope_cache) run by the CPU executor through its
// launcher: q and k rotated at the device-held position by rotate-half RoPE (transformers'
// rotate_half: cat(-x2, x1) over the first rotary_dim elements), rotated k and v written into the
// cache row of that position, in every dtype; full and partial rotary, GQA and MHA, batches of
// several sequences (one position for all: the launcher reads one), Llama-3's scaled frequencies
// and a table scaled by an attention factor (the cos/sin tables carry the scaling), strided q, k, v
// (views of a fused projection), padded cache and table rows. Against the rotation in fp64 from
// the fp64 tables: the rotated elements within the dtype's rounding, the elements past rotary_dim,
// v, the other cache rows and every element without RoPE (rotary_dim 0) bit for bit; a position
// outside the cache writes no cache row.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "cuda_sim.h"
// the kernels' per-dtype translation units, host-compiled
#include "rope_cache/rope_cache_bf16.cu"
#include "rope_cache/rope_cache_fp16.cu"
#include "rope_cache/rope_cache_fp32.cu"
#include "sim_test.h"

namespace effarch::sim {
namespace {

namespace k = ::effarch::kernels;

enum class Freqs { Default, Llama3 };

struct Case {
  int64_t batch, q_heads, kv_heads, head_dim, rotary_dim, max_keys, position;
  Freqs freqs;
  double scale;  // the tables' attention factor (YaRN's), 1 for most
  int64_t pad;   // elements past each row of the fused projection, each cache key and each table row
};

// The inverse frequencies in fp64: theta^(-2i / rotary_dim), Llama-3's scaling (factor 8, low and
// high frequency factors 1 and 4, an original context of 64 so that all three bands occur).
at::Tensor inv_freq(const Case& c) {
  const double theta = c.freqs == Freqs::Llama3 ? 500000.0 : 10000.0;
  at::Tensor inv = 1.0 / at::pow(theta, at::arange(0, c.rotary_dim, 2, at::kDouble) / c.rotary_dim);
  if (c.freqs == Freqs::Default) return inv;
  const double factor = 8, low = 1, high = 4, original = 64;
  const at::Tensor wavelen = 2 * M_PI / inv;
  const at::Tensor smooth = (original / wavelen - low) / (high - low);
  const at::Tensor medium = (1 - smooth) * inv / factor + smooth * inv;
  return at::where(wavelen < original / high, inv, at::where(wavelen > original / low, inv / factor, medium));
}

struct Tables {
  at::Tensor cos, sin;  // [max_keys, rotary_dim] fp64: cat(freqs, freqs) per position, times the scale
};

Tables make_tables(const Case& c) {
  const at::Tensor freqs = at::outer(at::arange(c.max_keys, at::kDouble), inv_freq(c));
  const at::Tensor emb = at::cat({freqs, freqs}, 1);
  return {emb.cos() * c.scale, emb.sin() * c.scale};
}

// x [batch, heads, head_dim] rotated at one row of the tables in fp64, and each element's error
// scale |x cos| + |rotate_half(x) sin| (0 past rotary_dim, where x passes through).
struct Rotated {
  at::Tensor out, scale;
};
Rotated reference_rotate(const at::Tensor& x, const Tables& t, int64_t position, int64_t rotary_dim) {
  const at::Tensor xd = x.to(at::kDouble);
  const at::Tensor rot = xd.narrow(2, 0, rotary_dim), pass = xd.narrow(2, rotary_dim, x.size(2) - rotary_dim);
  const int64_t half = rotary_dim / 2;
  const at::Tensor rotated_half = at::cat({-rot.narrow(2, half, half), rot.narrow(2, 0, half)}, 2);
  const at::Tensor cos = t.cos[position], sin = t.sin[position];
  return {at::cat({rot * cos + rotated_half * sin, pass}, 2),
          at::cat({(rot * cos).abs() + (rotated_half * sin).abs(), at::zeros_like(pass)}, 2)};
}

// The step's tensors as the model has them: q, k and v views of one fused projection's rows
// [batch, (q_heads + 2 kv_heads) head_dim + pad]; the caches' and the tables' rows padded by `pad`.
struct Inputs {
  at::Tensor qkv, q, k, v;
  at::Tensor k_cache, v_cache;  // storage [batch, kv_heads, max_keys, head_dim + pad]
  at::Tensor cos, sin;          // fp32 storage [max_keys, rotary_dim + pad]
  at::Tensor position;          // [1] int64
};

Inputs make_inputs(const Case& c, const Tables& t, at::ScalarType dtype, int64_t position) {
  Inputs in;
  const int64_t q_width = c.q_heads * c.head_dim, kv_width = c.kv_heads * c.head_dim;
  in.qkv = at::randn({c.batch, q_width + 2 * kv_width + c.pad}).to(dtype);
  in.q = in.qkv.narrow(1, 0, q_width).view({c.batch, c.q_heads, c.head_dim});
  in.k = in.qkv.narrow(1, q_width, kv_width).view({c.batch, c.kv_heads, c.head_dim});
  in.v = in.qkv.narrow(1, q_width + kv_width, kv_width).view({c.batch, c.kv_heads, c.head_dim});
  in.k_cache = at::randn({c.batch, c.kv_heads, c.max_keys, c.head_dim + c.pad}).to(dtype);
  in.v_cache = at::randn({c.batch, c.kv_heads, c.max_keys, c.head_dim + c.pad}).to(dtype);
  in.cos = at::full({c.max_keys, c.rotary_dim + c.pad}, NAN, at::kFloat);
  in.sin = at::full({c.max_keys, c.rotary_dim + c.pad}, NAN, at::kFloat);
  in.cos.narrow(1, 0, c.rotary_dim).copy_(t.cos);  // rounded once to fp32
  in.sin.narrow(1, 0, c.rotary_dim).copy_(t.sin);
  in.position = at::full({1}, position, at::kLong);
  return in;
}

at::Tensor cache_view(const at::Tensor& storage, int64_t head_dim) { return storage.narrow(3, 0, head_dim); }

struct RopeRun {
  at::Tensor q_out, k_cache, v_cache;  // the caches' storage, as make_inputs lays it out
};

// The launcher on `in` (rotary_dim 0: no RoPE, no tables), on copies of the caches.
RopeRun run_rope_cache(const Case& c, const Inputs& in, int rotary_dim) {
  RopeRun r{at::full({c.batch, c.q_heads, c.head_dim}, NAN, in.q.scalar_type()), in.k_cache.clone(),
            in.v_cache.clone()};
  const at::Tensor k_cache = cache_view(r.k_cache, c.head_dim), v_cache = cache_view(r.v_cache, c.head_dim);
  k::RopeCacheParams p;
  p.batch = static_cast<int>(c.batch);
  p.q_heads = static_cast<int>(c.q_heads);
  p.kv_heads = static_cast<int>(c.kv_heads);
  p.head_dim = static_cast<int>(c.head_dim);
  p.rotary_dim = rotary_dim;
  p.max_keys = c.max_keys;
  p.type = element_of(in.q.scalar_type());
  p.q = in.q.const_data_ptr();
  p.q_batch_stride = in.q.stride(0);
  p.q_head_stride = in.q.stride(1);
  p.k = in.k.const_data_ptr();
  p.k_batch_stride = in.k.stride(0);
  p.k_head_stride = in.k.stride(1);
  p.v = in.v.const_data_ptr();
  p.v_batch_stride = in.v.stride(0);
  p.v_head_stride = in.v.stride(1);
  p.q_out = r.q_out.mutable_data_ptr();
  p.q_out_batch_stride = r.q_out.stride(0);
  p.q_out_head_stride = r.q_out.stride(1);
  p.k_cache = k_cache.mutable_data_ptr();
  p.k_cache_batch_stride = k_cache.stride(0);
  p.k_cache_head_stride = k_cache.stride(1);
  p.k_cache_key_stride = k_cache.stride(2);
  p.v_cache = v_cache.mutable_data_ptr();
  p.v_cache_batch_stride = v_cache.stride(0);
  p.v_cache_head_stride = v_cache.stride(1);
  p.v_cache_key_stride = v_cache.stride(2);
  if (rotary_dim > 0) {
    p.cos = in.cos.const_data_ptr<float>();
    p.sin = in.sin.const_data_ptr<float>();
    p.table_row_stride = in.cos.stride(0);
  }
  p.position = in.position.const_data_ptr<int64_t>();
  reset_launches();
  EXPECT_TRUE(k::rope_cache(p, nullptr).ok());
  EXPECT_EQ(launches(), 1);
  // one block per (head of q, k or v; sequence), a thread per element of the head in whole warps
  EXPECT_EQ(last_launch().grid.x, static_cast<unsigned>(c.q_heads + 2 * c.kv_heads));
  EXPECT_EQ(last_launch().grid.y, static_cast<unsigned>(c.batch));
  EXPECT_EQ(last_launch().block.x, static_cast<unsigned>((c.head_dim + 31) / 32 * 32));
  return r;
}

RopeRun run_checked(const Case& c, const Inputs& in, int rotary_dim) {
  return run_both_orders([&] { return run_rope_cache(c, in, rotary_dim); },
                         [](const RopeRun& a, const RopeRun& b) {
                           return same_bytes(a.q_out, b.q_out) && same_bytes(a.k_cache, b.k_cache) &&
                                  same_bytes(a.v_cache, b.v_cache);
                         });
}

// |actual - reference| within 3 unit roundoffs of the element's scale: cos and sin rounded to the
// dtype, both products and their sum rounded (rope_cache_math.h), each a relative error of at most
// one unit roundoff (the fp32 table's rounding is the first, in fp32). Exact where the scale is 0.
// Measured: at most 2.3 unit roundoffs, in every dtype.
void expect_rotated(const at::Tensor& actual, const Rotated& ref, at::ScalarType dtype, const std::string& what) {
  const at::Tensor excess =
      (actual.to(at::kDouble) - ref.out).abs() - 3 * unit_roundoff(dtype) * (1 + 4 * unit_roundoff(dtype)) * ref.scale;
  EXPECT_LE(excess.max().item<double>(), 0) << what;
}

// The cache `after` is `before` but for row `position` of every (sequence, head), which is `row`.
at::Tensor with_row(const at::Tensor& before, int64_t head_dim, int64_t position, const at::Tensor& row) {
  at::Tensor expected = before.clone();
  cache_view(expected, head_dim).select(2, position).copy_(row);
  return expected;
}

const Case kCases[] = {
    {2, 4, 2, 32, 32, 20, 7, Freqs::Default, 1, 0},      // tiny-llama's shape: full rotary, GQA
    {1, 4, 4, 80, 32, 40, 39, Freqs::Default, 1, 0},     // Phi-2's head: 32 of 80 rotate; the last row
    {2, 8, 2, 128, 128, 300, 257, Freqs::Llama3, 1, 0},  // Llama-3's scaling, past the original context
    {3, 2, 1, 16, 8, 5, 0, Freqs::Default, 1, 3},        // position 0 (cos 1, sin 0); padded rows
    {2, 3, 1, 96, 64, 12, 11, Freqs::Default, 1.25, 5},  // a scaled table, partial, padded rows
    {1, 1, 1, 1024, 1024, 4, 2, Freqs::Default, 1, 0},   // the largest head
};

TEST(RopeCacheSim, RotatesQAndKAndWritesTheCacheRow) {
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    for (const Case& c : kCases) {
      at::manual_seed(c.head_dim * 10 + c.position);
      const Tables t = make_tables(c);
      const Inputs in = make_inputs(c, t, dtype, c.position);
      const std::string what =
          fmt::format("{} batch {} heads {}/{} head_dim {} rotary {} position {}{}", name_of(dtype), c.batch, c.q_heads,
                      c.kv_heads, c.head_dim, c.rotary_dim, c.position, c.freqs == Freqs::Llama3 ? " llama3" : "");
      const RopeRun r = run_checked(c, in, static_cast<int>(c.rotary_dim));
      expect_rotated(r.q_out, reference_rotate(in.q, t, c.position, c.rotary_dim), dtype, what + ": q");
      // the elements past rotary_dim pass through
      const int64_t rest = c.head_dim - c.rotary_dim;
      EXPECT_TRUE(same_bytes(r.q_out.narrow(2, c.rotary_dim, rest), in.q.narrow(2, c.rotary_dim, rest))) << what;
      // k's row: rotated k, the rest of the cache as it was; v's row: v, bit for bit
      const at::Tensor k_row = cache_view(r.k_cache, c.head_dim).select(2, c.position);
      EXPECT_TRUE(same_bytes(r.k_cache, with_row(in.k_cache, c.head_dim, c.position, k_row)))
          << what << ": the k cache past its row";
      expect_rotated(k_row, reference_rotate(in.k, t, c.position, c.rotary_dim), dtype, what + ": k");
      EXPECT_TRUE(same_bytes(k_row.narrow(2, c.rotary_dim, rest), in.k.narrow(2, c.rotary_dim, rest))) << what;
      EXPECT_TRUE(same_bytes(r.v_cache, with_row(in.v_cache, c.head_dim, c.position, in.v))) << what << ": v cache";
    }
  }
}

TEST(RopeCacheSim, WithoutRopeWritesQAndKAndVAsTheyAre) {
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    for (const Case& c : kCases) {
      at::manual_seed(c.head_dim + c.position);
      const Inputs in = make_inputs(c, make_tables(c), dtype, c.position);
      const std::string what = fmt::format("{} head_dim {} position {}", name_of(dtype), c.head_dim, c.position);
      const RopeRun r = run_checked(c, in, 0);
      EXPECT_TRUE(same_bytes(r.q_out, in.q)) << what << ": q";
      EXPECT_TRUE(same_bytes(r.k_cache, with_row(in.k_cache, c.head_dim, c.position, in.k))) << what << ": k cache";
      EXPECT_TRUE(same_bytes(r.v_cache, with_row(in.v_cache, c.head_dim, c.position, in.v))) << what << ": v cache";
    }
  }
}

TEST(RopeCacheSim, APositionOutsideTheCacheWritesNoRow) {
  const Case c = kCases[0];
  for (const int64_t position : {c.max_keys, c.max_keys + 5, int64_t{-1}}) {
    at::manual_seed(3);
    const Inputs in = make_inputs(c, make_tables(c), at::kBFloat16, position);
    const RopeRun r = run_checked(c, in, static_cast<int>(c.rotary_dim));
    EXPECT_TRUE(same_bytes(r.k_cache, in.k_cache)) << "position " << position << ": k cache";
    EXPECT_TRUE(same_bytes(r.v_cache, in.v_cache)) << "position " << position << ": v cache";
  }
}

}  // namespace
}  // namespace effarch::sim
