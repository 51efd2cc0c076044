// effarch::ops::selective_scan / selective_state_update: argument checks and the ATen reference.
//
// The reference is a two-level chunked scan, so a long prompt costs O(sqrt(L)) rounds of
// whole-tensor ops instead of L rounds of tiny ones. The sequence is cut into nc chunks of T
// tokens (T ~ sqrt(L/2), padded at the end with dt = 0 steps, which leave the state unchanged):
//   1. every chunk runs the recurrence from a zero state at once (T rounds over [nc, B, D, N]),
//      giving its local end state and its total decay prod_t exp(dt A);
//   2. the chunk start states follow sequentially: start[c+1] = decay[c] start[c] + local[c];
//   3. every chunk runs the recurrence again from its true start state (T rounds), producing y.
// Step 3 is the plain recurrence in the plain order, so within a chunk the result rounds as the
// token-by-token loop does; only the start states come from the composition of step 2.

#include "effarch/ops/selective_scan.h"

#include <cmath>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/record_function.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "effarch/common/error.h"
#include "arg_checks.h"
#include "cpu/cpu_kernels.h"

namespace effarch::ops {
namespace {

constexpr const char* kScan = "selective_scan";
constexpr const char* kUpdate = "selective_state_update";

using detail::shape;

void check_tensor(const at::Tensor& t, const char* op, const char* name, at::IntArrayRef expected,
                  const at::Tensor& u) {
  detail::check_float_tensor(t, op, name, expected, u, "u");
}

void check_args(const SelectiveScanArgs& args, int64_t dim, int64_t dstate, const at::Tensor& u, const char* op) {
  check_tensor(args.A, op, "A", {dim, dstate}, u);
  if (args.D) check_tensor(*args.D, op, "D", {dim}, u);
  if (args.delta_bias) check_tensor(*args.delta_bias, op, "delta_bias", {dim}, u);
}

void check_state(const at::Tensor& state, int64_t batch, int64_t dim, int64_t dstate, const at::Tensor& u,
                 const char* op) {
  check_tensor(state, op, "ssm_state", {batch, dim, dstate}, u);
  if (state.scalar_type() != at::kFloat) {
    throw OpError(fmt::format("{}: ssm_state has dtype {}; the state is kept in float32", op,
                                 c10::toString(state.scalar_type())));
  }
}

// dt in fp32: delta (+ bias), softplus (PyTorch's: x above 20 passes through).
at::Tensor discretize(const at::Tensor& delta, const std::optional<at::Tensor>& bias, bool softplus,
                      at::IntArrayRef bias_view) {
  at::Tensor dt = delta.to(at::kFloat);
  if (bias) dt = dt + bias->to(at::kFloat).view(bias_view);
  return softplus ? at::softplus(dt, 1, 20) : dt;
}

// One recurrence step over any leading dims: h = exp(dt A) h + (dt B) u, in the order HF's
// reference rounds it. dt, u: [..., D]; Bt: [..., N]; A: [D, N].
struct Step {
  at::Tensor decay, input;
};
Step step_terms(const at::Tensor& dt, const at::Tensor& u, const at::Tensor& Bt, const at::Tensor& A) {
  const at::Tensor dt_ = dt.unsqueeze(-1);
  return {at::exp(dt_ * A), (dt_ * Bt.unsqueeze(-2)) * u.unsqueeze(-1)};
}

// y = (C . h + D u) * SiLU(z), fp32. h [..., D, N], Ct [..., N], u, z [..., D].
at::Tensor readout(const at::Tensor& h, const at::Tensor& Ct) { return at::matmul(h, Ct.unsqueeze(-1)).squeeze(-1); }

}  // namespace

namespace detail {

int64_t selective_scan_chunk(int64_t seqlen) {
  if (seqlen <= 16) return std::max<int64_t>(seqlen, 1);
  return static_cast<int64_t>(std::ceil(std::sqrt(static_cast<double>(seqlen) / 2.0)));
}

at::Tensor selective_scan_reference(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& Bmat,
                                    const at::Tensor& Cmat, const std::optional<at::Tensor>& z,
                                    const SelectiveScanArgs& args, const at::Tensor& ssm_state, bool from_state) {
  const int64_t batch = u.size(0), dim = u.size(1), len = u.size(2), dstate = args.A.size(1);
  const at::Tensor A = args.A.to(at::kFloat);
  // Time-major fp32 copies: [L, B, X].
  const at::Tensor uf = u.permute({2, 0, 1}).to(at::kFloat);
  const at::Tensor dt = discretize(delta.permute({2, 0, 1}), args.delta_bias, args.delta_softplus, {1, 1, dim});
  const at::Tensor Bf = Bmat.permute({2, 0, 1}).to(at::kFloat);
  const at::Tensor Cf = Cmat.permute({2, 0, 1}).to(at::kFloat);

  const int64_t T = selective_scan_chunk(len);
  const int64_t nc = (len + T - 1) / T;
  // [L, B, X] -> zero-padded to nc*T -> [T, nc, B, X]: round t touches token c*T + t of every chunk.
  auto chunked = [&](const at::Tensor& x) {
    const at::Tensor padded = nc * T == len ? x : at::constant_pad_nd(x, {0, 0, 0, 0, 0, nc * T - len});
    return padded.view({nc, T, batch, x.size(2)}).transpose(0, 1).contiguous();
  };
  const at::Tensor uc = chunked(uf), dtc = chunked(dt), Bc = chunked(Bf), Cc = chunked(Cf);

  const at::Tensor init = from_state ? ssm_state.to(at::kFloat) : at::zeros({batch, dim, dstate}, uf.options());
  at::Tensor h;  // [nc, B, D, N]: the start state of every chunk
  if (nc == 1) {
    h = init.unsqueeze(0).clone();
  } else {
    at::Tensor local = at::zeros({nc, batch, dim, dstate}, uf.options());
    at::Tensor decay = at::ones_like(local);
    for (int64_t t = 0; t < T; ++t) {
      const Step s = step_terms(dtc[t], uc[t], Bc[t], A);
      local = s.decay * local + s.input;
      decay.mul_(s.decay);
    }
    std::vector<at::Tensor> starts{init};
    starts.reserve(static_cast<size_t>(nc));
    for (int64_t c = 1; c < nc; ++c) starts.push_back(decay[c - 1] * starts.back() + local[c - 1]);
    h = at::stack(starts);
  }
  std::vector<at::Tensor> ys;
  ys.reserve(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) {
    const Step s = step_terms(dtc[t], uc[t], Bc[t], A);
    h = s.decay * h + s.input;
    ys.push_back(readout(h, Cc[t]));  // [nc, B, D]
  }
  ssm_state.copy_(h[nc - 1]);  // padding steps (dt = 0) left the last chunk's state at token L-1
  // [T, nc, B, D] -> [L, B, D] -> [B, D, L]
  at::Tensor y = at::stack(ys).transpose(0, 1).reshape({nc * T, batch, dim}).narrow(0, 0, len).permute({1, 2, 0});
  const at::Tensor u_bdl = uf.permute({1, 2, 0});
  if (args.D) y = y + u_bdl * args.D->to(at::kFloat).view({1, dim, 1});
  if (z) y = y * at::silu(z->to(at::kFloat));
  return y.to(u.scalar_type());
}

}  // namespace detail

at::Tensor selective_scan(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& Bmat, const at::Tensor& Cmat,
                          const std::optional<at::Tensor>& z, const SelectiveScanArgs& args, at::Tensor& ssm_state,
                          bool from_state, Backend backend) {
  RECORD_USER_SCOPE("effarch::selective_scan");  // names the op in profiles (effarch profile)
  if (!u.defined() || u.dim() != 3) {
    throw OpError(fmt::format("{}: u must be [B, D, L], got {}", kScan, u.defined() ? shape(u) : "undefined"));
  }
  const int64_t batch = u.size(0), dim = u.size(1), len = u.size(2);
  if (!args.A.defined() || args.A.dim() != 2) throw OpError(fmt::format("{}: A must be [D, N]", kScan));
  const int64_t dstate = args.A.size(1);
  check_tensor(u, kScan, "u", {batch, dim, len}, u);
  check_tensor(delta, kScan, "delta", {batch, dim, len}, u);
  check_tensor(Bmat, kScan, "B", {batch, dstate, len}, u);
  check_tensor(Cmat, kScan, "C", {batch, dstate, len}, u);
  if (z) check_tensor(*z, kScan, "z", {batch, dim, len}, u);
  check_args(args, dim, dstate, u, kScan);
  check_state(ssm_state, batch, dim, dstate, u, kScan);
  const Backend impl = resolve_backend(backend, OpFamily::SelectiveScan, u.device());
  if (len == 0) {
    if (!from_state) ssm_state.zero_();
    return at::empty({batch, dim, 0}, u.options());
  }
#ifdef EFFARCH_WITH_CUDA
  if (impl == Backend::Cuda) return detail::selective_scan_cuda(u, delta, Bmat, Cmat, z, args, ssm_state, from_state);
#endif
  if (impl == Backend::Cpu) {
    return cpu::selective_scan(u, delta, Bmat, Cmat, z, args.A, args.D, args.delta_bias, args.delta_softplus,
                               ssm_state, from_state);
  }
  return detail::selective_scan_reference(u, delta, Bmat, Cmat, z, args, ssm_state, from_state);
}

namespace {

// The one-token update's arguments but delta: u [B, D], B and C [B, N], z [B, D], A [D, N], the
// state [B, D, N] fp32. Returns {B, D}.
std::pair<int64_t, int64_t> check_update(const at::Tensor& u, const at::Tensor& Bmat, const at::Tensor& Cmat,
                                         const std::optional<at::Tensor>& z, const SelectiveScanArgs& args,
                                         const at::Tensor& ssm_state, const char* op) {
  if (!u.defined() || u.dim() != 2) {
    throw OpError(fmt::format("{}: u must be [B, D], got {}", op, u.defined() ? shape(u) : "undefined"));
  }
  const int64_t batch = u.size(0), dim = u.size(1);
  if (!args.A.defined() || args.A.dim() != 2) throw OpError(fmt::format("{}: A must be [D, N]", op));
  const int64_t dstate = args.A.size(1);
  check_tensor(Bmat, op, "B", {batch, dstate}, u);
  check_tensor(Cmat, op, "C", {batch, dstate}, u);
  if (z) check_tensor(*z, op, "z", {batch, dim}, u);
  check_args(args, dim, dstate, u, op);
  check_state(ssm_state, batch, dim, dstate, u, op);
  return {batch, dim};
}

}  // namespace

at::Tensor selective_state_update(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& Bmat,
                                  const at::Tensor& Cmat, const std::optional<at::Tensor>& z,
                                  const SelectiveScanArgs& args, at::Tensor& ssm_state, Backend backend) {
  RECORD_USER_SCOPE("effarch::selective_state_update");  // names the op in profiles (effarch profile)
  const auto [batch, dim] = check_update(u, Bmat, Cmat, z, args, ssm_state, kUpdate);
  check_tensor(delta, kUpdate, "delta", {batch, dim}, u);
  const Backend impl = resolve_backend(backend, OpFamily::SelectiveStateUpdate, u.device());
#ifdef EFFARCH_WITH_CUDA
  if (impl == Backend::Cuda) return detail::selective_state_update_cuda(u, delta, Bmat, Cmat, z, args, ssm_state);
#endif
  if (impl == Backend::Cpu) {
    return cpu::selective_state_update(u, delta, Bmat, Cmat, z, args.A, args.D, args.delta_bias, args.delta_softplus,
                                       ssm_state);
  }
  const at::Tensor uf = u.to(at::kFloat);
  const at::Tensor dt = discretize(delta, args.delta_bias, args.delta_softplus, {1, dim});
  const Step s = step_terms(dt, uf, Bmat.to(at::kFloat), args.A.to(at::kFloat));
  ssm_state.copy_(s.decay * ssm_state + s.input);
  at::Tensor y = readout(ssm_state, Cmat.to(at::kFloat));
  if (args.D) y = y + uf * args.D->to(at::kFloat);
  if (z) y = y * at::silu(z->to(at::kFloat));
  return y.to(u.scalar_type());
}

bool selective_state_update_dt_proj_fuses(const at::Tensor& u, const at::Tensor& dt_low, const Linear& dt_proj,
                                          Backend backend) {
  if (!use_cuda_kernel(backend, OpFamily::SelectiveStateUpdate, u.device())) return false;
  const at::Tensor& w = dt_proj.weight;
  return dt_proj.format == WeightFormat::Dense && !dt_proj.bias && w.defined() && w.dim() == 2 &&
         w.scalar_type() == u.scalar_type() && w.device() == u.device() && dt_low.defined() &&
         dt_low.scalar_type() == u.scalar_type() && dt_low.device() == u.device();
}

at::Tensor selective_state_update_dt_proj(const at::Tensor& u, const at::Tensor& dt_low, const Linear& dt_proj,
                                          const at::Tensor& Bmat, const at::Tensor& Cmat,
                                          const std::optional<at::Tensor>& z, const SelectiveScanArgs& args,
                                          at::Tensor& ssm_state, Backend backend) {
  constexpr const char* op = "selective_state_update_dt_proj";
  const auto [batch, dim] = check_update(u, Bmat, Cmat, z, args, ssm_state, op);
  if (!dt_proj.defined() || dt_proj.weight.dim() != 2 || dt_proj.out_features() != dim) {
    throw OpError(fmt::format("{}: dt_proj must be [{}, R], got {}", op, dim,
                              dt_proj.defined() ? shape(dt_proj.weight) : "undefined"));
  }
  check_tensor(dt_low, op, "dt_low", {batch, dt_proj.in_features()}, u);
  if (selective_state_update_dt_proj_fuses(u, dt_low, dt_proj, backend)) {
    RECORD_USER_SCOPE("effarch::selective_state_update");  // the fused projection counts as the scan's
#ifdef EFFARCH_WITH_CUDA
    return detail::selective_state_update_dt_proj_cuda(u, dt_low, dt_proj.weight, Bmat, Cmat, z, args, ssm_state);
#endif
  }
  return selective_state_update(u, linear(dt_low, dt_proj, backend), Bmat, Cmat, z, args, ssm_state, backend);
}

}  // namespace effarch::ops
