// ops::last_prefill_sdpa: which SDPA backend a prefill attention call ran and whether a mask tensor
// went in. A plain causal prefill passes is_causal (no [T, S] mask); a sliding window that cuts a
// query's keys, or a multi-token step continuing a cache, needs the mask; one query records nothing.

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "effarch/ops/attention.h"

namespace effarch::ops {
namespace {

struct Qkv {
  at::Tensor q, k, v;
};

Qkv qkv(int64_t t, int64_t s, int64_t hq = 4, int64_t hkv = 2) {
  return {at::randn({1, hq, t, 16}), at::randn({1, hkv, s, 16}), at::randn({1, hkv, s, 16})};
}

TEST(SdpaChoice, PlainCausalPrefillPassesNoMask) {
  clear_last_prefill_sdpa();
  const Qkv x = qkv(12, 12);
  causal_attention(x.q, x.k, x.v, 0, 0.25, AttentionImpl::Sdpa);
  const std::optional<SdpaChoice> c = last_prefill_sdpa();
  ASSERT_TRUE(c.has_value());
  EXPECT_FALSE(c->mask);
  EXPECT_EQ(c->queries, 12);
  EXPECT_EQ(c->keys, 12);
  // What the framework says it runs for these tensors on the CPU.
  EXPECT_TRUE(c->backend == "flash_attention" || c->backend == "math") << c->backend;
}

TEST(SdpaChoice, MasksOnlyWhereTheCausalFlagIsNotExact) {
  clear_last_prefill_sdpa();
  Qkv x = qkv(12, 12);
  causal_attention(x.q, x.k, x.v, 0, 0.25, AttentionImpl::Sdpa, /*window=*/4);  // the window cuts keys
  ASSERT_TRUE(last_prefill_sdpa().has_value());
  EXPECT_TRUE(last_prefill_sdpa()->mask);
  x = qkv(3, 10);
  causal_attention(x.q, x.k, x.v, 7, 0.25, AttentionImpl::Sdpa);  // three queries continuing a cache
  EXPECT_TRUE(last_prefill_sdpa()->mask);
  EXPECT_EQ(last_prefill_sdpa()->keys, 10);
  clear_last_prefill_sdpa();
  x = qkv(1, 10);
  causal_attention(x.q, x.k, x.v, 9, 0.25, AttentionImpl::Sdpa);  // one query: a decode step
  EXPECT_FALSE(last_prefill_sdpa().has_value());
  x = qkv(12, 12);
  causal_attention(x.q, x.k, x.v, 0, 0.25, AttentionImpl::Eager);  // not SDPA
  EXPECT_FALSE(last_prefill_sdpa().has_value());
}

TEST(SdpaChoice, BackendNames) {
  EXPECT_EQ(sdp_backend_name(0), "math");
  EXPECT_EQ(sdp_backend_name(1), "flash_attention");
  EXPECT_EQ(sdp_backend_name(2), "efficient_attention");
  EXPECT_EQ(sdp_backend_name(3), "cudnn_attention");
  EXPECT_EQ(sdp_backend_name(-1), "error");
}

}  // namespace
}  // namespace effarch::ops
