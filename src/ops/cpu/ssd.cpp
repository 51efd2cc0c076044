// The Mamba-2 SSD scan on the CPU, fused: the recurrence of include/effarch/ops/ssd.h run
// sequentially in time. On a CPU the chunked quadratic form of the reference (src/ops/ssd.cpp)
// only adds work (Q x Q score matrices per chunk and head); the recurrence is 2 P N multiply-adds
// per token and head, with the state in cache. One task is a block of up to kRows head channels
// of one (batch, head): its state rows (kRows x N fp32, 8 KiB at N = 128) stay in L1 over the
// whole sequence; each step reads B[t, g], C[t, g] (N each; in place where fp32 and contiguous
// over N, as the mixer's conv output is, else into fp32 scratch) and x[t, h, p-block], whatever
// their dtype and strides, updates the rows four at a time (four independent accumulators, B and
// C loaded once for the four; 16-lane vectors where N is a multiple of 16, one AVX-512 register
// in the x86-64-v4 clone) and writes y[t, h, p-block] in fp32. dt = softplus(dt + bias), clamped exactly where the reference
// clamps, and exp(dt A) are per (token, head) scalars. Tasks are split across ATen's threads.

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "cpu_kernels.h"
#include "operand.h"
#include "simd.h"

namespace effarch::ops::cpu {
namespace {

using simd::v8f;

constexpr int64_t kRows = 16;  // head channels per task

struct SsdParams {
  Operand x, dt, B, C;           // [Bt, L, H, P], [Bt, L, H], [Bt, L, G, N], [Bt, L, G, N]
  Operand A, D, bias;            // [H]
  bool has_D = false, has_bias = false, softplus = true, clamp = false;
  float dt_min = 0.f, dt_max = 0.f;
  float* state = nullptr;        // [Bt, H, P, N] fp32 through its strides
  int64_t st[4] = {0, 0, 0, 0};
  bool from_state = false;
  float* y = nullptr;            // [Bt, L, H, P] fp32 contiguous
  int64_t len = 0, heads = 0, hpg = 1, p = 0, n = 0, npad = 0;  // hpg: heads per group
  bool direct = false;           // the state's rows updated in place (contiguous over N, N % 8 == 0)
};

template <class V>
EFFARCH_INLINE V loadv(const float* p) {
  V v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <class V>
EFFARCH_INLINE void storev(float* p, V v) {
  std::memcpy(p, &v, sizeof v);
}
EFFARCH_INLINE float hsumv(v8f v) { return simd::hsum(v); }
EFFARCH_INLINE float hsumv(simd::v16f v) {
  v8f lo, hi;
  std::memcpy(&lo, &v, sizeof lo);
  std::memcpy(&hi, reinterpret_cast<const char*>(&v) + sizeof lo, sizeof hi);
  return simd::hsum(lo + hi);
}

// One step of pn state rows (row stride ss, npad wide, a multiple of V's lanes; the pad stays 0):
// s = da s + (d x[r]) b; y[r] = sum_n c s + dskip x[r]. Four rows at a time: four independent
// dependency chains, B and C loaded once for the four.
template <class V>
EFFARCH_INLINE void step_rows(float* s, int64_t ss, int64_t pn, int64_t npad, const float* bt, const float* ct,
                              const float* xt, float d, float decay, float dskip, float* yt) {
  constexpr int64_t W = sizeof(V) / sizeof(float);
  const V da = simd::splat_as<V>(decay);
  int64_t r = 0;
  for (; r + 4 <= pn; r += 4) {
    float* s0 = s + r * ss;
    float* s1 = s0 + ss;
    float* s2 = s1 + ss;
    float* s3 = s2 + ss;
    const V x0 = simd::splat_as<V>(d * xt[r]), x1 = simd::splat_as<V>(d * xt[r + 1]),
            x2 = simd::splat_as<V>(d * xt[r + 2]), x3 = simd::splat_as<V>(d * xt[r + 3]);
    V a0 = simd::splat_as<V>(0.f), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t j = 0; j < npad; j += W) {
      const V bv = loadv<V>(bt + j), cv = loadv<V>(ct + j);
      const V n0 = da * loadv<V>(s0 + j) + x0 * bv;
      const V n1 = da * loadv<V>(s1 + j) + x1 * bv;
      const V n2 = da * loadv<V>(s2 + j) + x2 * bv;
      const V n3 = da * loadv<V>(s3 + j) + x3 * bv;
      storev(s0 + j, n0);
      storev(s1 + j, n1);
      storev(s2 + j, n2);
      storev(s3 + j, n3);
      a0 += n0 * cv;
      a1 += n1 * cv;
      a2 += n2 * cv;
      a3 += n3 * cv;
    }
    yt[r] = hsumv(a0) + dskip * xt[r];
    yt[r + 1] = hsumv(a1) + dskip * xt[r + 1];
    yt[r + 2] = hsumv(a2) + dskip * xt[r + 2];
    yt[r + 3] = hsumv(a3) + dskip * xt[r + 3];
  }
  for (; r < pn; ++r) {
    float* sr = s + r * ss;
    const V dx = simd::splat_as<V>(d * xt[r]);
    V acc = simd::splat_as<V>(0.f);
    for (int64_t j = 0; j < npad; j += W) {
      const V nv = da * loadv<V>(sr + j) + dx * loadv<V>(bt + j);
      storev(sr + j, nv);
      acc += nv * loadv<V>(ct + j);
    }
    yt[r] = hsumv(acc) + dskip * xt[r];
  }
}

// Head channels [p0, p0 + pn) of (b, h) over every step. scratch: (kRows + 2) * npad + kRows floats.
// Where the state is contiguous over N and N is a multiple of 8 (q.direct: the model's cache
// with d_state 64 or 128), its rows are updated in place, so a one-token step copies nothing.
EFFARCH_CPU_CLONES_V4 void ssd_block(const SsdParams& q, int64_t b, int64_t h, int64_t p0, int64_t pn, float* scratch) {
  const int64_t N = q.n, npad = q.npad, g = h / q.hpg;
  float* s = scratch;              // [kRows, npad] (row stride ss)
  int64_t ss = npad;
  float* bt = scratch + kRows * npad;  // [npad]: B[b, t, g, :], zero-padded
  float* ct = bt + npad;               // [npad]: C[b, t, g, :]
  float* xt = ct + npad;               // [kRows]: x[b, t, h, p0 :]
  if (q.direct) {
    s = q.state + b * q.st[0] + h * q.st[1] + p0 * q.st[2];
    ss = q.st[2];
    if (!q.from_state) {
      for (int64_t r = 0; r < pn; ++r) std::memset(s + r * ss, 0, static_cast<size_t>(N) * sizeof(float));
    }
  } else {
    for (int64_t r = 0; r < pn; ++r) {
      float* sr = s + r * npad;
      const int64_t base = b * q.st[0] + h * q.st[1] + (p0 + r) * q.st[2];
      for (int64_t k = 0; k < npad; ++k) sr[k] = q.from_state && k < N ? q.state[base + k * q.st[3]] : 0.f;
    }
  }
  for (int64_t k = N; k < npad; ++k) bt[k] = ct[k] = 0.f;
  const float a = q.A.at(h * q.A.stride[0]);
  const float dskip = q.has_D ? q.D.at(h * q.D.stride[0]) : 0.f;
  const float bias = q.has_bias ? q.bias.at(h * q.bias.stride[0]) : 0.f;
  const bool bc_direct = npad == N && q.B.type == at::kFloat && q.C.type == at::kFloat && q.B.stride[3] == 1 &&
                         q.C.stride[3] == 1;
  for (int64_t t = 0; t < q.len; ++t) {
    // dt as the reference computes it (src/ops/ssd.cpp, discretize): + bias, softplus with
    // PyTorch's threshold 20, then the clamp where one is set.
    float d = q.dt.at(b * q.dt.stride[0] + t * q.dt.stride[1] + h * q.dt.stride[2]) + bias;
    if (q.softplus) d = d > 20.f ? d : std::log1p(std::exp(d));
    if (q.clamp) d = std::min(std::max(d, q.dt_min), q.dt_max);
    const float decay = std::exp(d * a);
    // fp32 B and C contiguous over N (the mixer's conv output) are read where they lie.
    const float* bsrc = bt;
    const float* csrc = ct;
    const int64_t boff = b * q.B.stride[0] + t * q.B.stride[1] + g * q.B.stride[2];
    const int64_t coff = b * q.C.stride[0] + t * q.C.stride[1] + g * q.C.stride[2];
    if (bc_direct) {
      bsrc = static_cast<const float*>(q.B.data) + boff;
      csrc = static_cast<const float*>(q.C.data) + coff;
    } else {
      q.B.gather(boff, q.B.stride[3], N, bt);
      q.C.gather(coff, q.C.stride[3], N, ct);
    }
    q.x.gather(b * q.x.stride[0] + t * q.x.stride[1] + h * q.x.stride[2] + p0 * q.x.stride[3], q.x.stride[3], pn, xt);
    float* yt = q.y + ((b * q.len + t) * q.heads + h) * q.p + p0;
    // 16 lanes where N allows (d_state 64, 128: one AVX-512 register in the v4 clone), else 8.
    if (npad % 16 == 0) {
      step_rows<simd::v16f>(s, ss, pn, npad, bsrc, csrc, xt, d, decay, dskip, yt);
    } else {
      step_rows<v8f>(s, ss, pn, npad, bsrc, csrc, xt, d, decay, dskip, yt);
    }
  }
  if (q.direct) return;
  for (int64_t r = 0; r < pn; ++r) {
    const int64_t base = b * q.st[0] + h * q.st[1] + (p0 + r) * q.st[2];
    for (int64_t k = 0; k < N; ++k) q.state[base + k * q.st[3]] = s[r * npad + k];
  }
}

void run(SsdParams& q, int64_t batch) {
  const int64_t blocks = (q.p + kRows - 1) / kRows, npad = q.npad;
  const int64_t scratch = (kRows + 2) * npad + kRows;
  // At least ~256K state updates (2 multiply-adds each, about 50 us on one core) per thread, so a
  // one-token decode step of a small model (mamba2-130m: 24 heads x 64 x 128 = 196K) runs inline
  // instead of waking a thread (on a loaded machine a parallel region waited 12-16 ms for one).
  const int64_t per_task = std::max<int64_t>(1, q.len * std::min(kRows, q.p) * q.n);
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 18) / per_task);
  at::parallel_for(0, batch * q.heads * blocks, grain, [&](int64_t i0, int64_t i1) {
    std::vector<float> buf(static_cast<size_t>(scratch));
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t bh = i / blocks, p0 = (i % blocks) * kRows;
      ssd_block(q, bh / q.heads, bh % q.heads, p0, std::min(kRows, q.p - p0), buf.data());
    }
  });
}

// Everything but the tensors' layouts: `x` is x or a one-token x, `insert` where its time dim is
// missing (-1: present).
SsdParams params(const at::Tensor& x, const at::Tensor& dt, const at::Tensor& Bmat, const at::Tensor& Cmat,
                 const SsdArgs& args, at::Tensor& state, bool from_state, int insert, int64_t len, float* y) {
  SsdParams q;
  q.x = Operand(x, insert);
  q.dt = Operand(dt, insert);
  q.B = Operand(Bmat, insert);
  q.C = Operand(Cmat, insert);
  q.A = Operand(args.A);
  if (args.D) {
    q.D = Operand(*args.D);
    q.has_D = true;
  }
  if (args.dt_bias) {
    q.bias = Operand(*args.dt_bias);
    q.has_bias = true;
  }
  q.softplus = args.dt_softplus;
  q.clamp = args.dt_min > 0.0 || std::isfinite(args.dt_max);  // as the reference's discretize()
  q.dt_min = static_cast<float>(args.dt_min);
  q.dt_max = static_cast<float>(args.dt_max);
  q.state = state.data_ptr<float>();
  for (int i = 0; i < 4; ++i) q.st[i] = state.stride(i);
  q.from_state = from_state;
  q.y = y;
  q.len = len;
  q.heads = state.size(1);
  q.p = state.size(2);
  q.n = state.size(3);
  q.npad = (q.n + 7) / 8 * 8;
  q.direct = q.n % 8 == 0 && q.st[3] == 1;
  q.hpg = q.heads / Bmat.size(insert < 0 ? 2 : 1);
  return q;
}

}  // namespace

at::Tensor ssd_scan(const at::Tensor& x, const at::Tensor& dt, const at::Tensor& Bmat, const at::Tensor& Cmat,
                    const SsdArgs& args, at::Tensor& state, bool from_state) {
  const int64_t batch = x.size(0), len = x.size(1), heads = x.size(2), p = x.size(3);
  at::Tensor y = at::empty({batch, len, heads, p}, x.options().dtype(at::kFloat));
  SsdParams q = params(x, dt, Bmat, Cmat, args, state, from_state, -1, len, y.data_ptr<float>());
  run(q, batch);
  return y;
}

at::Tensor ssd_state_update(const at::Tensor& x, const at::Tensor& dt, const at::Tensor& Bmat, const at::Tensor& Cmat,
                            const SsdArgs& args, at::Tensor& state) {
  const int64_t batch = x.size(0), heads = x.size(1), p = x.size(2);
  at::Tensor y = at::empty({batch, heads, p}, x.options().dtype(at::kFloat));
  SsdParams q = params(x, dt, Bmat, Cmat, args, state, /*from_state=*/true, 1, 1, y.data_ptr<float>());
  run(q, batch);
  return y;
}

}  // namespace effarch::ops::cpu
