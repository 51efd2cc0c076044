// CUDA path of effarch::ops::decode_attention: checks what only the kernel needs (head size,
// dtype, contiguous head dimension, 16-byte aligned K/V rows), plans the splits of the key length
// from the cache buffer's length and the SM count, allocates the fp32 workspace, fills the kernel
// params and launches on the current stream. Built only with CUDA.

#include <ATen/ATen.h>

#include "cuda_binding.h"
#include "decode_attention/decode_attention.h"
#include "effarch/ops/decode_attention.h"

namespace effarch::ops::detail {
namespace {

constexpr const char* kOp = "decode_attention";

// The head dimension contiguous; for K and V also every row 16 bytes aligned (cp.async copies).
void check_layout(const at::Tensor& t, const char* name, bool rows_aligned) {
  if (t.size(3) > 1 && t.stride(3) != 1) {
    throw OpError(fmt::format("{}: {} needs a contiguous head dimension (stride 1), got stride {}", kOp, name,
                              t.stride(3)));
  }
  if (!rows_aligned) return;
  const int64_t per16 = 16 / static_cast<int64_t>(t.element_size());
  const bool aligned = reinterpret_cast<uintptr_t>(t.const_data_ptr()) % 16 == 0 && t.stride(0) % per16 == 0 &&
                       t.stride(1) % per16 == 0 && t.stride(2) % per16 == 0;
  if (!aligned) {
    throw OpError(fmt::format("{}: the CUDA kernel reads {} rows as 16-byte chunks: its data and strides ({}, {}, {}) "
                              "must be multiples of 16 bytes",
                              kOp, name, t.stride(0), t.stride(1), t.stride(2)));
  }
}

}  // namespace

void decode_attention_cuda(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& positions,
                           int64_t position, double scale, std::optional<int64_t> window, const at::Tensor& out,
                           int split_blocks_per_sm) {
  namespace da = kernels::decode_attn;
  const DeviceGuard device_guard(q.device());
  const int64_t b = q.size(0), hq = q.size(1), t = q.size(2), d = q.size(3), hkv = k.size(1), s = k.size(2);
  if (!da::supported_head_dim(static_cast<int>(d))) {
    throw OpError(fmt::format("{}: head size {} has no CUDA kernel (16, 32, 40, 64, 80 or 128); --backend reference "
                              "runs the SDPA path",
                              kOp, d));
  }
  check_layout(q, "q", false);
  check_layout(k, "k_cache", true);
  check_layout(v, "v_cache", true);
  if (hq > std::numeric_limits<int>::max() || t > std::numeric_limits<int>::max() ||
      b > std::numeric_limits<int>::max()) {
    throw OpError(fmt::format("{}: {} sequences, {} heads, {} queries: too many for the kernel", kOp, b, hq, t));
  }

  kernels::DecodeAttentionParams p;
  p.batch = static_cast<int>(b);
  p.q_heads = static_cast<int>(hq);
  p.kv_heads = static_cast<int>(hkv);
  p.num_queries = static_cast<int>(t);
  p.head_dim = static_cast<int>(d);
  p.max_keys = s;
  p.window = window ? *window : 0;
  p.scale = static_cast<float>(scale);
  p.type = element_type(q.scalar_type(), kOp);
  p.q = q.const_data_ptr();
  p.q_batch_stride = q.stride(0);
  p.q_head_stride = q.stride(1);
  p.q_query_stride = q.stride(2);
  p.k = k.const_data_ptr();
  p.k_batch_stride = k.stride(0);
  p.k_head_stride = k.stride(1);
  p.k_key_stride = k.stride(2);
  p.v = v.const_data_ptr();
  p.v_batch_stride = v.stride(0);
  p.v_head_stride = v.stride(1);
  p.v_key_stride = v.stride(2);
  p.out = out.mutable_data_ptr();
  p.out_batch_stride = out.stride(0);
  p.out_head_stride = out.stride(1);
  p.out_query_stride = out.stride(2);
  if (positions.defined()) {
    p.positions = positions.const_data_ptr<int64_t>();
    p.positions_stride = positions.numel() == 1 ? 0 : positions.stride(0);
  } else {
    p.position = position;
  }

  // Splits from the buffer's length, not the filled one: the grid stays valid as the cache fills.
  const int num_sms = device_properties().multiProcessorCount;
  p.num_splits = da::plan_num_splits(b, hkv, da::row_chunks((hq / hkv) * t), s, num_sms, split_blocks_per_sm);
  at::Tensor workspace;  // the splits' outputs, then their log-sum-exps: one allocation per call
  if (p.num_splits > 1) {
    const int64_t rows = b * hq * t * p.num_splits;
    workspace = at::empty({rows * (d + 1)}, q.options().dtype(at::kFloat));
    p.partial_out = workspace.mutable_data_ptr<float>();
    p.partial_lse = p.partial_out + rows * d;
  }
  throw_if_failed(kernels::decode_attention(p, current_stream()), kOp);
}

}  // namespace effarch::ops::detail
