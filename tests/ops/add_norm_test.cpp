// add_norm: the fused residual add + norm kernel's math (kernels/add_norm/add_norm_math.h) run on
// the CPU over every block and thread in the kernel's phase order, on the launch the binding
// would make (src/ops/add_norm_launch.cpp), against the reference (the unfused add and norm):
// Phi-2 (2560) and Llama (4096) rows and awkward ones (1, 17, 1000), batch > 1, every dtype,
// RMSNorm and LayerNorm, the Phi three-way sum and the fp32 residual of Mamba blocks. The
// residual must be bitwise the reference's; the normed row within one ulp of the dtype (the row
// sums are added in another order). With a GPU: the CUDA kernel against the reference.

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstring>
#include <vector>

#include "../test_util.h"
#include "add_norm_emulation.h"
#include "tolerance.h"
#include "add_norm/add_norm_math.h"
#include "common/warp_sum.h"
#include "add_norm_launch.h"
#include "effarch/common/error.h"
#include "effarch/ops/add_norm.h"
#include "effarch/ops/norm.h"

namespace effarch::ops {
namespace {

using test::scaled_error;
using test::ulp_distance;

namespace an = kernels::addnorm;
using kernels::ElementType;
using addnorm_emulation::HostIo;
using addnorm_emulation::block_sum;
using addnorm_emulation::emulate;

struct Case {
  int64_t rows, dim;
};
const Case kCases[] = {{1, 1}, {3, 17}, {2, 1000}, {1, 2560}, {2, 2560}, {1, 4096}, {3, 4096}, {130, 264}};  // 130 rows: a prefill, where auto runs the vector shape

// A launch shape of the CUDA kernel: the launcher's, the element shape with `threads` a row (0:
// the launcher's count), or the vector shape (the element shape where the row does not allow it).
struct Shape {
  int threads = 0;
  AddNormShape shape = AddNormShape::Auto;
};
std::string name(const Shape& s) {
  const char* shape = s.shape == AddNormShape::Auto ? "auto" : s.shape == AddNormShape::Element ? "element" : "vector";
  return fmt::format("{} shape, threads {}", shape, s.threads);
}

enum class Variant { Plain, ThreeWay, Fp32Residual };
const char* name(Variant v) {
  switch (v) {
    case Variant::Plain: return "x + y";
    case Variant::ThreeWay: return "(y + z) + x";
    case Variant::Fp32Residual: return "fp32 residual";
  }
  return "?";
}

struct Inputs {
  at::Tensor x, y, z;
  NormParams norm;
};

// A residual stream larger than the sublayer outputs (as in a model), weights around 1. The norm's
// eps is a model's (1e-6, 1e-5) for an even number of rows; for an odd number 1.0, about 6% of
// the rows' mean square (~17), so that a kernel dropping eps or reading another is off by many
// ulps (with 1e-6 it moved the fp32 output by 3e-8 of its scale, inside every bound here).
Inputs make_inputs(const Case& c, at::ScalarType dtype, bool layer_norm, Variant v, at::Device device, int seed) {
  at::manual_seed(seed);
  const auto opts = at::TensorOptions().dtype(dtype).device(device);
  Inputs in;
  const at::Tensor x = at::randn({c.rows, 1, c.dim}) * 4.0 + 0.5;
  in.x = (v == Variant::Fp32Residual ? x : x.to(dtype)).to(device);
  in.y = at::randn({c.rows, 1, c.dim}).to(opts);
  if (v == Variant::ThreeWay) in.z = at::randn({c.rows, 1, c.dim}).to(opts);
  in.norm.weight = (1.0 + 0.2 * at::randn({c.dim})).to(opts);
  if (layer_norm) in.norm.bias = (0.1 * at::randn({c.dim})).to(opts);
  in.norm.eps = c.rows % 2 == 1 ? 1.0 : layer_norm ? 1e-5 : 1e-6;
  in.norm.layer_norm = layer_norm;
  return in;
}

TEST(AddNorm, ReferenceIsTheUnfusedBlockOps) {
  // What a block computed before the fusion, op for op.
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    for (Variant v : {Variant::Plain, Variant::ThreeWay, Variant::Fp32Residual}) {
      for (bool ln : {false, true}) {
        const Inputs in = make_inputs({2, 33}, dtype, ln, v, at::kCPU, 1);
        const at::Tensor* z = v == Variant::ThreeWay ? &in.z : nullptr;
        const AddNormResult r = add_norm(in.x, in.y, z, in.norm, Backend::Reference);
        const at::Tensor h = z != nullptr ? in.y + in.z + in.x : in.x + in.y;
        const at::Tensor hn = h.to(dtype);
        const at::Tensor expected =
            ln ? at::layer_norm(hn, {33}, in.norm.weight, in.norm.bias, in.norm.eps) : rms_norm(hn, in.norm.weight, in.norm.eps);
        EXPECT_EQ(r.residual.scalar_type(), v == Variant::Fp32Residual ? at::kFloat : dtype);
        EXPECT_TRUE(at::equal(r.residual, h)) << name(v);
        EXPECT_TRUE(at::equal(r.normed, expected)) << name(v);
      }
    }
  }
}

// Every case (dtype, variant, norm, shape, threads a row) of `run` against the reference: the
// residual bitwise, the normed output within an ulp on at most 1% of the elements in half
// precision and within `fp32_bound` on the values' scale in fp32; the worst figures printed.
template <class Run>
void expect_every_case_near_the_reference(const char* label, at::Device device, std::initializer_list<Shape> shapes,
                                          double fp32_bound, Run run) {
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    int64_t worst = 0, differing = 0, total = 0;
    double scaled = 0.0;
    for (Variant v : {Variant::Plain, Variant::ThreeWay, Variant::Fp32Residual}) {
      if (v == Variant::Fp32Residual && dtype == at::kFloat) continue;
      for (bool ln : {false, true}) {
        for (const Case& c : kCases) {
          for (const Shape& shape : shapes) {
            Inputs in = make_inputs(c, dtype, ln, v, device, static_cast<int>(c.dim + c.rows));
            in.norm.cuda_threads = shape.threads;
            in.norm.cuda_shape = shape.shape;
            const at::Tensor* z = v == Variant::ThreeWay ? &in.z : nullptr;
            const AddNormResult ref = add_norm(in.x, in.y, z, in.norm, Backend::Reference);
            const AddNormResult got = run(in, z);
            const std::string what = fmt::format("{} {} {} rows {} dim {} {}", c10::toString(dtype), name(v),
                                                 ln ? "LayerNorm" : "RMSNorm", c.rows, c.dim, name(shape));
            ASSERT_EQ(got.residual.scalar_type(), ref.residual.scalar_type()) << what;
            EXPECT_TRUE(at::equal(got.residual, ref.residual)) << what << ": residual";
            const at::Tensor d = ulp_distance(got.normed, ref.normed);
            const int64_t w = d.max().item<int64_t>();
            if (dtype != at::kFloat) EXPECT_LE(w, 1) << what << ": normed";
            worst = std::max(worst, w);
            scaled = std::max(scaled, scaled_error(got.normed, ref.normed));
            differing += (d > 0).sum().item<int64_t>();
            total += d.numel();
          }
        }
      }
    }
    std::printf("%s vs reference, %s: worst %lld ulp, %lld of %lld elements differ, scaled error %.3g\n", label,
                c10::toString(dtype), static_cast<long long>(worst), static_cast<long long>(differing),
                static_cast<long long>(total), scaled);
    if (dtype != at::kFloat) EXPECT_LE(differing * 100, total) << label << " " << c10::toString(dtype);
    if (dtype == at::kFloat) EXPECT_LE(scaled, fp32_bound) << label;
  }
}

// The kernel's math vs the reference. Residual: bitwise. Normed (the row sums in another order,
// then rsqrt and the products): bf16 and fp16 within 1 ulp, on at most 1% of the elements
// (measured over the five shapes below: 36 and 140 of 1,813,080; 2 and 5 of 156,696 with the
// launcher's alone); fp32 within 1e-6 on the values' scale (measured 2.3e-7; in ulps it is large
// only where LayerNorm's bias cancels the normed value to near zero). Printed.
// Every thread count a row may take (NormParams::cuda_threads: the launcher's 0, 32 and 128
// timed by `effarch kernels`, 256) and the vector shape (NormParams::cuda_shape) hold to the
// same bounds: they change only the sums' order.
TEST(AddNormKernel, HostEmulationMatchesTheReference) {
  expect_every_case_near_the_reference("add_norm emulation", at::kCPU, {{0}, {32}, {128}, {256}, {0, AddNormShape::Vector}},
                                       1e-6,
                                       [](const Inputs& in, const at::Tensor* z) {
                                         return emulate(in.x, in.y, z, in.norm);
                                       });
}

// The norm inputs kept in registers (rows up to kRowCache x 512 = 4096 wide) are the values the
// read-back path loads: bitwise the same outputs, RMSNorm and LayerNorm, x + y, (y + z) + x and an
// fp32 residual, rows of one to eight elements a thread; past 4096 the kernel reads back.
TEST(AddNormKernel, KeptRowIsTheReadBackBitForBit) {
  EXPECT_TRUE(an::caches_row(4096, an::threads_for(4096)));
  EXPECT_TRUE(an::caches_row(2560, an::threads_for(2560)));
  EXPECT_FALSE(an::caches_row(4097, an::threads_for(4097)));
  EXPECT_FALSE(an::caches_row(5120, an::threads_for(5120)));
  for (const int64_t dim : {int64_t{7}, int64_t{512}, int64_t{1000}, int64_t{2560}, int64_t{4096}}) {
    for (const Variant v : {Variant::Plain, Variant::ThreeWay, Variant::Fp32Residual}) {
      for (const bool layer_norm : {false, true}) {
        const Inputs in = make_inputs({3, dim}, at::kBFloat16, layer_norm, v, at::kCPU, 11);
        const at::Tensor* z = in.z.defined() ? &in.z : nullptr;
        const AddNormResult kept = emulate(in.x, in.y, z, in.norm);
        const AddNormResult read = emulate(in.x, in.y, z, in.norm, /*read_back=*/true);
        const std::string what = fmt::format("dim {} {} {}", dim, name(v), layer_norm ? "LayerNorm" : "RMSNorm");
        EXPECT_TRUE(at::equal(kept.residual, read.residual)) << what;
        EXPECT_TRUE(at::equal(kept.normed, read.normed)) << what;
      }
    }
  }
}

TEST(AddNormKernel, ResidualMayOverwriteX) {
  // The binding passes a fresh residual today; the kernel also allows residual_out == x (each
  // element read before the same thread writes it): emulate that aliasing.
  const Inputs in = make_inputs({2, 1000}, at::kBFloat16, false, Variant::Plain, at::kCPU, 3);
  const AddNormResult ref = add_norm(in.x, in.y, nullptr, in.norm, Backend::Reference);
  detail::AddNormLaunch l = detail::prepare_add_norm(in.x, in.y, nullptr, in.norm);
  at::Tensor x = l.x.clone();
  l.params.x = x.const_data_ptr();
  l.params.residual_out = x.mutable_data_ptr();
  const int n = an::threads_for(l.params.dim);
  std::vector<float> partials(n);
  for (int64_t row = 0; row < l.params.rows; ++row) {
    for (int tid = 0; tid < n; ++tid) partials[tid] = an::add_partial<HostIo>(l.params, row, tid, n);
    const float first = block_sum(partials);
    for (int tid = 0; tid < n; ++tid) an::norm_write<HostIo>(l.params, row, tid, n, first, 0.0f);
  }
  EXPECT_TRUE(at::equal(x.view(in.x.sizes()), ref.residual));
  EXPECT_LE(ulp_distance(l.normed.view(in.x.sizes()), ref.normed).max().item<int64_t>(), 1);
}

// The kernel prefetches the weights into L1 before its grid-dependency wait. A weight the launcher
// had to copy is written by the copy kernel just before it: then no prefetch ahead of the wait.
TEST(AddNormKernel, PrefetchesOnlyWeightsNoKernelOfTheStepWrites) {
  for (const bool layer_norm : {false, true}) {
    Inputs in = make_inputs({2, 64}, at::kFloat, layer_norm, Variant::Plain, at::kCPU, 4);
    EXPECT_TRUE(detail::prepare_add_norm(in.x, in.y, nullptr, in.norm).params.prefetch_weights);
    NormParams strided = in.norm;
    strided.weight = at::stack({in.norm.weight, in.norm.weight}, 1).select(1, 0);  // stride 2: copied
    ASSERT_FALSE(strided.weight.is_contiguous());
    EXPECT_FALSE(detail::prepare_add_norm(in.x, in.y, nullptr, strided).params.prefetch_weights);
    if (layer_norm) {
      NormParams bias = in.norm;
      bias.bias = at::stack({in.norm.bias, in.norm.bias}, 1).select(1, 0);
      EXPECT_FALSE(detail::prepare_add_norm(in.x, in.y, nullptr, bias).params.prefetch_weights);
    }
  }
}

TEST(AddNormKernel, ThreadsPerRow) {
  EXPECT_EQ(an::threads_for(1), 32);
  EXPECT_EQ(an::threads_for(17), 32);
  EXPECT_EQ(an::threads_for(33), 64);
  EXPECT_EQ(an::threads_for(2560), an::kMaxThreads);
  EXPECT_EQ(an::threads_for(4096), an::kMaxThreads);
  // NormParams::cuda_threads reaches the launch; 0 leaves the choice to threads_for.
  Inputs in = make_inputs({2, 2560}, at::kBFloat16, true, Variant::Plain, at::kCPU, 5);
  EXPECT_EQ(an::threads_of(detail::prepare_add_norm(in.x, in.y, nullptr, in.norm).params), an::kMaxThreads);
  in.norm.cuda_threads = 128;
  EXPECT_EQ(an::threads_of(detail::prepare_add_norm(in.x, in.y, nullptr, in.norm).params), 128);
  // A row wider than the kept values (kRowCache a thread) reads back: 2560 over 128 threads is 20.
  EXPECT_FALSE(an::caches_row(2560, 128));
}

// The vector shape's block (kVecSlots vectors of 8 a thread, whole warps) and the rows it takes:
// whole 16-byte-aligned vectors up to 8192 elements; elsewhere the element shape runs.
TEST(AddNormKernel, VectorShapeWhereTheRowAllows) {
  EXPECT_EQ(an::vector_threads_for(2560), 160);  // Phi-2, Mamba-2.8B
  EXPECT_EQ(an::vector_threads_for(4096), 256);  // Llama-3-8B
  EXPECT_EQ(an::vector_threads_for(8192), an::kMaxThreads);
  EXPECT_EQ(an::vector_threads_for(1000), 64);  // 125 vectors, 63 threads, two warps
  EXPECT_EQ(an::vector_threads_for(64), 32);
  Inputs in = make_inputs({2, 2560}, at::kBFloat16, true, Variant::Plain, at::kCPU, 5);
  const auto params = [&](const at::Tensor& x, const at::Tensor& y) {
    return detail::prepare_add_norm(x, y, nullptr, in.norm).params;
  };
  EXPECT_FALSE(an::runs_vector(params(in.x, in.y)));  // auto: two rows are decode's
  {
    // auto: the vector shape from kVectorMinRows rows, unless cuda_threads asks for the element shape
    Inputs rows = make_inputs({an::kVectorMinRows, 64}, at::kBFloat16, false, Variant::Plain, at::kCPU, 8);
    EXPECT_TRUE(an::runs_vector(detail::prepare_add_norm(rows.x, rows.y, nullptr, rows.norm).params));
    const at::Tensor fewer_x = rows.x.narrow(0, 1, an::kVectorMinRows - 1), fewer_y = rows.y.narrow(0, 1, an::kVectorMinRows - 1);
    EXPECT_FALSE(an::runs_vector(detail::prepare_add_norm(fewer_x, fewer_y, nullptr, rows.norm).params));
    rows.norm.cuda_threads = 32;
    EXPECT_FALSE(an::runs_vector(detail::prepare_add_norm(rows.x, rows.y, nullptr, rows.norm).params));
    rows.norm.cuda_threads = 0;
    rows.norm.cuda_shape = AddNormShape::Element;
    EXPECT_FALSE(an::runs_vector(detail::prepare_add_norm(rows.x, rows.y, nullptr, rows.norm).params));
  }
  in.norm.cuda_shape = AddNormShape::Vector;
  EXPECT_TRUE(an::runs_vector(params(in.x, in.y)));
  EXPECT_EQ(an::launch_threads(params(in.x, in.y)), 160);
  // x's rows 2568 apart but starting one element in: not 16-byte aligned
  const at::Tensor offset = at::randn({2, 1, 2568}).to(at::kBFloat16).narrow(-1, 1, 2560);
  EXPECT_FALSE(an::runs_vector(params(offset, in.y)));
  // y's rows 2561 apart: not whole vectors
  const at::Tensor odd = at::randn({2, 1, 2561}).to(at::kBFloat16).narrow(-1, 0, 2560);
  EXPECT_FALSE(an::runs_vector(params(in.x, odd)));
  EXPECT_EQ(an::launch_threads(params(in.x, odd)), an::kMaxThreads);  // the element shape's
  // rows of 17 and of 8200 elements
  for (const int64_t dim : {int64_t{17}, int64_t{8200}}) {
    Inputs other = make_inputs({1, dim}, at::kBFloat16, false, Variant::Plain, at::kCPU, 6);
    other.norm.cuda_shape = AddNormShape::Vector;
    EXPECT_FALSE(an::runs_vector(detail::prepare_add_norm(other.x, other.y, nullptr, other.norm).params)) << dim;
  }
  // the fallback's emulation matches the reference, and so does the widest vector row (8192: two
  // vectors for each of 512 threads), RMSNorm and LayerNorm
  const AddNormResult ref = add_norm(in.x, odd, nullptr, in.norm, Backend::Reference);
  const AddNormResult got = emulate(in.x, odd, nullptr, in.norm);
  EXPECT_TRUE(at::equal(got.residual, ref.residual));
  EXPECT_LE(ulp_distance(got.normed, ref.normed).max().item<int64_t>(), 1);
  for (const at::ScalarType dtype : {at::kBFloat16, at::kHalf}) {
    for (const bool layer_norm : {false, true}) {
      Inputs wide = make_inputs({2, an::kMaxVectorDim}, dtype, layer_norm, Variant::ThreeWay, at::kCPU, 7);
      wide.norm.cuda_shape = AddNormShape::Vector;
      ASSERT_TRUE(an::runs_vector(detail::prepare_add_norm(wide.x, wide.y, &wide.z, wide.norm).params));
      const AddNormResult r = add_norm(wide.x, wide.y, &wide.z, wide.norm, Backend::Reference);
      const AddNormResult e = emulate(wide.x, wide.y, &wide.z, wide.norm);
      EXPECT_TRUE(at::equal(e.residual, r.residual)) << c10::toString(dtype) << " " << layer_norm;
      EXPECT_LE(ulp_distance(e.normed, r.normed).max().item<int64_t>(), 1) << c10::toString(dtype) << " " << layer_norm;
    }
  }
}

TEST(AddNorm, BadArgumentsNameTheOpAndArgument) {
  const Inputs in = make_inputs({2, 8}, at::kFloat, true, Variant::Plain, at::kCPU, 4);
  EXPECT_THROW_WITH(add_norm(in.x, in.y.narrow(-1, 0, 4), nullptr, in.norm), OpError, {"add_norm", "y"});
  EXPECT_THROW_WITH(add_norm(in.x, in.y.to(at::kHalf), nullptr, in.norm), OpError, {"add_norm", "y"});
  EXPECT_THROW_WITH(add_norm(in.x.narrow(-1, 0, 4), in.y, nullptr, in.norm), OpError, {"add_norm", "x"});
  EXPECT_THROW_WITH(add_norm(in.x.to(at::kHalf), in.y, nullptr, in.norm), OpError, {"add_norm", "x"});
  const at::Tensor z = in.y.to(at::kBFloat16);
  EXPECT_THROW_WITH(add_norm(in.x, in.y, &z, in.norm), OpError, {"add_norm", "z"});
  NormParams no_bias = in.norm;
  no_bias.bias = at::Tensor();
  EXPECT_THROW_WITH(add_norm(in.x, in.y, nullptr, no_bias), OpError, {"add_norm", "bias"});
  NormParams no_weight = in.norm;
  no_weight.weight = at::Tensor();
  EXPECT_THROW_WITH(add_norm(in.x, in.y, nullptr, no_weight), OpError, {"add_norm", "weight"});
  NormParams bad_eps = in.norm;
  bad_eps.eps = -1.0;
  EXPECT_THROW_WITH(add_norm(in.x, in.y, nullptr, bad_eps), OpError, {"add_norm", "eps"});
  EXPECT_THROW_WITH(add_norm(in.x, in.y, nullptr, in.norm, Backend::Cuda), OpError, {"add_norm", "cuda"});
  NormParams both = in.norm;
  both.cuda_shape = AddNormShape::Vector;
  both.cuda_threads = 128;
  EXPECT_THROW_WITH(add_norm(in.x, in.y, nullptr, both), OpError, {"add_norm", "vector shape", "cuda_threads"});
  for (const int bad : {16, 48, 1024, -32}) {
    NormParams threads = in.norm;
    threads.cuda_threads = bad;
    EXPECT_THROW_WITH(add_norm(in.x, in.y, nullptr, threads), OpError,
                      {fmt::format("add_norm: cuda_threads must be 0 (the launcher's choice) or a power of two from 32 to "
                                   "512, got {}",
                                   bad)});
  }
}

TEST(AddNormCuda, KernelMatchesTheReference) {
  if (!(kBuiltWithCuda && at::hasCUDA())) GTEST_SKIP() << "needs a CUDA build and a GPU";
  // ATen's CUDA RMSNorm reduces in its own order and layer_norm by Welford: as on the CPU, with
  // room for the device's rsqrtf (2 ulp).
  expect_every_case_near_the_reference("add_norm CUDA kernel", at::Device(at::kCUDA, 0), {{0}, {32}, {128}, {0, AddNormShape::Vector}},
                                       2e-6,
                                       [](const Inputs& in, const at::Tensor* z) {
                                         return add_norm(in.x, in.y, z, in.norm, Backend::Cuda);
                                       });
}

}  // namespace
}  // namespace effarch::ops
