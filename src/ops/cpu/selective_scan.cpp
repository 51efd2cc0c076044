// The Mamba-1 selective scan on the CPU, fused: one pass over time per block of channels, the
// state of the block (16 channels x N, fp32) in a thread-local buffer that stays in L1, the
// recurrence vectorised over the state dimension with exp computed once per (t, d, n), and
// softplus(delta + bias), the D skip and the SiLU(z) gate applied on the way. Blocks of
// (batch, channels) are split across ATen's threads. The ATen reference it is tested against
// (src/ops/selective_scan.cpp) builds [L, B, D, N]-sized temporaries instead.

#include <algorithm>
#include <cmath>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "cpu_kernels.h"
#include "simd.h"

namespace effarch::ops::cpu {
namespace {

using simd::v8f;

constexpr int64_t kBlock = 16;  // channels per task: one 64-byte line of fp32 u / delta / y

struct Strided3 {  // an fp32 [X, Y, T] tensor read through its strides
  const float* p = nullptr;
  int64_t s0 = 0, s1 = 0, s2 = 0;
  explicit Strided3(const at::Tensor& t) : p(t.data_ptr<float>()), s0(t.stride(0)), s1(t.stride(1)), s2(t.stride(2)) {}
  Strided3() = default;
  float operator()(int64_t a, int64_t b, int64_t c) const { return p[a * s0 + b * s1 + c * s2]; }
};

struct ScanParams {
  Strided3 u, delta, B, C, z;
  bool has_z = false;
  const float* A = nullptr;  // [D, N] contiguous
  const float* D = nullptr;  // [D] or null
  const float* bias = nullptr;  // [D] or null
  bool softplus = true;
  float* state = nullptr;  // [B, D, N] through its strides
  int64_t st0 = 0, st1 = 0, st2 = 0;
  bool from_state = false;
  float* y = nullptr;  // [B, L, D] contiguous
  int64_t dim = 0, len = 0, dstate = 0, nv = 0;  // nv: state vectors of 8 (N padded with zeros)
};

// Channels [d0, d0 + dn) of batch b over every step. scratch: 2 * kBlock * nv * 8 + 2 * nv * 8 floats.
EFFARCH_CPU_CLONES void scan_block(const ScanParams& p, int64_t b, int64_t d0, int64_t dn, float* scratch) {
  const int64_t nv = p.nv, N = p.dstate, npad = nv * 8;
  float* h = scratch;                 // [kBlock, npad]
  float* a = h + kBlock * npad;       // [kBlock, npad]: A, zero-padded (exp(0) h = h = 0 in the pad)
  float* bt = a + kBlock * npad;      // [npad]: B[b, :, t]
  float* ct = bt + npad;              // [npad]: C[b, :, t]
  float dtb[kBlock], ub[kBlock], gb[kBlock];  // this step's dt, u and SiLU(z) per channel
  for (int64_t dd = 0; dd < dn; ++dd) {
    for (int64_t n = 0; n < npad; ++n) {
      const bool in = n < N;
      a[dd * npad + n] = in ? p.A[(d0 + dd) * N + n] : 0.f;
      h[dd * npad + n] = in && p.from_state ? p.state[b * p.st0 + (d0 + dd) * p.st1 + n * p.st2] : 0.f;
    }
  }
  for (int64_t n = N; n < npad; ++n) bt[n] = ct[n] = 0.f;
  for (int64_t t = 0; t < p.len; ++t) {
    for (int64_t n = 0; n < N; ++n) {
      bt[n] = p.B(b, n, t);
      ct[n] = p.C(b, n, t);
    }
    // The block's per-channel scalars, vectorised: dt = softplus(delta + bias), u, SiLU(z).
    for (int64_t dd = 0; dd < kBlock; ++dd) {
      const bool in = dd < dn;
      const int64_t d = d0 + dd;
      dtb[dd] = in ? p.delta(b, d, t) + (p.bias ? p.bias[d] : 0.f) : 0.f;
      ub[dd] = in ? p.u(b, d, t) : 0.f;
      gb[dd] = in && p.has_z ? p.z(b, d, t) : 0.f;
    }
    for (int64_t j = 0; j < kBlock; j += 8) {
      if (p.softplus) simd::store8(dtb + j, simd::softplus8(simd::load8(dtb + j)));
      if (p.has_z) simd::store8(gb + j, simd::silu8(simd::load8(gb + j)));
    }
    float* yt = p.y + (b * p.len + t) * p.dim + d0;
    for (int64_t dd = 0; dd < dn; ++dd) {
      const float uu = ub[dd];
      const v8f dtv = simd::splat(dtb[dd]), uv = simd::splat(uu);
      v8f acc = simd::splat(0.f);
      float* hd = h + dd * npad;
      const float* ad = a + dd * npad;
      for (int64_t j = 0; j < npad; j += 8) {
        const v8f hv = simd::exp8(dtv * simd::load8(ad + j)) * simd::load8(hd + j) + (dtv * simd::load8(bt + j)) * uv;
        simd::store8(hd + j, hv);
        acc += hv * simd::load8(ct + j);
      }
      float y = simd::hsum(acc);
      if (p.D) y += p.D[d0 + dd] * uu;
      if (p.has_z) y *= gb[dd];
      yt[dd] = y;
    }
  }
  for (int64_t dd = 0; dd < dn; ++dd) {
    for (int64_t n = 0; n < N; ++n) p.state[b * p.st0 + (d0 + dd) * p.st1 + n * p.st2] = h[dd * npad + n];
  }
}

}  // namespace

at::Tensor selective_scan(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& Bmat, const at::Tensor& Cmat,
                          const std::optional<at::Tensor>& z, const at::Tensor& A, const std::optional<at::Tensor>& D,
                          const std::optional<at::Tensor>& delta_bias, bool delta_softplus, at::Tensor& ssm_state,
                          bool from_state) {
  const int64_t batch = u.size(0), dim = u.size(1), len = u.size(2), dstate = A.size(1);
  // fp32 views (no copy where the input is fp32 already; strides kept where dense).
  const at::Tensor uf = u.to(at::kFloat), df = delta.to(at::kFloat), Bf = Bmat.to(at::kFloat),
                   Cf = Cmat.to(at::kFloat);
  const at::Tensor zf = z ? z->to(at::kFloat) : at::Tensor();
  const at::Tensor Af = A.to(at::kFloat).contiguous();
  const at::Tensor Df = D ? D->to(at::kFloat).contiguous() : at::Tensor();
  const at::Tensor biasf = delta_bias ? delta_bias->to(at::kFloat).contiguous() : at::Tensor();
  at::Tensor y = at::empty({batch, len, dim}, uf.options().memory_format(at::MemoryFormat::Contiguous));

  ScanParams p;
  p.u = Strided3(uf);
  p.delta = Strided3(df);
  p.B = Strided3(Bf);
  p.C = Strided3(Cf);
  if (z) {
    p.z = Strided3(zf);
    p.has_z = true;
  }
  p.A = Af.data_ptr<float>();
  p.D = D ? Df.data_ptr<float>() : nullptr;
  p.bias = delta_bias ? biasf.data_ptr<float>() : nullptr;
  p.softplus = delta_softplus;
  p.state = ssm_state.data_ptr<float>();
  p.st0 = ssm_state.stride(0);
  p.st1 = ssm_state.stride(1);
  p.st2 = ssm_state.stride(2);
  p.from_state = from_state;
  p.y = y.data_ptr<float>();
  p.dim = dim;
  p.len = len;
  p.dstate = dstate;
  p.nv = (dstate + 7) / 8;

  const int64_t blocks = (dim + kBlock - 1) / kBlock;
  const int64_t scratch = 2 * kBlock * p.nv * 8 + 2 * p.nv * 8;
  // At least ~64K state updates per thread: a one-token decode step of a small model runs inline
  // instead of waking threads (on a loaded machine a parallel region cost 12-16 ms of waiting).
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, len * kBlock * dstate));
  at::parallel_for(0, batch * blocks, grain, [&](int64_t i0, int64_t i1) {
    std::vector<float> buf(static_cast<size_t>(scratch));
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t b = i / blocks, d0 = (i % blocks) * kBlock;
      scan_block(p, b, d0, std::min(kBlock, dim - d0), buf.data());
    }
  });
  return y.to(u.scalar_type()).transpose(1, 2);
}

}  // namespace effarch::ops::cpu
