// The Mamba-1 selective scan on the CPU, fused: one pass over time per block of channels, the
// state of the block (16 channels x N, fp32) in a thread-local buffer that stays in L1, the
// recurrence vectorised over the state dimension with exp computed once per (t, d, n), and
// softplus(delta + bias), the D skip and the SiLU(z) gate applied on the way. Blocks of
// (batch, channels) are split across ATen's threads. The ATen reference it is tested against
// (src/ops/selective_scan.cpp) builds [L, B, D, N]-sized temporaries instead.

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

constexpr int64_t kBlock = 16;  // channels per task: one 64-byte line of fp32 u / delta / y

struct ScanParams {
  Operand u, delta, B, C, z;       // [B, D, L], [B, D, L], [B, N, L], [B, N, L], [B, D, L]
  bool has_z = false;
  Operand A;                       // [D, N]
  Operand D, bias;                 // [D]
  bool has_D = false, has_bias = false;
  bool softplus = true;
  float* state = nullptr;  // [B, D, N] through its strides
  int64_t st0 = 0, st1 = 0, st2 = 0;
  bool from_state = false;
  void* y = nullptr;  // [B, L, D] contiguous, in y_type
  at::ScalarType y_type = at::kFloat;
  int64_t dim = 0, len = 0, dstate = 0, nv = 0;  // nv: state vectors of 8 (N padded with zeros)
  bool direct = false;  // the state's and A's rows used in place (fp32, contiguous over N, N % 8 == 0)
  bool lanes = false;   // channels in the vector lanes (scan_block_lanes): prefill
};

// y[0, n) = v[0, n) rounded to `type` (fp32, bf16 or fp16).
void store_as(at::ScalarType type, void* y, int64_t offset, const float* v, int64_t n) {
  switch (type) {
    case at::kBFloat16: {
      auto* o = static_cast<c10::BFloat16*>(y) + offset;
      for (int64_t i = 0; i < n; ++i) o[i] = static_cast<c10::BFloat16>(v[i]);
      break;
    }
    case at::kHalf: {
      auto* o = static_cast<c10::Half*>(y) + offset;
      for (int64_t i = 0; i < n; ++i) o[i] = static_cast<c10::Half>(v[i]);
      break;
    }
    default: std::memcpy(static_cast<float*>(y) + offset, v, static_cast<size_t>(n) * sizeof(float));
  }
}

// Channels [d0, d0 + dn) of batch b over every step. scratch: 2 * kBlock * nv * 8 + 2 * nv * 8 floats.
// Where the state rows and A's rows are fp32, contiguous over N and N is a multiple of 8
// (p.direct), the recurrence runs on them in place: a one-token step then copies nothing.
EFFARCH_CPU_CLONES void scan_block(const ScanParams& p, int64_t b, int64_t d0, int64_t dn, float* scratch) {
  const int64_t nv = p.nv, N = p.dstate, npad = nv * 8;
  float* h = scratch;                 // [kBlock, npad] (row stride hs)
  const float* a = h + kBlock * npad; // [kBlock, npad]: A, zero-padded (exp(0) h = h = 0 in the pad)
  int64_t hs = npad, as = npad;
  float* bt = scratch + 2 * kBlock * npad;  // [npad]: B[b, :, t]
  float* ct = bt + npad;                    // [npad]: C[b, :, t]
  // This step's dt, u, SiLU(z) and y per channel (zero past dn), and the per-channel D and bias.
  float dtb[kBlock] = {}, ub[kBlock] = {}, gb[kBlock] = {}, yb[kBlock], db[kBlock] = {}, biasb[kBlock] = {};
  if (p.direct) {
    h = p.state + b * p.st0 + d0 * p.st1;
    hs = p.st1;
    a = static_cast<const float*>(p.A.data) + d0 * p.A.stride[0];
    as = p.A.stride[0];
    if (!p.from_state) {
      for (int64_t dd = 0; dd < dn; ++dd) std::memset(h + dd * hs, 0, static_cast<size_t>(N) * sizeof(float));
    }
  } else {
    float* a_buf = h + kBlock * npad;
    for (int64_t dd = 0; dd < dn; ++dd) {
      const int64_t d = d0 + dd;
      for (int64_t n = 0; n < npad; ++n) {
        const bool in = n < N;
        a_buf[dd * npad + n] = in ? p.A.at(d * p.A.stride[0] + n * p.A.stride[1]) : 0.f;
        h[dd * npad + n] = in && p.from_state ? p.state[b * p.st0 + d * p.st1 + n * p.st2] : 0.f;
      }
    }
  }
  for (int64_t dd = 0; dd < dn; ++dd) {
    if (p.has_D) db[dd] = p.D.at((d0 + dd) * p.D.stride[0]);
    if (p.has_bias) biasb[dd] = p.bias.at((d0 + dd) * p.bias.stride[0]);
  }
  for (int64_t n = N; n < npad; ++n) bt[n] = ct[n] = 0.f;
  for (int64_t t = 0; t < p.len; ++t) {
    p.B.gather(b * p.B.stride[0] + t * p.B.stride[2], p.B.stride[1], N, bt);
    p.C.gather(b * p.C.stride[0] + t * p.C.stride[2], p.C.stride[1], N, ct);
    // The block's per-channel scalars, vectorised: dt = softplus(delta + bias), u, SiLU(z).
    p.delta.gather(b * p.delta.stride[0] + d0 * p.delta.stride[1] + t * p.delta.stride[2], p.delta.stride[1], dn, dtb);
    p.u.gather(b * p.u.stride[0] + d0 * p.u.stride[1] + t * p.u.stride[2], p.u.stride[1], dn, ub);
    if (p.has_z) p.z.gather(b * p.z.stride[0] + d0 * p.z.stride[1] + t * p.z.stride[2], p.z.stride[1], dn, gb);
    for (int64_t j = 0; j < kBlock; j += 8) {
      v8f dv = simd::load8(dtb + j) + simd::load8(biasb + j);
      if (p.softplus) dv = simd::softplus8(dv);
      simd::store8(dtb + j, dv);
      if (p.has_z) simd::store8(gb + j, simd::silu8(simd::load8(gb + j)));
    }
    for (int64_t dd = 0; dd < dn; ++dd) {
      const float uu = ub[dd];
      const v8f dtv = simd::splat(dtb[dd]), uv = simd::splat(uu);
      v8f acc = simd::splat(0.f);
      float* hd = h + dd * hs;
      const float* ad = a + dd * as;
      for (int64_t j = 0; j < npad; j += 8) {
        const v8f hv = simd::exp8(dtv * simd::load8(ad + j)) * simd::load8(hd + j) + (dtv * simd::load8(bt + j)) * uv;
        simd::store8(hd + j, hv);
        acc += hv * simd::load8(ct + j);
      }
      float y = simd::hsum(acc);
      if (p.has_D) y += db[dd] * uu;
      if (p.has_z) y *= gb[dd];
      yb[dd] = y;
    }
    store_as(p.y_type, p.y, (b * p.len + t) * p.dim + d0, yb, dn);
  }
  if (p.direct) return;
  for (int64_t dd = 0; dd < dn; ++dd) {
    for (int64_t n = 0; n < N; ++n) p.state[b * p.st0 + (d0 + dd) * p.st1 + n * p.st2] = h[dd * npad + n];
  }
}

// The same for a prefill (L > 1), channels in the vector lanes: the block's state transposed to
// [N, kBlock] in scratch, so each step runs, for every n, exp(dt A[:, n]) h[n] + dt u B[n] over
// the block's 16 channels as one 16-lane vector (one AVX-512 register in the x86-64-v4 clone,
// two AVX ones in the v3 clone), with B[n] and C[n] broadcast and y accumulated lane by lane (no
// horizontal sums, dt u once per channel). Over N the lanes would hold one channel's 16 states:
// a horizontal sum per (t, d) and the per-channel scalars splatted each step. fp32 inputs are
// read where they lie and fp32 y written in place (a one-step copy costs a memcpy call per input
// and step, as much as the step's arithmetic at N = 16); other dtypes, a partial block, or
// channels not adjacent go through the fp32 buffers. scratch: 2 * N * kBlock + 2 * N floats; the
// transposes in and out are O(N kBlock) per block.
static_assert(kBlock == 16, "scan_block_lanes holds a block in one v16f");
EFFARCH_CPU_CLONES_V4 void scan_block_lanes(const ScanParams& p, int64_t b, int64_t d0, int64_t dn, float* scratch) {
  using simd::v16f;
  const int64_t N = p.dstate;
  float* h = scratch;              // [N, kBlock]
  float* a = h + N * kBlock;       // [N, kBlock]: A transposed, 0 past dn (exp(0) h = h = 0 there)
  float* bt = a + N * kBlock;      // [N]: B[b, :, t]
  float* ct = bt + N;              // [N]: C[b, :, t]
  float dtb[kBlock] = {}, ub[kBlock] = {}, gb[kBlock] = {}, yb[kBlock], db[kBlock] = {}, biasb[kBlock] = {};
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t dd = 0; dd < kBlock; ++dd) {
      const bool in = dd < dn;
      const int64_t d = d0 + dd;
      a[n * kBlock + dd] = in ? p.A.at(d * p.A.stride[0] + n * p.A.stride[1]) : 0.f;
      h[n * kBlock + dd] = in && p.from_state ? p.state[b * p.st0 + d * p.st1 + n * p.st2] : 0.f;
    }
  }
  for (int64_t dd = 0; dd < dn; ++dd) {
    if (p.has_D) db[dd] = p.D.at((d0 + dd) * p.D.stride[0]);
    if (p.has_bias) biasb[dd] = p.bias.at((d0 + dd) * p.bias.stride[0]);
  }
  const v16f bias = simd::load16(biasb), dskip = simd::load16(db);
  const auto fp32 = [](const Operand& o) { return o.type == at::kFloat ? static_cast<const float*>(o.data) : nullptr; };
  const float *Bp = fp32(p.B), *Cp = fp32(p.C);
  const int64_t bs = Bp ? p.B.stride[1] : 1, cs = Cp ? p.C.stride[1] : 1;
  const auto lanes_direct = [&](const Operand& o) { return o.type == at::kFloat && o.stride[1] == 1 && dn == kBlock; };
  const bool delta_direct = lanes_direct(p.delta), u_direct = lanes_direct(p.u), z_direct = p.has_z && lanes_direct(p.z);
  for (int64_t t = 0; t < p.len; ++t) {
    const float* bsrc = Bp ? Bp + b * p.B.stride[0] + t * p.B.stride[2] : bt;
    const float* csrc = Cp ? Cp + b * p.C.stride[0] + t * p.C.stride[2] : ct;
    if (!Bp) p.B.gather(b * p.B.stride[0] + t * p.B.stride[2], p.B.stride[1], N, bt);
    if (!Cp) p.C.gather(b * p.C.stride[0] + t * p.C.stride[2], p.C.stride[1], N, ct);
    const auto row = [&](const Operand& o, bool direct, float* buf) -> const float* {
      const int64_t off = b * o.stride[0] + d0 * o.stride[1] + t * o.stride[2];
      if (direct) return static_cast<const float*>(o.data) + off;
      o.gather(off, o.stride[1], dn, buf);
      return buf;
    };
    const float* dsrc = row(p.delta, delta_direct, dtb);
    const float* usrc = row(p.u, u_direct, ub);
    const float* zsrc = p.has_z ? row(p.z, z_direct, gb) : gb;
    v16f dt = simd::load16(dsrc) + bias;
    if (p.softplus) dt = simd::softplus_v(dt);
    const v16f u = simd::load16(usrc);
    const v16f du = dt * u;
    v16f y = simd::splat_as<v16f>(0.f);
    for (int64_t n = 0; n < N; ++n) {
      float* hn = h + n * kBlock;
      const v16f hv = simd::exp_v(dt * simd::load16(a + n * kBlock)) * simd::load16(hn) + du * bsrc[n * bs];
      simd::store16(hn, hv);
      y += hv * csrc[n * cs];
    }
    if (p.has_D) y += dskip * u;
    if (p.has_z) y *= simd::silu_v(simd::load16(zsrc));
    const int64_t yoff = (b * p.len + t) * p.dim + d0;
    if (p.y_type == at::kFloat && dn == kBlock) {
      simd::store16(static_cast<float*>(p.y) + yoff, y);
    } else {
      simd::store16(yb, y);
      store_as(p.y_type, p.y, yoff, yb, dn);
    }
  }
  for (int64_t dd = 0; dd < dn; ++dd) {
    for (int64_t n = 0; n < N; ++n) p.state[b * p.st0 + (d0 + dd) * p.st1 + n * p.st2] = h[n * kBlock + dd];
  }
}

// Everything from the tensors' pointers, dtypes and strides: no ATen call. `insert` is where the
// inputs lack the time dim (2 for the one-token update's [B, D] / [B, N]), -1 where they have it.
ScanParams params(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& Bmat, const at::Tensor& Cmat,
                  const std::optional<at::Tensor>& z, const at::Tensor& A, const std::optional<at::Tensor>& D,
                  const std::optional<at::Tensor>& delta_bias, bool delta_softplus, at::Tensor& ssm_state,
                  bool from_state, int insert, int64_t len, at::Tensor& y) {
  ScanParams p;
  p.u = Operand(u, insert);
  p.delta = Operand(delta, insert);
  p.B = Operand(Bmat, insert);
  p.C = Operand(Cmat, insert);
  if (z) {
    p.z = Operand(*z, insert);
    p.has_z = true;
  }
  p.A = Operand(A);
  if (D) {
    p.D = Operand(*D);
    p.has_D = true;
  }
  if (delta_bias) {
    p.bias = Operand(*delta_bias);
    p.has_bias = true;
  }
  p.softplus = delta_softplus;
  p.state = ssm_state.data_ptr<float>();
  p.st0 = ssm_state.stride(0);
  p.st1 = ssm_state.stride(1);
  p.st2 = ssm_state.stride(2);
  p.from_state = from_state;
  p.y = y.data_ptr();
  p.y_type = y.scalar_type();
  p.dim = ssm_state.size(1);
  p.len = len;
  p.dstate = ssm_state.size(2);
  p.nv = (p.dstate + 7) / 8;
  p.direct = p.dstate % 8 == 0 && p.st2 == 1 && p.A.type == at::kFloat && p.A.stride[1] == 1;
  p.lanes = len > 1;
  return p;
}

// A stack buffer for the scratch of small states (N <= 32: a decode step allocates nothing).
constexpr int64_t kStackScratch = 2 * kBlock * 32 + 2 * 32;

void run(const ScanParams& p, int64_t batch) {
  const int64_t blocks = (p.dim + kBlock - 1) / kBlock;
  const int64_t scratch = 2 * kBlock * p.nv * 8 + 2 * p.nv * 8;
  // At least ~64K state updates per thread: a one-token decode step of a small model runs inline
  // instead of waking threads (on a loaded machine a parallel region cost 12-16 ms of waiting).
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, p.len * kBlock * p.dstate));
  at::parallel_for(0, batch * blocks, grain, [&](int64_t i0, int64_t i1) {
    float stack[kStackScratch];
    std::vector<float> heap(scratch <= kStackScratch ? 0 : static_cast<size_t>(scratch));
    float* buf = scratch <= kStackScratch ? stack : heap.data();
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t b = i / blocks, d0 = (i % blocks) * kBlock;
      if (p.lanes) {
        scan_block_lanes(p, b, d0, std::min(kBlock, p.dim - d0), buf);
      } else {
        scan_block(p, b, d0, std::min(kBlock, p.dim - d0), buf);
      }
    }
  });
}

}  // namespace

at::Tensor selective_scan(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& Bmat, const at::Tensor& Cmat,
                          const std::optional<at::Tensor>& z, const at::Tensor& A, const std::optional<at::Tensor>& D,
                          const std::optional<at::Tensor>& delta_bias, bool delta_softplus, at::Tensor& ssm_state,
                          bool from_state) {
  const int64_t batch = u.size(0), dim = u.size(1), len = u.size(2);
  // [B, L, D] in u's dtype, written directly: the layout the mixer's out_proj reads.
  at::Tensor y = at::empty({batch, len, dim}, u.options().memory_format(at::MemoryFormat::Contiguous));
  run(params(u, delta, Bmat, Cmat, z, A, D, delta_bias, delta_softplus, ssm_state, from_state, -1, len, y), batch);
  return y.transpose(1, 2);
}

at::Tensor selective_state_update(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& Bmat,
                                  const at::Tensor& Cmat, const std::optional<at::Tensor>& z, const at::Tensor& A,
                                  const std::optional<at::Tensor>& D, const std::optional<at::Tensor>& delta_bias,
                                  bool delta_softplus, at::Tensor& ssm_state) {
  at::Tensor y = at::empty({u.size(0), u.size(1)}, u.options().memory_format(at::MemoryFormat::Contiguous));
  run(params(u, delta, Bmat, Cmat, z, A, D, delta_bias, delta_softplus, ssm_state, /*from_state=*/true, 2, 1, y),
      u.size(0));
  return y;
}

}  // namespace effarch::ops::cpu
