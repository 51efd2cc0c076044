// effarch kernels' op registry: for each op, the shapes it runs on, the bytes it must move, its
// FLOPs where it is compute-bound, and the call that runs it per implementation
// (effarch/bench/kernels.h, docs/kernels.md). The sweep that times these calls, its document and
// its table are in kernels.cpp.

#include "kernel_cases.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "effarch/common/error.h"
#include "effarch/ops/activation.h"
#include "effarch/ops/add_norm.h"
#include "effarch/ops/attention.h"
#include "effarch/ops/causal_conv1d.h"
#include "effarch/ops/decode_attention.h"
#include "effarch/ops/linear.h"
#include "effarch/ops/moe.h"
#include "effarch/ops/normed_input.h"
#include "effarch/ops/selective_scan.h"
#include "effarch/ops/ssd.h"

namespace effarch::bench {

namespace {

using nlohmann::json;

uint64_t elems(std::initializer_list<int64_t> dims) {
  uint64_t n = 1;
  for (int64_t d : dims) n *= static_cast<uint64_t>(d);
  return n;
}
uint64_t esize(at::ScalarType t) { return static_cast<uint64_t>(c10::elementSize(t)); }
constexpr uint64_t kF32 = 4;

const model::MambaConfig& mamba(const KernelShape& s) { return *s.config->mamba; }
const model::AttentionConfig& attn(const KernelShape& s) { return *s.config->attention; }
const model::MlpConfig& dense_mlp(const KernelShape& s) {
  if (!s.config->mlp) throw UsageError("activation: the --transformer model has no dense MLP");
  return *s.config->mlp;
}

const model::MoeConfig& moe(const KernelShape& s) { return *s.config->moe; }

// One MoE layer's experts with random weights, as Weights::gated_mlp lays them out: gate and up
// are row views of the fused gate_up. Only the first `distinct` have weights of their own; the
// others share them (a row whose routing never names them allocates only what it reads).
std::vector<ops::ExpertWeights> random_experts(const KernelShape& s, const at::TensorOptions& o, int64_t distinct) {
  const auto& m = moe(s);
  const int64_t h = s.config->hidden_size, inter = m.expert_intermediate;
  std::vector<ops::ExpertWeights> experts;
  experts.reserve(static_cast<size_t>(m.num_experts));  // the shared copies below read earlier elements
  for (int64_t e = 0; e < m.num_experts; ++e) {
    if (e >= distinct) {
      experts.push_back(experts[static_cast<size_t>(e % distinct)]);
      continue;
    }
    ops::ExpertWeights w;
    w.gate_up = ops::Linear(at::randn({2 * inter, h}, o).mul_(0.02));
    w.gate = ops::Linear(w.gate_up.weight.narrow(0, 0, inter));
    w.up = ops::Linear(w.gate_up.weight.narrow(0, inter, inter));
    w.down = ops::Linear(at::randn({h, inter}, o).mul_(0.02));
    experts.push_back(std::move(w));
  }
  return experts;
}

// One MoE layer's routed experts at prefill (N = B L tokens): random router and experts (about
// even load), the experts stacked as the model stacks them at load. `stacked` false: the dispatch
// is given no stack, so on a GPU it runs the per-expert path.
std::function<void()> moe_prefill_call(const KernelShape& s, const at::TensorOptions& o, ops::Backend backend,
                                       bool stacked) {
  const auto& m = moe(s);
  const int64_t h = s.config->hidden_size;
  struct State {
    std::vector<ops::ExpertWeights> experts;
    ops::ExpertStack stack;
    at::Tensor router, x;
  };
  auto st = std::make_shared<State>();
  st->experts = random_experts(s, o, m.num_experts);
  if (stacked) st->stack = ops::stack_experts(st->experts);
  st->router = at::randn({m.num_experts, h}, o) * 0.02;
  st->x = at::randn({s.batch * s.length, h}, o);
  const int64_t k = m.top_k;
  const ops::RouterKind kind = m.router;
  const ops::Activation act = s.config->mlp ? s.config->mlp->activation : ops::Activation::SiLU;
  return [st, k, kind, act, backend, stacked] {
    const ops::Routing r = ops::moe_route(st->x, st->router, k, kind, backend);
    (void)ops::moe_dispatch(st->x, r, st->experts, act, backend, nullptr, stacked ? &st->stack : nullptr);
  };
}

// One decode step's MoE layer: B tokens (one each) through ops::moe_dispatch with the device
// table of expert pointers and the shared experts (DeepSeekMoE's), as a model decodes (on a GPU
// at one token the gate/up GEMV and the down kernel with the combine and the shared experts in it;
// staged, or at more tokens: the permute, the expert GEMV with the SwiGLU, the GEMV for down, the
// combine, the shared MLP apart). The routing is made, not computed, so that the bytes are known:
// token t's slot j takes expert (t k + j) mod E, min(E, B k) distinct experts in all (a router
// picks as many at batch 1, fewer or as many at larger batches); the router's own GEMM is not in
// the row.
int64_t moe_decode_experts(const KernelShape& s) { return std::min(moe(s).num_experts, s.batch * moe(s).top_k); }
// The shared experts' width (0: none), an MLP of num_shared_experts experts' width.
int64_t moe_shared_width(const KernelShape& s) { return moe(s).num_shared_experts * moe(s).expert_intermediate; }

struct MoeDecodeVariant {
  bool one_row = false;    // ExpertTable::one_row
  int loads_in_flight = 0;  // ExpertTable::loads_in_flight
  bool staged = false;     // !ExpertTable::fused_token
};

std::function<void()> moe_decode_call(const KernelShape& s, const at::TensorOptions& o, ops::Backend backend,
                                      MoeDecodeVariant variant) {
  const auto& m = moe(s);
  const int64_t h = s.config->hidden_size, k = m.top_k, shared_width = moe_shared_width(s);
  struct State {
    std::vector<ops::ExpertWeights> experts;
    std::optional<ops::GatedMlpWeights> shared;
    ops::ExpertTable table;
    ops::Routing routing;
    at::Tensor x;
  };
  auto st = std::make_shared<State>();
  st->experts = random_experts(s, o, moe_decode_experts(s));  // the experts the routing names, no more
  if (shared_width > 0) {
    ops::GatedMlpWeights w;
    w.gate_up = ops::Linear(at::randn({2 * shared_width, h}, o).mul_(0.02));
    w.gate = ops::Linear(w.gate_up.weight.narrow(0, 0, shared_width));
    w.up = ops::Linear(w.gate_up.weight.narrow(0, shared_width, shared_width));
    w.down = ops::Linear(at::randn({h, shared_width}, o).mul_(0.02));
    st->shared = std::move(w);
  }
  st->table = ops::make_expert_table(st->experts, st->shared ? &*st->shared : nullptr);
  st->table.one_row = variant.one_row;
  st->table.loads_in_flight = variant.loads_in_flight;
  st->table.fused_token = !variant.staged;
  st->x = at::randn({s.batch, h}, o);
  // The weights in the router's dtype for this model (fp32 for Mixtral's, else the model's).
  st->routing = ops::moe_route(st->x, at::randn({m.num_experts, h}, o) * 0.02, k, m.router, ops::Backend::Reference);
  st->routing.expert_ids =
      (at::arange(s.batch * k, at::TensorOptions().dtype(at::kLong)).remainder(m.num_experts)).view({s.batch, k}).to(o.device());
  const ops::Activation act = s.config->mlp ? s.config->mlp->activation : ops::Activation::SiLU;
  const ops::GatedMlpWeights* shared = st->shared ? &*st->shared : nullptr;
  return [st, act, backend, shared] {
    (void)ops::moe_dispatch(st->x, st->routing, st->experts, act, backend, st->table.defined() ? &st->table : nullptr,
                            nullptr, shared);
  };
}

// The moe_decode row, or a variant of it: the decode GEMV's (ExpertTable::one_row, its one-token
// kernel, and loads_in_flight, 0 the kernel's default), or the staged kernels at one token; at
// --batch above 1 the variants run what the row runs.
KernelCase moe_decode_case(std::string name, MoeDecodeVariant variant) {
  return KernelCase{
      std::move(name), KernelModel::Moe, ops::OpFamily::MoeDispatch, false,
      "dispatch B tokens (one step): read x [B,H], the routing [B,k] (ids and weights), the gate, up [I,H] and down "
      "[H,I] of the min(E, B k) experts it names (token t's slot j: expert (t k + j) mod E) and the shared experts' "
      "gate, up [S,H] and down [H,S] (DeepSeekMoE); write out [B,H]; all in the dtype but the int64 ids and Mixtral's "
      "fp32 weights",
      [](const KernelShape& s) {
        const auto& m = moe(s);
        json shape{{"x", {s.batch, s.config->hidden_size}},
                   {"active_experts", {moe_decode_experts(s), 3, m.expert_intermediate, s.config->hidden_size}},
                   {"top_k", m.top_k}};
        if (moe_shared_width(s) > 0) shape["shared_experts"] = {3, moe_shared_width(s), s.config->hidden_size};
        return shape;
      },
      [](const KernelShape& s) {
        const auto& m = moe(s);
        const uint64_t e = esize(s.dtype), h = static_cast<uint64_t>(s.config->hidden_size);
        const uint64_t slots = static_cast<uint64_t>(s.batch * m.top_k);
        const uint64_t weight = m.router == ops::RouterKind::SoftmaxFp32Renormalized ? 4 : e;
        return KernelBytes{e * (elems({moe_decode_experts(s), 3, m.expert_intermediate, s.config->hidden_size}) +
                                elems({3, moe_shared_width(s), s.config->hidden_size}) +
                                static_cast<uint64_t>(s.batch) * h) +
                               slots * (8 + weight),
                           e * static_cast<uint64_t>(s.batch) * h};
      },
      [variant](const KernelShape& s, const at::TensorOptions& o, ops::Backend backend) {
        return moe_decode_call(s, o, backend, variant);
      },
      [](const KernelShape& s) {  // 2 B 3 H (k I + S): the experts' products (no router in the row)
        const auto& m = moe(s);
        return 2.0 * static_cast<double>(s.batch) * 3 * static_cast<double>(s.config->hidden_size) *
               static_cast<double>(m.top_k * m.expert_intermediate + moe_shared_width(s));
      }};
}

json moe_shapes(const KernelShape& s) {
  const auto& m = moe(s);
  const int64_t h = s.config->hidden_size;
  return json{{"x", {s.batch * s.length, h}},
              {"router", {m.num_experts, h}},
              {"experts", {m.num_experts, 3, m.expert_intermediate, h}},
              {"top_k", m.top_k}};
}

KernelBytes moe_bytes(const KernelShape& s) {
  const auto& m = moe(s);
  const uint64_t e = esize(s.dtype);
  const int64_t n = s.batch * s.length, h = s.config->hidden_size;
  return KernelBytes{e * (elems({n, h}) + elems({m.num_experts, h}) + elems({3, m.num_experts, m.expert_intermediate, h})),
                     e * elems({n, h})};
}

// 2 N k 3 H I for the routed experts, 2 N H E for the router's logits.
double moe_flops(const KernelShape& s) {
  const auto& m = moe(s);
  const double n = static_cast<double>(s.batch * s.length), h = static_cast<double>(s.config->hidden_size);
  return 2 * n * static_cast<double>(m.top_k) * 3 * h * static_cast<double>(m.expert_intermediate) +
         2 * n * h * static_cast<double>(m.num_experts);
}

// Causal pairs (query, key <= query) within chunks of `chunk` tokens over `length` tokens.
double causal_pairs(int64_t length, int64_t chunk) {
  const auto pairs = [](double q) { return q * (q + 1) / 2; };
  return static_cast<double>(length / chunk) * pairs(static_cast<double>(chunk)) +
         pairs(static_cast<double>(length % chunk));
}

// The chunked SSD's FLOPs as mamba_ssm's algorithm counts them (each multiply-add two), the same
// for every implementation: the chunk states 2 L H P N, C B^T once per group over each chunk's
// causal pairs 2 G N pairs, the outputs from those scores 2 H P pairs, and from the start states
// 2 L H P N; batch B times. (effarch's tensor-core path recomputes C B^T per head, more work than
// counted here: the figure is the algorithm's, so implementations compare on one count.)
double ssd_flops(const KernelShape& s) {
  const auto& m = mamba(s);
  const double b = static_cast<double>(s.batch), l = static_cast<double>(s.length);
  const double h = static_cast<double>(m.num_heads), p = static_cast<double>(m.head_dim);
  const double n = static_cast<double>(m.d_state), g = static_cast<double>(m.n_groups);
  const double pairs = causal_pairs(s.length, m.chunk_size);
  return b * (2 * l * h * p * n + 2 * g * n * pairs + 2 * h * p * pairs + 2 * l * h * p * n);
}

// Causal attention's FLOPs: q k^T and the weights times v over the causal pairs, 4 B Hq Dh
// L (L + 1) / 2.
double attention_flops(const KernelShape& s) {
  const auto& a = attn(s);
  return 4 * static_cast<double>(s.batch) * static_cast<double>(a.num_heads) * static_cast<double>(a.head_dim) *
         causal_pairs(s.length, s.length);
}

// A [B, L, D] tensor seen as [B, D, L]: the channel-last views the Mamba-1 mixer passes its ops.
at::Tensor channel_last(int64_t b, int64_t d, int64_t l, const at::TensorOptions& o) {
  return at::randn({b, l, d}, o).transpose(1, 2);
}

// Mamba-1's A (negative), D and dt bias, all fp32 as the mixer holds them (and mamba_ssm).
ops::SelectiveScanArgs scan_args(int64_t d, int64_t n, const at::TensorOptions& o) {
  ops::SelectiveScanArgs a;
  const auto f32 = o.dtype(at::kFloat);
  a.A = -(at::rand({d, n}, f32) + 0.5);
  a.D = at::randn({d}, f32);
  a.delta_bias = at::randn({d}, f32) * 0.1;
  a.delta_softplus = true;
  return a;
}

// The Mamba-1 one-token update's operands but its delta: u, z [B,D], B, C [B,N], the args, and the
// fp32 state [B,D,N] the call updates in place (shared so the timed calls keep updating it).
struct UpdateOperands {
  at::Tensor u, z, bm, cm;
  ops::SelectiveScanArgs args;
  std::shared_ptr<at::Tensor> state;
};
UpdateOperands update_operands(const KernelShape& s, const at::TensorOptions& o) {
  const auto& m = mamba(s);
  UpdateOperands a;
  a.u = at::randn({s.batch, m.d_inner}, o);
  a.z = at::randn({s.batch, m.d_inner}, o);
  a.bm = at::randn({s.batch, m.d_state}, o);
  a.cm = at::randn({s.batch, m.d_state}, o);
  a.args = scan_args(m.d_inner, m.d_state, o);
  a.state = std::make_shared<at::Tensor>(at::randn({s.batch, m.d_inner, m.d_state}, o.dtype(at::kFloat)));
  return a;
}

// The one-token update's bytes: u, delta, z and B, C in the dtype, A, D and the bias in fp32, the
// state read and written in fp32, y written.
KernelBytes update_bytes(const KernelShape& s) {
  const auto& m = mamba(s);
  const uint64_t e = esize(s.dtype);
  const uint64_t state = kF32 * elems({s.batch, m.d_inner, m.d_state});
  return KernelBytes{e * (3 * elems({s.batch, m.d_inner}) + 2 * elems({s.batch, m.d_state})) +
                         kF32 * (elems({m.d_inner, m.d_state}) + 2 * elems({m.d_inner})) + state,
                     e * elems({s.batch, m.d_inner}) + state};
}

ops::SsdArgs ssd_args(const model::MambaConfig& m, const at::TensorOptions& o) {
  ops::SsdArgs a;
  a.A = -(at::rand({m.num_heads}, o.dtype(at::kFloat)) + 0.5);
  a.D = at::randn({m.num_heads}, o);
  a.dt_bias = at::randn({m.num_heads}, o) * 0.1;
  a.chunk_size = m.chunk_size;
  return a;
}

// The chunked scan twice: as the model runs it (tensor-core products for bf16 / fp16) and with the
// fp32 FMA products forced, so both are timed at the same shapes; rows that ran the CUDA kernel
// record which products ran (`products`).
const std::pair<const char*, ops::SsdScanProducts> kSsdScanProducts[] = {
    {"ssd_chunk_scan", ops::SsdScanProducts::Auto}, {"ssd_chunk_scan_fma", ops::SsdScanProducts::Fma}};

// The selective scan prefill's CUDA variants, a row each, by the names --selective-scan takes
// (ops::selective_scan_variant_named: the args that pick each; those that split take the
// launcher's piece count, which rows that ran the kernel record as `pieces`).
ops::SelectiveScanVariant scan_variant(const char* name) { return *ops::selective_scan_variant_named(name); }
const std::pair<const char*, ops::SelectiveScanVariant> kSelectiveScanVariants[] = {
    {"selective_scan", scan_variant("lanes16")},     {"selective_scan_lanes8", scan_variant("lanes8")},
    {"selective_scan_pieces", scan_variant("pieces")}, {"selective_scan_seg4", scan_variant("seg4")},
    {"selective_scan_seg8", scan_variant("seg8")},     {"selective_scan_split", scan_variant("split")}};

// The prefill conv over a channel-last x, as the Mamba mixer hands it over (in_proj's output
// transposed): ops::causal_conv1d, or with `vector` its CUDA kernel's 8-channels-a-thread variant
// (the reference row is the same either way).
KernelCase causal_conv1d_case(std::string name, bool vector) {
  return KernelCase{
      std::move(name), KernelModel::Mamba1, ops::OpFamily::CausalConv1d, true,
      "read x [B,D,L], weight [D,W], bias [D]; write out [B,D,L], final conv state [B,D,W]; all in the dtype",
      [](const KernelShape& s) {
        const auto& m = mamba(s);
        return json{{"x", {s.batch, m.d_inner, s.length}}, {"weight", {m.d_inner, m.d_conv}}, {"bias", {m.d_inner}}};
      },
      [](const KernelShape& s) {
        const auto& m = mamba(s);
        const uint64_t e = esize(s.dtype);
        return KernelBytes{e * (elems({s.batch, m.d_inner, s.length}) + elems({m.d_inner, m.d_conv}) + elems({m.d_inner})),
                           e * (elems({s.batch, m.d_inner, s.length}) + elems({s.batch, m.d_inner, m.d_conv}))};
      },
      [vector](const KernelShape& s, const at::TensorOptions& o, ops::Backend backend) -> std::function<void()> {
        const auto& m = mamba(s);
        at::Tensor x = channel_last(s.batch, m.d_inner, s.length, o);
        at::Tensor w = at::randn({m.d_inner, m.d_conv}, o), b = at::randn({m.d_inner}, o);
        auto state = std::make_shared<at::Tensor>(at::zeros({s.batch, m.d_inner, m.d_conv}, o));
#ifdef EFFARCH_WITH_CUDA
        if (vector && backend != ops::Backend::Reference && o.device().is_cuda()) {
          const at::Tensor out = at::empty({s.batch, s.length, m.d_inner}, o).transpose(1, 2);  // x's layout
          return [x, w, b, state, out] { ops::detail::causal_conv1d_cuda(x, w, b, true, out, *state, /*vector=*/true); };
        }
#endif
        return [x, w, b, state, backend] { (void)ops::causal_conv1d(x, w, b, true, state.get(), backend); };
      }};
}

// One query per sequence over a cache of L tokens (attention_decode, decode_attention): the shapes
// and the bytes, q and the cache read, the output written.
json one_query_shapes(const KernelShape& s) {
  const auto& a = attn(s);
  return json{{"q", {s.batch, a.num_heads, 1, a.head_dim}}, {"kv", {s.batch, a.num_kv_heads, s.length, a.head_dim}}};
}
KernelBytes one_query_bytes(const KernelShape& s) {
  const auto& a = attn(s);
  const uint64_t e = esize(s.dtype);
  const uint64_t q = elems({s.batch, a.num_heads, 1, a.head_dim});
  return KernelBytes{e * (q + 2 * elems({s.batch, a.num_kv_heads, s.length, a.head_dim})), e * q};
}

// effarch's decode attention (ops::decode_attention over a filled cache of L keys): the CUDA
// kernel (flash-decoding) against its reference (masked SDPA over the cache prefix), the row issue
// 11's "decode attention kernel alone" target reads (attention_decode is ATen's SDPA); with
// split_blocks_per_sm > 0 the kernel's split plan aims at that many blocks an SM instead of 2.
KernelCase decode_attention_case(std::string name, int split_blocks_per_sm) {
  return KernelCase{
      std::move(name), KernelModel::Transformer, ops::OpFamily::DecodeAttention, true,
      "one query per sequence over a filled cache of L tokens through ops::decode_attention: read q [B,Hq,1,Dh], "
      "k, v [B,Hkv,L,Dh]; write out [B,Hq,1,Dh]; all in the dtype",
      one_query_shapes, one_query_bytes,
      [split_blocks_per_sm](const KernelShape& s, const at::TensorOptions& o,
                            ops::Backend backend) -> std::function<void()> {
        const auto& a = attn(s);
        at::Tensor q = at::randn({s.batch, a.num_heads, 1, a.head_dim}, o);
        at::Tensor k = at::randn({s.batch, a.num_kv_heads, s.length, a.head_dim}, o);
        at::Tensor v = at::randn({s.batch, a.num_kv_heads, s.length, a.head_dim}, o);
        const double scale = 1.0 / std::sqrt(static_cast<double>(a.head_dim));
        const int64_t position = s.length - 1;  // the newest token: every key filled
#ifdef EFFARCH_WITH_CUDA
        if (split_blocks_per_sm > 0 && backend != ops::Backend::Reference && o.device().is_cuda()) {
          const at::Tensor out = at::empty_like(q);
          return [=] {
            ops::detail::decode_attention_cuda(q, k, v, at::Tensor(), position, scale, std::nullopt, out,
                                               split_blocks_per_sm);
          };
        }
#endif
        return [=] { (void)ops::decode_attention(q, k, v, position, scale, std::nullopt, backend); };
      }};
}

// A decode step's residual add and the next norm (B tokens: --batch 4096 is a prefill's rows),
// the CUDA kernel in the launcher's shape, or the element shape with `threads` a row
// (NormParams::cuda_threads: 0 the launcher's count), or the vector shape (NormParams::cuda_shape).
KernelCase add_norm_case(std::string name, int threads, ops::AddNormShape shape = ops::AddNormShape::Auto) {
  return KernelCase{
      std::move(name), KernelModel::Transformer, ops::OpFamily::AddNorm, false,
      "read x, y [B,H] (and z for a parallel block), weight [H] (and bias for LayerNorm); write residual, normed "
      "[B,H]; all in the dtype",
      [](const KernelShape& s) {
        const int64_t h = s.config->hidden_size;
        return json{{"x", {s.batch, h}}, {"weight", {h}}, {"parallel_block", s.config->parallel_block},
                    {"layer_norm", s.config->norm == model::NormKind::LayerNorm}};
      },
      [](const KernelShape& s) {
        const uint64_t e = esize(s.dtype), bh = elems({s.batch, s.config->hidden_size}), h = elems({s.config->hidden_size});
        const uint64_t inputs = s.config->parallel_block ? 3 : 2, params = s.config->norm == model::NormKind::LayerNorm ? 2 : 1;
        return KernelBytes{e * (inputs * bh + params * h), e * 2 * bh};
      },
      [threads, shape](const KernelShape& s, const at::TensorOptions& o, ops::Backend backend) -> std::function<void()> {
        const int64_t h = s.config->hidden_size;
        at::Tensor x = at::randn({s.batch, 1, h}, o), y = at::randn({s.batch, 1, h}, o);
        at::Tensor z = s.config->parallel_block ? at::randn({s.batch, 1, h}, o) : at::Tensor();
        ops::NormParams norm;
        norm.weight = at::randn({h}, o);
        norm.layer_norm = s.config->norm == model::NormKind::LayerNorm;
        if (norm.layer_norm) norm.bias = at::randn({h}, o);
        norm.eps = s.config->norm_eps;
        norm.cuda_threads = threads;
        norm.cuda_shape = shape;
        return [=] { (void)ops::add_norm(x, y, z.defined() ? &z : nullptr, norm, backend); };
      }};
}

// A decode step's dense projection y [B, O] = x [B, K] W^T, W [O, K] one of the model's matrices
// (`dims` gives O and K), no bias: the CUDA kernels (ops::linear with Backend::Cuda: the GEMV up to
// kCudaDenseGemvMaxRows rows, the rows GEMM on tensor cores up to kCudaRowsGemmMaxRows) against
// at::linear (cuBLAS on a GPU). The reference row calls at::linear itself, so it is cuBLAS (or
// ATen's CPU product) whatever ops::linear would pick; where no kernel takes the shape (more rows,
// fp32 past 8 rows, features not a multiple of 16) the kernel's row is an error that says so, not
// cuBLAS timed under the kernel's name.
KernelCase dense_gemv_case(std::string name, KernelModel model, std::string matrix,
                           std::function<std::pair<int64_t, int64_t>(const KernelShape&)> dims, int unroll = 0,
                           int split = 0) {
  return KernelCase{
      std::move(name), model, ops::OpFamily::DenseGemv, false,
      "read W [O,K] (" + matrix + "), x [B,K]; write y [B,O]; all in the dtype",
      [dims](const KernelShape& s) {
        const auto [o, k] = dims(s);
        return json{{"w", {o, k}}, {"x", {s.batch, k}}};
      },
      [dims](const KernelShape& s) {
        const auto [o, k] = dims(s);
        const uint64_t e = esize(s.dtype);
        return KernelBytes{e * (elems({o, k}) + elems({s.batch, k})), e * elems({s.batch, o})};
      },
      [dims, unroll, split](const KernelShape& s, const at::TensorOptions& opt, ops::Backend backend) -> std::function<void()> {
        const auto [o, k] = dims(s);
        ops::Linear layer(at::randn({o, k}, opt) * 0.02);
        layer.cuda_gemv_unroll = unroll;
        layer.cuda_gemv_split = split;
        const at::Tensor x = at::randn({s.batch, 1, k}, opt);
        if (backend == ops::Backend::Reference) return [x, layer] { (void)at::linear(x, layer.weight); };
        // The other row is the kernel's (its only non-reference implementation is CUDA): asked
        // for by name, since under auto ops::linear hands more than kCudaDenseGemvAutoMaxRows
        // rows to cuBLAS and the row would time the reference under the kernel's name.
        if (!ops::detail::dense_gemv_applies(x, layer, ops::Backend::Cuda) &&
            !ops::detail::rows_gemm_applies(x, layer, ops::Backend::Cuda)) {
          throw OpError(fmt::format("no CUDA kernel for {} rows of a [{}, {}] {} weight: ops::linear runs "
                                    "at::linear there (the reference row)",
                                    s.batch, o, k, c10::toString(opt.dtype().toScalarType())));
        }
        return [x, layer] { (void)ops::linear(x, layer, ops::Backend::Cuda); };
      }};
}

// A decode step's block boundary into the product that reads it (docs/engine.md, "The norm in the
// GEMV's prologue"): the residual add and the model's norm (z for a parallel block, an fp32
// residual for residual_in_fp32), then y [B, O] = norm(x + y) W^T, `dims` O and K (= H). The kernel
// row is the dense GEMV computing the add + norm in its prologue (ops::NormedInput, one launch);
// the reference row is what --norm-prologue separate runs: add_norm, then the product, each as
// --backend auto picks it (on a GPU the add_norm kernel and the GEMV kernel, two launches; on the
// CPU the reference and the CPU GEMV), on the same tensors.
KernelCase add_norm_gemv_case(std::string name, KernelModel model, std::string matrix,
                              std::function<std::pair<int64_t, int64_t>(const KernelShape&)> dims) {
  return KernelCase{
      std::move(name), model, ops::OpFamily::DenseGemv, false,
      "read W [O,H] (" + matrix + "), x [B,H] (fp32 for residual_in_fp32), y [B,H] (and z for a parallel block), "
      "the norm's weight [H] (and bias); write residual [B,H], y [B,O]; the dtype but x",
      [dims](const KernelShape& s) {
        const auto [o, k] = dims(s);
        return json{{"w", {o, k}}, {"x", {s.batch, k}}, {"parallel_block", s.config->parallel_block},
                    {"layer_norm", s.config->norm == model::NormKind::LayerNorm},
                    {"residual_in_fp32", s.config->residual_in_fp32}};
      },
      [dims](const KernelShape& s) {
        const auto [o, k] = dims(s);
        const uint64_t e = esize(s.dtype), bk = elems({s.batch, k});
        const uint64_t r = s.config->residual_in_fp32 ? 4 : e;  // the residual's element
        const uint64_t addends = s.config->parallel_block ? 2 : 1, params = s.config->norm == model::NormKind::LayerNorm ? 2 : 1;
        return KernelBytes{e * (elems({o, k}) + addends * bk + params * elems({k})) + r * bk,
                           e * elems({s.batch, o}) + r * bk};
      },
      [dims](const KernelShape& s, const at::TensorOptions& opt, ops::Backend backend) -> std::function<void()> {
        const auto [o, k] = dims(s);
        const ops::Linear layer(at::randn({o, k}, opt) * 0.02);
        const at::Tensor x = at::randn({s.batch, 1, k}, s.config->residual_in_fp32 ? opt.dtype(at::kFloat) : opt);
        const at::Tensor y = at::randn({s.batch, 1, k}, opt);
        const at::Tensor z = s.config->parallel_block ? at::randn({s.batch, 1, k}, opt) : at::Tensor();
        auto norm = std::make_shared<ops::NormParams>();
        norm->weight = at::randn({k}, opt);
        norm->layer_norm = s.config->norm == model::NormKind::LayerNorm;
        if (norm->layer_norm) norm->bias = at::randn({k}, opt);
        norm->eps = s.config->norm_eps;
        if (backend == ops::Backend::Reference) {
          return [=] {
            const ops::AddNormResult r = ops::add_norm(x, y, z.defined() ? &z : nullptr, *norm, ops::Backend::Auto);
            (void)ops::linear(r.normed, layer, ops::Backend::Auto);
          };
        }
        // Asked for by name: where the prologue cannot run (more rows than it takes, a row past
        // 4096), the row is an error that says so, not the two kernels under this name.
        if (ops::NormedInput::pending(x, y, z.defined() ? &z : nullptr, *norm, ops::Backend::Cuda)
                .prologue_for(layer, ops::Backend::Cuda) == nullptr) {
          throw OpError(fmt::format("no norm prologue for {} rows of a [{}, {}] {} product (at most {} rows, a row of "
                                    "at most 4096, the CUDA kernels): the reference row times the two kernels",
                                    s.batch, o, k, c10::toString(opt.dtype().toScalarType()), 2));
        }
        return [=] {
          (void)ops::linear(ops::NormedInput::pending(x, y, z.defined() ? &z : nullptr, *norm, ops::Backend::Cuda), layer,
                            ops::Backend::Cuda);
        };
      }};
}

// A dense GEMV case and its measuring twins, for the matrices where the GEMV trails cuBLAS on an
// H100 (docs/perf/pending.md, entry 25): `name`_u8, the kernel with eight weight loads in flight a
// lane (Linear::cuda_gemv_unroll; at one row, elsewhere the default kernel), and `name`_s1, _s2,
// _s4, the plan's warps a row forced (Linear::cuda_gemv_split): more warps a row, more and shorter
// blocks (more waves, fewer rounds of loads a lane). One of the _s rows is the plan's own split.
void push_dense_gemv_variants(std::vector<KernelCase>& cases, const std::string& name, KernelModel model,
                              const std::string& matrix, std::function<std::pair<int64_t, int64_t>(const KernelShape&)> dims) {
  cases.push_back(dense_gemv_case(name, model, matrix, dims));
  cases.push_back(dense_gemv_case(name + "_u8", model, matrix + "; 8 loads in flight a lane", dims, 8));
  for (const int split : {1, 2, 4}) {
    cases.push_back(dense_gemv_case(fmt::format("{}_s{}", name, split), model,
                                    fmt::format("{}; {} warp{} a row", matrix, split, split == 1 ? "" : "s"), dims, 0, split));
  }
}

// The launch settings of a selective scan variant's case; none for the other ops.
std::optional<ops::SelectiveScanArgs> scan_variant_args(const KernelCase& c) {
  for (const auto& [op, variant] : kSelectiveScanVariants) {
    if (c.op != op) continue;
    ops::SelectiveScanArgs args;
    variant.apply(args);
    return args;
  }
  return std::nullopt;
}

}  // namespace

namespace detail {

// The products an SSD scan case asks for; none for the other ops.
std::optional<ops::SsdScanProducts> ssd_case_products(const KernelCase& c) {
  for (const auto& [op, products] : kSsdScanProducts) {
    if (c.op == op) return products;
  }
  return std::nullopt;
}

std::optional<std::string> scan_products(const KernelCase& c, const KernelShape& s, const std::string& impl) {
  const auto products = ssd_case_products(c);
  if (impl != "cuda" || !products) return std::nullopt;
  return std::string(ops::ssd_scan_products_name(s.dtype, mamba(s).d_state, *products));
}

std::optional<std::string> scan_variant(const KernelCase& c, const std::string& impl) {
  const auto args = scan_variant_args(c);
  if (impl != "cuda" || !args) return std::nullopt;
  return std::string(ops::selective_scan_variant_name(*args));
}

std::optional<int> scan_pieces(const KernelCase& c, const KernelShape& s, const std::string& impl,
                               const json& environment) {
  const auto args = scan_variant_args(c);
  if (impl != "cuda" || !args || args->cuda_split == 0) return std::nullopt;
  const int sms = environment.contains("device") ? environment.at("device").value("multiprocessors", 0) : 0;
  return ops::selective_scan_cuda_pieces(*args, s.batch, mamba(s).d_inner, s.length, sms);
}

std::vector<KernelCase> make_kernel_cases() {
  std::vector<KernelCase> cases;

  // ---- Mamba-1 (--mamba1) ----
  cases.push_back(causal_conv1d_case("causal_conv1d", false));
  cases.push_back(causal_conv1d_case("causal_conv1d_vec", true));
  cases.push_back(KernelCase{
      "causal_conv1d_update", KernelModel::Mamba1, ops::OpFamily::CausalConv1d, false,
      "read x [B,D], conv state [B,D,W], weight [D,W], bias [D]; write out [B,D], conv state [B,D,W]; all in the "
      "dtype",
      [](const KernelShape& s) {
        const auto& m = mamba(s);
        return json{{"x", {s.batch, m.d_inner}}, {"conv_state", {s.batch, m.d_inner, m.d_conv}}};
      },
      [](const KernelShape& s) {
        const auto& m = mamba(s);
        const uint64_t e = esize(s.dtype);
        const uint64_t state = elems({s.batch, m.d_inner, m.d_conv});
        return KernelBytes{e * (elems({s.batch, m.d_inner}) + state + elems({m.d_inner, m.d_conv}) + elems({m.d_inner})),
                           e * (elems({s.batch, m.d_inner}) + state)};
      },
      [](const KernelShape& s, const at::TensorOptions& o, ops::Backend backend) -> std::function<void()> {
        const auto& m = mamba(s);
        at::Tensor x = at::randn({s.batch, m.d_inner}, o);
        at::Tensor w = at::randn({m.d_inner, m.d_conv}, o), b = at::randn({m.d_inner}, o);
        auto state = std::make_shared<at::Tensor>(at::randn({s.batch, m.d_inner, m.d_conv}, o));
        return [x, w, b, state, backend] { (void)ops::causal_conv1d_update(x, *state, w, b, true, backend); };
      }});
  // The prefill kernel's variants side by side (a warp per channel with 16 steps per lane; 4-step
  // warp segments over 32 channels, two blocks per SM; 8-step, one block per SM; 4-step with the
  // sequence split into pieces as the launcher chooses: kernels/selective_scan/
  // selective_scan_kernels.cuh); the model runs the first.
  for (const auto& [op, variant] : kSelectiveScanVariants) {
  cases.push_back(KernelCase{
      op, KernelModel::Mamba1, ops::OpFamily::SelectiveScan, true,
      "read u, delta, z [B,D,L] and B, C [B,N,L] in the dtype, A [D,N], D and delta bias [D] in fp32; write y "
      "[B,D,L] in the dtype and the final state [B,D,N] fp32",
      [](const KernelShape& s) {
        const auto& m = mamba(s);
        return json{{"u", {s.batch, m.d_inner, s.length}}, {"B", {s.batch, m.d_state, s.length}},
                    {"A", {m.d_inner, m.d_state}}, {"state", {s.batch, m.d_inner, m.d_state}}};
      },
      [](const KernelShape& s) {
        const auto& m = mamba(s);
        const uint64_t e = esize(s.dtype);
        const uint64_t bdl = elems({s.batch, m.d_inner, s.length}), bnl = elems({s.batch, m.d_state, s.length});
        return KernelBytes{e * (3 * bdl + 2 * bnl) + kF32 * (elems({m.d_inner, m.d_state}) + 2 * elems({m.d_inner})),
                           e * bdl + kF32 * elems({s.batch, m.d_inner, m.d_state})};
      },
      [variant = variant](const KernelShape& s, const at::TensorOptions& o,
                          ops::Backend backend) -> std::function<void()> {
        const auto& m = mamba(s);
        at::Tensor u = channel_last(s.batch, m.d_inner, s.length, o);
        at::Tensor delta = channel_last(s.batch, m.d_inner, s.length, o);
        at::Tensor z = channel_last(s.batch, m.d_inner, s.length, o);
        at::Tensor bm = channel_last(s.batch, m.d_state, s.length, o);
        at::Tensor cm = channel_last(s.batch, m.d_state, s.length, o);
        ops::SelectiveScanArgs args = scan_args(m.d_inner, m.d_state, o);
        variant.apply(args);
        auto state = std::make_shared<at::Tensor>(at::zeros({s.batch, m.d_inner, m.d_state}, o.dtype(at::kFloat)));
        return [=] { (void)ops::selective_scan(u, delta, bm, cm, z, args, *state, false, backend); };
      }});
  }
  cases.push_back(KernelCase{
      "selective_state_update", KernelModel::Mamba1, ops::OpFamily::SelectiveStateUpdate, false,
      "read u, delta, z [B,D] and B, C [B,N] in the dtype, A [D,N], D and delta bias [D] in fp32, the state "
      "[B,D,N] fp32; write y [B,D] in the dtype and the state [B,D,N] fp32",
      [](const KernelShape& s) {
        const auto& m = mamba(s);
        return json{{"u", {s.batch, m.d_inner}}, {"B", {s.batch, m.d_state}}, {"state", {s.batch, m.d_inner, m.d_state}}};
      },
      update_bytes,
      [](const KernelShape& s, const at::TensorOptions& o, ops::Backend backend) -> std::function<void()> {
        const UpdateOperands a = update_operands(s, o);
        const at::Tensor delta = at::randn({s.batch, mamba(s).d_inner}, o);
        return [=] { (void)ops::selective_state_update(a.u, delta, a.bm, a.cm, a.z, a.args, *a.state, backend); };
      }});
  // The decode step as the Mamba-1 mixer runs it: dt_proj inside the update on CUDA
  // (ops::selective_state_update_dt_proj); its reference row is the projection then the update.
  cases.push_back(KernelCase{
      "selective_state_update_dt_proj", KernelModel::Mamba1, ops::OpFamily::SelectiveStateUpdate, false,
      "read u, z [B,D], dt_low [B,R], dt_proj [D,R] and B, C [B,N] in the dtype, A [D,N], D and delta bias [D] "
      "in fp32, the state [B,D,N] fp32; write y [B,D] in the dtype and the state [B,D,N] fp32",
      [](const KernelShape& s) {
        const auto& m = mamba(s);
        return json{{"u", {s.batch, m.d_inner}}, {"dt_proj", {m.d_inner, m.dt_rank}}, {"B", {s.batch, m.d_state}},
                    {"state", {s.batch, m.d_inner, m.d_state}}};
      },
      [](const KernelShape& s) {
        // The update's bytes, with dt_low and dt_proj read where delta was.
        const auto& m = mamba(s);
        KernelBytes b = update_bytes(s);
        b.read += esize(s.dtype) * (elems({s.batch, m.dt_rank}) + elems({m.d_inner, m.dt_rank})) -
                  esize(s.dtype) * elems({s.batch, m.d_inner});
        return b;
      },
      [](const KernelShape& s, const at::TensorOptions& o, ops::Backend backend) -> std::function<void()> {
        const auto& m = mamba(s);
        const UpdateOperands a = update_operands(s, o);
        const at::Tensor dt_low = at::randn({s.batch, m.dt_rank}, o);
        const ops::Linear dt_proj(
            (at::randn({m.d_inner, m.dt_rank}, o.dtype(at::kFloat)) / std::sqrt(static_cast<double>(m.dt_rank)))
                .to(o.dtype()));
        return [=] {
          (void)ops::selective_state_update_dt_proj(a.u, dt_low, dt_proj, a.bm, a.cm, a.z, a.args, *a.state, backend);
        };
      }});

  // ---- Mamba-2 (--mamba2) ----
  for (const auto& [op, products] : kSsdScanProducts) {
    cases.push_back(KernelCase{
        op, KernelModel::Mamba2, ops::OpFamily::SsdScan, true,
        "read x [B,L,H,P], dt [B,L,H], B, C [B,L,G,N] in the dtype, A [H] fp32, D and dt bias [H] in the dtype; "
        "write y [B,L,H,P] fp32 and the final state [B,H,P,N] fp32",
        [](const KernelShape& s) {
          const auto& m = mamba(s);
          return json{{"x", {s.batch, s.length, m.num_heads, m.head_dim}},
                      {"B", {s.batch, s.length, m.n_groups, m.d_state}},
                      {"state", {s.batch, m.num_heads, m.head_dim, m.d_state}},
                      {"chunk_size", m.chunk_size}};
        },
        [](const KernelShape& s) {
          const auto& m = mamba(s);
          const uint64_t e = esize(s.dtype);
          const uint64_t x = elems({s.batch, s.length, m.num_heads, m.head_dim});
          return KernelBytes{e * (x + elems({s.batch, s.length, m.num_heads}) +
                                  2 * elems({s.batch, s.length, m.n_groups, m.d_state}) + 2 * elems({m.num_heads})) +
                                 kF32 * elems({m.num_heads}),
                             kF32 * (x + elems({s.batch, m.num_heads, m.head_dim, m.d_state}))};
        },
        [products = products](const KernelShape& s, const at::TensorOptions& o,
                              ops::Backend backend) -> std::function<void()> {
          const auto& m = mamba(s);
          at::Tensor x = at::randn({s.batch, s.length, m.num_heads, m.head_dim}, o);
          at::Tensor dt = at::randn({s.batch, s.length, m.num_heads}, o);
          at::Tensor bm = at::randn({s.batch, s.length, m.n_groups, m.d_state}, o);
          at::Tensor cm = at::randn({s.batch, s.length, m.n_groups, m.d_state}, o);
          ops::SsdArgs args = ssd_args(m, o);
          args.products = products;
          auto state = std::make_shared<at::Tensor>(
              at::zeros({s.batch, m.num_heads, m.head_dim, m.d_state}, o.dtype(at::kFloat)));
          return [=] { (void)ops::ssd_chunk_scan(x, dt, bm, cm, args, *state, false, backend); };
        },
        ssd_flops});
  }
  cases.push_back(KernelCase{
      "ssd_state_update", KernelModel::Mamba2, ops::OpFamily::SsdStateUpdate, false,
      "read x [B,H,P], dt [B,H], B, C [B,G,N] in the dtype, A [H] fp32, D and dt bias [H] in the dtype, the state "
      "[B,H,P,N] fp32; write y [B,H,P] fp32 and the state fp32",
      [](const KernelShape& s) {
        const auto& m = mamba(s);
        return json{{"x", {s.batch, m.num_heads, m.head_dim}}, {"B", {s.batch, m.n_groups, m.d_state}},
                    {"state", {s.batch, m.num_heads, m.head_dim, m.d_state}}};
      },
      [](const KernelShape& s) {
        const auto& m = mamba(s);
        const uint64_t e = esize(s.dtype);
        const uint64_t x = elems({s.batch, m.num_heads, m.head_dim});
        const uint64_t state = kF32 * elems({s.batch, m.num_heads, m.head_dim, m.d_state});
        return KernelBytes{e * (x + elems({s.batch, m.num_heads}) + 2 * elems({s.batch, m.n_groups, m.d_state}) +
                                2 * elems({m.num_heads})) +
                               kF32 * elems({m.num_heads}) + state,
                           kF32 * x + state};
      },
      [](const KernelShape& s, const at::TensorOptions& o, ops::Backend backend) -> std::function<void()> {
        const auto& m = mamba(s);
        at::Tensor x = at::randn({s.batch, m.num_heads, m.head_dim}, o);
        at::Tensor dt = at::randn({s.batch, m.num_heads}, o);
        at::Tensor bm = at::randn({s.batch, m.n_groups, m.d_state}, o);
        at::Tensor cm = at::randn({s.batch, m.n_groups, m.d_state}, o);
        const ops::SsdArgs args = ssd_args(m, o);
        auto state = std::make_shared<at::Tensor>(
            at::randn({s.batch, m.num_heads, m.head_dim, m.d_state}, o.dtype(at::kFloat)));
        return [=] { (void)ops::ssd_state_update(x, dt, bm, cm, args, *state, backend); };
      }});
  cases.push_back(KernelCase{
      "gated_rms_norm", KernelModel::Mamba2, ops::OpFamily::GatedRmsNorm, true,
      "read y [B,L,D] fp32 (the scan's output), z [B,L,D] and weight [D] in the dtype; write out [B,L,D] fp32",
      [](const KernelShape& s) {
        const auto& m = mamba(s);
        return json{{"y", {s.batch, s.length, m.d_inner}}, {"group_size", m.d_inner / m.n_groups}};
      },
      [](const KernelShape& s) {
        const auto& m = mamba(s);
        const uint64_t bld = elems({s.batch, s.length, m.d_inner});
        return KernelBytes{kF32 * bld + esize(s.dtype) * (bld + elems({m.d_inner})), kF32 * bld};
      },
      [](const KernelShape& s, const at::TensorOptions& o, ops::Backend backend) -> std::function<void()> {
        const auto& m = mamba(s);
        at::Tensor y = at::randn({s.batch, s.length, m.d_inner}, o.dtype(at::kFloat));
        at::Tensor z = at::randn({s.batch, s.length, m.d_inner}, o), w = at::randn({m.d_inner}, o);
        const int64_t group = m.d_inner / m.n_groups;
        const double eps = m.gated_norm_eps;
        return [=] { (void)ops::gated_rms_norm(y, z, w, group, eps, backend); };
      }});

  // ---- attention (--transformer): what the scans replace ----
  cases.push_back(KernelCase{
      "attention", KernelModel::Transformer, std::nullopt, true,
      "causal prefill through SDPA: read q [B,Hq,L,Dh], k, v [B,Hkv,L,Dh]; write out [B,Hq,L,Dh]; all in the dtype",
      [](const KernelShape& s) {
        const auto& a = attn(s);
        return json{{"q", {s.batch, a.num_heads, s.length, a.head_dim}},
                    {"kv", {s.batch, a.num_kv_heads, s.length, a.head_dim}}};
      },
      [](const KernelShape& s) {
        const auto& a = attn(s);
        const uint64_t e = esize(s.dtype);
        const uint64_t q = elems({s.batch, a.num_heads, s.length, a.head_dim});
        return KernelBytes{e * (q + 2 * elems({s.batch, a.num_kv_heads, s.length, a.head_dim})), e * q};
      },
      [](const KernelShape& s, const at::TensorOptions& o, ops::Backend) -> std::function<void()> {
        const auto& a = attn(s);
        at::Tensor q = at::randn({s.batch, a.num_heads, s.length, a.head_dim}, o);
        at::Tensor k = at::randn({s.batch, a.num_kv_heads, s.length, a.head_dim}, o);
        at::Tensor v = at::randn({s.batch, a.num_kv_heads, s.length, a.head_dim}, o);
        const double scale = 1.0 / std::sqrt(static_cast<double>(a.head_dim));
        return [=] { (void)ops::causal_attention(q, k, v, 0, scale, ops::AttentionImpl::Sdpa); };
      },
      attention_flops});
  cases.push_back(KernelCase{
      "attention_decode", KernelModel::Transformer, std::nullopt, true,
      "one query per sequence over a cache of L tokens through SDPA: read q [B,Hq,1,Dh], k, v [B,Hkv,L,Dh]; write "
      "out [B,Hq,1,Dh]; all in the dtype",
      one_query_shapes, one_query_bytes,
      [](const KernelShape& s, const at::TensorOptions& o, ops::Backend) -> std::function<void()> {
        const auto& a = attn(s);
        at::Tensor q = at::randn({s.batch, a.num_heads, 1, a.head_dim}, o);
        at::Tensor k = at::randn({s.batch, a.num_kv_heads, s.length, a.head_dim}, o);
        at::Tensor v = at::randn({s.batch, a.num_kv_heads, s.length, a.head_dim}, o);
        const double scale = 1.0 / std::sqrt(static_cast<double>(a.head_dim));
        const int64_t start = s.length - 1;
        return [=] { (void)ops::causal_attention(q, k, v, start, scale, ops::AttentionImpl::Sdpa); };
      }});
  cases.push_back(decode_attention_case("decode_attention", 0));
  cases.push_back(decode_attention_case("decode_attention_b4", 4));
  cases.push_back(decode_attention_case("decode_attention_b6", 6));

  // ---- the decode step's fused small ops (--transformer; one token per sequence) ----
  cases.push_back(add_norm_case("add_norm", 0));
  cases.push_back(add_norm_case("add_norm_element", 0, ops::AddNormShape::Element));
  cases.push_back(add_norm_case("add_norm_t32", 32, ops::AddNormShape::Element));
  cases.push_back(add_norm_case("add_norm_t128", 128, ops::AddNormShape::Element));
  cases.push_back(add_norm_case("add_norm_vec", 0, ops::AddNormShape::Vector));
  cases.push_back(KernelCase{
      "activation", KernelModel::Transformer, ops::OpFamily::Activation, false,
      "gated MLP: read gate_up [B,2I], write [B,I]; otherwise read [B,I], write [B,I]; all in the dtype",
      [](const KernelShape& s) {
        const model::MlpConfig& m = dense_mlp(s);
        return json{{"in", {s.batch, m.gated ? 2 * m.intermediate : m.intermediate}}, {"gated", m.gated}};
      },
      [](const KernelShape& s) {
        const model::MlpConfig& m = dense_mlp(s);
        const uint64_t e = esize(s.dtype), bi = elems({s.batch, m.intermediate});
        return KernelBytes{e * (m.gated ? 2 : 1) * bi, e * bi};
      },
      [](const KernelShape& s, const at::TensorOptions& o, ops::Backend backend) -> std::function<void()> {
        const model::MlpConfig& m = dense_mlp(s);
        if (!ops::has_activation_kernel(m.activation) && backend != ops::Backend::Reference) {
          throw UsageError("activation: the --transformer model's activation has no kernel (only silu and gelu_new)");
        }
        at::Tensor in = at::randn({s.batch, 1, m.gated ? 2 * m.intermediate : m.intermediate}, o);
        const ops::Activation act = m.activation;
        if (m.gated) return [=] { (void)ops::gated_activation(act, in, backend); };
        return [=] { (void)ops::activate(act, in, backend); };
      }});
  // ---- the decode step's dense projections (one token per sequence, batch = rows): the GEMV ----
  push_dense_gemv_variants(cases, "dense_gemv_in_proj", KernelModel::Mamba1, "Mamba in_proj: O = 2 Di, K = H",
                                  [](const KernelShape& s) {
                                    return std::make_pair(2 * mamba(s).d_inner, s.config->hidden_size);
                                  });
  cases.push_back(add_norm_gemv_case("add_norm_gemv_in_proj", KernelModel::Mamba1, "Mamba in_proj: O = 2 Di, K = H",
                                     [](const KernelShape& s) {
                                       return std::make_pair(2 * mamba(s).d_inner, s.config->hidden_size);
                                     }));
  // in_proj with the conv update in its epilogue, as a Mamba-1 decode step runs it
  // (ops::linear_conv_update); the reference row is at::linear then the conv's reference.
  cases.push_back(KernelCase{
      "dense_gemv_in_proj_conv", KernelModel::Mamba1, ops::OpFamily::DenseGemv, false,
      "read W [2Di,H], x [B,H], conv state [B,Di,W], conv weight [Di,W], bias [Di]; write y [B,2Di], conv out "
      "[B,Di], conv state [B,Di,W]; all in the dtype",
      [](const KernelShape& s) {
        const auto& m = mamba(s);
        return json{{"w", {2 * m.d_inner, s.config->hidden_size}}, {"x", {s.batch, s.config->hidden_size}},
                    {"conv_state", {s.batch, m.d_inner, m.d_conv}}};
      },
      [](const KernelShape& s) {
        const auto& m = mamba(s);
        const uint64_t e = esize(s.dtype), h = static_cast<uint64_t>(s.config->hidden_size);
        const uint64_t state = elems({s.batch, m.d_inner, m.d_conv});
        return KernelBytes{e * (elems({2 * m.d_inner, s.config->hidden_size}) + s.batch * h + state +
                                elems({m.d_inner, m.d_conv}) + elems({m.d_inner})),
                           e * (elems({s.batch, 2 * m.d_inner}) + elems({s.batch, m.d_inner}) + state)};
      },
      [](const KernelShape& s, const at::TensorOptions& o, ops::Backend backend) -> std::function<void()> {
        const auto& m = mamba(s);
        const ops::Linear layer(at::randn({2 * m.d_inner, s.config->hidden_size}, o) * 0.02);
        const at::Tensor x = at::randn({s.batch, s.config->hidden_size}, o);
        const at::Tensor w = at::randn({m.d_inner, m.d_conv}, o), b = at::randn({m.d_inner}, o);
        auto state = std::make_shared<at::Tensor>(at::randn({s.batch, m.d_inner, m.d_conv}, o));
        const int64_t di = m.d_inner;
        if (backend == ops::Backend::Reference) {
          return [=] {
            const at::Tensor y = at::linear(x, layer.weight);
            (void)ops::causal_conv1d_update(y.narrow(1, 0, di), *state, w, b, true, backend);
          };
        }
        // Asked for by name, as the GEMV rows are (under auto, more than two rows go to cuBLAS).
        return [=] { (void)ops::linear_conv_update(x, layer, 0, *state, w, b, true, ops::Backend::Cuda); };
      }});
  cases.push_back(dense_gemv_case("dense_gemv_x_proj", KernelModel::Mamba1, "Mamba x_proj: O = R + 2N, K = Di",
                                  [](const KernelShape& s) {
                                    const auto& m = mamba(s);
                                    return std::make_pair(m.dt_rank + 2 * m.d_state, m.d_inner);
                                  }));
  cases.push_back(dense_gemv_case("dense_gemv_lm_head", KernelModel::Mamba1, "the LM head: O = vocab, K = H",
                                  [](const KernelShape& s) {
                                    return std::make_pair(s.config->vocab_size, s.config->hidden_size);
                                  }));
  push_dense_gemv_variants(cases, "dense_gemv_out_proj", KernelModel::Mamba1, "Mamba out_proj: O = H, K = Di",
                                  [](const KernelShape& s) {
                                    return std::make_pair(s.config->hidden_size, mamba(s).d_inner);
                                  });
  push_dense_gemv_variants(cases, "dense_gemv_mlp_down", KernelModel::Transformer,
                                  "the MLP's down / fc2: O = H, K = I", [](const KernelShape& s) {
                                    return std::make_pair(s.config->hidden_size, dense_mlp(s).intermediate);
                                  });
  push_dense_gemv_variants(cases, "dense_gemv_mlp_up", KernelModel::Transformer,
                                  "the MLP's gate and up / fc1: O = 2 I (gated) or I, K = H", [](const KernelShape& s) {
                                    const auto& m = dense_mlp(s);
                                    return std::make_pair((m.gated ? 2 : 1) * m.intermediate, s.config->hidden_size);
                                  });
  // The MLP's first projection with its activation in the GEMV's epilogue, as a decode step runs
  // it: gate/up and act(gate) * up (ops::linear_gated_activation), or fc1 and its activation
  // (ops::linear_activation); the reference row is at::linear then the activation's reference.
  cases.push_back(KernelCase{
      "dense_gemv_mlp_up_act", KernelModel::Transformer, ops::OpFamily::DenseGemv, false,
      "read W [O,H] (O = 2I gated, else I), x [B,H] (and the bias [O] where the MLP has one); write [B,I]; all in the "
      "dtype",
      [](const KernelShape& s) {
        const auto& m = dense_mlp(s);
        return json{{"w", {(m.gated ? 2 : 1) * m.intermediate, s.config->hidden_size}},
                    {"x", {s.batch, s.config->hidden_size}}, {"gated", m.gated}, {"bias", m.bias}};
      },
      [](const KernelShape& s) {
        const auto& m = dense_mlp(s);
        const uint64_t e = esize(s.dtype), o = static_cast<uint64_t>((m.gated ? 2 : 1) * m.intermediate);
        return KernelBytes{e * (o * static_cast<uint64_t>(s.config->hidden_size) + elems({s.batch, s.config->hidden_size}) +
                                (m.bias ? o : 0)),
                           e * elems({s.batch, m.intermediate})};
      },
      [](const KernelShape& s, const at::TensorOptions& o, ops::Backend backend) -> std::function<void()> {
        const auto& m = dense_mlp(s);
        if (!ops::has_activation_kernel(m.activation) && backend != ops::Backend::Reference) {
          throw UsageError(
              "dense_gemv_mlp_up_act: the --transformer model's activation has no kernel (only silu and gelu_new)");
        }
        if (m.gated && s.batch > ops::detail::kCudaGatedGemvMaxRows && backend != ops::Backend::Reference) {
          throw UsageError(fmt::format("dense_gemv_mlp_up_act: the gated GEMV takes at most {} rows (batch {}); more "
                                       "run the GEMV then the activation, which dense_gemv_mlp_up and activation time",
                                       ops::detail::kCudaGatedGemvMaxRows, s.batch));
        }
        const int64_t out = (m.gated ? 2 : 1) * m.intermediate, h = s.config->hidden_size;
        const ops::Linear layer = m.bias ? ops::Linear(at::randn({out, h}, o) * 0.02, at::randn({out}, o))
                                         : ops::Linear(at::randn({out, h}, o) * 0.02);
        const at::Tensor x = at::randn({s.batch, 1, h}, o);
        const ops::Activation act = m.activation;
        const bool gated = m.gated;
        if (backend == ops::Backend::Reference) {
          return [=] {
            const at::Tensor y = at::linear(x, layer.weight, layer.bias);
            (void)(gated ? ops::gated_activation(act, y, backend) : ops::activate(act, y, backend));
          };
        }
        // Asked for by name, as the GEMV rows are (under auto, more than two rows go to cuBLAS).
        if (gated) return [=] { (void)ops::linear_gated_activation(x, layer, act, ops::Backend::Cuda); };
        return [=] { (void)ops::linear_activation(x, layer, act, ops::Backend::Cuda); };
      }});
  push_dense_gemv_variants(cases, "dense_gemv_qkv", KernelModel::Transformer,
                                  "attention's fused q, k, v: O = (heads + 2 kv heads) head_dim, K = H",
                                  [](const KernelShape& s) {
                                    const auto& a = attn(s);
                                    return std::make_pair((a.num_heads + 2 * a.num_kv_heads) * a.head_dim,
                                                          s.config->hidden_size);
                                  });
  cases.push_back(add_norm_gemv_case("add_norm_gemv_qkv", KernelModel::Transformer,
                                     "attention's fused q, k, v: O = (heads + 2 kv heads) head_dim, K = H",
                                     [](const KernelShape& s) {
                                       const auto& a = attn(s);
                                       return std::make_pair((a.num_heads + 2 * a.num_kv_heads) * a.head_dim,
                                                             s.config->hidden_size);
                                     }));
  // A parallel block's two products a step (Phi: ParallelProducts, docs/engine.md "The parallel
  // block's two products"), plain: the model's first one also activates fc1's rows as it stores them.
  cases.push_back(dense_gemv_case("dense_gemv_parallel_in", KernelModel::Transformer,
                                  "a parallel block's q, k, v and fc1 rows: O = (heads + 2 kv heads) head_dim + I, K = H",
                                  [](const KernelShape& s) {
                                    const auto& a = attn(s);
                                    return std::make_pair((a.num_heads + 2 * a.num_kv_heads) * a.head_dim +
                                                              dense_mlp(s).intermediate,
                                                          s.config->hidden_size);
                                  }));
  cases.push_back(dense_gemv_case("dense_gemv_parallel_out", KernelModel::Transformer,
                                  "a parallel block's fc2 and o columns side by side: O = H, K = I + heads head_dim",
                                  [](const KernelShape& s) {
                                    const auto& a = attn(s);
                                    return std::make_pair(s.config->hidden_size,
                                                          dense_mlp(s).intermediate + a.num_heads * a.head_dim);
                                  }));
  // Mamba-2's two projections (Codestral: 18560 x 4096 and 4096 x 8192).
  cases.push_back(dense_gemv_case("dense_gemv_mamba2_in_proj", KernelModel::Mamba2,
                                  "Mamba-2 in_proj: O = 2 Di + 2 G N + heads, K = H", [](const KernelShape& s) {
                                    const auto& m = mamba(s);
                                    return std::make_pair(2 * m.d_inner + 2 * m.n_groups * m.d_state + m.num_heads,
                                                          s.config->hidden_size);
                                  }));
  push_dense_gemv_variants(cases, "dense_gemv_mamba2_out_proj", KernelModel::Mamba2, "Mamba-2 out_proj: O = H, K = Di",
                                  [](const KernelShape& s) {
                                    return std::make_pair(s.config->hidden_size, mamba(s).d_inner);
                                  });
  // ---- MoE decode (--moe): one step's layer through the chosen experts only ----
  cases.push_back(moe_decode_case("moe_decode", {}));
  cases.push_back(moe_decode_case("moe_decode_staged", {false, 0, true}));
  cases.push_back(moe_decode_case("moe_decode_r1", {true, 0, false}));
  cases.push_back(moe_decode_case("moe_decode_r1l8", {true, 8, false}));
  // ---- MoE prefill (--moe): the routed experts against a dense GEMM of their FLOPs ----
  const char* moe_formula =
      "route and dispatch N = B L tokens: read x [N,H], router [E,H], every expert's gate, up [I,H] and down [H,I]; "
      "write out [N,H]; all in the dtype";
  cases.push_back(KernelCase{
      "moe_prefill", KernelModel::Moe, ops::OpFamily::MoeDispatch, true, moe_formula, moe_shapes, moe_bytes,
      [](const KernelShape& s, const at::TensorOptions& o, ops::Backend backend) {
        return moe_prefill_call(s, o, backend, true);
      },
      moe_flops});
  cases.push_back(KernelCase{
      "moe_prefill_per_expert", KernelModel::Moe, ops::OpFamily::MoeDispatch, true, moe_formula, moe_shapes, moe_bytes,
      [](const KernelShape& s, const at::TensorOptions& o, ops::Backend backend) {
        return moe_prefill_call(s, o, backend, false);
      },
      moe_flops});
  cases.push_back(KernelCase{
      "moe_dense_gemm", KernelModel::Moe, std::nullopt, true,
      "one GEMM of the routed experts' FLOPs: read x [N,H], w [H,F] with F = k 3 I; write [N,F]; all in the dtype",
      [](const KernelShape& s) {
        const auto& m = moe(s);
        return json{{"x", {s.batch * s.length, s.config->hidden_size}},
                    {"w", {s.config->hidden_size, m.top_k * 3 * m.expert_intermediate}}};
      },
      [](const KernelShape& s) {
        const auto& m = moe(s);
        const uint64_t e = esize(s.dtype);
        const int64_t n = s.batch * s.length, h = s.config->hidden_size, f = m.top_k * 3 * m.expert_intermediate;
        return KernelBytes{e * (elems({n, h}) + elems({h, f})), e * elems({n, f})};
      },
      [](const KernelShape& s, const at::TensorOptions& o, ops::Backend) -> std::function<void()> {
        const auto& m = moe(s);
        const int64_t h = s.config->hidden_size;
        at::Tensor x = at::randn({s.batch * s.length, h}, o);
        at::Tensor w = at::randn({h, m.top_k * 3 * m.expert_intermediate}, o) * 0.02;
        return [x, w] { (void)at::mm(x, w); };
      },
      [](const KernelShape& s) {
        const auto& m = moe(s);
        return 2.0 * static_cast<double>(s.batch * s.length) * static_cast<double>(s.config->hidden_size) *
               static_cast<double>(m.top_k * 3 * m.expert_intermediate);
      },
      "aten"});
  return cases;
}

}  // namespace detail

}  // namespace effarch::bench
