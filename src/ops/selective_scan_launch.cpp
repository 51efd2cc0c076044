// Host side of the selective scan kernels' launch (see selective_scan_launch.h), built everywhere.

#include "selective_scan_launch.h"

#include <limits>

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "effarch/common/error.h"

#include "kernel_params.h"

namespace effarch::ops::detail {
namespace {

// y in the kernels' element type, channels contiguous when u's are (the mixer's layout: y's
// transpose is then the contiguous input of out_proj), else time contiguous.
at::Tensor empty_output(const at::Tensor& u) {
  if (u.dim() == 3 && u.stride(1) == 1 && u.size(2) > 1) {
    return at::empty({u.size(0), u.size(2), u.size(1)}, u.options()).transpose(1, 2);
  }
  return at::empty(u.sizes(), u.options());
}

// The variant's own arguments: a known segment, and a split only where that kernel has one.
void check_variant(const SelectiveScanArgs& args, const char* op) {
  if (!kernels::scan::valid_segment(args.cuda_segment)) {
    throw OpError(fmt::format("{}: cuda_segment must be 0, 4, 8 or 16, got {}", op, args.cuda_segment));
  }
  if (args.cuda_lane_steps != 16 && args.cuda_lane_steps != 8) {
    throw OpError(fmt::format("{}: cuda_lane_steps must be 16 or 8, got {}", op, args.cuda_lane_steps));
  }
  if (args.cuda_lane_steps != 16 && args.cuda_segment != kernels::scan::kLanesSegment) {
    throw OpError(fmt::format("{}: cuda_lane_steps {} needs cuda_segment 16 (the warp-per-channel kernel), got {}", op,
                              args.cuda_lane_steps, args.cuda_segment));
  }
  if (args.cuda_split < -1) {
    throw OpError(fmt::format("{}: cuda_split must be -1 (auto), 0 (off) or a piece count, got {}", op,
                              args.cuda_split));
  }
  if (args.cuda_split != 0 && !kernels::scan::segment_splits(args.cuda_segment)) {
    throw OpError(fmt::format("{}: cuda_split {} needs cuda_segment 0, 4 or 8 (the 16-step kernel does not split)", op,
                              args.cuda_split));
  }
}

// The pieces asked for (1: none), before split_plan clamps them to the sequence's chunks.
int64_t requested_pieces(const SelectiveScanArgs& args, int64_t batch, int64_t dim, int64_t seqlen, int sm_count) {
  if (args.cuda_split == 0) return 1;
  return args.cuda_split == -1 ? kernels::scan::auto_pieces(batch, dim, seqlen, args.cuda_segment, sm_count)
                               : args.cuda_split;
}

}  // namespace

SelectiveScanLaunch prepare_selective_scan(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& Bmat,
                                           const at::Tensor& Cmat, const std::optional<at::Tensor>& z,
                                           const SelectiveScanArgs& args, at::Tensor& ssm_state, bool from_state,
                                           const char* op, int sm_count) {
  const int64_t dstate = args.A.size(1);
  check_variant(args, op);
  if (dstate > kernels::kSelectiveScanMaxStates) {
    throw OpError(fmt::format("{}: the CUDA kernel takes d_state up to {}, got {} (--backend reference runs any)", op,
                              kernels::kSelectiveScanMaxStates, dstate));
  }
  const bool prefill_call = u.dim() == 3;
  if (prefill_call && args.cuda_segment == kernels::scan::kPiecesSegment && dstate > kernels::scan::kPiecesMaxStates) {
    throw OpError(fmt::format("{}: cuda_segment 0 (the pieces kernel) holds a channel's states in registers: d_state "
                              "up to {}, got {} (cuda_segment 16 takes up to {})",
                              op, kernels::scan::kPiecesMaxStates, dstate, kernels::kSelectiveScanMaxStates));
  }
  SelectiveScanLaunch l;
  l.out_type = u.scalar_type();
  // The kernels read u, delta, B, C and z in one element type. When they come in a mix (the
  // model's never do: they all come from its projections), all go to float32, which loses
  // nothing: the reference widens each to float32 before any arithmetic too.
  const at::ScalarType type = u.scalar_type();
  if (!delta.defined() && u.dim() == 3) throw OpError(fmt::format("{}: the prefill needs delta", op));
  const bool same = (!delta.defined() || delta.scalar_type() == type) && Bmat.scalar_type() == type &&
                    Cmat.scalar_type() == type && (!z || z->scalar_type() == type);
  const auto common = [&](const at::Tensor& t) { return same ? t : t.to(at::kFloat); };
  l.u = common(u), l.B = common(Bmat), l.C = common(Cmat);
  if (delta.defined()) l.delta = common(delta);
  if (z) l.z = common(*z);
  // A, D and delta_bias in float32 (the mixer holds them so already: no copy per call).
  l.A = args.A.to(at::kFloat);
  if (args.D) l.D = args.D->to(at::kFloat);
  if (args.delta_bias) l.delta_bias = args.delta_bias->to(at::kFloat);
  l.y = empty_output(l.u);

  kernels::SelectiveScanParams& p = l.params;
  const bool prefill = l.u.dim() == 3;
  const auto time_stride = [&](const at::Tensor& t) { return prefill ? t.stride(2) : int64_t{0}; };
  p.batch = to_int(l.u.size(0), op, "batch");
  p.dim = to_int(l.u.size(1), op, "channels");
  p.seqlen = prefill ? to_int(l.u.size(2), op, "length") : 1;
  p.dstate = static_cast<int>(l.A.size(1));
  p.delta_softplus = args.delta_softplus;
  p.from_state = prefill && from_state;
  p.segment = args.cuda_segment;
  p.lane_steps = args.cuda_lane_steps;
  p.input_type = element_type(l.u.scalar_type(), op);

  p.u = l.u.const_data_ptr();
  p.u_batch_stride = l.u.stride(0), p.u_dim_stride = l.u.stride(1), p.u_time_stride = time_stride(l.u);
  if (l.delta.defined()) {
    p.delta = l.delta.const_data_ptr();
    p.delta_batch_stride = l.delta.stride(0), p.delta_dim_stride = l.delta.stride(1);
    p.delta_time_stride = time_stride(l.delta);
  }
  p.B = l.B.const_data_ptr();
  p.B_batch_stride = l.B.stride(0), p.B_state_stride = l.B.stride(1), p.B_time_stride = time_stride(l.B);
  p.C = l.C.const_data_ptr();
  p.C_batch_stride = l.C.stride(0), p.C_state_stride = l.C.stride(1), p.C_time_stride = time_stride(l.C);
  if (l.z.defined()) {
    p.z = l.z.const_data_ptr();
    p.z_batch_stride = l.z.stride(0), p.z_dim_stride = l.z.stride(1), p.z_time_stride = time_stride(l.z);
  }
  p.y = l.y.mutable_data_ptr();
  p.y_batch_stride = l.y.stride(0), p.y_dim_stride = l.y.stride(1), p.y_time_stride = time_stride(l.y);

  p.A = l.A.const_data_ptr<float>();
  p.A_dim_stride = l.A.stride(0), p.A_state_stride = l.A.stride(1);
  if (l.D.defined()) p.D = l.D.const_data_ptr<float>(), p.D_stride = l.D.stride(0);
  if (l.delta_bias.defined()) {
    p.delta_bias = l.delta_bias.const_data_ptr<float>(), p.delta_bias_stride = l.delta_bias.stride(0);
  }
  p.state = ssm_state.mutable_data_ptr<float>();
  p.state_batch_stride = ssm_state.stride(0), p.state_dim_stride = ssm_state.stride(1);
  p.state_state_stride = ssm_state.stride(2);

  // The split (prefill only): piece states and dt sums, fp32. On a GPU freed to the caching
  // allocator when the launch goes out of scope, stream-ordered after the kernels that use them.
  if (prefill) {
    const kernels::scan::SplitPlan plan =
        kernels::scan::split_plan(p.seqlen, p.segment, requested_pieces(args, p.batch, p.dim, p.seqlen, sm_count));
    p.pieces = plan.pieces, p.piece_chunks = plan.piece_chunks;
  }
  if (p.pieces > 1) {
    const int64_t slots = static_cast<int64_t>(p.batch) * p.pieces;
    const int64_t states = slots * p.dstate * p.dim;
    l.workspace = at::empty({states + slots * p.dim}, l.u.options().dtype(at::kFloat));
    p.split_states = l.workspace.mutable_data_ptr<float>();
    p.split_dtsum = p.split_states + states;
  }
  return l;
}

SelectiveScanLaunch prepare_selective_state_update_dt_proj(const at::Tensor& u, const at::Tensor& dt_low,
                                                           const at::Tensor& dt_proj, const at::Tensor& Bmat,
                                                           const at::Tensor& Cmat, const std::optional<at::Tensor>& z,
                                                           const SelectiveScanArgs& args, at::Tensor& ssm_state,
                                                           const char* op) {
  if (dt_proj.size(1) > std::numeric_limits<int>::max()) {
    throw OpError(fmt::format("{}: dt_proj has {} columns, beyond the kernel's 32-bit sizes", op, dt_proj.size(1)));
  }
  // No delta: the params point at the projection's inputs instead.
  SelectiveScanLaunch l = prepare_selective_scan(u, at::Tensor(), Bmat, Cmat, z, args, ssm_state, false, op);
  const at::ScalarType type = l.u.scalar_type();  // float32 where the inputs came in a mix
  l.dt_low = dt_low.to(type);
  l.dt_proj = dt_proj.to(type);
  kernels::SelectiveScanParams& p = l.params;
  p.dt_rank = static_cast<int>(l.dt_proj.size(1));
  p.dt_proj = l.dt_proj.const_data_ptr();
  p.dt_proj_dim_stride = l.dt_proj.stride(0), p.dt_proj_rank_stride = l.dt_proj.stride(1);
  p.dt_low = l.dt_low.const_data_ptr();
  p.dt_low_batch_stride = l.dt_low.stride(0), p.dt_low_rank_stride = l.dt_low.stride(1);
  return l;
}

}  // namespace effarch::ops::detail

namespace effarch::ops {

namespace {

const std::pair<const char*, SelectiveScanVariant> kNamedVariants[] = {
    {"lanes16", {16, 16, 0}}, {"lanes8", {16, 8, 0}}, {"pieces", {0, 16, -1}},
    {"seg4", {4, 16, 0}},     {"seg8", {8, 16, 0}},   {"split", {4, 16, -1}}};

}  // namespace

std::optional<SelectiveScanVariant> selective_scan_variant_named(const std::string& name) {
  for (const auto& [n, v] : kNamedVariants) {
    if (name == n) return v;
  }
  return std::nullopt;
}

const std::vector<std::string>& selective_scan_variant_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const auto& [n, variant] : kNamedVariants) v.emplace_back(n);
    return v;
  }();
  return names;
}

int64_t selective_scan_max_dstate(const SelectiveScanArgs& args) {
  return args.cuda_segment == kernels::scan::kPiecesSegment ? kernels::scan::kPiecesMaxStates
                                                            : kernels::kSelectiveScanMaxStates;
}

const char* selective_scan_variant_name(const SelectiveScanArgs& args) {
  if (args.cuda_segment == kernels::scan::kPiecesSegment) return "pieces";
  if (args.cuda_segment == kernels::scan::kLanesSegment) return args.cuda_lane_steps == 8 ? "lanes8" : "lanes16";
  if (args.cuda_split != 0) return "split";
  return args.cuda_segment == 8 ? "seg8" : "seg4";
}

int selective_scan_cuda_pieces(const SelectiveScanArgs& args, int64_t batch, int64_t dim, int64_t seqlen,
                               int sm_count) {
  detail::check_variant(args, "selective_scan");
  return kernels::scan::split_plan(seqlen, args.cuda_segment, detail::requested_pieces(args, batch, dim, seqlen, sm_count))
      .pieces;
}

}  // namespace effarch::ops
