// The fused MLP activation (kernels/activation) run by the CPU executor through its launcher:
// SiLU and gelu_new, plain and gated (act(gate) * up over the fused gate/up product's [rows, 2I]
// rows, the up half at up_offset), in every dtype, on awkward widths (one column, odd columns,
// columns not a multiple of a 16-byte group), one row and several, input rows strided past their
// width, against the activation in fp64 within the dtype's rounding; and the kernel's two paths:
// the 16-byte vector path taken exactly where whole aligned groups fit (its grid of groups), and
// bit for bit the element path on the same values (activation_math.h promises the same math).
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "cuda_sim.h"
// the kernels' per-dtype translation units, host-compiled
#include "activation/activation_bf16.cu"
#include "activation/activation_fp16.cu"
#include "activation/activation_fp32.cu"
#include "sim_test.h"

namespace effarch::sim {
namespace {

namespace k = ::effarch::kernels;

const char* act_name(k::ActKind act) { return act == k::ActKind::kSilu ? "silu" : "gelu_new"; }

// act(x) in fp64: SiLU x / (1 + e^-x); gelu_new (transformers' NewGELUActivation)
// 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))).
at::Tensor reference_act(k::ActKind act, const at::Tensor& x) {
  const at::Tensor xd = x.to(at::kDouble);
  if (act == k::ActKind::kSilu) return xd / (1 + at::exp(-xd));
  return 0.5 * xd * (1 + at::tanh(std::sqrt(2 / M_PI) * (xd + 0.044715 * xd.pow(3))));
}

// The activation of in's [rows, cols] (plain) or of its gate columns times its up columns (gated),
// and the scale of its error: 1 + |act(gate)|, times 1 + |up| gated (the up half scales the error
// of act(gate), as it scales the value).
struct Reference {
  at::Tensor out, scale;
};
Reference reference(k::ActKind act, bool gated, const at::Tensor& in, int64_t cols) {
  const at::Tensor y = reference_act(act, in.narrow(1, 0, cols));
  if (!gated) return {y, 1 + y.abs()};
  const at::Tensor up = in.narrow(1, cols, cols).to(at::kDouble);
  return {y * up, (1 + y.abs()) * (1 + up.abs())};
}

// Elements of the dtype in one 16-byte group (act::kVectorElements).
int64_t group_of(at::ScalarType dtype) { return 16 / static_cast<int64_t>(at::elementSize(dtype)); }

// A [rows, width] input whose rows are `row_stride` elements apart, starting `shift` elements past
// a 16-byte boundary; width is cols (plain) or 2 cols (gated: gate columns, then up).
at::Tensor make_input(int64_t rows, int64_t width, int64_t row_stride, int64_t shift, at::ScalarType dtype) {
  // hidden activations over the interesting range of both functions (|x| up to ~8)
  const at::Tensor values = (at::randn({rows, width}) * 2.5).to(dtype);
  const at::Tensor storage = at::full({rows * row_stride + shift}, NAN, dtype);
  at::Tensor in = storage.narrow(0, shift, rows * row_stride).view({rows, row_stride}).narrow(1, 0, width);
  in.copy_(values);
  return in;
}

struct ActRun {
  at::Tensor out;
  bool vector;  // which path the launcher chose (act::activation_vectorizes)
  dim3 grid;
};

// The launcher on in, out [rows, cols] written at `out_shift` elements past a 16-byte boundary.
ActRun run_activation(k::ActKind act, bool gated, const at::Tensor& in, int64_t cols, int64_t out_shift) {
  const int64_t rows = in.size(0);
  const at::Tensor storage = at::full({rows * cols + out_shift}, NAN, in.scalar_type());
  ActRun r{storage.narrow(0, out_shift, rows * cols).view({rows, cols}), false, {}};
  k::ActivationParams p;
  p.rows = rows;
  p.cols = cols;
  p.act = act;
  p.gated = gated;
  p.type = element_of(in.scalar_type());
  p.in = in.const_data_ptr();
  p.in_row_stride = in.stride(0);
  p.up_offset = gated ? cols : 0;
  p.out = r.out.mutable_data_ptr();
  p.out_row_stride = r.out.stride(0);
  r.vector = k::act::activation_vectorizes(p, static_cast<int64_t>(in.element_size()));
  reset_launches();
  EXPECT_TRUE(k::activation(p, nullptr).ok());
  EXPECT_EQ(launches(), 1);
  r.grid = last_launch().grid;
  return r;
}

ActRun run_checked(k::ActKind act, bool gated, const at::Tensor& in, int64_t cols, int64_t out_shift) {
  return run_both_orders([&] { return run_activation(act, gated, in, cols, out_shift); },
                         [](const ActRun& a, const ActRun& b) { return same_bytes(a.out, b.out); });
}

// max |a - e| / scale: the error on the scale of the values (about 1). Relative to |e| alone it
// is large where gelu_new's 1 + tanh cancels towards 0: a small absolute error of a small value.
double scaled_error(const at::Tensor& actual, const Reference& ref) {
  return ((actual.to(at::kDouble) - ref.out).abs() / ref.scale).max().item<double>();
}

struct Shape {
  int64_t rows, cols;
  int64_t pad;  // input row stride: width + pad
};

// One column, odd columns, columns a multiple of a group of 4 (fp32) but not of 8 (16-bit types),
// whole groups, one row and several; padded input rows (a pad of 8 keeps 16-byte groups, 3 not).
const Shape kShapes[] = {{1, 1, 0},   {1, 7, 0},  {3, 17, 0}, {5, 12, 0}, {2, 1000, 0},
                         {4, 264, 0}, {7, 40, 8}, {3, 33, 3}, {2, 96, 3}, {6, 24, 16}};

TEST(ActivationSim, MatchesTheReferenceOnEveryPath) {
  int paths[3][2] = {};  // [dtype][vector]: cases run on each path
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    const int64_t group = group_of(dtype);
    for (const k::ActKind act : {k::ActKind::kSilu, k::ActKind::kGeluNew}) {
      for (const bool gated : {false, true}) {
        for (const Shape& s : kShapes) {
          at::manual_seed(s.rows * 1000 + s.cols);
          const int64_t width = gated ? 2 * s.cols : s.cols;
          const at::Tensor in = make_input(s.rows, width, width + s.pad, 0, dtype);
          const std::string what = fmt::format("{} {}{} rows {} cols {} row stride {}", name_of(dtype), act_name(act),
                                               gated ? " gated" : "", s.rows, s.cols, in.stride(0));
          const ActRun r = run_checked(act, gated, in, s.cols, 0);
          // the vector path exactly where the columns and the row stride are whole groups (the up half's
          // offset, the columns, is one too; the allocations are aligned)
          const bool whole_groups = s.cols % group == 0 && in.stride(0) % group == 0;
          EXPECT_EQ(r.vector, whole_groups) << what;
          const int64_t steps = s.rows * (r.vector ? s.cols / group : s.cols);
          EXPECT_EQ(r.grid.x, static_cast<unsigned>((steps + 255) / 256)) << what << ": the launch's grid";
          ++paths[dtype == at::kFloat ? 0 : dtype == at::kBFloat16 ? 1 : 2][r.vector ? 1 : 0];
          // SiLU rounds once (twice gated), gelu_new at each of its steps (activation_math.h), after
          // fp32 math; measured at most 1.2 unit roundoffs in bf16 and fp16, 1.6 in fp32 (where the
          // fp32 steps, expf, 1 + e and the division, are the dtype's own roundings).
          EXPECT_LE(scaled_error(r.out, reference(act, gated, in, s.cols)),
                    (act == k::ActKind::kSilu ? 3 : 4) * unit_roundoff(dtype))
              << what;
        }
      }
    }
  }
  for (int t = 0; t < 3; ++t) {
    EXPECT_GT(paths[t][0], 0) << "dtype " << t << ": no case took the element path";
    EXPECT_GT(paths[t][1], 0) << "dtype " << t << ": no case took the vector path";
  }
}

// Where the vector path runs, the element path on the same values (the input, or the output, moved
// one element off its 16-byte boundary, which only the vector path needs) gives the same bits.
TEST(ActivationSim, VectorPathIsTheElementPathBitForBit) {
  const Shape shapes[] = {{1, 1024, 0}, {3, 40, 0}, {5, 16, 8}, {2, 264, 0}};
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    for (const k::ActKind act : {k::ActKind::kSilu, k::ActKind::kGeluNew}) {
      for (const bool gated : {false, true}) {
        for (const Shape& s : shapes) {
          at::manual_seed(s.rows * 7 + s.cols);
          const int64_t width = gated ? 2 * s.cols : s.cols;
          const at::Tensor in = make_input(s.rows, width, width + s.pad, 0, dtype);
          const at::Tensor shifted_in = make_input(s.rows, width, width + s.pad, 1, dtype);
          shifted_in.copy_(in);
          const std::string what = fmt::format("{} {}{} rows {} cols {}", name_of(dtype), act_name(act),
                                               gated ? " gated" : "", s.rows, s.cols);
          const ActRun vector = run_checked(act, gated, in, s.cols, 0);
          ASSERT_TRUE(vector.vector) << what;
          const ActRun by_in = run_checked(act, gated, shifted_in, s.cols, 0);
          const ActRun by_out = run_checked(act, gated, in, s.cols, 1);
          EXPECT_FALSE(by_in.vector) << what << ": input off its boundary";
          EXPECT_FALSE(by_out.vector) << what << ": output off its boundary";
          EXPECT_EQ(by_in.grid.x, static_cast<unsigned>((s.rows * s.cols + 255) / 256)) << what;
          EXPECT_TRUE(same_bytes(by_in.out, vector.out)) << what << ": input off its boundary";
          EXPECT_TRUE(same_bytes(by_out.out, vector.out)) << what << ": output off its boundary";
        }
      }
    }
  }
}

}  // namespace
}  // namespace effarch::sim
