#pragma once
// The add_norm kernel's host emulation (kernels/add_norm/add_norm_math.h run on the CPU over every
// block and thread in the kernel's phase order, on the launch the binding would make), shared by
// its own test (add_norm_test.cpp) and the dense GEMV's norm prologue test (gemv_norm_test.cpp),
// which must give the same bits.

#include <ATen/ATen.h>

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <vector>

#include "add_norm/add_norm_math.h"
#include "add_norm_launch.h"
#include "common/warp_sum.h"
#include "effarch/ops/add_norm.h"

namespace effarch::ops::addnorm_emulation {

namespace an = kernels::addnorm;
using kernels::ElementType;

// The kernel's element access on the host: c10's conversions round to nearest even, as the
// device's __float2bfloat16_rn and __float2half_rn do.
struct HostIo {
  static float load(const void* base, int64_t offset, ElementType type) {
    switch (type) {
      case ElementType::kBFloat16: return static_cast<float>(static_cast<const c10::BFloat16*>(base)[offset]);
      case ElementType::kFloat16: return static_cast<float>(static_cast<const c10::Half*>(base)[offset]);
      default: return static_cast<const float*>(base)[offset];
    }
  }
  static void store(void* base, int64_t offset, ElementType type, float v) {
    switch (type) {
      case ElementType::kBFloat16: static_cast<c10::BFloat16*>(base)[offset] = c10::BFloat16(v); break;
      case ElementType::kFloat16: static_cast<c10::Half*>(base)[offset] = c10::Half(v); break;
      default: static_cast<float*>(base)[offset] = v; break;
    }
  }
  static float round_to(ElementType type, float v) {
    switch (type) {
      case ElementType::kBFloat16: return static_cast<float>(c10::BFloat16(v));
      case ElementType::kFloat16: return static_cast<float>(c10::Half(v));
      default: return v;
    }
  }
  // The vector shape's 16-byte accesses, element by element.
  static void load8(const void* base, int64_t offset, ElementType type, float (&out)[8]) {
    for (int j = 0; j < 8; ++j) out[j] = load(base, offset + j, type);
  }
  static void store8(void* base, int64_t offset, ElementType type, const float (&in)[8]) {
    for (int j = 0; j < 8; ++j) store(base, offset + j, type, in[j]);
  }
};

// add_norm_kernel.cuh's block_sum: kernels::block_sum_emulated (common/warp_sum.h), each warp's
// lanes by its xor butterfly, then the warps' sums in warp order.
inline float block_sum(const std::vector<float>& partials) {
  return kernels::block_sum_emulated(partials.data(), static_cast<int>(partials.size()));
}

// Every block (row) of the launch, its threads phase by phase; each thread's norm inputs kept
// between the phases as the kernel keeps them (an::RowCache where the row fits), or, with
// `read_back`, read back from the residual as the kernel does for wider rows. Where the launch
// runs the vector shape, add_norm_vec_kernel's phases instead.
inline AddNormResult emulate(const at::Tensor& x, const at::Tensor& y, const at::Tensor* z, const NormParams& norm,
                      bool read_back = false) {
  detail::AddNormLaunch l = detail::prepare_add_norm(x, y, z, norm);
  const kernels::AddNormParams& p = l.params;
  const int n = an::launch_threads(p);
  if (an::runs_vector(p)) {
    std::vector<float> partials(static_cast<size_t>(n));
    std::vector<an::VecCache> kept(static_cast<size_t>(n));
    for (int64_t row = 0; row < p.rows; ++row) {
      for (int tid = 0; tid < n; ++tid) partials[tid] = an::add_partial_vec<HostIo>(p, row, tid, n, kept[tid]);
      const float first = block_sum(partials);
      float second = 0.0f;
      if (p.norm == kernels::NormType::kLayer) {
        for (int tid = 0; tid < n; ++tid) {
          partials[tid] = an::variance_partial_vec(p, tid, n, an::mean_of(first, p.dim), kept[tid]);
        }
        second = block_sum(partials);
      }
      for (int tid = 0; tid < n; ++tid) an::norm_write_vec<HostIo>(p, row, tid, n, first, second, kept[tid]);
    }
    return {l.residual.view(x.sizes()), l.normed.view(x.sizes())};
  }
  std::vector<float> partials(static_cast<size_t>(n));
  std::vector<an::RowCache> kept(static_cast<size_t>(n));
  const bool cached = an::caches_row(p.dim, n) && !read_back;
  const auto cache = [&](int tid) { return cached ? &kept[tid] : nullptr; };
  for (int64_t row = 0; row < p.rows; ++row) {
    for (int tid = 0; tid < n; ++tid) partials[tid] = an::add_partial<HostIo>(p, row, tid, n, cache(tid));
    const float first = block_sum(partials);
    float second = 0.0f;
    if (p.norm == kernels::NormType::kLayer) {
      for (int tid = 0; tid < n; ++tid) {
        partials[tid] = an::variance_partial<HostIo>(p, row, tid, n, an::mean_of(first, p.dim), cache(tid));
      }
      second = block_sum(partials);
    }
    for (int tid = 0; tid < n; ++tid) an::norm_write<HostIo>(p, row, tid, n, first, second, cache(tid));
  }
  return {l.residual.view(x.sizes()), l.normed.view(x.sizes())};
}

}  // namespace effarch::ops::addnorm_emulation
