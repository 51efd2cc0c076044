// effarch::ops::ssd_chunk_scan / ssd_state_update / gated_rms_norm: argument checks and the ATen
// reference.
//
// The chunked scan follows the SSD decomposition: within a chunk of Q tokens the output is an
// attention-like product (C B^T masked by the decays exp(segment sums of dt A)) applied to dt x;
// each chunk's contribution to the state is a decay-weighted B^T (dt x); the states are then
// passed from chunk to chunk (one round per chunk, O(L/Q) rounds) and read out through C with
// the decay from the chunk's start. Padding tokens have dt = 0: no decay, no input.

#include "effarch/ops/ssd.h"

#include <cmath>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/record_function.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "effarch/common/error.h"
#include "arg_checks.h"
#include "cpu/cpu_kernels.h"
#ifdef EFFARCH_WITH_CUDA
#include "ssd_cuda.h"
#endif

namespace effarch::ops {
namespace {

using detail::shape;

void check(const at::Tensor& t, const char* op, const char* name, at::IntArrayRef expected, const at::Tensor& x) {
  detail::check_float_tensor(t, op, name, expected, x, "x");
}

void check_common(const SsdArgs& args, int64_t heads, int64_t groups, const at::Tensor& x, const char* op) {
  check(args.A, op, "A", {heads}, x);
  if (args.D) check(*args.D, op, "D", {heads}, x);
  if (args.dt_bias) check(*args.dt_bias, op, "dt_bias", {heads}, x);
  if (groups < 1 || heads % groups != 0) {
    throw OpError(fmt::format("{}: {} groups do not divide {} heads", op, groups, heads));
  }
}

void check_state(const at::Tensor& state, at::IntArrayRef expected, const at::Tensor& x, const char* op) {
  check(state, op, "state", expected, x);
  if (state.scalar_type() != at::kFloat) {
    throw OpError(fmt::format("{}: state has dtype {}; the state is kept in float32", op,
                                 c10::toString(state.scalar_type())));
  }
}

// dt in fp32: + bias, softplus, clamp. Any leading dims, heads last.
at::Tensor discretize(const at::Tensor& dt_raw, const SsdArgs& args) {
  at::Tensor dt = dt_raw.to(at::kFloat);
  if (args.dt_bias) dt = dt + args.dt_bias->to(at::kFloat);
  if (args.dt_softplus) dt = at::softplus(dt, 1, 20);
  if (args.dt_min > 0.0 || std::isfinite(args.dt_max)) dt = at::clamp(dt, args.dt_min, args.dt_max);
  return dt;
}

// [..., G, N] -> [..., H, N]: head h reads group h / (H / G).
at::Tensor per_head(const at::Tensor& t, int64_t heads) {
  const int64_t groups = t.size(-2);
  return groups == heads ? t : t.repeat_interleave(heads / groups, -2);
}

// Segment sums of a [..., Q] tensor: out[..., i, j] = sum_{j < k <= i} a[..., k] for j <= i, -inf above.
// Summed within each segment (a[i] placed in row i right of the diagonal, then a cumulative sum
// down the rows), not as cumsum[i] - cumsum[j]: over a long chunk with strong decay the
// cumulative sums grow to ~1e3 and their difference would keep only ~1e-4 of a decay near 1.
at::Tensor segment_sum(const at::Tensor& a) {
  const int64_t q = a.size(-1);
  const auto bools = a.options().dtype(at::kBool);
  const at::Tensor strictly_lower = at::ones({q, q}, bools).tril(-1);
  const at::Tensor lower = at::ones({q, q}, bools).tril();
  std::vector<int64_t> square = a.sizes().vec();
  square.push_back(q);
  // [..., i, j] = a[i] where i > j, else 0; one [..., Q, Q] buffer, summed and masked in place.
  at::Tensor rows = a.unsqueeze(-1).expand(square).masked_fill(strictly_lower.logical_not(), 0.0);
  rows.cumsum_(-2);
  rows.masked_fill_(lower.logical_not(), -std::numeric_limits<float>::infinity());
  return rows;
}

}  // namespace

at::Tensor ssd_chunk_scan(const at::Tensor& x, const at::Tensor& dt, const at::Tensor& Bmat, const at::Tensor& Cmat,
                          const SsdArgs& args, at::Tensor& state, bool from_state, Backend backend) {
  RECORD_USER_SCOPE("effarch::ssd_chunk_scan");  // names the op in profiles (effarch profile)
  constexpr const char* op = "ssd_chunk_scan";
  if (!x.defined() || x.dim() != 4) {
    throw OpError(fmt::format("{}: x must be [B, L, H, P], got {}", op, x.defined() ? shape(x) : "undefined"));
  }
  if (!Bmat.defined() || Bmat.dim() != 4) throw OpError(fmt::format("{}: B must be [B, L, G, N]", op));
  const int64_t b = x.size(0), len = x.size(1), heads = x.size(2), p = x.size(3);
  const int64_t groups = Bmat.size(2), n = Bmat.size(3);
  check(x, op, "x", {b, len, heads, p}, x);
  check(dt, op, "dt", {b, len, heads}, x);
  check(Bmat, op, "B", {b, len, groups, n}, x);
  check(Cmat, op, "C", {b, len, groups, n}, x);
  check_common(args, heads, groups, x, op);
  check_state(state, {b, heads, p, n}, x, op);
  if (args.chunk_size < 1) throw OpError(fmt::format("{}: chunk_size {} must be positive", op, args.chunk_size));
  const Backend impl = ssd_scan_backend(backend, x.scalar_type(), args.products, x.device());
  if (len == 0) {
    if (!from_state) state.zero_();
    return at::empty({b, 0, heads, p}, x.options().dtype(at::kFloat));
  }
  if (impl == Backend::Cpu) return cpu::ssd_scan(x, dt, Bmat, Cmat, args, state, from_state);
#ifdef EFFARCH_WITH_CUDA
  if (impl == Backend::Cuda) return detail::ssd_chunk_scan_cuda(x, dt, Bmat, Cmat, args, state, from_state);
#endif

  const int64_t q = std::min(args.chunk_size, len);  // one chunk of L when L is shorter
  const int64_t nc = (len + q - 1) / q, pad = nc * q - len;
  const at::Tensor xf = x.to(at::kFloat);
  const at::Tensor dtf = discretize(dt, args);                      // [B, L, H]
  const at::Tensor A = args.A.to(at::kFloat);
  const at::Tensor xdt = xf * dtf.unsqueeze(-1);                    // [B, L, H, P]
  const at::Tensor adt = dtf * A;                                   // [B, L, H]
  const at::Tensor Bh = per_head(Bmat.to(at::kFloat), heads);       // [B, L, H, N]
  const at::Tensor Ch = per_head(Cmat.to(at::kFloat), heads);
  // Pad the time dim to nc*Q, split it into [nc, Q].
  auto chunks = [&](const at::Tensor& t) {
    std::vector<int64_t> padding(2 * static_cast<size_t>(t.dim()), 0);
    padding[padding.size() - 3] = pad;  // pairs run from the last dim back: dim 1's right side
    const at::Tensor padded = pad == 0 ? t : at::constant_pad_nd(t, padding);
    std::vector<int64_t> sizes = t.sizes().vec();
    sizes[1] = q;
    sizes.insert(sizes.begin() + 1, nc);
    return padded.reshape(sizes);
  };
  const at::Tensor xc = chunks(xdt), bc = chunks(Bh), cc = chunks(Ch);  // [B, nc, Q, H, *]
  const at::Tensor ac = chunks(adt).permute({0, 3, 1, 2});             // [B, H, nc, Q]
  const at::Tensor a_cum = at::cumsum(ac, -1);

  // 1. Within chunks: y[l] = sum_{s <= l} (C[l] . B[s]) exp(sum_{s < k <= l} dt A) dt[s] x[s].
  const at::Tensor decay_in = segment_sum(ac).exp_();                          // [B, H, nc, Q, Q]
  const at::Tensor scores = at::einsum("bclhn,bcshn->bclsh", {cc, bc});          // [B, nc, Q, Q, H]
  const at::Tensor y_diag = at::einsum("bclsh,bcshp->bclhp", {scores * decay_in.permute({0, 2, 3, 4, 1}), xc});
  // 2. Each chunk's own contribution to the state at its end.
  // sum_{l < k < Q} dt A as a suffix sum (not a_cum[Q-1] - a_cum[l]): small, hence precise, for
  // the last tokens, whose decays are the ones near 1.
  const at::Tensor suffix = at::flip(at::cumsum(at::flip(ac, {-1}), -1), {-1}) - ac;
  const at::Tensor decay_to_end = at::exp(suffix);                               // [B, H, nc, Q]
  const at::Tensor chunk_states =
      at::einsum("bclhn,bclhp->bchpn", {bc * decay_to_end.permute({0, 2, 3, 1}).unsqueeze(-1), xc});  // [B, nc, H, P, N]
  // 3. States passed from chunk to chunk: start[c+1] = exp(sum_c dt A) start[c] + chunk_states[c].
  const at::Tensor chunk_decay = at::exp(a_cum.select(-1, q - 1));               // [B, H, nc]
  std::vector<at::Tensor> starts;
  starts.reserve(static_cast<size_t>(nc));
  starts.push_back(from_state ? state.to(at::kFloat) : at::zeros({b, heads, p, n}, xf.options()));
  for (int64_t c = 0; c + 1 < nc; ++c) {
    starts.push_back(chunk_decay.select(2, c).view({b, heads, 1, 1}) * starts.back() + chunk_states.select(1, c));
  }
  const at::Tensor last = chunk_decay.select(2, nc - 1).view({b, heads, 1, 1}) * starts.back() +
                          chunk_states.select(1, nc - 1);
  const at::Tensor start = at::stack(starts, 1);                                 // [B, nc, H, P, N]
  // 4. The start state read out through C, decayed to each position.
  const at::Tensor y_off = at::einsum("bclhn,bchpn->bclhp", {cc, start}) *
                           at::exp(a_cum).permute({0, 2, 3, 1}).unsqueeze(-1);  // [B, nc, Q, H, P]
  at::Tensor y = (y_diag + y_off).reshape({b, nc * q, heads, p}).narrow(1, 0, len);
  if (args.D) y = y + xf * args.D->to(at::kFloat).view({heads, 1});
  state.copy_(last);  // padding steps (dt = 0) left the state at token L-1
  return y;
}

at::Tensor ssd_state_update(const at::Tensor& x, const at::Tensor& dt, const at::Tensor& Bmat, const at::Tensor& Cmat,
                            const SsdArgs& args, at::Tensor& state, Backend backend) {
  RECORD_USER_SCOPE("effarch::ssd_state_update");  // names the op in profiles (effarch profile)
  constexpr const char* op = "ssd_state_update";
  if (!x.defined() || x.dim() != 3) {
    throw OpError(fmt::format("{}: x must be [B, H, P], got {}", op, x.defined() ? shape(x) : "undefined"));
  }
  if (!Bmat.defined() || Bmat.dim() != 3) throw OpError(fmt::format("{}: B must be [B, G, N]", op));
  const int64_t b = x.size(0), heads = x.size(1), p = x.size(2), groups = Bmat.size(1), n = Bmat.size(2);
  check(dt, op, "dt", {b, heads}, x);
  check(Bmat, op, "B", {b, groups, n}, x);
  check(Cmat, op, "C", {b, groups, n}, x);
  check_common(args, heads, groups, x, op);
  check_state(state, {b, heads, p, n}, x, op);
  const Backend impl = resolve_backend(backend, OpFamily::SsdStateUpdate, x.device());
  if (impl == Backend::Cpu) return cpu::ssd_state_update(x, dt, Bmat, Cmat, args, state);
#ifdef EFFARCH_WITH_CUDA
  if (impl == Backend::Cuda) return detail::ssd_state_update_cuda(x, dt, Bmat, Cmat, args, state);
#endif
  const at::Tensor xf = x.to(at::kFloat);
  const at::Tensor dtf = discretize(dt, args);                                   // [B, H]
  const at::Tensor decay = at::exp(dtf * args.A.to(at::kFloat)).view({b, heads, 1, 1});
  const at::Tensor Bh = per_head(Bmat.to(at::kFloat), heads);                    // [B, H, N]
  const at::Tensor Ch = per_head(Cmat.to(at::kFloat), heads);
  const at::Tensor input = (dtf.unsqueeze(-1) * Bh).unsqueeze(2) * xf.unsqueeze(-1);  // [B, H, P, N]
  state.copy_(state * decay + input);
  at::Tensor y = at::matmul(state, Ch.unsqueeze(-1)).squeeze(-1);                // [B, H, P]
  if (args.D) y = y + xf * args.D->to(at::kFloat).view({heads, 1});
  return y;
}

at::Tensor gated_rms_norm(const at::Tensor& y, const at::Tensor& z, const at::Tensor& weight, int64_t group_size,
                          double eps, Backend backend, std::optional<at::ScalarType> out_dtype) {
  RECORD_USER_SCOPE("effarch::gated_rms_norm");  // names the op in profiles (effarch profile)
  constexpr const char* op = "gated_rms_norm";
  if (!y.defined() || y.dim() < 1) {
    throw OpError(fmt::format("{}: y must be [..., D], got {}", op, y.defined() ? shape(y) : "undefined"));
  }
  const int64_t d = y.size(-1);
  check(y, op, "y", y.sizes(), y);
  check(z, op, "z", y.sizes(), y);
  check(weight, op, "weight", {d}, y);
  if (group_size < 1 || d % group_size != 0) {
    throw OpError(fmt::format("{}: group size {} does not divide the {} channels of y", op, group_size, d));
  }
  if (!(eps >= 0.0)) throw OpError(fmt::format("{}: eps {} must be >= 0", op, eps));
  if (out_dtype && *out_dtype != at::kFloat && *out_dtype != at::kBFloat16 && *out_dtype != at::kHalf) {
    throw OpError(fmt::format("{}: out_dtype {} must be float32, bfloat16 or float16", op, c10::toString(*out_dtype)));
  }
  [[maybe_unused]] const bool cuda = use_cuda_kernel(backend, OpFamily::GatedRmsNorm, y.device());
#ifdef EFFARCH_WITH_CUDA
  if (cuda && y.numel() > 0) return detail::gated_rms_norm_cuda(y, z, weight, group_size, eps, out_dtype);
#endif
  const at::Tensor h = y.to(at::kFloat) * at::silu(z.to(at::kFloat));
  std::vector<int64_t> grouped = h.sizes().vec();
  grouped.back() = d / group_size;
  grouped.push_back(group_size);
  const at::Tensor hg = h.reshape(grouped);
  const at::Tensor normed = (hg * at::rsqrt(hg.pow(2).mean(-1, /*keepdim=*/true) + eps)).reshape(y.sizes());
  const at::Tensor out = weight * normed.to(y.scalar_type());
  return out_dtype ? out.to(*out_dtype) : out;
}

}  // namespace effarch::ops
