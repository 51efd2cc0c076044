// The dense GEMV (kernels/gemv) and the fused add + norm (kernels/add_norm) run by the CPU
// executor through their launchers: the GEMV against an fp64 product, its measuring variant
// (eight loads in flight) against the default bit for bit, the add + norm kernel's shapes against
// an fp64 norm, and the norm prologue (a decode step's add + norm inside the next GEMV: gemv_norm.h,
// docs/engine.md "The norm in the GEMV's prologue") against the add_norm kernel then the GEMV, bit
// for bit, for the plain, tail-activated, gated and conv-updating products. Every launch runs
// under both schedules of the executor, which must give the same bytes.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "cuda_sim.h"
// the kernels' per-dtype translation units, host-compiled
#include "add_norm/add_norm_bf16.cu"
#include "add_norm/add_norm_fp16.cu"
#include "add_norm/add_norm_fp32.cu"
#include "gemv/gemv_bf16.cu"
#include "gemv/gemv_fp16.cu"
#include "gemv/gemv_fp32.cu"
#include "sim_test.h"

namespace effarch::sim {
namespace {

namespace k = ::effarch::kernels;

k::GemvParams gemv_params(const at::Tensor& x, const at::Tensor& w, const at::Tensor& y) {
  k::GemvParams p;
  p.rows = static_cast<int>(x.size(0));
  p.in = static_cast<int>(w.size(1));
  p.out = static_cast<int>(w.size(0));
  p.x_type = element_of(w.scalar_type());
  p.x = x.const_data_ptr();
  p.x_row_stride = x.stride(0);
  p.w = w.const_data_ptr();
  p.y = y.mutable_data_ptr();
  p.y_row_stride = y.stride(0);
  p.sm_count = 4;  // a small GPU: the split-K plan then splits these small matrices too
  return p;
}

at::Tensor run_gemv(const k::GemvParams& p, const at::Tensor& y_like) {
  at::Tensor y = at::zeros_like(y_like);
  k::GemvParams q = p;
  q.y = y.mutable_data_ptr();
  EXPECT_TRUE(k::gemv(q, nullptr).ok());
  return y;
}

TEST(GemvSim, MatchesTheReferenceAndTheWideVariantItsBits) {
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    for (const auto& [rows, out, in] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
             {1, 40, 512}, {2, 24, 1040}, {1, 9, 36}, {5, 16, 256}, {8, 3, 4096}}) {
      at::manual_seed(rows * 100 + out);
      const at::Tensor x = at::randn({rows, in}).to(dtype), w = (at::randn({out, in}) / 16).to(dtype);
      const at::Tensor y0 = at::zeros({rows, out}, dtype);
      const k::GemvParams p = gemv_params(x, w, y0);
      const at::Tensor y = run_both_orders([&] { return run_gemv(p, y0); }, same_bytes);
      const at::Tensor ref = at::mm(x.to(at::kDouble), w.to(at::kDouble).t());
      const double err = max_rel_error(y, ref);
      const std::string what = fmt::format("{} rows {} out {} in {}", name_of(dtype), rows, out, in);
      EXPECT_LE(err, dtype == at::kFloat ? 1e-5 : 1e-2) << what;
      k::GemvParams wide = p;
      wide.unroll = k::kGemvUnrollWide;
      EXPECT_TRUE(same_bytes(run_gemv(wide, y0), y)) << what << ": eight loads in flight";
    }
  }
}

// ---- the add + norm ----

struct NormCase {
  k::NormType norm;
  bool z;              // Phi's second addend
  bool residual_fp32;  // Mamba's residual_in_fp32
  int64_t dim;
};

struct NormInputs {
  at::Tensor x, y, z, weight, bias;
};

NormInputs norm_inputs(const NormCase& c, int64_t rows, at::ScalarType dtype) {
  NormInputs n;
  n.x = at::randn({rows, c.dim}).to(c.residual_fp32 ? at::kFloat : dtype);
  n.y = at::randn({rows, c.dim}).to(dtype);
  if (c.z) n.z = at::randn({rows, c.dim}).to(dtype);
  n.weight = (1 + at::randn({c.dim}) / 4).to(dtype);
  if (c.norm == k::NormType::kLayer) n.bias = (at::randn({c.dim}) / 4).to(dtype);
  return n;
}

k::AddNormParams norm_params(const NormCase& c, const NormInputs& n, at::ScalarType dtype) {
  k::AddNormParams a;
  a.rows = n.x.size(0);
  a.dim = static_cast<int>(c.dim);
  a.eps = 1e-5f;
  a.norm = c.norm;
  a.type = element_of(dtype);
  a.residual_type = c.residual_fp32 ? k::ElementType::kFloat32 : element_of(dtype);
  a.x = n.x.const_data_ptr();
  a.x_row_stride = c.dim;
  a.y = n.y.const_data_ptr();
  a.y_row_stride = c.dim;
  if (c.z) {
    a.z = n.z.const_data_ptr();
    a.z_row_stride = c.dim;
  }
  a.residual_out_row_stride = c.dim;
  a.normed_row_stride = c.dim;
  a.weight = n.weight.const_data_ptr();
  if (n.bias.defined()) a.bias = n.bias.const_data_ptr();
  return a;
}

struct Normed {
  at::Tensor residual, normed;
};

Normed run_add_norm(k::AddNormParams a, const NormInputs& n, at::ScalarType dtype) {
  Normed r{at::zeros_like(n.x), at::zeros({n.x.size(0), n.x.size(1)}, dtype)};
  a.residual_out = r.residual.mutable_data_ptr();
  a.normed = r.normed.mutable_data_ptr();
  EXPECT_TRUE(k::add_norm(a, nullptr).ok());
  return r;
}

// fp64 from the inputs: the residual, then the norm of it rounded to the model dtype.
at::Tensor reference_norm(const NormCase& c, const NormInputs& n, at::ScalarType dtype) {
  at::Tensor sum = n.y.to(at::kDouble);
  if (c.z) sum = sum + n.z.to(at::kDouble);
  const at::Tensor v = (sum + n.x.to(at::kDouble)).to(dtype).to(at::kDouble);
  if (c.norm == k::NormType::kRms) {
    return v * at::rsqrt(v.pow(2).mean(-1, true) + 1e-5) * n.weight.to(at::kDouble);
  }
  const at::Tensor centred = v - v.mean(-1, true);
  return centred * at::rsqrt(centred.pow(2).mean(-1, true) + 1e-5) * n.weight.to(at::kDouble) + n.bias.to(at::kDouble);
}

std::vector<NormCase> norm_cases() {
  return {{k::NormType::kRms, false, false, 256},  {k::NormType::kLayer, true, false, 320},
          {k::NormType::kRms, false, true, 1024},  {k::NormType::kLayer, false, false, 2560},
          {k::NormType::kRms, false, false, 4096}, {k::NormType::kRms, false, false, 200}};
}

TEST(AddNormSim, EveryShapeMatchesTheReference) {
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    for (const NormCase& c : norm_cases()) {
      for (const int64_t rows : {1, 3, 70}) {
        at::manual_seed(c.dim + rows);
        const NormInputs n = norm_inputs(c, rows, dtype);
        const at::Tensor ref = reference_norm(c, n, dtype);
        const std::string what = fmt::format("{} norm {} z {} fp32 residual {} dim {} rows {}", name_of(dtype),
                                             static_cast<int>(c.norm), c.z, c.residual_fp32, c.dim, rows);
        for (const auto& [shape, threads] :
             std::vector<std::pair<k::AddNormShape, int>>{{k::AddNormShape::kAuto, 0},
                                                          {k::AddNormShape::kElement, 0},
                                                          {k::AddNormShape::kElement, 32},
                                                          {k::AddNormShape::kElement, 128},
                                                          {k::AddNormShape::kVector, 0}}) {
          k::AddNormParams a = norm_params(c, n, dtype);
          a.shape = shape;
          a.threads = threads;
          const Normed r =
              run_both_orders([&] { return run_add_norm(a, n, dtype); },
                              [](const Normed& p, const Normed& q) {
                                return same_bytes(p.residual, q.residual) && same_bytes(p.normed, q.normed);
                              });
          const double err = max_rel_error(r.normed, ref);
          EXPECT_LE(err, dtype == at::kFloat ? 1e-5 : 1.6e-2)
              << what << " shape " << static_cast<int>(shape) << " threads " << threads;
        }
      }
    }
  }
}

// ---- the norm in the GEMV's prologue ----

enum class Product { Plain, TailActivated, Gated, Conv };
const char* product_name(Product p) {
  return p == Product::Plain           ? "plain"
         : p == Product::TailActivated ? "tail-activated"
         : p == Product::Gated         ? "gated"
                                       : "conv";
}

struct ProductRun {
  at::Tensor y, residual, conv_state, conv_out;
};

// The product `what` on x (the normed rows), or with `norm` set on its prologue (x unread).
ProductRun run_product(Product what, const at::Tensor& x, const at::Tensor& w, at::ScalarType dtype,
                       const k::AddNormParams* norm, const at::Tensor& residual_like, const at::Tensor& conv_w,
                       const at::Tensor& conv_state0) {
  const int64_t rows = x.size(0), out = w.size(0);
  ProductRun r{at::zeros({rows, what == Product::Gated ? out / 2 : out}, dtype), at::zeros_like(residual_like), {}, {}};
  k::GemvParams p = gemv_params(x, w, r.y);
  if (what == Product::TailActivated)
    p.activation = k::GemvActivation{true, k::ActKind::kGeluNew, false, static_cast<int>(out / 3)};
  if (what == Product::Gated) p.activation = k::GemvActivation{true, k::ActKind::kSilu, true, 0};
  if (what == Product::Conv) {  // rows 0 .. dim - 1 feed the conv (Mamba's in_proj: x then z)
    const int dim = static_cast<int>(conv_w.size(0)), width = static_cast<int>(conv_w.size(1));
    r.conv_state = conv_state0.clone();
    r.conv_out = at::zeros({rows, dim}, dtype);
    p.conv.begin = 0;
    p.conv.dim = dim;
    p.conv.width = width;
    p.conv.silu = true;
    p.conv.weight = conv_w.const_data_ptr();
    p.conv.weight_dim_stride = width;
    p.conv.weight_width_stride = 1;
    p.conv.state = r.conv_state.mutable_data_ptr();
    p.conv.state_row_stride = dim * width;
    p.conv.state_dim_stride = width;
    p.conv.state_width_stride = 1;
    p.conv.out = r.conv_out.mutable_data_ptr();
    p.conv.out_row_stride = dim;
    p.conv.out_dim_stride = 1;
  }
  if (norm != nullptr) {
    p.norm = *norm;
    p.norm.residual_out = r.residual.mutable_data_ptr();
  }
  EXPECT_TRUE(k::gemv(p, nullptr).ok()) << product_name(what);
  return r;
}

TEST(GemvNormSim, PrologueGivesTheAddNormKernelThenTheGemvBitForBit) {
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    for (const NormCase& c : norm_cases()) {
      if (c.dim % 8 != 0) continue;  // the prologue runs the 16-byte path only
      for (const int64_t rows : {1, 2}) {
        for (const Product what : {Product::Plain, Product::TailActivated, Product::Gated, Product::Conv}) {
          at::manual_seed(c.dim * 3 + rows);
          const NormInputs n = norm_inputs(c, rows, dtype);
          const int64_t out = what == Product::Gated ? 48 : 36;
          const at::Tensor w = (at::randn({out, c.dim}) / std::sqrt(static_cast<double>(c.dim))).to(dtype);
          const at::Tensor conv_w = (at::randn({12, 4}) / 2).to(dtype);
          const at::Tensor conv_state0 = at::randn({rows, 12, 4}).to(dtype);
          const std::string label =
              fmt::format("{} {} norm {} z {} fp32 residual {} dim {} rows {}", name_of(dtype), product_name(what),
                          static_cast<int>(c.norm), c.z, c.residual_fp32, c.dim, rows);
          // separate: the add_norm kernel, then the GEMV on its normed rows
          k::AddNormParams a = norm_params(c, n, dtype);
          const Normed normed = run_add_norm(a, n, dtype);
          const ProductRun separate =
              run_product(what, normed.normed, w, dtype, nullptr, normed.residual, conv_w, conv_state0);
          // fused: the GEMV with the norm in its prologue
          const at::Tensor unused_x = at::full({rows, c.dim}, NAN, dtype);
          const ProductRun fused = run_both_orders(
              [&] { return run_product(what, unused_x, w, dtype, &a, normed.residual, conv_w, conv_state0); },
              [](const ProductRun& p, const ProductRun& q) {
                return same_bytes(p.y, q.y) && same_bytes(p.residual, q.residual);
              });
          EXPECT_TRUE(same_bytes(fused.y, separate.y))
              << label << "\n"
              << (fused.y.to(at::kDouble) - separate.y.to(at::kDouble)).abs().max();
          EXPECT_TRUE(same_bytes(fused.residual, normed.residual)) << label << ": the residual";
          if (what == Product::Conv) {
            EXPECT_TRUE(same_bytes(fused.conv_out, separate.conv_out)) << label << ": the conv's output";
            EXPECT_TRUE(same_bytes(fused.conv_state, separate.conv_state)) << label << ": the conv's state";
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace effarch::sim
