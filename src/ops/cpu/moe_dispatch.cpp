// The MoE dispatch on the CPU (include/effarch/ops/moe.h has the contract; the reference in
// src/ops/moe.cpp is the oracle): the (token, slot) pairs are grouped by expert with a counting
// sort (no ATen sort or bincount), every row an expert runs is gathered once into one buffer,
// and the products run per expert on contiguous row ranges of that buffer:
// - a decode step (every expert with at most kGemvMaxRows rows): all chosen experts' gate/up
//   products in one parallel region, then all their down products in another (gemv_grouped),
//   so each thread streams an equal share of exactly the chosen experts' weights;
// - prefill: one GEMM per expert for gate and up together (the fused [2I, H] weight) and one for
//   down, straight into the buffers (at::mm_out), ATen's GEMM threading each.
// The weighted sum runs in one pass, in ascending expert id per token, rounding as the reference does.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <fmt/format.h>

#include <algorithm>
#include <vector>

#include "cpu_kernels.h"
#include "effarch/common/error.h"

namespace effarch::ops::cpu {
namespace {

// The flat (token, slot) positions p = token * k + slot grouped by expert: rows begin[e] ..
// begin[e + 1] of the grouped buffers belong to expert e, in ascending p (a stable sort).
struct Grouping {
  std::vector<int64_t> begin;  // [E + 1]
  std::vector<int64_t> pos;    // [N * k]
};

Grouping group_by_expert(const at::Tensor& expert_ids, int64_t num_experts) {
  const at::Tensor ids = expert_ids.contiguous();
  const int64_t* id = ids.data_ptr<int64_t>();
  const int64_t m = ids.numel();
  Grouping g{std::vector<int64_t>(static_cast<size_t>(num_experts) + 1, 0), std::vector<int64_t>(static_cast<size_t>(m))};
  for (int64_t p = 0; p < m; ++p) {
    if (id[p] < 0) throw OpError("moe_dispatch: expert_ids holds a negative expert id");
    if (id[p] >= num_experts) {
      throw OpError(fmt::format("moe_dispatch: an expert id is >= the {} experts given", num_experts));
    }
    ++g.begin[static_cast<size_t>(id[p]) + 1];
  }
  std::partial_sum(g.begin.begin(), g.begin.end(), g.begin.begin());
  std::vector<int64_t> next(g.begin.begin(), g.begin.end() - 1);
  for (int64_t p = 0; p < m; ++p) g.pos[static_cast<size_t>(next[static_cast<size_t>(id[p])]++)] = p;
  return g;
}

struct Active {
  int64_t expert, begin, rows;
};

// dst [rows, O] (a row range of a contiguous buffer) = x [rows, K] W^T (+ b), ATen's GEMM.
void product_into(at::Tensor dst, const at::Tensor& x, const Linear& layer) {
  if (layer.format != WeightFormat::Dense) {
    dst.copy_(linear(x, layer));  // the format's own product
  } else if (layer.bias) {
    at::addmm_out(dst, *layer.bias, x, layer.weight.t());
  } else {
    at::mm_out(dst, x, layer.weight.t());
  }
}

// The decode path's products, gathered for one gemv_grouped call: each adds a layer applied to
// an expert's rows of x (fp32, K apart) written into its rows of y (fp32, ldy apart).
struct GroupedProducts {
  std::vector<GemvJob> jobs;
  std::vector<at::Tensor> biases;  // fp32 copies the jobs point into

  void add(const Linear& layer, const float* x, int64_t rows, float* y, int64_t ldy) {
    const float* bias = nullptr;
    if (layer.bias) {
      biases.push_back(layer.bias->to(at::kFloat).contiguous());
      bias = biases.back().data_ptr<float>();
    }
    jobs.push_back(GemvJob{x, static_cast<int>(rows), &layer, bias, y, ldy});
  }
};

// out[token] += round(y[row] * weight) for the rows of the experts that ran here.
template <typename T>
void combine(const at::Tensor& y, const std::vector<Active>& active, const std::vector<int64_t>& pos, int64_t k,
             const float* weight, at::Tensor& out) {
  const int64_t hidden = y.size(1);
  int64_t rows = 0;
  for (const Active& a : active) rows += a.rows;
  const T* yp = y.data_ptr<T>();
  T* op = out.data_ptr<T>();
  // Columns split across threads; every thread walks the rows in expert order, so each token's
  // sum runs in ascending expert id whatever the thread count.
  const int64_t grain = std::max<int64_t>(16, (int64_t{1} << 14) / std::max<int64_t>(rows, 1));
  at::parallel_for(0, hidden, grain, [&](int64_t c0, int64_t c1) {
    for (const Active& a : active) {
      for (int64_t i = a.begin; i < a.begin + a.rows; ++i) {
        const int64_t p = pos[static_cast<size_t>(i)];
        const float w = weight[p];
        T* o = op + (p / k) * hidden;
        const T* yi = yp + i * hidden;
        for (int64_t c = c0; c < c1; ++c) {
          const T scaled = static_cast<T>(static_cast<float>(yi[c]) * w);  // y * weight, rounded to x's dtype
          o[c] = static_cast<T>(static_cast<float>(o[c]) + static_cast<float>(scaled));
        }
      }
    }
  });
}

}  // namespace

at::Tensor moe_dispatch(const at::Tensor& x, const at::Tensor& expert_ids, const at::Tensor& weights,
                        const std::vector<ExpertWeights>& experts, Activation activation,
                        const std::function<void(int64_t)>& check_expert) {
  const int64_t n = x.size(0), hidden = x.size(1), k = expert_ids.size(1);
  at::Tensor out = at::zeros_like(x, at::MemoryFormat::Contiguous);
  if (n == 0) return out;
  const Grouping g = group_by_expert(expert_ids, static_cast<int64_t>(experts.size()));
  const int64_t m = n * k;

  std::vector<Active> active;
  int64_t inter = -1, most_rows = 0;
  bool fused = true, gemv = true;
  for (int64_t e = 0; e < static_cast<int64_t>(experts.size()); ++e) {
    const int64_t rows = g.begin[static_cast<size_t>(e) + 1] - g.begin[static_cast<size_t>(e)];
    if (rows == 0) continue;
    const ExpertWeights& w = experts[static_cast<size_t>(e)];
    if (w.remote) continue;  // another rank runs it (expert parallelism): its rows stay out of the sum
    check_expert(e);
    if (inter >= 0 && w.inter() != inter) {
      throw OpError(fmt::format("moe_dispatch: experts[{}] has {} intermediate features, the others {}", e,
                                w.inter(), inter));
    }
    inter = w.inter();
    fused = fused && w.gate_up.defined();
    active.push_back({e, g.begin[static_cast<size_t>(e)], rows});
    most_rows = std::max(most_rows, rows);
  }

  // Row i of the grouped buffers is token pos[i] / k for expert active[...].expert.
  at::Tensor tokens = at::empty({m}, at::kLong);
  int64_t* tp = tokens.data_ptr<int64_t>();
  for (int64_t i = 0; i < m; ++i) tp[i] = g.pos[static_cast<size_t>(i)] / k;
  const at::Tensor xs = x.index_select(0, tokens);  // [M, H], contiguous
  if (active.empty()) return out;  // every chosen expert is another rank's

  // Decode-sized groups go through the grouped GEMV, where every weight format it takes applies.
  const at::Tensor one_row = xs.narrow(0, 0, 1);
  for (const Active& a : active) {
    const ExpertWeights& w = experts[static_cast<size_t>(a.expert)];
    for (const Linear* l : {fused ? &w.gate_up : &w.gate, fused ? &w.gate_up : &w.up, &w.down}) {
      gemv = gemv && gemv_applies(one_row, *l);
    }
  }
  gemv = gemv && most_rows <= kGemvMaxRows;

  at::Tensor y;  // [M, H] in x's dtype: every row's expert output
  if (gemv) {
    // A decode step: each of the two passes over the chosen experts' weights in one region.
    const at::Tensor xf = xs.to(at::kFloat).contiguous();
    at::Tensor hf = at::empty({m, 2 * inter}, xf.options());  // gate's outputs then up's
    GroupedProducts first;
    for (const Active& a : active) {
      const ExpertWeights& w = experts[static_cast<size_t>(a.expert)];
      const float* xa = xf.data_ptr<float>() + a.begin * hidden;
      float* ha = hf.data_ptr<float>() + a.begin * 2 * inter;
      if (fused) {
        first.add(w.gate_up, xa, a.rows, ha, 2 * inter);
      } else {
        first.add(w.gate, xa, a.rows, ha, 2 * inter);
        first.add(w.up, xa, a.rows, ha + inter, 2 * inter);
      }
    }
    gemv_grouped(first.jobs);
    const at::Tensor h = hf.to(x.scalar_type());  // each product rounded to x's dtype, as a layer's output is
    const at::Tensor af = (activate(activation, h.narrow(1, 0, inter)) * h.narrow(1, inter, inter)).to(at::kFloat);
    at::Tensor yf = at::empty({m, hidden}, af.options());
    GroupedProducts second;
    for (const Active& a : active) {
      second.add(experts[static_cast<size_t>(a.expert)].down, af.data_ptr<float>() + a.begin * inter, a.rows,
                 yf.data_ptr<float>() + a.begin * hidden, hidden);
    }
    gemv_grouped(second.jobs);
    y = yf.to(x.scalar_type());
  } else {
    // Prefill: GEMMs per expert on its rows, the [rows, 2I] intermediate one expert at a time
    // (peak memory as the reference's).
    y = at::empty({m, hidden}, x.options());
    at::Tensor buffer = at::empty({most_rows, 2 * inter}, x.options());
    for (const Active& a : active) {
      const ExpertWeights& w = experts[static_cast<size_t>(a.expert)];
      const at::Tensor xa = xs.narrow(0, a.begin, a.rows);
      at::Tensor h = buffer.narrow(0, 0, a.rows);
      if (fused) {
        product_into(h, xa, w.gate_up);
      } else {
        product_into(h.narrow(1, 0, inter), xa, w.gate);
        product_into(h.narrow(1, inter, inter), xa, w.up);
      }
      product_into(y.narrow(0, a.begin, a.rows), activate(activation, h.narrow(1, 0, inter)) * h.narrow(1, inter, inter),
                   w.down);
    }
  }

  const at::Tensor wf = weights.to(at::kFloat).contiguous();  // [N, k], indexed by position p
  switch (x.scalar_type()) {
    case at::kFloat: combine<float>(y, active, g.pos, k, wf.data_ptr<float>(), out); break;
    case at::kBFloat16: combine<c10::BFloat16>(y, active, g.pos, k, wf.data_ptr<float>(), out); break;
    case at::kHalf: combine<c10::Half>(y, active, g.pos, k, wf.data_ptr<float>(), out); break;
    default: throw OpError(fmt::format("moe_dispatch: x has dtype {}", c10::toString(x.scalar_type())));
  }
  return out;
}

}  // namespace effarch::ops::cpu
